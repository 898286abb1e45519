//! The agent's config file (TOML, or JSON for a `.json` file), or the defaults plus
//! aa_kbc_params when no file is given.
//!
//! ```toml
//! [token_configs.coco_as]
//! url = "http://127.0.0.1:8000"
//! [token_configs.kbs]
//! url = "https://127.0.0.1:8080"
//! cert = "-----BEGIN CERTIFICATE-----..."     # extra trusted root, optional ("" = none)
//! tee_key_algorithm = "ECDH-ES+A256KW-P256"    # or ECDH-ES+A256KW-P521, RSA-OAEP-256,
//!                                              # ML-KEM-768+A192KW (post-quantum)
//! [eventlog_config]
//! init_pcr = 17                                # default: 17, or 23 on TPM platforms
//! enable_eventlog = false
//! [log]
//! level = "info"
//! [attester]
//! allow_sample = false                         # strict mode; absent: fall back as upstream
//! ```
//!
//! A value of the wrong type or out of range is an error naming its key; an unknown key is
//! reported back (the binary logs a warning) and otherwise ignored.

use std::{
    fmt,
    io::Read,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use tracing::info;
use url::Url;

use crate::kbc_params::{AaKbcParams, KbcParamsError};
use config_document::{DocumentError, Parsed};

/// Config files larger than this are refused (a real one is a few KiB even with a cert).
pub(crate) const CONFIG_SIZE_LIMIT: u64 = 1024 * 1024;

/// The highest PCR index (TPM 2.0 has PCRs 0..=23).
pub(crate) const MAX_PCR: u64 = 23;

/// The agent configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `[token_configs]`
    pub token_configs: TokenConfigs,
    /// `[eventlog_config]`
    pub eventlog_config: EventlogConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[attester]`
    pub attester: AttesterConfig,
}

/// `[token_configs]`: where GetToken gets its tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TokenConfigs {
    /// `[token_configs.coco_as]`
    pub coco_as: Option<CocoAsConfig>,
    /// `[token_configs.kbs]`
    pub kbs: Option<KbsConfig>,
}

/// `[token_configs.coco_as]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CocoAsConfig {
    /// Attestation service URL.
    pub url: Url,
}

/// `[token_configs.kbs]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KbsConfig {
    /// KBS URL.
    pub url: Url,
    /// Extra trusted root certificate (PEM) for the KBS's HTTPS; `""` means none, as
    /// upstream's own example writes it.
    #[serde(default)]
    pub cert: Option<String>,
    /// Algorithm of the TEE key the KBS wraps responses for.
    #[serde(default)]
    pub tee_key_algorithm: TeeKeyAlgorithm,
}

/// `token_configs.kbs.tee_key_algorithm`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TeeKeyAlgorithm {
    /// EC P-256 key, ECDH-ES+A256KW wrapping (default).
    #[default]
    #[serde(rename = "ECDH-ES+A256KW-P256")]
    EcdhEsA256KwP256,
    /// EC P-521 key, ECDH-ES+A256KW wrapping.
    #[serde(rename = "ECDH-ES+A256KW-P521")]
    EcdhEsA256KwP521,
    /// RSA-2048 key, RSA-OAEP-256 wrapping.
    #[serde(rename = "RSA-OAEP-256")]
    RsaOaep256,
    /// ML-KEM-768 key, ML-KEM-768+A192KW wrapping: trustee's experimental post-quantum
    /// key (upstream's name; `ML-KEM-768` is accepted too).
    #[serde(rename = "ML-KEM-768+A192KW", alias = "ML-KEM-768")]
    MlKem768A192Kw,
}

impl TeeKeyAlgorithm {
    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKeyAlgorithm::EcdhEsA256KwP256 => "ECDH-ES+A256KW-P256",
            TeeKeyAlgorithm::EcdhEsA256KwP521 => "ECDH-ES+A256KW-P521",
            TeeKeyAlgorithm::RsaOaep256 => "RSA-OAEP-256",
            TeeKeyAlgorithm::MlKem768A192Kw => "ML-KEM-768+A192KW",
        }
    }
}

impl fmt::Display for TeeKeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[eventlog_config]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EventlogConfig {
    /// PCR that runtime measurements go to when the request names none; absent, the
    /// platform's default (17, or 23 where the registers are TPM PCRs: upstream's fixed 17
    /// cannot be extended on a TPM).
    pub init_pcr: Option<u64>,
    /// Whether ExtendRuntimeMeasurement records events at all.
    pub enable_eventlog: bool,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A tracing filter: a level (`info`) or directives (`info,ttrpc=warn`). `RUST_LOG`
    /// overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
        }
    }
}

/// `[attester]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AttesterConfig {
    /// Whether the sample attester (evidence that proves nothing) may stand in when no TEE
    /// is found: `false` is strict mode, `true` an explicit allow; absent, the kernel
    /// parameter `aa.allow_sample`, `AA_SAMPLE_ATTESTER`, then upstream's fallback decide.
    pub allow_sample: Option<bool>,
}

/// File format of a config file, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `*.json`
    Json,
    /// anything else
    Toml,
}

impl ConfigFormat {
    /// `.json` (any case) is JSON, everything else TOML.
    pub fn of(path: &Path) -> Self {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("json") => ConfigFormat::Json,
            _ => ConfigFormat::Toml,
        }
    }
}

impl fmt::Display for ConfigFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigFormat::Json => "JSON",
            ConfigFormat::Toml => "TOML",
        })
    }
}

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// The file is implausibly large.
    #[error("config file {path} is larger than {CONFIG_SIZE_LIMIT} bytes")]
    TooLarge {
        /// the file
        path: PathBuf,
    },
    /// Not well-formed TOML/JSON.
    #[error("config is not valid {format}: {message}")]
    Syntax {
        /// the format expected
        format: ConfigFormat,
        /// the parser's message
        message: String,
    },
    /// A key holds a value of the wrong type or out of range.
    #[error("config key `{key}`: {message}")]
    InvalidValue {
        /// dotted key path, e.g. `eventlog_config.init_pcr`
        key: String,
        /// what is wrong
        message: String,
    },
    /// aa_kbc_params (used without a config file) is unusable.
    #[error(transparent)]
    KbcParams(#[from] KbcParamsError),
}

/// A configuration and the keys of its file that were not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// Dotted paths of unknown keys (warned about, otherwise ignored).
    pub unknown_keys: Vec<String>,
}

impl Config {
    /// Reads and checks the config file at `path` (`.json` → JSON, else TOML).
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(CONFIG_SIZE_LIMIT + 1).read_to_end(&mut bytes))
            .map_err(read_err)?;
        if bytes.len() as u64 > CONFIG_SIZE_LIMIT {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::parse(&bytes, ConfigFormat::of(path))
    }

    /// Parses and checks a config document.
    pub fn parse(bytes: &[u8], format: ConfigFormat) -> Result<LoadedConfig, ConfigError> {
        let parsed: Result<Parsed<Config>, DocumentError> = match format {
            ConfigFormat::Json => config_document::from_json(bytes),
            ConfigFormat::Toml => match std::str::from_utf8(bytes) {
                Ok(text) => config_document::from_toml(text),
                Err(e) => Err(DocumentError::Syntax(format!("not UTF-8: {e}"))),
            },
        };
        let parsed = parsed.map_err(|e| match e {
            DocumentError::Syntax(message) => ConfigError::Syntax { format, message },
            DocumentError::Value { key, message } => ConfigError::InvalidValue { key, message },
        })?;
        let mut config = parsed.value;
        if let Some(kbs) = &mut config.token_configs.kbs {
            if kbs
                .cert
                .as_deref()
                .is_some_and(|cert| cert.trim().is_empty())
            {
                kbs.cert = None;
            }
        }
        config.check()?;
        Ok(LoadedConfig {
            config,
            unknown_keys: parsed.unknown_keys,
        })
    }

    /// The configuration used without a config file: defaults, plus `token_configs.kbs`
    /// when aa_kbc_params names `cc_kbc`.
    pub fn from_kbc_params(params: &AaKbcParams) -> Result<Self, ConfigError> {
        let mut config = Config::default();
        match params.kbs_url()? {
            Some(url) => {
                config.token_configs.kbs = Some(KbsConfig {
                    url,
                    cert: None,
                    tee_key_algorithm: TeeKeyAlgorithm::default(),
                });
            }
            None => info!(
                kbc = %params.kbc,
                origin = %params.origin,
                "aa_kbc_params names no cc_kbc: no KBS configured"
            ),
        }
        Ok(config)
    }

    /// Value checks serde cannot express; each error names its key.
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::InvalidValue {
            key: key.to_string(),
            message,
        };
        if let Some(coco_as) = &self.token_configs.coco_as {
            check_http_url(&coco_as.url)
                .map_err(|m| invalid("token_configs.coco_as.url", m.to_string()))?;
        }
        if let Some(kbs) = &self.token_configs.kbs {
            check_http_url(&kbs.url)
                .map_err(|m| invalid("token_configs.kbs.url", m.to_string()))?;
            if let Some(cert) = &kbs.cert {
                if !(cert.contains("-----BEGIN CERTIFICATE-----")
                    && cert.contains("-----END CERTIFICATE-----"))
                {
                    return Err(invalid(
                        "token_configs.kbs.cert",
                        "not a PEM certificate (no BEGIN/END CERTIFICATE block)".to_string(),
                    ));
                }
            }
        }
        if let Some(pcr) = self.eventlog_config.init_pcr.filter(|pcr| *pcr > MAX_PCR) {
            return Err(invalid(
                "eventlog_config.init_pcr",
                format!("PCR {pcr} does not exist; PCR indexes are 0..={MAX_PCR}"),
            ));
        }
        // A bare word that is no level is refused: `level = "loud"` is a mistake, not a target.
        self.log
            .level
            .parse::<logging::LogFilter>()
            .map(drop)
            .map_err(|e| invalid("log.level", e.to_string()))
    }
}

/// A KBS or attestation-service URL must be http(s) with a host, and without query or
/// fragment (API paths are appended to it).
pub(crate) fn check_http_url(url: &Url) -> Result<(), &'static str> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the URL scheme must be http or https");
    }
    if url.host().is_none() {
        return Err("the URL has no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL takes no query or fragment (API paths are appended to it)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kbc_params::KbcParamsOrigin;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn toml(text: &str) -> Result<LoadedConfig, ConfigError> {
        Config::parse(text.as_bytes(), ConfigFormat::Toml)
    }

    fn invalid_key(result: Result<LoadedConfig, ConfigError>) -> (String, String) {
        match result {
            Err(ConfigError::InvalidValue { key, message }) => (key, message),
            other => panic!("expected InvalidValue, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.token_configs.coco_as, None);
        assert_eq!(c.token_configs.kbs, None);
        assert_eq!(c.eventlog_config.init_pcr, None);
        assert!(!c.eventlog_config.enable_eventlog);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.attester.allow_sample, None);
        // an empty file is all defaults
        let loaded = toml("").unwrap();
        assert_eq!(loaded.config, c);
        assert!(loaded.unknown_keys.is_empty());
        assert_eq!(Config::parse(b"{}", ConfigFormat::Json).unwrap().config, c);
        // an empty section keeps the defaults of its keys
        assert_eq!(toml("[eventlog_config]\n[log]\n").unwrap().config, c);
        assert_eq!(
            TeeKeyAlgorithm::default(),
            TeeKeyAlgorithm::EcdhEsA256KwP256
        );
    }

    #[test]
    fn every_key() {
        let text = format!(
            r#"
[token_configs.coco_as]
url = "http://127.0.0.1:8000"

[token_configs.kbs]
url = "https://127.0.0.1:8080"
cert = """{CERT}"""
tee_key_algorithm = "RSA-OAEP-256"

[eventlog_config]
init_pcr = 8
enable_eventlog = true

[log]
level = "debug"

[attester]
allow_sample = true
"#
        );
        let loaded = toml(&text).unwrap();
        assert!(loaded.unknown_keys.is_empty());
        let c = loaded.config;
        assert_eq!(
            c.token_configs.coco_as.unwrap().url.as_str(),
            "http://127.0.0.1:8000/"
        );
        let kbs = c.token_configs.kbs.unwrap();
        assert_eq!(kbs.url.as_str(), "https://127.0.0.1:8080/");
        assert_eq!(kbs.cert.as_deref(), Some(CERT));
        assert_eq!(kbs.tee_key_algorithm, TeeKeyAlgorithm::RsaOaep256);
        assert_eq!(c.eventlog_config.init_pcr, Some(8));
        assert!(c.eventlog_config.enable_eventlog);
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.attester.allow_sample, Some(true));
    }

    #[test]
    fn every_tee_key_algorithm() {
        for (name, alg) in [
            ("ECDH-ES+A256KW-P256", TeeKeyAlgorithm::EcdhEsA256KwP256),
            ("ECDH-ES+A256KW-P521", TeeKeyAlgorithm::EcdhEsA256KwP521),
            ("RSA-OAEP-256", TeeKeyAlgorithm::RsaOaep256),
            ("ML-KEM-768+A192KW", TeeKeyAlgorithm::MlKem768A192Kw),
        ] {
            let c = toml(&format!(
                "[token_configs.kbs]\nurl = \"http://k\"\ntee_key_algorithm = \"{name}\"\n"
            ))
            .unwrap()
            .config;
            assert_eq!(c.token_configs.kbs.unwrap().tee_key_algorithm, alg);
            assert_eq!(alg.to_string(), name);
        }
        let alias =
            toml("[token_configs.kbs]\nurl = \"http://k\"\ntee_key_algorithm = \"ML-KEM-768\"\n")
                .unwrap()
                .config;
        assert_eq!(
            alias.token_configs.kbs.unwrap().tee_key_algorithm,
            TeeKeyAlgorithm::MlKem768A192Kw
        );
        for bad in [
            "ecdh-es+a256kw-p256",
            "RSA1_5",
            "ml-kem-768+a192kw",
            "ML-KEM-1024+A256KW",
            "",
        ] {
            let (key, message) = invalid_key(toml(&format!(
                "[token_configs.kbs]\nurl = \"http://k\"\ntee_key_algorithm = \"{bad}\"\n"
            )));
            assert_eq!(key, "token_configs.kbs.tee_key_algorithm");
            assert!(message.contains("unknown variant"), "{message}");
        }
    }

    #[test]
    fn json_by_extension() {
        assert_eq!(
            ConfigFormat::of(Path::new("/run/aa.json")),
            ConfigFormat::Json
        );
        assert_eq!(
            ConfigFormat::of(Path::new("/run/aa.JSON")),
            ConfigFormat::Json
        );
        assert_eq!(
            ConfigFormat::of(Path::new("/run/aa.toml")),
            ConfigFormat::Toml
        );
        assert_eq!(
            ConfigFormat::of(Path::new("/etc/attestation-agent.conf")),
            ConfigFormat::Toml
        );
        assert_eq!(ConfigFormat::of(Path::new("/run/aa")), ConfigFormat::Toml);
        let json = br#"{"token_configs":{"kbs":{"url":"http://kbs:8080"}},"eventlog_config":{"init_pcr":16,"enable_eventlog":true},"log":{"level":"warn"},"attester":{"allow_sample":true}}"#;
        let c = Config::parse(json, ConfigFormat::Json).unwrap().config;
        assert_eq!(
            c.token_configs.kbs.unwrap().url.as_str(),
            "http://kbs:8080/"
        );
        assert_eq!(c.eventlog_config.init_pcr, Some(16));
        assert_eq!(c.attester.allow_sample, Some(true));
        let (key, _) = invalid_key(Config::parse(
            br#"{"eventlog_config":{"enable_eventlog":"yes"}}"#,
            ConfigFormat::Json,
        ));
        assert_eq!(key, "eventlog_config.enable_eventlog");
    }

    #[test]
    fn wrong_types_name_the_key() {
        for (text, expected) in [
            (
                "[eventlog_config]\ninit_pcr = \"17\"\n",
                "eventlog_config.init_pcr",
            ),
            (
                "[eventlog_config]\ninit_pcr = -1\n",
                "eventlog_config.init_pcr",
            ),
            (
                "[eventlog_config]\ninit_pcr = 1.5\n",
                "eventlog_config.init_pcr",
            ),
            (
                "[eventlog_config]\nenable_eventlog = 1\n",
                "eventlog_config.enable_eventlog",
            ),
            ("[log]\nlevel = 3\n", "log.level"),
            (
                "[attester]\nallow_sample = \"true\"\n",
                "attester.allow_sample",
            ),
            ("[token_configs.kbs]\nurl = 8080\n", "token_configs.kbs.url"),
            (
                "[token_configs.kbs]\nurl = \"not a url\"\n",
                "token_configs.kbs.url",
            ),
            (
                "[token_configs.kbs]\nurl = \"http://k\"\ncert = 1\n",
                "token_configs.kbs.cert",
            ),
            (
                "[token_configs.coco_as]\nurl = [1]\n",
                "token_configs.coco_as.url",
            ),
            ("log = \"info\"\n", "log"),
            ("token_configs = 1\n", "token_configs"),
        ] {
            let (key, message) = invalid_key(toml(text));
            assert_eq!(key, expected, "{text}: {message}");
            let err = toml(text).unwrap_err().to_string();
            assert!(err.contains(&format!("`{expected}`")), "{err}");
        }
    }

    #[test]
    fn missing_required_url() {
        let (key, message) = invalid_key(toml("[token_configs.kbs]\ncert = \"x\"\n"));
        assert_eq!(key, "token_configs.kbs");
        assert!(message.contains("missing field `url`"), "{message}");
        let (key, _) = invalid_key(toml("[token_configs.coco_as]\n"));
        assert_eq!(key, "token_configs.coco_as");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, expected) in [
            (
                "[eventlog_config]\ninit_pcr = 24\n",
                "eventlog_config.init_pcr",
            ),
            (
                "[token_configs.kbs]\nurl = \"ftp://kbs\"\n",
                "token_configs.kbs.url",
            ),
            (
                "[token_configs.kbs]\nurl = \"file:///etc/passwd\"\n",
                "token_configs.kbs.url",
            ),
            (
                "[token_configs.coco_as]\nurl = \"unix:///run/as.sock\"\n",
                "token_configs.coco_as.url",
            ),
            (
                "[token_configs.coco_as]\nurl = \"http://as/?policy=x\"\n",
                "token_configs.coco_as.url",
            ),
            (
                "[token_configs.kbs]\nurl = \"http://kbs:8080/#frag\"\n",
                "token_configs.kbs.url",
            ),
            (
                "[token_configs.kbs]\nurl = \"http://k\"\ncert = \"MIIB\"\n",
                "token_configs.kbs.cert",
            ),
            ("[log]\nlevel = \"loud\"\n", "log.level"),
            ("[log]\nlevel = \"\"\n", "log.level"),
            ("[log]\nlevel = \"info,\"\n", "log.level"),
            ("[log]\nlevel = \"=info\"\n", "log.level"),
            ("[log]\nlevel = \"ttrpc=loud\"\n", "log.level"),
        ] {
            let (key, _) = invalid_key(toml(text));
            assert_eq!(key, expected, "{text}");
        }
        assert_eq!(
            toml("[eventlog_config]\ninit_pcr = 23\n")
                .unwrap()
                .config
                .eventlog_config
                .init_pcr,
            Some(23)
        );
        assert_eq!(
            toml("[eventlog_config]\ninit_pcr = 0\n")
                .unwrap()
                .config
                .eventlog_config
                .init_pcr,
            Some(0)
        );
        for good in [
            "info",
            "DEBUG",
            "off",
            "info,ttrpc=warn",
            "attestation_agent=trace",
        ] {
            assert_eq!(
                toml(&format!("[log]\nlevel = \"{good}\"\n"))
                    .unwrap()
                    .config
                    .log
                    .level,
                good
            );
        }
    }

    #[test]
    fn unknown_keys_are_warnings_not_failures() {
        let loaded = toml(
            "socket = \"x\"\n[log]\nlevel = \"info\"\nformat = \"json\"\n[token_configs.kbs]\nurl = \"http://k\"\ntimeout = 5\n[extra]\na = 1\n",
        )
        .unwrap();
        assert_eq!(loaded.config.log.level, "info");
        let mut keys = loaded.unknown_keys;
        keys.sort();
        assert_eq!(
            keys,
            vec!["extra", "log.format", "socket", "token_configs.kbs.timeout"]
        );
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "[log",
            "level = ",
            "[log]\nlevel = 'a'\nlevel = 'b'\n",
            "= 1",
        ] {
            assert!(
                matches!(
                    toml(bad),
                    Err(ConfigError::Syntax {
                        format: ConfigFormat::Toml,
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Config::parse(b"\xff\xfe", ConfigFormat::Toml),
            Err(ConfigError::Syntax { .. })
        ));
        for bad in [&b"{"[..], b"", b"[1]x", b"{\"log\":{}} {}"] {
            assert!(
                matches!(
                    Config::parse(bad, ConfigFormat::Json),
                    Err(ConfigError::Syntax {
                        format: ConfigFormat::Json,
                        ..
                    } | ConfigError::InvalidValue { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn load_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aa.toml");
        std::fs::write(&path, "[eventlog_config]\ninit_pcr = 9\n").unwrap();
        assert_eq!(
            Config::load(&path).unwrap().config.eventlog_config.init_pcr,
            Some(9)
        );
        let json = dir.path().join("aa.json");
        std::fs::write(&json, r#"{"eventlog_config":{"init_pcr":10}}"#).unwrap();
        assert_eq!(
            Config::load(&json).unwrap().config.eventlog_config.init_pcr,
            Some(10)
        );
        // TOML content in a .json file is read as JSON and refused
        std::fs::write(&json, "[log]\n").unwrap();
        assert!(matches!(
            Config::load(&json),
            Err(ConfigError::Syntax {
                format: ConfigFormat::Json,
                ..
            })
        ));
        let err = Config::load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("missing.toml"));
        assert!(matches!(
            Config::load(dir.path()),
            Err(ConfigError::Read { .. })
        ));
        let big = dir.path().join("big.toml");
        let mut text = "# padding\n".repeat((CONFIG_SIZE_LIMIT / 10) as usize);
        text.push_str("[log]\n#\n");
        assert!(text.len() as u64 > CONFIG_SIZE_LIMIT);
        std::fs::write(&big, text).unwrap();
        assert!(matches!(
            Config::load(&big),
            Err(ConfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn from_kbc_params() {
        let params = |v: &str| AaKbcParams::parse(v, KbcParamsOrigin::Env).unwrap();
        let c = Config::from_kbc_params(&params("cc_kbc::http://10.0.0.1:8080")).unwrap();
        let kbs = c.token_configs.kbs.unwrap();
        assert_eq!(kbs.url.as_str(), "http://10.0.0.1:8080/");
        assert_eq!(kbs.cert, None);
        assert_eq!(kbs.tee_key_algorithm, TeeKeyAlgorithm::EcdhEsA256KwP256);
        assert_eq!(c.eventlog_config, EventlogConfig::default());
        assert_eq!(c.log, LogConfig::default());
        assert_eq!(c.attester, AttesterConfig::default());
        let c = Config::from_kbc_params(&params("offline_fs_kbc::")).unwrap();
        assert_eq!(c, Config::default());
        assert!(matches!(
            Config::from_kbc_params(&params("cc_kbc::")),
            Err(ConfigError::KbcParams(KbcParamsError::BadKbsUri { .. }))
        ));
    }

    /// The shape of upstream's example config and of the aa.toml kata writes into
    /// initdata: an empty or blank `cert` means no extra certificate.
    #[test]
    fn upstream_shaped_configs_with_empty_certificates_load() {
        for cert in [
            "cert = \"\"",
            "cert = ''",
            "cert = \"\"\"\n\"\"\"",
            "cert = \"  \"",
        ] {
            let text = format!(
                "[token_configs]\n\n[token_configs.coco_as]\nurl = \"http://127.0.0.1:8000\"\n\n\
                 [token_configs.kbs]\nurl = \"https://127.0.0.1:8080\"\n{cert}\n\n\
                 [eventlog_config]\n\ninit_pcr = 17\nenable_eventlog = false\n\n[log]\nlevel = \"info\"\n"
            );
            let loaded = Config::parse(text.as_bytes(), ConfigFormat::Toml).unwrap();
            assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
            let kbs = loaded.config.token_configs.kbs.unwrap();
            assert_eq!(kbs.cert, None, "{cert}");
            assert_eq!(kbs.url.as_str(), "https://127.0.0.1:8080/");
            assert_eq!(loaded.config.eventlog_config.init_pcr, Some(17));
        }
        let json = br#"{"token_configs":{"kbs":{"url":"http://kbs:8080","cert":""}}}"#;
        let loaded = Config::parse(json, ConfigFormat::Json).unwrap();
        assert_eq!(loaded.config.token_configs.kbs.unwrap().cert, None);
    }
}
