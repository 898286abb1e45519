//! The CDH configuration: the config file (`-c`, else `CDH_CONFIG_PATH`; TOML, or JSON when
//! the name ends in `.json`), the environment and the kernel command line, combined the way
//! upstream's CDH combines them.
//!
//! # Where each setting comes from
//!
//! Highest first; a lower source is consulted only for a setting the higher ones leave unset.
//!
//! | setting | sources |
//! |---|---|
//! | the config file | `-c`; `CDH_CONFIG_PATH` |
//! | `[kbc] name`, `url` | `AA_KBC_PARAMS`; the file's `[kbc]`; without a file the first `agent.aa_kbc_params`; `offline_fs_kbc` |
//! | `[kbc] kbs_cert` | the file (empty or blank = none); `KBS_CERT` |
//! | `[aa] aa_socket` | `AA_SOCKET`; the file; the default |
//! | `[image] authenticated_registry_credentials_uri` | `CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS`; `[image]` |
//! | `[image]` | the file's section; without one, the last of each `agent.*` image parameter |
//! | `services_dir` | the file; `CDH_SERVICES_DIR` |
//! | `skip_sealed_secret_verification` | the file; `SKIP_SEALED_SECRET_VERIFICATION` |
//! | `[[credentials]]` | the file's, then the entries of the first `cdh.kbs_resources` appended |
//! | layer-key providers | `attestation-agent` always in process; others from the file named by `OCICRYPT_KEYPROVIDER_CONFIG` |
//! | AWS credential directory | `AWS_IN_GUEST_KEY_PATH`; `<kms credential dir>/aws` |
//!
//! The environment overriding the file for `AA_KBC_PARAMS`, `AA_SOCKET` and
//! `CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS` is upstream's rule; when both are
//! set, [`LoadedConfig::notes`] says which one won. A repeated kernel parameter resolves as
//! upstream resolves it: the first `agent.aa_kbc_params` and `cdh.kbs_resources`, the last
//! `agent.*` image parameter.
//!
//! A bad value that can be set aside without doing anything unasked is dropped with one
//! line in [`LoadedConfig::warnings`]: a malformed `cdh.kbs_resources` entry or one whose
//! path leaves the credentials directory (the other entries are kept; upstream drops the
//! former silently and refuses to start on the latter), an unreadable
//! `OCICRYPT_KEYPROVIDER_CONFIG` file, a keyprovider this build cannot reach, a kernel
//! parameter upstream ignores. Values that would make the hub do something else than the
//! operator asked for (a malformed file, `AA_KBC_PARAMS` or `AA_SOCKET`, a
//! `[[credentials]]` path outside the credentials directory) stop the start.

use std::{
    collections::BTreeMap,
    io::{self, Read},
    path::{Path, PathBuf},
};

pub use image_rs::ImageConfig;
use image_rs::ProxyConfig;
use kbs_protocol::ResourceUri;
use kms::{KbcParams, OfflineFsSources};
pub use ocicrypt_rs::keywrap::keyprovider::OcicryptConfig;
use serde::Deserialize;

use config_document::{DocumentError, Parsed};

use protos::{AaKbcParams, KernelCmdline, AA_KBC_PARAMS_ENV, AA_KBC_PARAMS_KEY};

use crate::{
    credentials::check_credential_path,
    pull::{hub_transport, KEY_PROVIDER_NAME},
};

/// Where the CDH serves ttRPC unless `socket` says otherwise.
pub(crate) const DEFAULT_SOCKET: &str = "unix:///run/confidential-containers/cdh.sock";
/// The attestation agent's ttRPC socket.
pub(crate) const DEFAULT_AA_SOCKET: &str =
    "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock";
/// Log filter unless `[log] level` (or `RUST_LOG`) says otherwise.
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
/// The directory every credential file must lie under.
pub const DEFAULT_CREDENTIALS_DIR: &str = "/run/confidential-containers/cdh/kbs";
/// Where the kernel command line is read from.
pub const DEFAULT_KERNEL_CMDLINE: &str = protos::KERNEL_CMDLINE_PATH;
/// KBC used when neither a config file nor `aa_kbc_params` names one (as upstream).
pub(crate) const FALLBACK_KBC: &str = kms::OFFLINE_FS_KBC;
/// Largest config file accepted, in bytes (inline policies and certificates included).
pub(crate) const MAX_CONFIG_FILE_SIZE: u64 = 4 * 1024 * 1024;
/// The per-service sockets served in `services_dir`, by file name (upstream's names).
pub(crate) const SERVICE_SOCKETS: [&str; 4] = [
    "imagepull.sock",
    "sealedsecrets.sock",
    "securemount.sock",
    "getresource.sock",
];

const KBS_RESOURCES_PARAM: &str = "cdh.kbs_resources";

/// The environment variables the CDH reads, captured once by the binary so that the
/// library never touches the process environment. Empty values count as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// `AA_KBC_PARAMS` (`<kbc>::<kbs url>`)
    pub aa_kbc_params: Option<String>,
    /// `AA_SOCKET`
    pub aa_socket: Option<String>,
    /// `KBS_CERT` (PEM)
    pub kbs_cert: Option<String>,
    /// `SKIP_SEALED_SECRET_VERIFICATION` (`true` to skip)
    pub skip_sealed_secret_verification: Option<String>,
    /// `CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS`
    pub default_image_authenticated_registry_credentials: Option<String>,
    /// `OFFLINE_FS_KBC_EXTRA_FILE_PATH` (comma-separated files)
    pub offline_fs_kbc_extra_file_path: Option<String>,
    /// `CDH_CONFIG_PATH`: the config file when `-c` is not given
    pub config_path: Option<PathBuf>,
    /// `CDH_SERVICES_DIR`: `services_dir` when the file has none
    pub services_dir: Option<String>,
    /// `OCICRYPT_KEYPROVIDER_CONFIG`: the ocicrypt keyprovider config file
    pub ocicrypt_keyprovider_config: Option<PathBuf>,
    /// `AWS_IN_GUEST_KEY_PATH`: the directory of the AWS `credential.json`
    pub aws_in_guest_key_path: Option<PathBuf>,
}

impl Environment {
    /// Reads the variables from this process's environment; a missing or non-UTF-8
    /// variable is unset.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            aa_kbc_params: var("AA_KBC_PARAMS"),
            aa_socket: var("AA_SOCKET"),
            kbs_cert: var("KBS_CERT"),
            skip_sealed_secret_verification: var("SKIP_SEALED_SECRET_VERIFICATION"),
            default_image_authenticated_registry_credentials: var(
                "CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS",
            ),
            offline_fs_kbc_extra_file_path: var(kms::OFFLINE_FS_EXTRA_FILES_ENV),
            config_path: var("CDH_CONFIG_PATH").map(PathBuf::from),
            services_dir: var("CDH_SERVICES_DIR"),
            ocicrypt_keyprovider_config: var(
                ocicrypt_rs::keywrap::keyprovider::OCICRYPT_KEYPROVIDER_CONFIG,
            )
            .map(PathBuf::from),
            aws_in_guest_key_path: var("AWS_IN_GUEST_KEY_PATH").map(PathBuf::from),
        }
    }
}

/// Everything [`Config::load`] reads besides the file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The `-c` file; `None` means `CDH_CONFIG_PATH`, else configure from the environment
    /// and kernel command line.
    pub config_file: Option<PathBuf>,
    /// The kernel command line file (`/proc/cmdline`).
    pub kernel_cmdline: PathBuf,
    /// The directory credential paths must lie under.
    pub credentials_dir: PathBuf,
    /// The offline_fs_kbc stores (their extra files come from [`Environment`]).
    pub offline_fs: OfflineFsSources,
    /// The captured environment.
    pub env: Environment,
}

impl LoadOptions {
    /// The production locations, with `config_file` and `env`.
    pub fn new(config_file: Option<PathBuf>, env: Environment) -> Self {
        Self {
            config_file,
            kernel_cmdline: PathBuf::from(DEFAULT_KERNEL_CMDLINE),
            credentials_dir: PathBuf::from(DEFAULT_CREDENTIALS_DIR),
            offline_fs: OfflineFsSources::default(),
            env,
        }
    }
}

/// Why the configuration could not be loaded. Every variant names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// the file
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// The config file is larger than [`MAX_CONFIG_FILE_SIZE`].
    #[error("config file {path} is larger than {max} bytes")]
    FileTooLarge {
        /// the file
        path: PathBuf,
        /// the limit
        max: u64,
    },
    /// The config file is not well-formed TOML/JSON.
    #[error("config file {path} is not valid {format}: {message}")]
    Syntax {
        /// the file
        path: PathBuf,
        /// `TOML` or `JSON`
        format: &'static str,
        /// the parser's complaint
        message: String,
    },
    /// A key has a value of the wrong type, or a required key inside a table is missing.
    #[error("config file {path}: key `{key}`: {message}")]
    BadKey {
        /// the file
        path: PathBuf,
        /// dotted key path, e.g. `credentials[0].path`
        key: String,
        /// what is wrong
        message: String,
    },
    /// A required key is absent.
    #[error("config file {path}: missing required key `{key}`")]
    MissingKey {
        /// the file
        path: PathBuf,
        /// dotted key path
        key: &'static str,
    },
    /// A value is well-typed but not acceptable.
    #[error("{setting}: {message}")]
    Invalid {
        /// where the value came from: `config file X: key `k``, `kernel parameter `p``,
        /// `environment variable V`
        setting: String,
        /// what is wrong
        message: String,
    },
    /// The kernel command line exists but could not be read.
    #[error("cannot read kernel command line {path}: {source}")]
    ReadCmdline {
        /// the file
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
}

/// `[aa]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AaConfig {
    /// `aa_socket`: the attestation agent's ttRPC address.
    pub aa_socket: String,
}

/// `[kbc]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbcConfig {
    /// `name`: `cc_kbc` or `offline_fs_kbc`.
    pub name: String,
    /// `url`: the KBS URL (`""` when unused).
    pub url: String,
    /// `kbs_cert`: PEM root certificate of the KBS, if it is not publicly trusted.
    pub kbs_cert: Option<String>,
}

/// `[[credentials]]`: a KBS resource written to a file at startup.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Credential {
    /// the resource to fetch
    pub resource_uri: ResourceUri,
    /// the file to write, under the credentials directory
    pub path: PathBuf,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `level`: a `tracing` filter such as `info` or `confidential_data_hub=debug`.
    pub level: String,
}

/// `[image]` when the config file has none: image-rs defaults plus the `agent.*` kernel
/// parameters kata-agent understands (spec 6.8): proxies, `agent.image_registry_auth`, and
/// `agent.image_policy_file` when `agent.enable_signature_verification=true`. Like
/// upstream's image-rs, the last occurrence of a repeated parameter counts.
fn image_config_from_kernel_cmdline(
    cmdline: &KernelCmdline,
    origin: &Origin<'_>,
    warnings: &mut Vec<String>,
) -> ImageConfig {
    const IMAGE_PARAMS: [&str; 6] = [
        "agent.https_proxy",
        "agent.http_proxy",
        "agent.no_proxy",
        "agent.image_registry_auth",
        "agent.image_policy_file",
        "agent.enable_signature_verification",
    ];
    for key in IMAGE_PARAMS {
        let count = cmdline.count(key);
        if count > 1 {
            warnings.push(format!(
                "{} is given {count} times: the last one counts (as upstream)",
                origin.setting(key)
            ));
        }
    }
    let param = |key: &str| cmdline.last(key).map(str::to_string);
    let proxy = ProxyConfig {
        https_proxy: param("agent.https_proxy"),
        http_proxy: param("agent.http_proxy"),
        no_proxy: param("agent.no_proxy"),
    };
    // upstream parses the value as a Rust bool and treats anything else as false
    let verify = match cmdline.last("agent.enable_signature_verification") {
        Some("true") => true,
        Some("false") | None => false,
        Some(other) => {
            warnings.push(format!(
                "{}: `{other}` is neither true nor false; signature verification stays off",
                origin.setting("agent.enable_signature_verification")
            ));
            false
        }
    };
    let policy = param("agent.image_policy_file");
    if policy.is_some() && !verify {
        warnings.push(format!(
            "{} is ignored: agent.enable_signature_verification is not true",
            origin.setting("agent.image_policy_file")
        ));
    }
    ImageConfig {
        authenticated_registry_credentials_uri: param("agent.image_registry_auth"),
        image_security_policy_uri: policy.filter(|_| verify),
        image_pull_proxy: (proxy != ProxyConfig::default()).then_some(proxy),
        ..ImageConfig::default()
    }
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `socket`: the ttRPC address served.
    pub socket: String,
    /// `services_dir`: a directory with one socket per service besides `socket`
    /// (upstream's file names, see [`crate::Hub::per_service_ttrpc_services`]), or
    /// `CDH_SERVICES_DIR`.
    pub services_dir: Option<PathBuf>,
    /// `[aa]`
    pub aa: AaConfig,
    /// `[kbc]`
    pub kbc: KbcConfig,
    /// `[[credentials]]` plus `cdh.kbs_resources`, every path under `credentials_dir`.
    pub credentials: Vec<Credential>,
    /// `skip_sealed_secret_verification`
    pub skip_sealed_secret_verification: bool,
    /// `[log]`
    pub log: LogConfig,
    /// `[image]` (image-rs's own configuration type), or the kernel command line's image
    /// parameters.
    pub image: ImageConfig,
    /// Not a file key: the directory the credential paths were checked against.
    pub credentials_dir: PathBuf,
    /// Not a file key: the offline_fs_kbc stores.
    pub offline_fs: OfflineFsSources,
    /// Not a file key: the `OCICRYPT_KEYPROVIDER_CONFIG` file, when it names one that
    /// could be read. Its providers other than `attestation-agent` (always the hub's own,
    /// in process) unwrap the layers annotated for them.
    pub ocicrypt_keyprovider_config: Option<OcicryptConfig>,
    /// Not a file key: `AWS_IN_GUEST_KEY_PATH`, the directory holding the AWS provider's
    /// `credential.json` instead of `<kms credential dir>/aws`.
    pub aws_credential_dir: Option<PathBuf>,
}

/// A loaded configuration and what the operator should know about it. The binary logs
/// both once logging is set up from the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConfig {
    /// the configuration
    pub config: Config,
    /// one message per questionable setting (unknown keys, values that were dropped or
    /// ignored), for `warn`
    pub warnings: Vec<String>,
    /// one message per setting whose source is worth knowing (an environment variable
    /// that overrode the file, the config file from `CDH_CONFIG_PATH`), for `info`
    pub notes: Vec<String>,
}

/// The file as written: `None` means "not given", so lower sources can fill it in.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    socket: Option<String>,
    services_dir: Option<String>,
    aa: Option<FileAa>,
    kbc: Option<FileKbc>,
    #[serde(default)]
    credentials: Vec<Credential>,
    skip_sealed_secret_verification: Option<bool>,
    log: Option<FileLog>,
    image: Option<ImageConfig>,
}

#[derive(Debug, Deserialize)]
struct FileAa {
    aa_socket: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileKbc {
    name: Option<String>,
    url: Option<String>,
    kbs_cert: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileLog {
    level: Option<String>,
}

/// Rewrites the legacy `[image]` proxy keys of older upstream releases into the current
/// form: `image_pull_proxy = "<url>"` (one proxy for every registry) becomes
/// `[image.image_pull_proxy] https_proxy` and `http_proxy`, and `skip_proxy_ips` becomes its
/// `no_proxy`. Returns whether anything changed, with one warning per rewritten key.
fn upgrade_legacy_image_keys(
    image: &mut serde_json::Map<String, serde_json::Value>,
    shown: &Path,
    warnings: &mut Vec<String>,
) -> bool {
    use serde_json::Value;
    let legacy_proxy = matches!(image.get("image_pull_proxy"), Some(Value::String(_)));
    let skip = matches!(image.get("skip_proxy_ips"), Some(Value::String(_)));
    if !legacy_proxy && !skip {
        return false;
    }
    let skip = match image.remove("skip_proxy_ips") {
        Some(Value::String(skip)) => Some(skip),
        Some(other) => {
            // not a string: put it back, the typed parse ignores it
            image.insert("skip_proxy_ips".into(), other);
            None
        }
        None => None,
    };
    if let Some(Value::String(proxy)) = image.get("image_pull_proxy").cloned() {
        let mut table = serde_json::Map::new();
        table.insert("https_proxy".into(), Value::String(proxy.clone()));
        table.insert("http_proxy".into(), Value::String(proxy));
        image.insert("image_pull_proxy".into(), Value::Object(table));
        warnings.push(format!(
            "config file {}: key `image.image_pull_proxy` is a string (the form of older releases): \
             read as [image.image_pull_proxy] https_proxy and http_proxy",
            shown.display()
        ));
    }
    if let Some(skip) = skip {
        match image.get_mut("image_pull_proxy") {
            Some(Value::Object(table)) if !table.contains_key("no_proxy") => {
                table.insert("no_proxy".into(), Value::String(skip));
                warnings.push(format!(
                    "config file {}: key `image.skip_proxy_ips` (older releases) read as \
                     [image.image_pull_proxy] no_proxy",
                    shown.display()
                ));
            }
            Some(Value::Object(_)) => warnings.push(format!(
                "config file {}: key `image.skip_proxy_ips` ignored: \
                 [image.image_pull_proxy] no_proxy is set",
                shown.display()
            )),
            _ => warnings.push(format!(
                "config file {}: key `image.skip_proxy_ips` ignored: no image_pull_proxy is set",
                shown.display()
            )),
        }
    }
    true
}

/// `[image]` keys of upstream that this build reads and ignores (with a warning when set).
#[derive(Debug, Default, Deserialize)]
struct IgnoredKeys {
    image: Option<IgnoredImageKeys>,
}

#[derive(Debug, Default, Deserialize)]
struct IgnoredImageKeys {
    anonymous_fallback_on_unauthorized: Option<bool>,
}

impl IgnoredKeys {
    fn warn(self, shown: &Path, warnings: &mut Vec<String>) {
        let image = self.image.unwrap_or_default();
        if image.anonymous_fallback_on_unauthorized == Some(true) {
            warnings.push(format!(
                "config file {}: key `image.anonymous_fallback_on_unauthorized` = true is \
                 ignored: a registry that refuses the configured credentials fails the pull \
                 rather than being retried anonymously",
                shown.display()
            ));
        }
    }
}

fn read_config_file(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Parsed<FileConfig>, ConfigError> {
    let read_err = |source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_SIZE {
        return Err(ConfigError::FileTooLarge {
            path: path.to_path_buf(),
            max: MAX_CONFIG_FILE_SIZE,
        });
    }
    let is_json = path.extension().is_some_and(|ext| ext == "json");
    let format = if is_json { "JSON" } else { "TOML" };
    let unimplemented = if is_json {
        serde_json::from_slice::<IgnoredKeys>(&bytes).ok()
    } else {
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| toml::from_str::<IgnoredKeys>(text).ok())
    };
    if let Some(unimplemented) = unimplemented {
        unimplemented.warn(path, warnings);
    }
    let parsed = if is_json {
        let upgraded = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|mut document| {
                let image = document.get_mut("image")?.as_object_mut()?;
                upgrade_legacy_image_keys(image, path, warnings)
                    .then(|| serde_json::to_vec(&document).ok())
                    .flatten()
            });
        config_document::from_json(upgraded.as_deref().unwrap_or(&bytes))
    } else {
        match std::str::from_utf8(&bytes) {
            Ok(text) => {
                let upgraded = toml::from_str::<toml::Table>(text)
                    .ok()
                    .and_then(|mut document| {
                        let toml_image = document.get("image")?.as_table()?;
                        let serde_json::Value::Object(mut image) =
                            serde_json::to_value(toml_image).ok()?
                        else {
                            return None;
                        };
                        if !upgrade_legacy_image_keys(&mut image, path, warnings) {
                            return None;
                        }
                        let image = toml::Value::try_from(image).ok()?;
                        document.insert("image".into(), image);
                        toml::to_string(&document).ok()
                    });
                config_document::from_toml(upgraded.as_deref().unwrap_or(text))
            }
            Err(e) => Err(DocumentError::Syntax(format!("not UTF-8: {e}"))),
        }
    };
    parsed.map_err(|e| match e {
        DocumentError::Syntax(message) => ConfigError::Syntax {
            path: path.to_path_buf(),
            format,
            message,
        },
        DocumentError::Value { key, message } => ConfigError::BadKey {
            path: path.to_path_buf(),
            key,
            message,
        },
    })
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
enum Origin<'a> {
    File(&'a Path),
    Env,
    Cmdline(&'a Path),
    Default,
}

impl Origin<'_> {
    fn setting(&self, key: &str) -> String {
        match self {
            Origin::File(path) => format!("config file {}: key `{key}`", path.display()),
            Origin::Env => format!("environment variable {key}"),
            Origin::Cmdline(path) => format!("kernel parameter `{key}` in {}", path.display()),
            Origin::Default => format!("default `{key}`"),
        }
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            setting: self.setting(key),
            message: message.into(),
        }
    }
}

fn check_ttrpc_address(address: &str, origin: &Origin<'_>, key: &str) -> Result<(), ConfigError> {
    protos::server::unix_socket_path(address)
        .map(|_| ())
        .map_err(|e| origin.invalid(key, e.to_string()))
}

/// The `[kbc]` of aa_kbc_params `parsed` (by protos' parser, the agent's).
fn kbc_from_aa_kbc_params(
    parsed: Result<AaKbcParams, protos::AaKbcParamsError>,
    origin: &Origin<'_>,
    key: &str,
) -> Result<KbcConfig, ConfigError> {
    let AaKbcParams { kbc, uri } = parsed.map_err(|e| origin.invalid(key, e.to_string()))?;
    Ok(KbcConfig {
        name: kbc,
        url: uri,
        kbs_cert: None,
    })
}

/// A PEM value that says something: upstream's own example config writes
/// `kbs_cert = ""` for "no certificate".
fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// The entries of `cdh.kbs_resources=<uri>::<path>,…`: a malformed entry, or one whose
/// path leaves `credentials_dir`, is skipped with a warning naming it; the others are kept.
fn credentials_from_kernel_cmdline(
    list: &str,
    credentials_dir: &Path,
    origin: &Origin<'_>,
    warnings: &mut Vec<String>,
) -> Vec<Credential> {
    let mut credentials = Vec::new();
    for entry in list.split(',').filter(|entry| !entry.is_empty()) {
        let parsed = entry
            .split_once("::")
            .ok_or_else(|| "it is not of the form <resource uri>::<path>".to_string())
            .and_then(|(uri, path)| {
                let resource_uri = ResourceUri::parse(uri).map_err(|e| e.to_string())?;
                let path = PathBuf::from(path);
                check_credential_path(&path, credentials_dir)?;
                Ok(Credential { resource_uri, path })
            });
        match parsed {
            Ok(credential) => credentials.push(credential),
            Err(why) => warnings.push(format!(
                "{}: entry `{entry}` skipped: {why}",
                origin.setting(KBS_RESOURCES_PARAM)
            )),
        }
    }
    credentials
}

/// The `OCICRYPT_KEYPROVIDER_CONFIG` file, checked provider by provider. An unreadable or
/// malformed file, and a provider this build cannot reach, are warnings: the hub's own
/// provider `attestation-agent` is served in process whatever the file says.
fn load_keyprovider_config(
    path: &Path,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<OcicryptConfig> {
    let config = match OcicryptConfig::from_file(path) {
        Ok(config) => config,
        Err(e) => {
            warnings.push(format!(
                "environment variable OCICRYPT_KEYPROVIDER_CONFIG: {e}; ignored: layers for key \
                 provider `{KEY_PROVIDER_NAME}` are unwrapped in process, no other key provider is used"
            ));
            return None;
        }
    };
    for (name, attrs) in &config.key_providers {
        if name == KEY_PROVIDER_NAME {
            notes.push(format!(
                "OCICRYPT_KEYPROVIDER_CONFIG {}: key provider `{name}` is this hub's own: \
                 its layer keys are unwrapped in process",
                path.display()
            ));
            continue;
        }
        match hub_transport(name, attrs) {
            Ok(_) => notes.push(format!(
                "OCICRYPT_KEYPROVIDER_CONFIG {}: key provider `{name}` unwraps layers annotated \
                 org.opencontainers.image.enc.keys.provider.{name}",
                path.display()
            )),
            Err(e) => warnings.push(format!(
                "OCICRYPT_KEYPROVIDER_CONFIG {}: key provider `{name}` is not used: {e}",
                path.display()
            )),
        }
    }
    Some(config)
}

impl Config {
    /// Loads the configuration; see the module documentation for where each setting comes
    /// from and in which order.
    pub fn load(options: &LoadOptions) -> Result<LoadedConfig, ConfigError> {
        let env = &options.env;
        let cmdline_origin = Origin::Cmdline(&options.kernel_cmdline);
        // a missing command line (no /proc, a test) is an empty one
        let cmdline = match KernelCmdline::read(&options.kernel_cmdline) {
            Ok(cmdline) => cmdline,
            Err(e) if e.kind() == io::ErrorKind::NotFound => KernelCmdline::default(),
            Err(source) => {
                return Err(ConfigError::ReadCmdline {
                    path: options.kernel_cmdline.clone(),
                    source,
                })
            }
        };
        let mut warnings = Vec::new();
        let mut notes = Vec::new();

        // the file: -c, else CDH_CONFIG_PATH
        let config_file = match (&options.config_file, &env.config_path) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(path)) => {
                notes.push(format!(
                    "using config file {} from CDH_CONFIG_PATH",
                    path.display()
                ));
                Some(path.clone())
            }
            (None, None) => None,
        };
        let file_origin = config_file.as_deref().map_or(Origin::Default, Origin::File);
        let file = match &config_file {
            Some(path) => {
                let parsed = read_config_file(path, &mut warnings)?;
                warnings.extend(
                    parsed
                        .unknown_keys
                        .iter()
                        .filter(|key| *key != "image" && !key.starts_with("image."))
                        .map(|key| {
                            format!(
                                "config file {}: unknown key `{key}` ignored",
                                path.display()
                            )
                        }),
                );
                parsed.value
            }
            None => FileConfig::default(),
        };

        // socket
        let (socket, origin) = match file.socket {
            Some(socket) => (socket, file_origin),
            None => (DEFAULT_SOCKET.to_string(), Origin::Default),
        };
        check_ttrpc_address(&socket, &origin, "socket")?;

        // services_dir: the file, else CDH_SERVICES_DIR
        let services_dir = match (file.services_dir, &env.services_dir) {
            (Some(dir), _) => Some((PathBuf::from(dir), file_origin, "services_dir")),
            (None, Some(dir)) => Some((PathBuf::from(dir), Origin::Env, "CDH_SERVICES_DIR")),
            (None, None) => None,
        };
        let services_dir = match services_dir {
            Some((dir, origin, key)) => {
                if !dir.is_absolute() {
                    return Err(
                        origin.invalid(key, format!("`{}` is not an absolute path", dir.display()))
                    );
                }
                Some(dir)
            }
            None => None,
        };

        // [aa]: AA_SOCKET, else the file
        let file_aa_socket = file.aa.and_then(|aa| aa.aa_socket);
        let (aa_socket, origin, aa_key) = match (&env.aa_socket, file_aa_socket) {
            (Some(socket), file_socket) => {
                if let Some(file_socket) = file_socket {
                    notes.push(env_wins("AA_SOCKET", socket, "aa.aa_socket", &file_socket));
                }
                (socket.clone(), Origin::Env, "AA_SOCKET")
            }
            (None, Some(socket)) => (socket, file_origin, "aa.aa_socket"),
            (None, None) => (
                DEFAULT_AA_SOCKET.to_string(),
                Origin::Default,
                "aa.aa_socket",
            ),
        };
        check_ttrpc_address(&aa_socket, &origin, aa_key)?;

        // [kbc]: AA_KBC_PARAMS, else the file's [kbc], else agent.aa_kbc_params
        let env_kbc = env
            .aa_kbc_params
            .as_deref()
            .map(|value| {
                kbc_from_aa_kbc_params(AaKbcParams::parse(value), &Origin::Env, AA_KBC_PARAMS_ENV)
            })
            .transpose()?;
        let kbc = match (&config_file, file.kbc) {
            (
                Some(_),
                Some(FileKbc {
                    name: Some(name),
                    url,
                    kbs_cert,
                }),
            ) => {
                let url = url.unwrap_or_default();
                let (name, url) = match env_kbc {
                    Some(env_kbc) => {
                        notes.push(env_wins(
                            "AA_KBC_PARAMS",
                            &format!("{}::{}", env_kbc.name, env_kbc.url),
                            "kbc.name/kbc.url",
                            &format!("{name}::{url}"),
                        ));
                        (env_kbc.name, env_kbc.url)
                    }
                    None => (name, url),
                };
                let file_cert = non_blank(kbs_cert);
                if file_cert.is_some() && env.kbs_cert.is_some() {
                    warnings.push(env_ignored("KBS_CERT", "kbc.kbs_cert"));
                }
                KbcConfig {
                    name,
                    url,
                    kbs_cert: file_cert.or_else(|| non_blank(env.kbs_cert.clone())),
                }
            }
            (Some(path), _) => {
                return Err(ConfigError::MissingKey {
                    path: path.clone(),
                    key: "kbc.name",
                })
            }
            (None, _) => {
                let count = cmdline.count(AA_KBC_PARAMS_KEY);
                if count > 1 {
                    warnings.push(format!(
                        "{} is given {count} times: the first one counts (as upstream)",
                        cmdline_origin.setting(AA_KBC_PARAMS_KEY)
                    ));
                }
                let from_params = match (env_kbc, cmdline.aa_kbc_params()) {
                    (Some(kbc), _) => Some(kbc),
                    (None, Some(parsed)) => Some(kbc_from_aa_kbc_params(
                        parsed,
                        &cmdline_origin,
                        AA_KBC_PARAMS_KEY,
                    )?),
                    (None, None) => None,
                };
                let mut kbc = from_params.unwrap_or_else(|| {
                    warnings.push(format!(
                        "no config file, no AA_KBC_PARAMS and no {AA_KBC_PARAMS_KEY} kernel parameter: using {FALLBACK_KBC}"
                    ));
                    KbcConfig {
                        name: FALLBACK_KBC.to_string(),
                        url: String::new(),
                        kbs_cert: None,
                    }
                });
                kbc.kbs_cert = non_blank(env.kbs_cert.clone());
                kbc
            }
        };

        // [[credentials]] + cdh.kbs_resources
        let mut credentials = Vec::new();
        for (index, credential) in file.credentials.into_iter().enumerate() {
            check_credential_path(&credential.path, &options.credentials_dir).map_err(
                |message| file_origin.invalid(&format!("credentials[{index}].path"), message),
            )?;
            credentials.push(credential);
        }
        let count = cmdline.count(KBS_RESOURCES_PARAM);
        if count > 1 {
            warnings.push(format!(
                "{} is given {count} times: the first one counts (as upstream)",
                cmdline_origin.setting(KBS_RESOURCES_PARAM)
            ));
        }
        if let Some(list) = cmdline.first(KBS_RESOURCES_PARAM) {
            credentials.extend(credentials_from_kernel_cmdline(
                list,
                &options.credentials_dir,
                &cmdline_origin,
                &mut warnings,
            ));
        }

        // skip_sealed_secret_verification: the file, else the environment. A file that
        // says `false` keeps verification on, whatever the environment says.
        let skip_sealed_secret_verification = match (
            file.skip_sealed_secret_verification,
            &env.skip_sealed_secret_verification,
        ) {
            (Some(skip), env_skip) => {
                if env_skip.is_some() {
                    warnings.push(env_ignored(
                        "SKIP_SEALED_SECRET_VERIFICATION",
                        "skip_sealed_secret_verification",
                    ));
                }
                skip
            }
            (None, Some(value)) => value == "true",
            (None, None) => false,
        };

        // [log]
        let level = file
            .log
            .and_then(|log| log.level)
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
        level.parse::<logging::LogFilter>().map_err(|e| {
            file_origin.invalid("log.level", format!("`{level}` is not a log filter: {e}"))
        })?;

        // [image], then CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS over it
        let mut image = match file.image {
            Some(image) => image,
            None => image_config_from_kernel_cmdline(&cmdline, &cmdline_origin, &mut warnings),
        };
        if let Some(uri) = &env.default_image_authenticated_registry_credentials {
            if let Some(previous) = &image.authenticated_registry_credentials_uri {
                notes.push(env_wins(
                    "CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS",
                    uri,
                    "image.authenticated_registry_credentials_uri",
                    previous,
                ));
            }
            image.authenticated_registry_credentials_uri = Some(uri.clone());
        }
        // image-rs reads 0 as 1; an operator who wrote 0 made a mistake worth reporting.
        if image.max_concurrent_layer_downloads_per_image == 0 {
            return Err(file_origin.invalid(
                "image.max_concurrent_layer_downloads_per_image",
                "must be at least 1",
            ));
        }
        // Refused at startup rather than at the first PullImage.
        image
            .validate()
            .map_err(|e| file_origin.invalid("image", e.to_string()))?;

        let mut offline_fs = options.offline_fs.clone();
        if let Some(list) = &env.offline_fs_kbc_extra_file_path {
            offline_fs
                .extra_files
                .extend(OfflineFsSources::parse_extra_file_list(list));
        }

        let ocicrypt_keyprovider_config = env
            .ocicrypt_keyprovider_config
            .as_deref()
            .and_then(|path| load_keyprovider_config(path, &mut warnings, &mut notes));

        let aws_credential_dir = env.aws_in_guest_key_path.clone();
        if let Some(dir) = &aws_credential_dir {
            if cfg!(feature = "aws") {
                notes.push(format!(
                    "AWS_IN_GUEST_KEY_PATH: the aws KMS provider reads {}",
                    dir.join("credential.json").display()
                ));
            } else {
                warnings.push(
                    "environment variable AWS_IN_GUEST_KEY_PATH ignored: the aws KMS provider \
                     is not built in (cargo feature aws)"
                        .to_string(),
                );
            }
        }

        Ok(LoadedConfig {
            config: Config {
                socket,
                services_dir,
                aa: AaConfig { aa_socket },
                kbc,
                credentials,
                skip_sealed_secret_verification,
                log: LogConfig { level },
                image,
                credentials_dir: options.credentials_dir.clone(),
                offline_fs,
                ocicrypt_keyprovider_config,
                aws_credential_dir,
            },
            warnings,
            notes,
        })
    }

    /// What [`kms::new_kbc`] needs to build the configured KBC.
    pub fn kbc_params(&self) -> KbcParams {
        KbcParams {
            offline_fs: self.offline_fs.clone(),
            kbs_url: self.kbc.url.clone(),
            kbs_cert: self.kbc.kbs_cert.clone(),
            aa_socket: self.aa.aa_socket.clone(),
        }
    }

    /// The per-service socket addresses (`unix://<services_dir>/<name>`), by socket file
    /// name, when `services_dir` is set.
    pub fn service_sockets(&self) -> BTreeMap<&'static str, String> {
        match &self.services_dir {
            Some(dir) => SERVICE_SOCKETS
                .iter()
                .map(|name| (*name, format!("unix://{}", dir.join(name).display())))
                .collect(),
            None => BTreeMap::new(),
        }
    }
}

fn env_ignored(var: &str, key: &str) -> String {
    format!(
        "environment variable {var} ignored: the config file sets `{key}`, which takes precedence"
    )
}

fn env_wins(var: &str, value: &str, key: &str, file_value: &str) -> String {
    format!(
        "environment variable {var}=`{value}` overrides `{key}`=`{file_value}` (the environment \
         wins, as upstream)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_rs::{MirrorConfig, RegistryConfig, RegistryEntry};

    struct Fixture {
        dir: tempfile::TempDir,
        env: Environment,
        cmdline: String,
    }

    fn fixture() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            env: Environment::default(),
            cmdline: String::new(),
        }
    }

    impl Fixture {
        fn kbs_dir(&self) -> PathBuf {
            self.dir.path().join("kbs")
        }

        fn options(&self, config_file: Option<PathBuf>) -> LoadOptions {
            let cmdline = self.dir.path().join("cmdline");
            std::fs::write(&cmdline, &self.cmdline).unwrap();
            LoadOptions {
                config_file,
                kernel_cmdline: cmdline,
                credentials_dir: self.kbs_dir(),
                offline_fs: OfflineFsSources {
                    keys_file: self.dir.path().join("keys.json"),
                    resources_file: self.dir.path().join("resources.json"),
                    extra_files: Vec::new(),
                },
                env: self.env.clone(),
            }
        }

        fn file(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(
                &path,
                contents.replace("@KBS@", &self.kbs_dir().display().to_string()),
            )
            .unwrap();
            path
        }

        fn load_toml(&self, contents: &str) -> Result<LoadedConfig, ConfigError> {
            let path = self.file("cdh.toml", contents);
            Config::load(&self.options(Some(path)))
        }

        fn load_json(&self, contents: &str) -> Result<LoadedConfig, ConfigError> {
            let path = self.file("cdh.json", contents);
            Config::load(&self.options(Some(path)))
        }

        fn load_without_file(&self) -> Result<LoadedConfig, ConfigError> {
            Config::load(&self.options(None))
        }
    }

    fn uri(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap()
    }

    const MINIMAL: &str = "[kbc]\nname = \"offline_fs_kbc\"\n";

    const FULL_TOML: &str = r#"
socket = "unix:///run/cdh/other.sock"
skip_sealed_secret_verification = true

[aa]
aa_socket = "unix:///run/aa/other.sock"

[kbc]
name = "cc_kbc"
url = "https://kbs.example:8080"
kbs_cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

[[credentials]]
resource_uri = "kbs:///default/key/1"
path = "@KBS@/key1"

[[credentials]]
resource_uri = "kbs:///default/cred/2"
path = "@KBS@/sub/cred2"

[log]
level = "debug"

[image]
work_dir = "/run/image-rs"
image_security_policy_uri = "kbs:///default/security-policy/test"
image_security_policy = "{\"default\":[{\"type\":\"reject\"}]}"
sigstore_config_uri = "kbs:///default/sigstore-config/test"
sigstore_config = "default-docker: {}"
authenticated_registry_credentials_uri = "kbs:///default/credential/test"
registry_configuration_uri = "kbs:///default/registry-configuration/test"
max_concurrent_layer_downloads_per_image = 5
extra_root_certificates = ["cert1", "cert2"]

[image.image_pull_proxy]
https_proxy = "http://127.0.0.1:8080"
http_proxy = "http://127.0.0.1:8081"
no_proxy = "localhost"

[image.registry_config]
unqualified-search-registries = ["docker.io", "example1.com"]

[[image.registry_config.registry]]
prefix = "example.com/foo"
location = "internal-registry-for-example.com/bar"
insecure = true

[[image.registry_config.registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"
"#;

    const FULL_JSON: &str = r#"{
  "socket": "unix:///run/cdh/other.sock",
  "skip_sealed_secret_verification": true,
  "aa": {"aa_socket": "unix:///run/aa/other.sock"},
  "kbc": {"name": "cc_kbc", "url": "https://kbs.example:8080",
          "kbs_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
  "credentials": [
    {"resource_uri": "kbs:///default/key/1", "path": "@KBS@/key1"},
    {"resource_uri": "kbs:///default/cred/2", "path": "@KBS@/sub/cred2"}
  ],
  "log": {"level": "debug"},
  "image": {
    "work_dir": "/run/image-rs",
    "image_security_policy_uri": "kbs:///default/security-policy/test",
    "image_security_policy": "{\"default\":[{\"type\":\"reject\"}]}",
    "sigstore_config_uri": "kbs:///default/sigstore-config/test",
    "sigstore_config": "default-docker: {}",
    "authenticated_registry_credentials_uri": "kbs:///default/credential/test",
    "registry_configuration_uri": "kbs:///default/registry-configuration/test",
    "max_concurrent_layer_downloads_per_image": 5,
    "extra_root_certificates": ["cert1", "cert2"],
    "image_pull_proxy": {"https_proxy": "http://127.0.0.1:8080",
                         "http_proxy": "http://127.0.0.1:8081", "no_proxy": "localhost"},
    "registry_config": {
      "unqualified-search-registries": ["docker.io", "example1.com"],
      "registry": [{"prefix": "example.com/foo",
                    "location": "internal-registry-for-example.com/bar", "insecure": true,
                    "mirror": [{"location": "example-mirror-0.local/mirror-for-foo"}]}]
    }
  }
}"#;

    /// The keys and values of upstream's `confidential-data-hub/example.config.toml` (comments
    /// left out, `kbs_cert` empty as in upstream's own config tests, a short certificate,
    /// credential paths under the test's credentials directory).
    const UPSTREAM_EXAMPLE: &str = r#"
socket = "unix:///run/confidential-containers/cdh.sock"
services_dir = "/run/guest-services"

[aa]
aa_socket = "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock"

[kbc]
name = "cc_kbc"
url = "http://example.io:8080"
kbs_cert = ""

[[credentials]]
path = "@KBS@/kms-credential/aliyun/ecsRamRole.json"
resource_uri = "kbs:///default/aliyun/ecs_ram_role"

[[credentials]]
path = "@KBS@/test/file"
resource_uri = "kbs:///default/test/file"

[image]
max_concurrent_layer_downloads_per_image = 3
sigstore_config_uri = "kbs:///default/sigstore-config/test"
image_security_policy_uri = "kbs:///default/security-policy/test"
authenticated_registry_credentials_uri = "kbs:///default/credential/test"
anonymous_fallback_on_unauthorized = false
registry_configuration_uri = "kbs:///default/registry-configuration/test"
extra_root_certificates = ["""
-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----
"""]
work_dir = "/run/image-rs"

[image.registry_config]
unqualified-search-registries = ["docker.io", "example1.com"]

[[image.registry_config.registry]]
prefix = "example.com/banned"
blocked = true

[[image.registry_config.registry]]
prefix = "example.com/foo"
insecure = false
blocked = false
location = "internal-registry-for-example.com/bar"

[[image.registry_config.registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"

[[image.registry_config.registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true

[[image.registry_config.registry]]
location = "docker.io"

[[image.registry_config.registry.mirror]]
location = "123456.mirror.aliyuncs.com"

[image.image_pull_proxy]
https_proxy = "http://127.0.0.1:5432"
http_proxy = "http://127.0.0.1:5432"
no_proxy = "192.168.0.1,localhost"

[log]
level = "info"
"#;

    /// A JSON config in upstream's shape, `kbs_cert` empty.
    const UPSTREAM_EXAMPLE_JSON: &str = r#"{
  "socket": "unix:///run/confidential-containers/cdh.sock",
  "kbc": {"name": "offline_fs_kbc", "url": "", "kbs_cert": ""},
  "credentials": [],
  "image": {"max_concurrent_layer_downloads_per_image": 3,
            "anonymous_fallback_on_unauthorized": false}
}"#;

    fn full_expected(f: &Fixture) -> Config {
        Config {
            socket: "unix:///run/cdh/other.sock".into(),
            services_dir: None,
            aa: AaConfig {
                aa_socket: "unix:///run/aa/other.sock".into(),
            },
            kbc: KbcConfig {
                name: "cc_kbc".into(),
                url: "https://kbs.example:8080".into(),
                kbs_cert: Some(
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
                ),
            },
            credentials: vec![
                Credential {
                    resource_uri: uri("kbs:///default/key/1"),
                    path: f.kbs_dir().join("key1"),
                },
                Credential {
                    resource_uri: uri("kbs:///default/cred/2"),
                    path: f.kbs_dir().join("sub/cred2"),
                },
            ],
            skip_sealed_secret_verification: true,
            log: LogConfig {
                level: "debug".into(),
            },
            image: ImageConfig {
                work_dir: PathBuf::from("/run/image-rs"),
                image_security_policy_uri: Some("kbs:///default/security-policy/test".into()),
                image_security_policy: Some(r#"{"default":[{"type":"reject"}]}"#.into()),
                sigstore_config_uri: Some("kbs:///default/sigstore-config/test".into()),
                sigstore_config: Some("default-docker: {}".into()),
                authenticated_registry_credentials_uri: Some(
                    "kbs:///default/credential/test".into(),
                ),
                registry_configuration_uri: Some(
                    "kbs:///default/registry-configuration/test".into(),
                ),
                registry_config: Some(RegistryConfig {
                    unqualified_search_registries: vec!["docker.io".into(), "example1.com".into()],
                    registry: vec![RegistryEntry {
                        prefix: "example.com/foo".into(),
                        location: "internal-registry-for-example.com/bar".into(),
                        insecure: true,
                        blocked: false,
                        mirror: vec![MirrorConfig {
                            location: "example-mirror-0.local/mirror-for-foo".into(),
                            insecure: false,
                        }],
                    }],
                }),
                max_concurrent_layer_downloads_per_image: 5,
                image_pull_proxy: Some(ProxyConfig {
                    https_proxy: Some("http://127.0.0.1:8080".into()),
                    http_proxy: Some("http://127.0.0.1:8081".into()),
                    no_proxy: Some("localhost".into()),
                }),
                extra_root_certificates: vec!["cert1".into(), "cert2".into()],
                ..ImageConfig::default()
            },
            credentials_dir: f.kbs_dir(),
            offline_fs: OfflineFsSources {
                keys_file: f.dir.path().join("keys.json"),
                resources_file: f.dir.path().join("resources.json"),
                extra_files: Vec::new(),
            },
            ocicrypt_keyprovider_config: None,
            aws_credential_dir: None,
        }
    }

    #[test]
    fn every_key_is_read_from_toml() {
        let f = fixture();
        let loaded = f.load_toml(FULL_TOML).unwrap();
        assert_eq!(loaded.config, full_expected(&f));
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert_eq!(loaded.notes, Vec::<String>::new());
    }

    #[test]
    fn kbc_params_carry_the_kbs_and_agent_addresses() {
        let f = fixture();
        let params = f.load_toml(FULL_TOML).unwrap().config.kbc_params();
        assert_eq!(params.kbs_url, "https://kbs.example:8080");
        assert_eq!(
            params.kbs_cert.as_deref(),
            Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        );
        assert_eq!(params.aa_socket, "unix:///run/aa/other.sock");
    }

    #[test]
    fn every_key_is_read_from_json() {
        let f = fixture();
        let loaded = f.load_json(FULL_JSON).unwrap();
        assert_eq!(loaded.config, full_expected(&f));
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert_eq!(loaded.notes, Vec::<String>::new());
    }

    #[test]
    fn defaults() {
        let f = fixture();
        let config = f.load_toml(MINIMAL).unwrap().config;
        assert_eq!(
            config.socket,
            "unix:///run/confidential-containers/cdh.sock"
        );
        assert_eq!(
            config.aa.aa_socket,
            "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock"
        );
        assert_eq!(
            config.kbc,
            KbcConfig {
                name: "offline_fs_kbc".into(),
                url: String::new(),
                kbs_cert: None
            }
        );
        assert!(config.credentials.is_empty());
        assert!(!config.skip_sealed_secret_verification);
        assert_eq!(config.log.level, "info");
        assert_eq!(config.image, ImageConfig::default());
        assert_eq!(
            config.image.work_dir,
            PathBuf::from("/run/kata-containers/image/")
        );
        assert_eq!(config.image.max_concurrent_layer_downloads_per_image, 3);
        // [image] present but empty, and nested tables with defaults
        let config = f
            .load_toml(&format!("{MINIMAL}[image]\n[image.image_pull_proxy]\n[image.registry_config]\n[[image.registry_config.registry]]\nprefix = \"a.io\"\n"))
            .unwrap()
            .config;
        assert_eq!(config.image.image_pull_proxy, Some(ProxyConfig::default()));
        assert_eq!(
            config.image.registry_config,
            Some(RegistryConfig {
                unqualified_search_registries: vec!["docker.io".into()],
                registry: vec![RegistryEntry {
                    prefix: "a.io".into(),
                    ..RegistryEntry::default()
                }],
            })
        );
        // image-rs's own keys are read too
        let image = f
            .load_toml(&format!(
                "{MINIMAL}[image]\nsnapshotter = \"flatten\"\nplatform = \"linux/arm64/v8\"\n"
            ))
            .unwrap()
            .config
            .image;
        assert_eq!(image.snapshotter, image_rs::SnapshotterKind::Flatten);
        assert_eq!(image.platform.as_deref(), Some("linux/arm64/v8"));
    }

    #[test]
    fn unknown_keys_warn_except_in_image() {
        let f = fixture();
        let loaded = f
            .load_toml(
                r#"
colour = "blue"
services_dir = "/run/x"
service_dir = "/run/typo"
[aa]
aa_sockets = "typo"
[kbc]
name = "offline_fs_kbc"
nmae = "typo"
[[credentials]]
resource_uri = "kbs:///a/b/c"
path = "@KBS@/c"
mode = 384
[log]
format = "json"
[image]
some_undefined_field = "unknown value"
[image.image_pull_proxy]
ftp_proxy = "x"
[extra]
a = 1
"#,
            )
            .unwrap();
        let mut unknown: Vec<&str> = loaded
            .warnings
            .iter()
            .map(|w| {
                assert!(w.contains("cdh.toml: unknown key"), "{w}");
                w.split('`').nth(1).unwrap()
            })
            .collect();
        unknown.sort_unstable();
        assert_eq!(
            unknown,
            [
                "aa.aa_sockets",
                "colour",
                "credentials[0].mode",
                "extra",
                "kbc.nmae",
                "log.format",
                "service_dir",
            ]
        );
    }

    /// The file's bad value, its key path, and a word of the message.
    fn assert_bad_key(f: &Fixture, toml: &str, key: &str, says: &str) {
        match f.load_toml(toml) {
            Err(err @ ConfigError::BadKey { .. }) => {
                let ConfigError::BadKey {
                    key: k, message, ..
                } = &err
                else {
                    unreachable!()
                };
                assert_eq!(k, key, "{err}");
                assert!(message.contains(says), "{err}");
                assert!(err.to_string().contains(&format!("key `{key}`")), "{err}");
            }
            other => panic!("{toml}: expected a bad `{key}`, got {other:?}"),
        }
    }

    #[test]
    fn wrong_types_name_the_key() {
        let f = fixture();
        let k = MINIMAL;
        for (toml, key) in [
            (format!("socket = 1\n{k}"), "socket"),
            (format!("skip_sealed_secret_verification = \"yes\"\n{k}"), "skip_sealed_secret_verification"),
            (format!("aa = 1\n{k}"), "aa"),
            (format!("[aa]\naa_socket = true\n{k}"), "aa.aa_socket"),
            ("[kbc]\nname = 5\n".to_string(), "kbc.name"),
            ("kbc = \"offline_fs_kbc\"\n".to_string(), "kbc"),
            ("[kbc]\nname = \"offline_fs_kbc\"\nurl = []\n".to_string(), "kbc.url"),
            ("[kbc]\nname = \"offline_fs_kbc\"\nkbs_cert = 1\n".to_string(), "kbc.kbs_cert"),
            (format!("credentials = \"x\"\n{k}"), "credentials"),
            (format!("{k}[[credentials]]\nresource_uri = 1\npath = \"@KBS@/x\"\n"), "credentials[0].resource_uri"),
            (format!("{k}[[credentials]]\nresource_uri = \"kbs:///a/b/c\"\npath = \"@KBS@/x\"\n[[credentials]]\nresource_uri = \"kbs:///a/b/c\"\npath = 5\n"), "credentials[1].path"),
            (format!("{k}[log]\nlevel = 3\n"), "log.level"),
            (format!("image = 5\n{k}"), "image"),
            (format!("{k}[image]\nwork_dir = 1\n"), "image.work_dir"),
            (format!("{k}[image]\nimage_security_policy_uri = 1\n"), "image.image_security_policy_uri"),
            (format!("{k}[image]\nimage_security_policy = false\n"), "image.image_security_policy"),
            (format!("{k}[image]\nsigstore_config_uri = 1\n"), "image.sigstore_config_uri"),
            (format!("{k}[image]\nsigstore_config = 1\n"), "image.sigstore_config"),
            (format!("{k}[image]\nauthenticated_registry_credentials_uri = 1\n"), "image.authenticated_registry_credentials_uri"),
            (format!("{k}[image]\nregistry_configuration_uri = 1\n"), "image.registry_configuration_uri"),
            (format!("{k}[image]\nregistry_config = \"x\"\n"), "image.registry_config"),
            (format!("{k}[image.registry_config]\nunqualified-search-registries = \"docker.io\"\n"), "image.registry_config.unqualified-search-registries"),
            (format!("{k}[[image.registry_config.registry]]\ninsecure = \"no\"\n"), "image.registry_config.registry[0].insecure"),
            (format!("{k}[[image.registry_config.registry]]\n[[image.registry_config.registry.mirror]]\nlocation = 1\n"), "image.registry_config.registry[0].mirror[0].location"),
            (format!("{k}[image]\nmax_concurrent_layer_downloads_per_image = \"3\"\n"), "image.max_concurrent_layer_downloads_per_image"),
            (format!("{k}[image]\nmax_concurrent_layer_downloads_per_image = -1\n"), "image.max_concurrent_layer_downloads_per_image"),
            (format!("{k}[image]\nmax_concurrent_layer_downloads_per_image = 3.5\n"), "image.max_concurrent_layer_downloads_per_image"),
            (format!("{k}[image.image_pull_proxy]\nhttps_proxy = 1\n"), "image.image_pull_proxy.https_proxy"),
            (format!("{k}[image.image_pull_proxy]\nhttp_proxy = 1\n"), "image.image_pull_proxy.http_proxy"),
            (format!("{k}[image.image_pull_proxy]\nno_proxy = 1\n"), "image.image_pull_proxy.no_proxy"),
            (format!("{k}[image]\nextra_root_certificates = \"cert\"\n"), "image.extra_root_certificates"),
            (format!("{k}[image]\nextra_root_certificates = [\"a\", 2]\n"), "image.extra_root_certificates[1]"),
        ] {
            let says = if key.ends_with("-1") { "" } else { "invalid" };
            assert_bad_key(&f, &toml, key, says);
        }
    }

    #[test]
    fn incomplete_credentials_name_the_entry() {
        let f = fixture();
        assert_bad_key(
            &f,
            &format!("{MINIMAL}[[credentials]]\nresource_uri = \"kbs:///a/b/c\"\n"),
            "credentials[0]",
            "missing field `path`",
        );
        assert_bad_key(
            &f,
            &format!("{MINIMAL}[[credentials]]\npath = \"@KBS@/x\"\n"),
            "credentials[0]",
            "missing field `resource_uri`",
        );
        assert_bad_key(
            &f,
            &format!("{MINIMAL}[[credentials]]\n"),
            "credentials[0]",
            "missing field",
        );
    }

    #[test]
    fn hostile_credential_uris_are_refused() {
        let f = fixture();
        assert_bad_key(
            &f,
            &format!("{MINIMAL}[[credentials]]\nresource_uri = \"kbs:///default/../../etc/passwd\"\npath = \"@KBS@/x\"\n"),
            "credentials[0].resource_uri",
            "dot segment",
        );
        assert_bad_key(
            &f,
            &format!("{MINIMAL}[[credentials]]\nresource_uri = \"https://kbs/a/b/c\"\npath = \"@KBS@/x\"\n"),
            "credentials[0].resource_uri",
            "`https`",
        );
    }

    #[test]
    fn wrong_types_in_json_name_the_key() {
        let f = fixture();
        for (json, key) in [
            (r#"{"kbc": {"name": 5}}"#, "kbc.name"),
            (
                r#"{"kbc": {"name": "offline_fs_kbc"}, "credentials": [{"resource_uri": "kbs:///a/b/c", "path": null}]}"#,
                "credentials[0].path",
            ),
            (
                r#"{"kbc": {"name": "offline_fs_kbc"}, "image": {"max_concurrent_layer_downloads_per_image": "3"}}"#,
                "image.max_concurrent_layer_downloads_per_image",
            ),
        ] {
            match f.load_json(json) {
                Err(ConfigError::BadKey { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn kbc_name_is_required_in_a_file() {
        let f = fixture();
        for toml in [
            "",
            "socket = \"unix:///run/x.sock\"\n",
            "[kbc]\nurl = \"http://kbs\"\n",
        ] {
            match f.load_toml(toml) {
                Err(
                    err @ ConfigError::MissingKey {
                        key: "kbc.name", ..
                    },
                ) => {
                    assert!(err.to_string().contains("`kbc.name`"), "{err}")
                }
                other => panic!("{toml:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_files_are_refused() {
        let f = fixture();
        for toml in [
            "[kbc",
            "[kbc]\nname = \"offline_fs_kbc",
            "[kbc]\nname = offline_fs_kbc\n",
            "= 1",
        ] {
            match f.load_toml(toml) {
                Err(err @ ConfigError::Syntax { format: "TOML", .. }) => {
                    assert!(err.to_string().contains("cdh.toml"), "{err}")
                }
                other => panic!("{toml:?}: {other:?}"),
            }
        }
        for json in [
            "",
            "{",
            r#"{"kbc": {"name": "offline_fs_kbc"}"#,
            r#"{"kbc": {"name": "x"}} trailing"#,
            "[kbc]",
        ] {
            assert!(
                matches!(
                    f.load_json(json),
                    Err(ConfigError::Syntax { format: "JSON", .. })
                ),
                "{json:?}"
            );
        }
        assert!(matches!(
            f.load_json("[1]"),
            Err(ConfigError::BadKey { .. })
        ));
        let path = f.dir.path().join("latin1.toml");
        std::fs::write(&path, b"[kbc]\nname = \"caf\xe9\"\n").unwrap();
        assert!(matches!(
            Config::load(&f.options(Some(path))),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn unreadable_and_oversized_files_are_refused() {
        let f = fixture();
        let missing = f.dir.path().join("missing.toml");
        match Config::load(&f.options(Some(missing.clone()))) {
            Err(err @ ConfigError::ReadFile { .. }) => {
                assert!(err.to_string().contains(&missing.display().to_string()))
            }
            other => panic!("{other:?}"),
        }
        let big = f.dir.path().join("big.toml");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_CONFIG_FILE_SIZE + 1).unwrap();
        assert!(matches!(
            Config::load(&f.options(Some(big))),
            Err(ConfigError::FileTooLarge { .. })
        ));
    }

    fn assert_invalid(result: Result<LoadedConfig, ConfigError>, setting: &str, says: &str) {
        match result {
            Err(err @ ConfigError::Invalid { .. }) => {
                let text = err.to_string();
                assert!(text.contains(setting), "{text}");
                assert!(text.contains(says), "{text}");
            }
            other => panic!("expected {setting} to be refused, got {other:?}"),
        }
    }

    #[test]
    fn unacceptable_values_name_the_key() {
        let f = fixture();
        assert_invalid(
            f.load_toml(&format!("socket = \"127.0.0.1:50000\"\n{MINIMAL}")),
            "key `socket`",
            "unix:///",
        );
        assert_invalid(
            f.load_toml(&format!(
                "{MINIMAL}[aa]\naa_socket = \"unix://relative.sock\"\n"
            )),
            "key `aa.aa_socket`",
            "unix:///",
        );
        assert_invalid(
            f.load_toml(&format!("{MINIMAL}[log]\nlevel = \"cdh=loud\"\n")),
            "key `log.level`",
            "not a log filter",
        );
        assert_invalid(
            f.load_toml(&format!(
                "{MINIMAL}[image]\nmax_concurrent_layer_downloads_per_image = 0\n"
            )),
            "key `image.max_concurrent_layer_downloads_per_image`",
            "at least 1",
        );
        // what image-rs refuses is refused at startup, naming the section
        for (image, says) in [
            ("work_dir = \"relative/dir\"", "not an absolute path"),
            ("platform = \"linux\"", "platform"),
            (
                "[image.registry_config]\n[[image.registry_config.registry]]\ninsecure = true",
                "needs a prefix or a location",
            ),
            (
                "[image.registry_config]\n[[image.registry_config.registry]]\nprefix = \"*.a.io\"\nlocation = \"b.io\"",
                "wildcard",
            ),
        ] {
            assert_invalid(
                f.load_toml(&format!("{MINIMAL}[image]\n{image}\n")),
                "key `image`",
                says,
            );
        }
        assert_bad_key(
            &f,
            &format!("{MINIMAL}[image]\nsnapshotter = \"nydus\"\n"),
            "image.snapshotter",
            "unknown variant",
        );
    }

    #[test]
    fn credential_paths_must_stay_in_the_credentials_dir() {
        let f = fixture();
        for (path, says) in [
            ("/etc/passwd".to_string(), "not inside"),
            ("@KBS@/../escape".to_string(), "`..`"),
            ("@KBS@/./x".to_string(), "`..`"),
            ("@KBS@".to_string(), "not inside"),
            ("relative/key".to_string(), "absolute"),
        ] {
            assert_invalid(
                f.load_toml(&format!(
                    "{MINIMAL}[[credentials]]\nresource_uri = \"kbs:///a/b/c\"\npath = \"@KBS@/ok\"\n\
                     [[credentials]]\nresource_uri = \"kbs:///a/b/c\"\npath = \"{path}\"\n"
                )),
                "key `credentials[1].path`",
                says,
            );
        }
    }

    #[test]
    fn log_level_accepts_filter_directives() {
        let f = fixture();
        for level in ["warn", "TRACE", "off", "info,confidential_data_hub=debug"] {
            let config = f
                .load_toml(&format!("{MINIMAL}[log]\nlevel = \"{level}\"\n"))
                .unwrap()
                .config;
            assert_eq!(config.log.level, level);
        }
    }

    #[test]
    fn kbc_from_aa_kbc_params_without_a_file() {
        let mut f = fixture();
        f.cmdline = "ro agent.aa_kbc_params=cc_kbc::http://cmdline:8080 quiet".into();
        let kbc = f.load_without_file().unwrap().config.kbc;
        assert_eq!(
            (kbc.name.as_str(), kbc.url.as_str()),
            ("cc_kbc", "http://cmdline:8080")
        );

        // the environment wins over the kernel command line
        f.env.aa_kbc_params = Some("offline_fs_kbc::http://[::1]:8080".into());
        let kbc = f.load_without_file().unwrap().config.kbc;
        assert_eq!(
            (kbc.name.as_str(), kbc.url.as_str()),
            ("offline_fs_kbc", "http://[::1]:8080")
        );

        // neither: offline_fs_kbc, said out loud
        let f = fixture();
        let loaded = f.load_without_file().unwrap();
        assert_eq!(loaded.config.kbc.name, "offline_fs_kbc");
        assert_eq!(loaded.config.kbc.url, "");
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("using offline_fs_kbc")),
            "{:?}",
            loaded.warnings
        );
        // every other setting is the default
        assert_eq!(loaded.config.socket, DEFAULT_SOCKET);
        assert_eq!(loaded.config.aa.aa_socket, DEFAULT_AA_SOCKET);
        assert_eq!(loaded.config.log.level, DEFAULT_LOG_LEVEL);
    }

    #[test]
    fn malformed_aa_kbc_params_name_their_source() {
        let mut f = fixture();
        f.cmdline = "agent.aa_kbc_params=cc_kbc".into();
        assert_invalid(
            f.load_without_file(),
            "kernel parameter `agent.aa_kbc_params`",
            "<kbc>::<uri>",
        );
        f.cmdline = "agent.aa_kbc_params=::http://kbs".into();
        assert_invalid(
            f.load_without_file(),
            "kernel parameter `agent.aa_kbc_params`",
            "<kbc>::<uri>",
        );
        f.env.aa_kbc_params = Some("cc_kbc:http://kbs".into());
        assert_invalid(
            f.load_without_file(),
            "environment variable AA_KBC_PARAMS",
            "`cc_kbc:http://kbs`",
        );
    }

    /// Upstream's precedence: `AA_KBC_PARAMS`, `AA_SOCKET` and
    /// `CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS` win over the file (a note at
    /// info says so); `KBS_CERT` and `SKIP_SEALED_SECRET_VERIFICATION` only fill what the
    /// file leaves out.
    #[test]
    fn the_environment_wins_over_the_file_as_upstream() {
        let mut f = fixture();
        f.cmdline = "agent.aa_kbc_params=cc_kbc::http://cmdline".into();
        f.env = Environment {
            aa_kbc_params: Some("cc_kbc::http://env".into()),
            aa_socket: Some("unix:///env/aa.sock".into()),
            kbs_cert: Some("ENV CERT".into()),
            skip_sealed_secret_verification: Some("true".into()),
            default_image_authenticated_registry_credentials: Some("kbs:///env/cred/x".into()),
            ..Environment::default()
        };
        let loaded = f
            .load_toml(
                r#"
skip_sealed_secret_verification = false
[aa]
aa_socket = "unix:///file/aa.sock"
[kbc]
name = "offline_fs_kbc"
url = "http://file"
kbs_cert = "FILE CERT"
[image]
authenticated_registry_credentials_uri = "kbs:///file/cred/x"
"#,
            )
            .unwrap();
        let config = &loaded.config;
        assert_eq!(config.kbc.name, "cc_kbc");
        assert_eq!(config.kbc.url, "http://env");
        assert_eq!(config.aa.aa_socket, "unix:///env/aa.sock");
        assert_eq!(
            config
                .image
                .authenticated_registry_credentials_uri
                .as_deref(),
            Some("kbs:///env/cred/x")
        );
        // the certificate and the verification switch stay the file's
        assert_eq!(config.kbc.kbs_cert.as_deref(), Some("FILE CERT"));
        assert!(!config.skip_sealed_secret_verification);
        // one note per override, naming both values
        for (var, env_value, file_value) in [
            (
                "AA_KBC_PARAMS",
                "cc_kbc::http://env",
                "offline_fs_kbc::http://file",
            ),
            ("AA_SOCKET", "unix:///env/aa.sock", "unix:///file/aa.sock"),
            (
                "CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS",
                "kbs:///env/cred/x",
                "kbs:///file/cred/x",
            ),
        ] {
            assert!(
                loaded.notes.iter().any(|n| n.starts_with(&format!(
                    "environment variable {var}=`{env_value}` overrides"
                )) && n.contains(file_value)),
                "{var}: {:?}",
                loaded.notes
            );
        }
        assert_eq!(loaded.notes.len(), 3, "{:?}", loaded.notes);
        for var in ["KBS_CERT", "SKIP_SEALED_SECRET_VERIFICATION"] {
            assert!(
                loaded
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("environment variable {var} ignored"))),
                "{var}: {:?}",
                loaded.warnings
            );
        }
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);

        // keys the file leaves out are taken from the environment, without a note
        let loaded = f.load_toml(&format!("{MINIMAL}[image]\n")).unwrap();
        let config = loaded.config;
        assert_eq!(
            (config.kbc.name.as_str(), config.kbc.url.as_str()),
            ("cc_kbc", "http://env")
        );
        assert_eq!(config.kbc.kbs_cert.as_deref(), Some("ENV CERT"));
        assert_eq!(config.aa.aa_socket, "unix:///env/aa.sock");
        assert!(config.skip_sealed_secret_verification);
        assert_eq!(
            config
                .image
                .authenticated_registry_credentials_uri
                .as_deref(),
            Some("kbs:///env/cred/x")
        );
        // only [kbc] name was in the file
        assert_eq!(loaded.notes.len(), 1, "{:?}", loaded.notes);
        assert!(
            loaded.notes[0].contains("AA_KBC_PARAMS"),
            "{:?}",
            loaded.notes
        );
        assert_eq!(loaded.warnings, Vec::<String>::new());

        // without the environment, the file
        f.env = Environment::default();
        let loaded = f
            .load_toml("[aa]\naa_socket = \"unix:///file/aa.sock\"\n[kbc]\nname = \"offline_fs_kbc\"\nurl = \"http://file\"\n")
            .unwrap();
        assert_eq!(loaded.config.aa.aa_socket, "unix:///file/aa.sock");
        assert_eq!(loaded.config.kbc.url, "http://file");
        assert_eq!(loaded.notes, Vec::<String>::new());

        // a malformed AA_KBC_PARAMS stops the start even with a file (it would win)
        f.env.aa_kbc_params = Some("cc_kbc:http://env".into());
        assert_invalid(
            f.load_toml(MINIMAL),
            "environment variable AA_KBC_PARAMS",
            "<kbc>::<uri>",
        );
    }

    /// Upstream's own example config writes `kbs_cert = ""`: no certificate. So do blank
    /// values, in the file and in `KBS_CERT`.
    #[test]
    fn an_empty_kbs_cert_means_none() {
        let mut f = fixture();
        for cert in ["\"\"", "\"   \"", "\"\"\"\n\n\"\"\""] {
            let loaded = f
                .load_toml(&format!(
                    "[kbc]\nname = \"cc_kbc\"\nurl = \"https://kbs\"\nkbs_cert = {cert}\n"
                ))
                .unwrap();
            assert_eq!(loaded.config.kbc.kbs_cert, None, "{cert}");
            assert_eq!(loaded.config.kbc_params().kbs_cert, None, "{cert}");
            assert_eq!(loaded.warnings, Vec::<String>::new());
        }
        // an empty file value does not hide KBS_CERT
        f.env.kbs_cert = Some("ENV CERT".into());
        let config = f
            .load_toml("[kbc]\nname = \"cc_kbc\"\nkbs_cert = \"\"\n")
            .unwrap()
            .config;
        assert_eq!(config.kbc.kbs_cert.as_deref(), Some("ENV CERT"));
        f.env.kbs_cert = Some(" \n".into());
        assert_eq!(f.load_toml(MINIMAL).unwrap().config.kbc.kbs_cert, None);
        assert_eq!(f.load_without_file().unwrap().config.kbc.kbs_cert, None);
    }

    /// Every key of upstream's example config (`confidential-data-hub/example.config.toml`),
    /// with its empty `kbs_cert`, loads, and the KBC it names can be built.
    #[test]
    fn upstreams_example_config_loads() {
        let f = fixture();
        // as written, its credential paths are under the production credentials directory
        let err = f
            .load_toml(&UPSTREAM_EXAMPLE.replace("@KBS@", DEFAULT_CREDENTIALS_DIR))
            .unwrap_err();
        assert!(err.to_string().contains("credentials[0].path"), "{err}");

        let loaded = f.load_toml(UPSTREAM_EXAMPLE).unwrap();
        let config = &loaded.config;
        assert_eq!(config.socket, DEFAULT_SOCKET);
        assert_eq!(
            config.services_dir,
            Some(PathBuf::from("/run/guest-services"))
        );
        assert_eq!(config.aa.aa_socket, DEFAULT_AA_SOCKET);
        assert_eq!(
            config.kbc,
            KbcConfig {
                name: "cc_kbc".into(),
                url: "http://example.io:8080".into(),
                kbs_cert: None,
            }
        );
        assert_eq!(config.credentials.len(), 2);
        assert_eq!(
            config.credentials[0].path,
            f.kbs_dir().join("kms-credential/aliyun/ecsRamRole.json")
        );
        let image = &config.image;
        assert_eq!(image.max_concurrent_layer_downloads_per_image, 3);
        assert_eq!(
            image.sigstore_config_uri.as_deref(),
            Some("kbs:///default/sigstore-config/test")
        );
        assert_eq!(
            image.image_security_policy_uri.as_deref(),
            Some("kbs:///default/security-policy/test")
        );
        assert_eq!(
            image.registry_configuration_uri.as_deref(),
            Some("kbs:///default/registry-configuration/test")
        );
        let registries = image.registry_config.as_ref().unwrap();
        assert_eq!(registries.registry.len(), 3);
        assert!(registries.registry[0].blocked);
        assert_eq!(registries.registry[1].mirror.len(), 2);
        assert_eq!(image.extra_root_certificates.len(), 1);
        assert_eq!(image.work_dir, PathBuf::from("/run/image-rs"));
        assert_eq!(
            image.image_pull_proxy,
            Some(ProxyConfig {
                https_proxy: Some("http://127.0.0.1:5432".into()),
                http_proxy: Some("http://127.0.0.1:5432".into()),
                no_proxy: Some("192.168.0.1,localhost".into()),
            })
        );
        assert_eq!(config.log.level, "info");
        assert_eq!(loaded.warnings, Vec::<String>::new());
        // the KBC it names is built (nothing is contacted), the empty certificate included
        #[cfg(feature = "kbs")]
        assert!(kms::new_kbc(&config.kbc.name, &config.kbc_params()).is_ok());

        // the same in JSON
        let loaded = f.load_json(UPSTREAM_EXAMPLE_JSON).unwrap();
        assert_eq!(loaded.config.kbc.kbs_cert, None);
        assert_eq!(loaded.config.kbc.name, "offline_fs_kbc");
        assert_eq!(loaded.warnings, Vec::<String>::new());
    }

    #[test]
    fn environment_values_are_checked() {
        let mut f = fixture();
        f.env.aa_socket = Some("/not/a/url.sock".into());
        assert_invalid(
            f.load_toml(MINIMAL),
            "environment variable AA_SOCKET",
            "unix:///",
        );
        f.env.aa_socket = None;
        f.env.skip_sealed_secret_verification = Some("yes".into());
        assert!(
            !f.load_toml(MINIMAL)
                .unwrap()
                .config
                .skip_sealed_secret_verification
        );
    }

    #[test]
    fn image_settings_from_the_kernel_command_line() {
        let mut f = fixture();
        f.cmdline = "agent.https_proxy=http://1.2.3.4:1234 agent.no_proxy=localhost \
                     agent.image_registry_auth=kbs:///default/credential/test \
                     agent.image_policy_file=kbs:///default/image-policy/test"
            .into();
        let image = f.load_toml(MINIMAL).unwrap().config.image;
        assert_eq!(
            image.image_pull_proxy,
            Some(ProxyConfig {
                https_proxy: Some("http://1.2.3.4:1234".into()),
                http_proxy: None,
                no_proxy: Some("localhost".into()),
            })
        );
        assert_eq!(
            image.authenticated_registry_credentials_uri.as_deref(),
            Some("kbs:///default/credential/test")
        );
        // the policy file only counts with signature verification enabled
        assert_eq!(image.image_security_policy_uri, None);
        f.cmdline
            .push_str(" agent.enable_signature_verification=true agent.http_proxy=http://h");
        let image = f.load_without_file().unwrap().config.image;
        assert_eq!(
            image.image_security_policy_uri.as_deref(),
            Some("kbs:///default/image-policy/test")
        );
        assert_eq!(
            image.image_pull_proxy.and_then(|p| p.http_proxy).as_deref(),
            Some("http://h")
        );
        f.cmdline =
            "agent.image_policy_file=kbs:///p/o/l agent.enable_signature_verification=false".into();
        assert_eq!(
            f.load_without_file().unwrap().config.image,
            ImageConfig::default()
        );

        // an [image] section replaces the kernel command line entirely
        f.cmdline =
            "agent.https_proxy=http://1.2.3.4:1234 agent.image_registry_auth=kbs:///a/b/c".into();
        let image = f
            .load_toml(&format!("{MINIMAL}[image]\nwork_dir = \"/w\"\n"))
            .unwrap()
            .config
            .image;
        assert_eq!(image.image_pull_proxy, None);
        assert_eq!(image.authenticated_registry_credentials_uri, None);

        // the environment wins over the kernel command line
        f.env.default_image_authenticated_registry_credentials = Some("kbs:///env/cred/x".into());
        let image = f.load_without_file().unwrap().config.image;
        assert_eq!(
            image.authenticated_registry_credentials_uri.as_deref(),
            Some("kbs:///env/cred/x")
        );
        assert_eq!(
            image
                .image_pull_proxy
                .and_then(|p| p.https_proxy)
                .as_deref(),
            Some("http://1.2.3.4:1234")
        );
    }

    #[test]
    fn kernel_command_line_credentials_are_appended() {
        let mut f = fixture();
        let kbs = f.kbs_dir().display().to_string();
        f.cmdline = format!(
            "quiet cdh.kbs_resources=kbs:///default/key/2::{kbs}/two,,kbs:///default/key/3::{kbs}/d/three"
        );
        let toml = format!("{MINIMAL}[[credentials]]\nresource_uri = \"kbs:///default/key/1\"\npath = \"@KBS@/one\"\n");
        let credentials = f.load_toml(&toml).unwrap().config.credentials;
        assert_eq!(
            credentials,
            [
                Credential {
                    resource_uri: uri("kbs:///default/key/1"),
                    path: f.kbs_dir().join("one")
                },
                Credential {
                    resource_uri: uri("kbs:///default/key/2"),
                    path: f.kbs_dir().join("two")
                },
                Credential {
                    resource_uri: uri("kbs:///default/key/3"),
                    path: f.kbs_dir().join("d/three")
                },
            ]
        );
        // also without a config file
        assert_eq!(f.load_without_file().unwrap().config.credentials.len(), 2);
    }

    /// A malformed `cdh.kbs_resources` entry, or one writing outside the credentials
    /// directory, is skipped with one warning naming it; the good entries are kept.
    #[test]
    fn bad_kernel_command_line_credentials_are_skipped() {
        let mut f = fixture();
        let kbs = f.kbs_dir().display().to_string();
        let bad = [
            (format!("kbs:///a/b/c:{kbs}/x"), "<resource uri>::<path>"),
            (format!("kbs:///a/../c::{kbs}/x"), "dot segment"),
            (
                "https://kbs/a/b/c::@KBS@/x".replace("@KBS@", &kbs),
                "`https`",
            ),
            ("kbs:///a/b/c::/etc/shadow".to_string(), "not inside"),
            (format!("kbs:///a/b/c::{kbs}/../x"), "`..`"),
            (format!("kbs:///a/b/c::{kbs}"), "not inside"),
            ("kbs:///a/b/c::relative/x".to_string(), "absolute"),
        ];
        for (entry, says) in &bad {
            f.cmdline = format!(
                "quiet cdh.kbs_resources=kbs:///default/key/1::{kbs}/one,{entry},kbs:///default/key/2::{kbs}/two"
            );
            for loaded in [
                f.load_without_file().unwrap(),
                f.load_toml(MINIMAL).unwrap(),
            ] {
                assert_eq!(
                    loaded.config.credentials,
                    [
                        Credential {
                            resource_uri: uri("kbs:///default/key/1"),
                            path: f.kbs_dir().join("one"),
                        },
                        Credential {
                            resource_uri: uri("kbs:///default/key/2"),
                            path: f.kbs_dir().join("two"),
                        },
                    ],
                    "{entry}"
                );
                let skipped: Vec<_> = loaded
                    .warnings
                    .iter()
                    .filter(|w| w.contains("`cdh.kbs_resources`"))
                    .collect();
                assert_eq!(skipped.len(), 1, "{entry}: {:?}", loaded.warnings);
                assert!(
                    skipped[0].contains(&format!("entry `{entry}` skipped: ")),
                    "{}",
                    skipped[0]
                );
                assert!(skipped[0].contains(says), "{}", skipped[0]);
            }
        }
        // only bad entries: nothing provisioned, the hub still starts
        f.cmdline = format!("cdh.kbs_resources={},{}", bad[0].0, bad[3].0);
        let loaded = f.load_without_file().unwrap();
        assert!(loaded.config.credentials.is_empty());
        assert_eq!(
            loaded
                .warnings
                .iter()
                .filter(|w| w.contains("skipped"))
                .count(),
            2,
            "{:?}",
            loaded.warnings
        );
        // a [[credentials]] path outside the directory in the file still stops the start
        assert_invalid(
            f.load_toml(&format!(
                "{MINIMAL}[[credentials]]\nresource_uri = \"kbs:///a/b/c\"\npath = \"/etc/x\"\n"
            )),
            "key `credentials[0].path`",
            "not inside",
        );
    }

    /// A repeated parameter counts as upstream counts it: the first `agent.aa_kbc_params`
    /// and `cdh.kbs_resources` (upstream stops at the first match), the last `agent.*`
    /// image parameter (upstream's image-rs collects them into a map). Each repetition is
    /// reported.
    #[test]
    fn repeated_kernel_parameters_count_as_upstream() {
        let mut f = fixture();
        let kbs = f.kbs_dir().display().to_string();
        f.cmdline = format!(
            "agent.aa_kbc_params=cc_kbc::http://first:8080 ro \
             cdh.kbs_resources=kbs:///default/key/1::{kbs}/first \
             agent.https_proxy=http://proxy-1:3128 agent.image_registry_auth=kbs:///a/auth/1 \
             agent.aa_kbc_params=offline_fs_kbc::http://second \
             cdh.kbs_resources=kbs:///default/key/2::{kbs}/second \
             agent.https_proxy=http://proxy-2:3128 agent.image_registry_auth=kbs:///a/auth/2"
        );
        let loaded = f.load_without_file().unwrap();
        let config = &loaded.config;
        assert_eq!(
            (config.kbc.name.as_str(), config.kbc.url.as_str()),
            ("cc_kbc", "http://first:8080")
        );
        assert_eq!(
            config.credentials,
            [Credential {
                resource_uri: uri("kbs:///default/key/1"),
                path: f.kbs_dir().join("first"),
            }]
        );
        assert_eq!(
            config
                .image
                .image_pull_proxy
                .as_ref()
                .and_then(|p| p.https_proxy.as_deref()),
            Some("http://proxy-2:3128")
        );
        assert_eq!(
            config
                .image
                .authenticated_registry_credentials_uri
                .as_deref(),
            Some("kbs:///a/auth/2")
        );
        for (key, which) in [
            ("agent.aa_kbc_params", "first"),
            ("cdh.kbs_resources", "first"),
            ("agent.https_proxy", "last"),
            ("agent.image_registry_auth", "last"),
        ] {
            assert!(
                loaded
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("`{key}`"))
                        && w.contains(&format!("is given 2 times: the {which} one counts"))),
                "{key}: {:?}",
                loaded.warnings
            );
        }
        assert_eq!(loaded.warnings.len(), 4, "{:?}", loaded.warnings);
        // with a file, cdh.kbs_resources still counts its first occurrence
        let credentials = f.load_toml(MINIMAL).unwrap().config.credentials;
        assert_eq!(credentials.len(), 1);
        assert_eq!(credentials[0].path, f.kbs_dir().join("first"));
    }

    #[test]
    fn signature_verification_parameters_say_what_they_dropped() {
        let mut f = fixture();
        f.cmdline =
            "agent.image_policy_file=kbs:///p/o/l agent.enable_signature_verification=yes".into();
        let loaded = f.load_without_file().unwrap();
        assert_eq!(loaded.config.image.image_security_policy_uri, None);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("`yes` is neither true nor false")),
            "{:?}",
            loaded.warnings
        );
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("`agent.image_policy_file`")
                    && w.contains("ignored: agent.enable_signature_verification is not true")),
            "{:?}",
            loaded.warnings
        );
        f.cmdline =
            "agent.image_policy_file=kbs:///p/o/l agent.enable_signature_verification=true".into();
        let loaded = f.load_without_file().unwrap();
        assert_eq!(
            loaded.config.image.image_security_policy_uri.as_deref(),
            Some("kbs:///p/o/l")
        );
        assert!(
            !loaded
                .warnings
                .iter()
                .any(|w| w.contains("signature_verification") || w.contains("image_policy")),
            "{:?}",
            loaded.warnings
        );
    }

    /// `services_dir` (file) or `CDH_SERVICES_DIR` (only when the file has none): one
    /// socket per service there, with upstream's names.
    #[test]
    fn services_dir_from_the_file_or_the_environment() {
        let mut f = fixture();
        let config = f.load_toml(MINIMAL).unwrap().config;
        assert_eq!(config.services_dir, None);
        assert!(config.service_sockets().is_empty());

        f.env.services_dir = Some("/run/from-env".into());
        let config = f.load_toml(MINIMAL).unwrap().config;
        assert_eq!(config.services_dir, Some(PathBuf::from("/run/from-env")));
        assert_eq!(
            f.load_without_file().unwrap().config.services_dir,
            Some(PathBuf::from("/run/from-env"))
        );
        let config = f
            .load_toml(&format!("services_dir = \"/run/from-file\"\n{MINIMAL}"))
            .unwrap()
            .config;
        assert_eq!(config.services_dir, Some(PathBuf::from("/run/from-file")));
        assert_eq!(
            config.service_sockets().into_iter().collect::<Vec<_>>(),
            [
                (
                    "getresource.sock",
                    "unix:///run/from-file/getresource.sock".to_string()
                ),
                (
                    "imagepull.sock",
                    "unix:///run/from-file/imagepull.sock".to_string()
                ),
                (
                    "sealedsecrets.sock",
                    "unix:///run/from-file/sealedsecrets.sock".to_string()
                ),
                (
                    "securemount.sock",
                    "unix:///run/from-file/securemount.sock".to_string()
                ),
            ]
        );
        // a relative directory cannot be served
        assert_invalid(
            f.load_toml(&format!("services_dir = \"run/x\"\n{MINIMAL}")),
            "key `services_dir`",
            "not an absolute path",
        );
        f.env.services_dir = Some("relative".into());
        assert_invalid(
            f.load_toml(MINIMAL),
            "environment variable CDH_SERVICES_DIR",
            "not an absolute path",
        );
        assert_bad_key(
            &f,
            &format!("services_dir = 1\n{MINIMAL}"),
            "services_dir",
            "invalid",
        );
    }

    /// `-c` wins over `CDH_CONFIG_PATH`, which names the file when `-c` is absent.
    #[test]
    fn cdh_config_path_names_the_file_without_dash_c() {
        let mut f = fixture();
        let env_file = f.file(
            "env.toml",
            "[kbc]\nname = \"cc_kbc\"\nurl = \"http://env-file\"\n",
        );
        f.env.config_path = Some(env_file.clone());
        let loaded = f.load_without_file().unwrap();
        assert_eq!(loaded.config.kbc.url, "http://env-file");
        assert!(
            loaded
                .notes
                .iter()
                .any(|n| n.contains("CDH_CONFIG_PATH") && n.contains("env.toml")),
            "{:?}",
            loaded.notes
        );
        let loaded = f.load_toml(MINIMAL).unwrap();
        assert_eq!(loaded.config.kbc.name, "offline_fs_kbc");
        assert!(!loaded.notes.iter().any(|n| n.contains("CDH_CONFIG_PATH")));
        // a missing file is an error, as for -c
        f.env.config_path = Some(f.dir.path().join("absent.toml"));
        assert!(matches!(
            f.load_without_file(),
            Err(ConfigError::ReadFile { path, .. }) if path.ends_with("absent.toml")
        ));
    }

    #[test]
    fn aws_in_guest_key_path_names_the_aws_credential_dir() {
        let mut f = fixture();
        assert_eq!(
            f.load_toml(MINIMAL).unwrap().config.aws_credential_dir,
            None
        );
        f.env.aws_in_guest_key_path = Some(PathBuf::from("/run/aws-keys"));
        let loaded = f.load_toml(MINIMAL).unwrap();
        assert_eq!(
            loaded.config.aws_credential_dir,
            Some(PathBuf::from("/run/aws-keys"))
        );
        #[cfg(feature = "aws")]
        assert!(
            loaded
                .notes
                .iter()
                .any(|n| n.contains("/run/aws-keys/credential.json")),
            "{:?}",
            loaded.notes
        );
        #[cfg(not(feature = "aws"))]
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("AWS_IN_GUEST_KEY_PATH ignored")),
            "{:?}",
            loaded.warnings
        );
    }

    /// `OCICRYPT_KEYPROVIDER_CONFIG`: read once at start; the hub's own provider is noted,
    /// others are checked; a missing or malformed file, or a provider this build cannot
    /// reach, is a warning naming it, never a refusal.
    #[test]
    fn the_ocicrypt_keyprovider_config_is_read_and_checked() {
        let mut f = fixture();
        let kata = f.file(
            "ocicrypt_config.json",
            r#"{"key-providers":{"attestation-agent":{"ttrpc":"unix:///run/confidential-containers/cdh.sock"}}}"#,
        );
        f.env.ocicrypt_keyprovider_config = Some(kata);
        let loaded = f.load_toml(MINIMAL).unwrap();
        let providers = &loaded
            .config
            .ocicrypt_keyprovider_config
            .as_ref()
            .unwrap()
            .key_providers;
        assert_eq!(providers.keys().collect::<Vec<_>>(), ["attestation-agent"]);
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert!(
            loaded
                .notes
                .iter()
                .any(|n| n.contains("`attestation-agent` is this hub's own")),
            "{:?}",
            loaded.notes
        );

        let mixed = f.file(
            "mixed.json",
            r#"{"key-providers":{
                "attestation-agent":{"ttrpc":"unix:///run/confidential-containers/cdh.sock"},
                "by-cmd":{"cmd":{"path":"/usr/bin/kp","args":["-d"]}},
                "by-ttrpc":{"ttrpc":"unix:///run/kp.sock"},
                "by-grpc":{"grpc":"127.0.0.1:50000"},
                "by-native":{"native":"attestation-agent"}}}"#,
        );
        f.env.ocicrypt_keyprovider_config = Some(mixed);
        let loaded = f.load_toml(MINIMAL).unwrap();
        assert_eq!(
            loaded
                .config
                .ocicrypt_keyprovider_config
                .as_ref()
                .unwrap()
                .key_providers
                .len(),
            5
        );
        for name in ["by-grpc", "by-native"] {
            assert!(
                loaded
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("key provider `{name}` is not used"))),
                "{name}: {:?}",
                loaded.warnings
            );
        }
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("gRPC key providers are not built into the hub")),
            "{:?}",
            loaded.warnings
        );
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        for name in ["by-cmd", "by-ttrpc"] {
            assert!(
                loaded
                    .notes
                    .iter()
                    .any(|n| n.contains(&format!("key provider `{name}` unwraps layers"))),
                "{name}: {:?}",
                loaded.notes
            );
        }

        for (name, contents) in [
            ("absent.json", None),
            ("broken.json", Some("{\"key-providers\":")),
            ("wrong.json", Some("{\"key-providers\":{\"x\":{}}}")),
        ] {
            let path = match contents {
                Some(contents) => f.file(name, contents),
                None => f.dir.path().join(name),
            };
            f.env.ocicrypt_keyprovider_config = Some(path);
            let loaded = f.load_toml(MINIMAL).unwrap();
            assert_eq!(loaded.config.ocicrypt_keyprovider_config, None, "{name}");
            assert_eq!(loaded.warnings.len(), 1, "{name}: {:?}", loaded.warnings);
            let warning = &loaded.warnings[0];
            assert!(
                warning.starts_with("environment variable OCICRYPT_KEYPROVIDER_CONFIG: "),
                "{warning}"
            );
            assert!(warning.contains(name), "{warning}");
            assert!(warning.contains("unwrapped in process"), "{warning}");
        }
    }

    /// `[image] image_pull_proxy = "<url>"` and `skip_proxy_ips` of older releases.
    #[test]
    fn legacy_image_proxy_keys_are_read() {
        let f = fixture();
        for load in [
            f.load_toml(&format!(
                "{MINIMAL}[image]\nimage_pull_proxy = \"http://p:3128\"\nskip_proxy_ips = \"10.0.0.1,localhost\"\nwork_dir = \"/w\"\n"
            )),
            f.load_json(
                r#"{"kbc":{"name":"offline_fs_kbc"},"image":{"image_pull_proxy":"http://p:3128","skip_proxy_ips":"10.0.0.1,localhost","work_dir":"/w"}}"#,
            ),
        ] {
            let loaded = load.unwrap();
            assert_eq!(
                loaded.config.image.image_pull_proxy,
                Some(ProxyConfig {
                    https_proxy: Some("http://p:3128".into()),
                    http_proxy: Some("http://p:3128".into()),
                    no_proxy: Some("10.0.0.1,localhost".into()),
                })
            );
            assert_eq!(loaded.config.image.work_dir, PathBuf::from("/w"));
            assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
            assert!(loaded.warnings[0].contains("`image.image_pull_proxy` is a string"));
            assert!(loaded.warnings[1].contains("`image.skip_proxy_ips`"));
        }
        // skip_proxy_ips without a proxy does nothing, and says so
        let loaded = f
            .load_toml(&format!(
                "{MINIMAL}[image]\nskip_proxy_ips = \"10.0.0.1\"\n"
            ))
            .unwrap();
        assert_eq!(loaded.config.image.image_pull_proxy, None);
        assert!(
            loaded.warnings[0].contains("ignored: no image_pull_proxy is set"),
            "{:?}",
            loaded.warnings
        );
        // the current form is untouched, and a wrong type is still refused by key
        let loaded = f
            .load_toml(&format!(
                "{MINIMAL}[image.image_pull_proxy]\nhttps_proxy = \"http://p:1\"\n"
            ))
            .unwrap();
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert_bad_key(
            &f,
            &format!("{MINIMAL}[image]\nimage_pull_proxy = 5\n"),
            "image.image_pull_proxy",
            "invalid",
        );
    }

    /// upstream's `anonymous_fallback_on_unauthorized`: the hub never retries a refused
    /// pull anonymously, so `true` is reported and `false` (the default) is what happens.
    #[test]
    fn anonymous_fallback_is_reported_when_asked_for() {
        let f = fixture();
        let loaded = f
            .load_toml(&format!(
                "{MINIMAL}[image]\nanonymous_fallback_on_unauthorized = false\n"
            ))
            .unwrap();
        assert_eq!(loaded.warnings, Vec::<String>::new());
        let loaded = f
            .load_toml(&format!(
                "{MINIMAL}[image]\nanonymous_fallback_on_unauthorized = true\n"
            ))
            .unwrap();
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].contains("`image.anonymous_fallback_on_unauthorized`"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn offline_fs_extra_files_come_from_the_environment() {
        let mut f = fixture();
        f.env.offline_fs_kbc_extra_file_path = Some("/a.json,/b.json".into());
        let config = f.load_toml(MINIMAL).unwrap().config;
        assert_eq!(
            config.offline_fs.extra_files,
            [PathBuf::from("/a.json"), PathBuf::from("/b.json")]
        );
        assert_eq!(config.kbc_params().offline_fs, config.offline_fs);
        assert_eq!(config.offline_fs.keys_file, f.dir.path().join("keys.json"));
    }

    #[test]
    fn an_unreadable_kernel_command_line_is_an_error() {
        let f = fixture();
        let mut options = f.options(None);
        options.kernel_cmdline = f.dir.path().to_path_buf();
        assert!(matches!(
            Config::load(&options),
            Err(ConfigError::ReadCmdline { .. })
        ));
        // a missing one is an empty one
        options.kernel_cmdline = f.dir.path().join("absent");
        assert_eq!(
            Config::load(&options).unwrap().config.kbc.name,
            "offline_fs_kbc"
        );
    }

    #[test]
    fn production_locations() {
        let options = LoadOptions::new(None, Environment::default());
        assert_eq!(options.kernel_cmdline, PathBuf::from("/proc/cmdline"));
        assert_eq!(
            options.credentials_dir,
            PathBuf::from("/run/confidential-containers/cdh/kbs")
        );
        assert_eq!(options.offline_fs, OfflineFsSources::default());
    }
}
