//! The CDH configuration: the config file (`-c`, TOML, or JSON when the name ends in
//! `.json`), with fallbacks to the environment and the kernel command line.
//!
//! # Precedence
//!
//! Highest first; a lower source is consulted only for a setting the higher ones leave unset:
//!
//! 1. the config file;
//! 2. the environment ([`Environment`]: `AA_KBC_PARAMS`, `AA_SOCKET`, `KBS_CERT`,
//!    `SKIP_SEALED_SECRET_VERIFICATION`, `CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS`);
//! 3. the kernel command line (`agent.aa_kbc_params`, and the `agent.*` image parameters
//!    when the file has no `[image]` section);
//! 4. built-in defaults.
//!
//! An environment value that loses to the file is reported in [`LoadedConfig::warnings`].
//! Upstream let a pre-set `AA_KBC_PARAMS`/`AA_SOCKET` silently override the file; here the
//! file the operator wrote always wins. The one additive source is the kernel parameter
//! `cdh.kbs_resources=<uri>::<path>,…`, whose entries are appended to `[[credentials]]`.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
};

pub use image_rs::config::{ImageConfig, MirrorConfig, ProxyConfig, RegistryConfig, RegistryEntry};
use kbs_protocol::resource_uri::ResourceUri;
use kms::{offline_fs::OfflineFsSources, KbcParams};
use serde::Deserialize;

use config_document::{DocumentError, Parsed};

use crate::{cmdline::KernelCmdline, credentials::check_credential_path};

/// Where the CDH serves ttRPC unless `socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "unix:///run/confidential-containers/cdh.sock";
/// The attestation agent's ttRPC socket.
pub const DEFAULT_AA_SOCKET: &str =
    "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock";
/// Log filter unless `[log] level` (or `RUST_LOG`) says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The directory every credential file must lie under.
pub const DEFAULT_CREDENTIALS_DIR: &str = "/run/confidential-containers/cdh/kbs";
/// Where the kernel command line is read from.
pub const DEFAULT_KERNEL_CMDLINE: &str = "/proc/cmdline";
/// KBC used when neither a config file nor `aa_kbc_params` names one (as upstream).
pub const FALLBACK_KBC: &str = kms::OFFLINE_FS_KBC;
/// Largest config file accepted, in bytes (inline policies and certificates included).
pub const MAX_CONFIG_FILE_SIZE: u64 = 4 * 1024 * 1024;

const KBS_RESOURCES_PARAM: &str = "cdh.kbs_resources";
const AA_KBC_PARAMS_PARAM: &str = "agent.aa_kbc_params";

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
            offline_fs_kbc_extra_file_path: var(kms::offline_fs::EXTRA_FILES_ENV),
        }
    }
}

/// Everything [`Config::load`] reads besides the file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The `-c` file; `None` means configure from the environment and kernel command line.
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
/// `agent.image_policy_file` when `agent.enable_signature_verification=true`.
fn image_config_from_kernel_cmdline(cmdline: &KernelCmdline) -> ImageConfig {
    let param = |key: &str| cmdline.get(key).map(str::to_string);
    let proxy = ProxyConfig {
        https_proxy: param("agent.https_proxy"),
        http_proxy: param("agent.http_proxy"),
        no_proxy: param("agent.no_proxy"),
    };
    let verify = cmdline.get("agent.enable_signature_verification") == Some("true");
    ImageConfig {
        authenticated_registry_credentials_uri: param("agent.image_registry_auth"),
        image_security_policy_uri: param("agent.image_policy_file").filter(|_| verify),
        image_pull_proxy: (proxy != ProxyConfig::default()).then_some(proxy),
        ..ImageConfig::default()
    }
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `socket`: the ttRPC address served.
    pub socket: String,
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
}

/// A loaded configuration and what the operator should know about it (unknown keys,
/// environment values that lost to the file). The binary logs the warnings once logging
/// is set up from the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConfig {
    /// the configuration
    pub config: Config,
    /// one message per questionable setting
    pub warnings: Vec<String>,
}

/// The file as written: `None` means "not given", so lower sources can fill it in.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    socket: Option<String>,
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

fn read_config_file(path: &Path) -> Result<Parsed<FileConfig>, ConfigError> {
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
    let parsed = if is_json {
        config_document::from_json(&bytes)
    } else {
        match std::str::from_utf8(&bytes) {
            Ok(text) => config_document::from_toml(text),
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

/// `<kbc>::<url>`; the URL may itself contain `::` (IPv6).
fn parse_aa_kbc_params(
    value: &str,
    origin: &Origin<'_>,
    key: &str,
) -> Result<KbcConfig, ConfigError> {
    match value.split_once("::") {
        Some((name, url)) if !name.is_empty() => Ok(KbcConfig {
            name: name.to_string(),
            url: url.to_string(),
            kbs_cert: None,
        }),
        _ => Err(origin.invalid(
            key,
            format!("`{value}` is not of the form <kbc name>::<kbs url>"),
        )),
    }
}

impl Config {
    /// Loads the configuration; see the module documentation for where each setting comes
    /// from and in which order.
    pub fn load(options: &LoadOptions) -> Result<LoadedConfig, ConfigError> {
        let env = &options.env;
        let cmdline_origin = Origin::Cmdline(&options.kernel_cmdline);
        let cmdline = KernelCmdline::read(&options.kernel_cmdline).map_err(|source| {
            ConfigError::ReadCmdline {
                path: options.kernel_cmdline.clone(),
                source,
            }
        })?;
        let mut warnings = Vec::new();

        let file_origin = options
            .config_file
            .as_deref()
            .map_or(Origin::Default, Origin::File);
        let file = match &options.config_file {
            Some(path) => {
                let parsed = read_config_file(path)?;
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

        // [aa]
        let (aa_socket, origin) = match (file.aa.and_then(|aa| aa.aa_socket), &env.aa_socket) {
            (Some(socket), env_socket) => {
                if env_socket.is_some() {
                    warnings.push(env_ignored("AA_SOCKET", "aa.aa_socket"));
                }
                (socket, file_origin)
            }
            (None, Some(socket)) => (socket.clone(), Origin::Env),
            (None, None) => (DEFAULT_AA_SOCKET.to_string(), Origin::Default),
        };
        let aa_key = if matches!(origin, Origin::Env) {
            "AA_SOCKET"
        } else {
            "aa.aa_socket"
        };
        check_ttrpc_address(&aa_socket, &origin, aa_key)?;

        // [kbc]
        let kbc = match (&options.config_file, file.kbc) {
            (
                Some(_),
                Some(FileKbc {
                    name: Some(name),
                    url,
                    kbs_cert,
                }),
            ) => {
                if env.aa_kbc_params.is_some() {
                    warnings.push(env_ignored("AA_KBC_PARAMS", "kbc"));
                }
                if kbs_cert.is_some() && env.kbs_cert.is_some() {
                    warnings.push(env_ignored("KBS_CERT", "kbc.kbs_cert"));
                }
                KbcConfig {
                    name,
                    url: url.unwrap_or_default(),
                    kbs_cert: kbs_cert.or_else(|| env.kbs_cert.clone()),
                }
            }
            (Some(path), _) => {
                return Err(ConfigError::MissingKey {
                    path: path.clone(),
                    key: "kbc.name",
                })
            }
            (None, _) => {
                let from_params = match (&env.aa_kbc_params, cmdline.get(AA_KBC_PARAMS_PARAM)) {
                    (Some(value), _) => {
                        Some(parse_aa_kbc_params(value, &Origin::Env, "AA_KBC_PARAMS")?)
                    }
                    (None, Some(value)) => Some(parse_aa_kbc_params(
                        value,
                        &cmdline_origin,
                        AA_KBC_PARAMS_PARAM,
                    )?),
                    (None, None) => None,
                };
                let mut kbc = from_params.unwrap_or_else(|| {
                    warnings.push(format!(
                        "no config file, no AA_KBC_PARAMS and no {AA_KBC_PARAMS_PARAM} kernel parameter: using {FALLBACK_KBC}"
                    ));
                    KbcConfig {
                        name: FALLBACK_KBC.to_string(),
                        url: String::new(),
                        kbs_cert: None,
                    }
                });
                kbc.kbs_cert = env.kbs_cert.clone();
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
        if let Some(list) = cmdline.get(KBS_RESOURCES_PARAM) {
            for entry in list.split(',').filter(|entry| !entry.is_empty()) {
                let invalid =
                    |message: String| cmdline_origin.invalid(KBS_RESOURCES_PARAM, message);
                let (uri, path) = entry.split_once("::").ok_or_else(|| {
                    invalid(format!(
                        "entry `{entry}` is not of the form <resource uri>::<path>"
                    ))
                })?;
                let resource_uri = ResourceUri::parse(uri)
                    .map_err(|e| invalid(format!("entry `{entry}`: {e}")))?;
                let path = PathBuf::from(path);
                check_credential_path(&path, &options.credentials_dir)
                    .map_err(|message| invalid(format!("entry `{entry}`: {message}")))?;
                credentials.push(Credential { resource_uri, path });
            }
        }

        // skip_sealed_secret_verification
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
        tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| {
            file_origin.invalid("log.level", format!("`{level}` is not a log filter: {e}"))
        })?;

        // [image]
        let image_from_file = file.image.is_some();
        let mut image = file
            .image
            .unwrap_or_else(|| image_config_from_kernel_cmdline(&cmdline));
        if let Some(uri) = &env.default_image_authenticated_registry_credentials {
            if image_from_file && image.authenticated_registry_credentials_uri.is_some() {
                warnings.push(env_ignored(
                    "CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS",
                    "image.authenticated_registry_credentials_uri",
                ));
            } else {
                image.authenticated_registry_credentials_uri = Some(uri.clone());
            }
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

        Ok(LoadedConfig {
            config: Config {
                socket,
                aa: AaConfig { aa_socket },
                kbc,
                credentials,
                skip_sealed_secret_verification,
                log: LogConfig { level },
                image,
                credentials_dir: options.credentials_dir.clone(),
                offline_fs,
            },
            warnings,
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
}

fn env_ignored(var: &str, key: &str) -> String {
    format!(
        "environment variable {var} ignored: the config file sets `{key}`, which takes precedence"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn full_expected(f: &Fixture) -> Config {
        Config {
            socket: "unix:///run/cdh/other.sock".into(),
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
        }
    }

    #[test]
    fn every_key_is_read_from_toml() {
        let f = fixture();
        let loaded = f.load_toml(FULL_TOML).unwrap();
        assert_eq!(loaded.config, full_expected(&f));
        assert_eq!(loaded.warnings, Vec::<String>::new());
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
                "services_dir",
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
            "<kbc name>::<kbs url>",
        );
        f.cmdline = "agent.aa_kbc_params=::http://kbs".into();
        assert_invalid(
            f.load_without_file(),
            "kernel parameter `agent.aa_kbc_params`",
            "<kbc name>::<kbs url>",
        );
        f.env.aa_kbc_params = Some("cc_kbc:http://kbs".into());
        assert_invalid(
            f.load_without_file(),
            "environment variable AA_KBC_PARAMS",
            "`cc_kbc:http://kbs`",
        );
    }

    /// Precedence: the config file wins over the environment, which wins over the kernel
    /// command line, which wins over the defaults. Ignored environment values are reported.
    #[test]
    fn the_config_file_wins_over_the_environment() {
        let mut f = fixture();
        f.cmdline = "agent.aa_kbc_params=cc_kbc::http://cmdline".into();
        f.env = Environment {
            aa_kbc_params: Some("cc_kbc::http://env".into()),
            aa_socket: Some("unix:///env/aa.sock".into()),
            kbs_cert: Some("ENV CERT".into()),
            skip_sealed_secret_verification: Some("true".into()),
            default_image_authenticated_registry_credentials: Some("kbs:///env/cred/x".into()),
            offline_fs_kbc_extra_file_path: None,
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
        let config = loaded.config;
        assert_eq!(config.kbc.name, "offline_fs_kbc");
        assert_eq!(config.kbc.url, "http://file");
        assert_eq!(config.kbc.kbs_cert.as_deref(), Some("FILE CERT"));
        assert_eq!(config.aa.aa_socket, "unix:///file/aa.sock");
        assert!(!config.skip_sealed_secret_verification);
        assert_eq!(
            config
                .image
                .authenticated_registry_credentials_uri
                .as_deref(),
            Some("kbs:///file/cred/x")
        );
        for var in [
            "AA_KBC_PARAMS",
            "AA_SOCKET",
            "KBS_CERT",
            "SKIP_SEALED_SECRET_VERIFICATION",
            "CDH_DEFAULT_IMAGE_AUTHENTICATED_REGISTRY_CREDENTIALS",
        ] {
            assert!(
                loaded
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("environment variable {var} ignored"))),
                "{var}: {:?}",
                loaded.warnings
            );
        }

        // keys the file leaves out are taken from the environment
        let loaded = f.load_toml(&format!("{MINIMAL}[image]\n")).unwrap();
        let config = loaded.config;
        assert_eq!(config.kbc.url, "");
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
        // only AA_KBC_PARAMS lost to the file's [kbc]
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("AA_KBC_PARAMS"));
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

    #[test]
    fn bad_kernel_command_line_credentials_are_refused() {
        let mut f = fixture();
        let kbs = f.kbs_dir().display().to_string();
        for (entry, says) in [
            (format!("kbs:///a/b/c:{kbs}/x"), "<resource uri>::<path>"),
            (format!("kbs:///a/../c::{kbs}/x"), "dot segment"),
            ("kbs:///a/b/c::/etc/shadow".to_string(), "not inside"),
            (format!("kbs:///a/b/c::{kbs}/../x"), "`..`"),
        ] {
            f.cmdline = format!("cdh.kbs_resources={entry}");
            assert_invalid(
                f.load_without_file(),
                "kernel parameter `cdh.kbs_resources`",
                says,
            );
        }
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
