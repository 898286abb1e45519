//! The kernel command line (`/proc/cmdline`) and the `aa_kbc_params` value (`<kbc>::<uri>`)
//! the attestation agent and the confidential data hub both take from it (and from env
//! `AA_KBC_PARAMS`) when they run without a config file. One parser, so both daemons read
//! the same KBS from the same command line.

use std::{fmt, io, io::Read, path::Path};

/// The real kernel command line.
pub const KERNEL_CMDLINE_PATH: &str = "/proc/cmdline";
/// Longest kernel command line read; far beyond what the kernel accepts (a few KiB), so a
/// hostile or broken file cannot make a daemon read without bound.
pub(crate) const MAX_KERNEL_CMDLINE_LEN: u64 = 64 * 1024;
/// Environment variable holding `<kbc>::<uri>`.
pub const AA_KBC_PARAMS_ENV: &str = "AA_KBC_PARAMS";
/// Kernel parameter holding `<kbc>::<uri>`.
pub const AA_KBC_PARAMS_KEY: &str = "agent.aa_kbc_params";
/// The aa_kbc_params used when nothing sets them (upstream's default).
pub const DEFAULT_AA_KBC_PARAMS: &str = "offline_fs_kbc::";

/// The `key=value` parameters of a kernel command line. Words without `=` carry no setting
/// and are skipped; quoting is not interpreted (as upstream).
///
/// A repeated key resolves the way upstream resolves that parameter: [`Self::first`] for
/// `agent.aa_kbc_params` and `cdh.kbs_resources` (upstream stops at the first match),
/// [`Self::last`] for image-rs's `agent.*` image parameters (upstream collects them into a
/// map, so a later one replaces an earlier one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCmdline {
    params: Vec<(String, String)>,
}

impl KernelCmdline {
    /// Splits `text` at ASCII whitespace; each word is split at its first `=`.
    pub(crate) fn parse(text: &str) -> Self {
        let params = text
            .split_ascii_whitespace()
            .filter_map(|param| param.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Self { params }
    }

    /// Reads and parses `path`: at most 64 KiB, bytes that are
    /// not UTF-8 replaced (the command line is ASCII in practice; a stray byte must not
    /// hide a parameter). A missing file is an error; callers decide what it means.
    pub fn read(path: &Path) -> io::Result<Self> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_KERNEL_CMDLINE_LEN)
            .read_to_end(&mut bytes)?;
        Ok(Self::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// The value of the first `key=` parameter.
    pub fn first(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the last `key=` parameter.
    pub fn last(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// How many `key=` parameters there are.
    pub fn count(&self, key: &str) -> usize {
        self.params.iter().filter(|(k, _)| k == key).count()
    }

    /// The first `agent.aa_kbc_params=`, parsed; `None` when there is none.
    pub fn aa_kbc_params(&self) -> Option<Result<AaKbcParams, AaKbcParamsError>> {
        self.first(AA_KBC_PARAMS_KEY).map(AaKbcParams::parse)
    }
}

/// A parsed `<kbc>::<uri>`.
#[derive(Clone, PartialEq, Eq)]
pub struct AaKbcParams {
    /// KBC name, e.g. `cc_kbc`, `offline_fs_kbc`.
    pub kbc: String,
    /// KBS URI (may be empty; it may itself hold `::`, e.g. an IPv6 host).
    pub uri: String,
}

impl fmt::Debug for AaKbcParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AaKbcParams({}::{})", self.kbc, self.uri)
    }
}

impl fmt::Display for AaKbcParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.kbc, self.uri)
    }
}

/// Why an aa_kbc_params value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{value}` is malformed: {reason}; expected <kbc>::<uri>, e.g. \
     cc_kbc::https://kbs.example:8080 or offline_fs_kbc::"
)]
pub struct AaKbcParamsError {
    /// the value
    pub value: String,
    /// what is wrong
    pub reason: &'static str,
}

impl AaKbcParams {
    /// Parses `<kbc>::<uri>`: split at the first `::`; the KBC name is a non-empty word of
    /// `[A-Za-z0-9_-]`, the URI holds no whitespace.
    pub fn parse(value: &str) -> Result<Self, AaKbcParamsError> {
        let malformed = |reason| AaKbcParamsError {
            value: value.to_string(),
            reason,
        };
        let (kbc, uri) = value.split_once("::").ok_or_else(|| malformed("no `::`"))?;
        if kbc.is_empty() {
            return Err(malformed("the KBC name is empty"));
        }
        if kbc
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(malformed(
                "the KBC name has characters other than [A-Za-z0-9_-]",
            ));
        }
        if uri.chars().any(char::is_whitespace) {
            return Err(malformed("the URI contains whitespace"));
        }
        Ok(Self {
            kbc: kbc.to_string(),
            uri: uri.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parameters() {
        let cmdline = KernelCmdline::parse(
            "BOOT_IMAGE=/vmlinuz ro quiet agent.aa_kbc_params=cc_kbc::http://1.2.3.4:8080\n \
             agent.https_proxy=http://p:3128 console=ttyS0,115200n8 flag agent.empty=",
        );
        assert_eq!(
            cmdline.first("agent.aa_kbc_params"),
            Some("cc_kbc::http://1.2.3.4:8080")
        );
        assert_eq!(cmdline.first("agent.https_proxy"), Some("http://p:3128"));
        assert_eq!(cmdline.first("agent.empty"), Some(""));
        assert_eq!(cmdline.first("flag"), None);
        assert_eq!(cmdline.first("ro"), None);
        assert_eq!(cmdline.first("agent"), None);
        assert_eq!(cmdline.last("agent"), None);
        // a longer key with the same prefix is another parameter
        assert_eq!(
            KernelCmdline::parse("xagent.aa_kbc_params=a::b").first("agent.aa_kbc_params"),
            None
        );
        // values may contain '='
        assert_eq!(KernelCmdline::parse("a=b=c").first("a"), Some("b=c"));
    }

    #[test]
    fn repeated_keys_keep_every_occurrence() {
        let cmdline = KernelCmdline::parse("k=1 other=x k=2\nk=3");
        assert_eq!(cmdline.first("k"), Some("1"));
        assert_eq!(cmdline.last("k"), Some("3"));
        assert_eq!(cmdline.count("k"), 3);
        assert_eq!(cmdline.count("other"), 1);
        assert_eq!(cmdline.count("absent"), 0);
    }

    #[test]
    fn reading_is_bounded_and_tolerates_stray_bytes() {
        let dir = tempfile::tempdir().unwrap();
        // a missing file and a directory are errors
        assert_eq!(
            KernelCmdline::read(&dir.path().join("absent"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert!(KernelCmdline::read(dir.path()).is_err());
        let path = dir.path().join("cmdline");
        std::fs::write(&path, b"a=1\n").unwrap();
        assert_eq!(KernelCmdline::read(&path).unwrap().first("a"), Some("1"));
        // non-UTF-8 bytes around a parameter do not hide it
        std::fs::write(&path, b"\xff\xfe agent.aa_kbc_params=cc_kbc::http://k \xc0").unwrap();
        assert_eq!(
            KernelCmdline::read(&path).unwrap().first(AA_KBC_PARAMS_KEY),
            Some("cc_kbc::http://k")
        );
        // an oversized file is read only up to the limit
        let mut big = vec![b'a'; 70 * 1024];
        big.extend_from_slice(b" agent.aa_kbc_params=cc_kbc::http://beyond-the-limit");
        std::fs::write(&path, &big).unwrap();
        assert_eq!(
            KernelCmdline::read(&path).unwrap().count(AA_KBC_PARAMS_KEY),
            0
        );
        // an empty file is an empty command line
        std::fs::write(&path, b"").unwrap();
        assert_eq!(
            KernelCmdline::read(&path).unwrap(),
            KernelCmdline::default()
        );
    }

    #[test]
    fn parses_kbc_and_uri() {
        let p = AaKbcParams::parse("cc_kbc::https://kbs.example:8080").unwrap();
        assert_eq!(p.kbc, "cc_kbc");
        assert_eq!(p.uri, "https://kbs.example:8080");
        assert_eq!(p.to_string(), "cc_kbc::https://kbs.example:8080");
        // only the first `::` splits
        let p = AaKbcParams::parse("cc_kbc::http://[::1]:8080").unwrap();
        assert_eq!(p.uri, "http://[::1]:8080");
        let p = AaKbcParams::parse(DEFAULT_AA_KBC_PARAMS).unwrap();
        assert_eq!((p.kbc.as_str(), p.uri.as_str()), ("offline_fs_kbc", ""));
    }

    #[test]
    fn malformed_params_are_refused_with_a_clear_message() {
        for (bad, why) in [
            ("cc_kbc", "no `::`"),
            ("cc_kbc:https://kbs", "no `::`"),
            ("", "no `::`"),
            ("::https://kbs", "empty"),
            ("cc kbc::https://kbs", "characters"),
            ("cc/kbc::https://kbs", "characters"),
            ("cc_kbc::https://kbs x", "whitespace"),
            ("cc_kbc::https://kbs\u{a0}", "whitespace"),
        ] {
            let err = AaKbcParams::parse(bad).unwrap_err();
            assert_eq!(err.value, bad);
            let text = err.to_string();
            assert!(text.contains(why), "{bad}: {text}");
            assert!(text.contains("<kbc>::<uri>"), "{text}");
            assert!(text.contains(&format!("`{bad}`")), "{text}");
        }
    }

    #[test]
    fn the_first_aa_kbc_params_counts_as_upstream() {
        let cmdline = KernelCmdline::parse(
            "console=ttyS0 agent.aa_kbc_params=cc_kbc::http://10.0.0.1:8080 quiet \
             agent.aa_kbc_params=cc_kbc::http://second\n",
        );
        assert_eq!(
            cmdline.aa_kbc_params().unwrap().unwrap().uri,
            "http://10.0.0.1:8080"
        );
        // a malformed first one is reported, not skipped for a later one
        let cmdline = KernelCmdline::parse(
            "agent.aa_kbc_params=cc_kbc agent.aa_kbc_params=cc_kbc::http://second",
        );
        assert_eq!(
            cmdline.aa_kbc_params().unwrap().unwrap_err().value,
            "cc_kbc"
        );
        assert_eq!(KernelCmdline::parse("ro quiet").aa_kbc_params(), None);
    }
}
