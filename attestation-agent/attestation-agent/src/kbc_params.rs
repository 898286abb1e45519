//! `aa_kbc_params` (`<kbc>::<uri>`): where the agent finds its KBS when started without a
//! config file. Taken from env `AA_KBC_PARAMS`, else from the kernel command line
//! parameter `agent.aa_kbc_params=` (the first one, as upstream), else `offline_fs_kbc::`.
//! The value and the command line are parsed by `protos`, as the data hub parses them.

use std::{ffi::OsString, fmt, path::PathBuf};

use protos::{AaKbcParamsError, KernelCmdline};

pub use protos::{AA_KBC_PARAMS_ENV, KERNEL_CMDLINE_PATH as DEFAULT_CMDLINE_PATH};
use protos::{AA_KBC_PARAMS_KEY, DEFAULT_AA_KBC_PARAMS};

/// Where aa_kbc_params came from (for messages and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KbcParamsOrigin {
    /// env `AA_KBC_PARAMS`
    Env,
    /// `agent.aa_kbc_params=` on the kernel command line read from this file
    KernelCmdline(PathBuf),
    /// nothing set: `offline_fs_kbc::`
    Default,
}

impl fmt::Display for KbcParamsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KbcParamsOrigin::Env => write!(f, "environment variable {AA_KBC_PARAMS_ENV}"),
            KbcParamsOrigin::KernelCmdline(path) => {
                write!(
                    f,
                    "kernel command line {} ({AA_KBC_PARAMS_KEY}=...)",
                    path.display()
                )
            }
            KbcParamsOrigin::Default => f.write_str("the built-in default"),
        }
    }
}

/// Why aa_kbc_params could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum KbcParamsError {
    /// Not of the form `<kbc>::<uri>`.
    #[error("aa_kbc_params from {origin}: {source}")]
    Malformed {
        /// where it came from
        origin: KbcParamsOrigin,
        /// what is wrong
        source: AaKbcParamsError,
    },
    /// The `cc_kbc` URI is not an http(s) URL.
    #[error("aa_kbc_params from {origin}: KBS URI {uri:?} of cc_kbc is not an http:// or https:// URL: {reason}")]
    BadKbsUri {
        /// the URI
        uri: String,
        /// where it came from
        origin: KbcParamsOrigin,
        /// what is wrong
        reason: String,
    },
    /// `AA_KBC_PARAMS` is not UTF-8.
    #[error("environment variable {AA_KBC_PARAMS_ENV} is not valid UTF-8")]
    EnvNotUnicode,
    /// The kernel command line could not be read.
    #[error("reading kernel command line {path}: {source}")]
    Cmdline {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// aa_kbc_params as the agent resolved them: the parsed `<kbc>::<uri>` and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AaKbcParams {
    /// KBC name, e.g. `cc_kbc`, `offline_fs_kbc`.
    pub kbc: String,
    /// KBS URI (may be empty).
    pub uri: String,
    /// Where it came from.
    pub origin: KbcParamsOrigin,
}

impl AaKbcParams {
    /// Parses `value` (`<kbc>::<uri>`), remembering its origin for messages.
    pub fn parse(value: &str, origin: KbcParamsOrigin) -> Result<Self, KbcParamsError> {
        Self::with_origin(protos::AaKbcParams::parse(value), origin)
    }

    fn with_origin(
        parsed: Result<protos::AaKbcParams, AaKbcParamsError>,
        origin: KbcParamsOrigin,
    ) -> Result<Self, KbcParamsError> {
        match parsed {
            Ok(protos::AaKbcParams { kbc, uri }) => Ok(Self { kbc, uri, origin }),
            Err(source) => Err(KbcParamsError::Malformed { origin, source }),
        }
    }

    /// Finds aa_kbc_params: `env_value` (the value of `AA_KBC_PARAMS`, if set) wins; else
    /// the first `agent.aa_kbc_params=` on the kernel command line in `cmdline_path`; else
    /// `offline_fs_kbc::`.
    pub fn resolve(
        env_value: Option<OsString>,
        cmdline_path: impl Into<PathBuf>,
    ) -> Result<Self, KbcParamsError> {
        if let Some(value) = env_value {
            let value = value
                .into_string()
                .map_err(|_| KbcParamsError::EnvNotUnicode)?;
            return Self::parse(&value, KbcParamsOrigin::Env);
        }
        let path = cmdline_path.into();
        let cmdline = KernelCmdline::read(&path).map_err(|source| KbcParamsError::Cmdline {
            path: path.clone(),
            source,
        })?;
        match cmdline.aa_kbc_params() {
            Some(parsed) => Self::with_origin(parsed, KbcParamsOrigin::KernelCmdline(path)),
            None => Self::parse(DEFAULT_AA_KBC_PARAMS, KbcParamsOrigin::Default),
        }
    }

    /// The KBS URL when the KBC is `cc_kbc` (the only KBC that talks to a KBS); `None`
    /// for every other KBC.
    pub fn kbs_url(&self) -> Result<Option<url::Url>, KbcParamsError> {
        if self.kbc != "cc_kbc" {
            return Ok(None);
        }
        let bad = |reason: String| KbcParamsError::BadKbsUri {
            uri: self.uri.clone(),
            origin: self.origin.clone(),
            reason,
        };
        let url = url::Url::parse(&self.uri).map_err(|e| bad(e.to_string()))?;
        crate::config::check_http_url(&url).map_err(|reason| bad(reason.to_string()))?;
        Ok(Some(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<AaKbcParams, KbcParamsError> {
        AaKbcParams::parse(value, KbcParamsOrigin::Env)
    }

    fn cmdline(text: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cmdline");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// The rules of `<kbc>::<uri>` are protos' (tested there); the agent's error names
    /// where the value came from.
    #[test]
    fn malformed_params_name_their_origin() {
        for (bad, why) in [("cc_kbc", "no `::`"), ("::https://kbs", "empty")] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, KbcParamsError::Malformed { .. }), "{bad}");
            let text = err.to_string();
            assert!(text.contains(why), "{bad}: {text}");
            assert!(text.contains("<kbc>::<uri>"), "{text}");
            assert!(text.contains("AA_KBC_PARAMS"), "{text}");
        }
        let p = parse("cc_kbc::http://[::1]:8080").unwrap();
        assert_eq!(
            (p.kbc.as_str(), p.uri.as_str()),
            ("cc_kbc", "http://[::1]:8080")
        );
        assert_eq!(p.origin, KbcParamsOrigin::Env);
    }

    #[test]
    fn env_wins_over_cmdline() {
        let (_d, path) = cmdline(b"agent.aa_kbc_params=cc_kbc::http://from-cmdline");
        let p = AaKbcParams::resolve(Some("cc_kbc::http://from-env".into()), &path).unwrap();
        assert_eq!(p.uri, "http://from-env");
        assert_eq!(p.origin, KbcParamsOrigin::Env);
        // the cmdline is not even read when the env is set
        let p =
            AaKbcParams::resolve(Some("offline_fs_kbc::".into()), "/nonexistent/cmdline").unwrap();
        assert_eq!(p.kbc, "offline_fs_kbc");
    }

    #[test]
    fn cmdline_first_parameter_wins_as_upstream() {
        let (_d, path) = cmdline(
            b"console=ttyS0 agent.aa_kbc_params=cc_kbc::http://10.0.0.1:8080 quiet \
              agent.aa_kbc_params=cc_kbc::http://second\n",
        );
        let p = AaKbcParams::resolve(None, &path).unwrap();
        assert_eq!(p.uri, "http://10.0.0.1:8080");
        assert_eq!(p.origin, KbcParamsOrigin::KernelCmdline(path));
    }

    #[test]
    fn default_when_nothing_is_set() {
        let (_d, path) = cmdline(b"console=ttyS0 xagent.aa_kbc_params=cc_kbc::http://no\n");
        let p = AaKbcParams::resolve(None, &path).unwrap();
        assert_eq!((p.kbc.as_str(), p.uri.as_str()), ("offline_fs_kbc", ""));
        assert_eq!(p.origin, KbcParamsOrigin::Default);
        let (_d, empty) = cmdline(b"");
        assert_eq!(
            AaKbcParams::resolve(None, &empty).unwrap().kbc,
            "offline_fs_kbc"
        );
    }

    #[test]
    fn bad_cmdline_sources() {
        let (_d, path) = cmdline(b"agent.aa_kbc_params=cc_kbc");
        let err = AaKbcParams::resolve(None, &path).unwrap_err();
        assert!(matches!(err, KbcParamsError::Malformed { .. }));
        assert!(err.to_string().contains("kernel command line"), "{err}");
        let (_d, path) = cmdline(b"agent.aa_kbc_params=");
        assert!(matches!(
            AaKbcParams::resolve(None, &path),
            Err(KbcParamsError::Malformed { .. })
        ));
        let err = AaKbcParams::resolve(None, "/nonexistent/cmdline").unwrap_err();
        assert!(matches!(err, KbcParamsError::Cmdline { .. }));
        assert!(err.to_string().contains("/nonexistent/cmdline"));
        // non-UTF-8 bytes around the parameter do not hide it
        let (_d, path) = cmdline(b"\xff\xfe agent.aa_kbc_params=cc_kbc::http://k \xc0");
        assert_eq!(AaKbcParams::resolve(None, &path).unwrap().uri, "http://k");
        // an oversized file is read only up to the limit
        let mut big = vec![b'a'; 70 * 1024];
        big.extend_from_slice(b" agent.aa_kbc_params=cc_kbc::http://beyond-the-limit");
        let (_d, path) = cmdline(&big);
        assert_eq!(
            AaKbcParams::resolve(None, &path).unwrap().origin,
            KbcParamsOrigin::Default
        );
    }

    #[test]
    fn env_must_be_unicode() {
        use std::os::unix::ffi::OsStringExt;
        let err = AaKbcParams::resolve(Some(OsString::from_vec(vec![0xff, b':', b':'])), "/x")
            .unwrap_err();
        assert!(matches!(err, KbcParamsError::EnvNotUnicode));
    }

    #[test]
    fn kbs_url_only_for_cc_kbc() {
        let p = parse("cc_kbc::https://kbs.example:8080/").unwrap();
        assert_eq!(
            p.kbs_url().unwrap().unwrap().as_str(),
            "https://kbs.example:8080/"
        );
        for other in [
            "offline_fs_kbc::",
            "sample_kbc::whatever",
            "offline_sev_kbc::x",
        ] {
            assert_eq!(parse(other).unwrap().kbs_url().unwrap(), None);
        }
        for bad in [
            "cc_kbc::",
            "cc_kbc::kbs.example:8080",
            "cc_kbc::ftp://kbs",
            "cc_kbc::file:///etc/x",
        ] {
            let err = parse(bad).unwrap().kbs_url().unwrap_err();
            assert!(
                matches!(err, KbcParamsError::BadKbsUri { .. }),
                "{bad}: {err}"
            );
        }
    }
}
