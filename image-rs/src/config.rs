//! [`ImageConfig`]: the `[image]` section of the CDH configuration (spec §6.8), plus the
//! registries.conf v2 subset ([`RegistryConfig`], §6.7). Unknown keys are ignored, as
//! upstream does, so a CDH config written for upstream loads unchanged.

use std::path::PathBuf;

use serde::Deserialize;

use crate::layer::UnpackLimits;
use crate::snapshot::SnapshotterKind;
use oci_model::PlatformSpec;

/// Where layers, snapshots and metadata live by default (`/run`: encrypted guest memory).
pub(crate) const DEFAULT_WORK_DIR: &str = "/run/kata-containers/image/";
/// Default minimum rate of a registry response body, bytes per second.
pub(crate) const DEFAULT_LOW_SPEED_LIMIT: u64 = 1024;
/// Default window over which that rate is measured, seconds.
pub(crate) const DEFAULT_LOW_SPEED_TIME_SECS: u64 = 60;
/// Layers of one image fetched at once by default.
pub(crate) const DEFAULT_MAX_CONCURRENT_LAYER_DOWNLOADS: usize = 3;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// not valid TOML / JSON for this schema
    #[error("invalid {what}: {message}")]
    Parse {
        /// which document
        what: &'static str,
        /// the parser's message
        message: String,
    },
    /// a value is out of range or inconsistent
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// the key
        key: &'static str,
        /// why
        reason: String,
    },
}

/// `[image.image_pull_proxy]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// proxy for HTTPS registries
    pub https_proxy: Option<String>,
    /// proxy for plain-HTTP registries
    pub http_proxy: Option<String>,
    /// comma-separated hosts, domains (`.example.com`) and CIDRs that bypass the proxies
    pub no_proxy: Option<String>,
}

/// `[[registry.mirror]]` of registries.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MirrorConfig {
    /// `location`: `host[:port][/path]` replacing the matched prefix
    pub location: String,
    /// `insecure`: plain HTTP or unverified TLS allowed
    pub insecure: bool,
}

/// `[[registry]]` of registries.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RegistryEntry {
    /// `prefix`: the references this entry applies to (`host[/path]`, or `*.domain`);
    /// empty means "the same as `location`"
    pub prefix: String,
    /// `location`: where matching references are pulled from instead
    pub location: String,
    /// `insecure`: plain HTTP or unverified TLS allowed
    pub insecure: bool,
    /// `blocked`: pulls of matching references are refused
    pub blocked: bool,
    /// `[[registry.mirror]]`: tried in order before the location
    pub mirror: Vec<MirrorConfig>,
}

/// registries.conf (v2 subset): the inline `[image.registry_config]` table or the TOML
/// document `registry_configuration_uri` points to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// registries tried, in order, for names without a registry
    #[serde(rename = "unqualified-search-registries")]
    pub unqualified_search_registries: Vec<String>,
    /// per-prefix rules
    pub registry: Vec<RegistryEntry>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            unqualified_search_registries: vec![crate::reference::DEFAULT_REGISTRY.to_string()],
            registry: Vec::new(),
        }
    }
}

impl RegistryConfig {
    /// Parses a registries.conf TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            what: "registries.conf",
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules the resolver relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for entry in &self.registry {
            let prefix = if entry.prefix.is_empty() {
                &entry.location
            } else {
                &entry.prefix
            };
            if prefix.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "registry",
                    reason: "an entry needs a prefix or a location".into(),
                });
            }
            if let Some(rest) = prefix.strip_prefix("*.") {
                if rest.is_empty() || rest.contains(['/', '*']) {
                    return Err(ConfigError::Invalid {
                        key: "registry.prefix",
                        reason: format!("wildcard prefix {prefix:?} must be `*.domain`"),
                    });
                }
                if !entry.location.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "registry.location",
                        reason: format!("a wildcard prefix ({prefix:?}) cannot have a location"),
                    });
                }
            } else if prefix.contains('*') {
                return Err(ConfigError::Invalid {
                    key: "registry.prefix",
                    reason: format!("{prefix:?}: `*` is only allowed as a leading `*.`"),
                });
            }
            for mirror in &entry.mirror {
                if mirror.location.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "registry.mirror.location",
                        reason: format!("a mirror of {prefix:?} has no location"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// `[image]`: how images are pulled, stored and turned into bundles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// `work_dir`: layers, snapshots and metadata
    pub work_dir: PathBuf,
    /// `image_security_policy_uri` (for the signature policy; wins over the inline one)
    pub image_security_policy_uri: Option<String>,
    /// `image_security_policy` (inline containers-policy.json)
    pub image_security_policy: Option<String>,
    /// `sigstore_config_uri` (wins over the inline one)
    pub sigstore_config_uri: Option<String>,
    /// `sigstore_config` (inline)
    pub sigstore_config: Option<String>,
    /// `authenticated_registry_credentials_uri`: a containers auth.json
    pub authenticated_registry_credentials_uri: Option<String>,
    /// `registry_configuration_uri`: a registries.conf
    pub registry_configuration_uri: Option<String>,
    /// `registry_config`: inline registries.conf (wins over the URI, as upstream)
    pub registry_config: Option<RegistryConfig>,
    /// `max_concurrent_layer_downloads_per_image` (0 counts as 1)
    pub max_concurrent_layer_downloads_per_image: usize,
    /// `image_pull_proxy`
    pub image_pull_proxy: Option<ProxyConfig>,
    /// `extra_root_certificates`: PEM certificates trusted for registries and proxies
    pub extra_root_certificates: Vec<String>,
    /// `snapshotter`: `overlayfs` (default) or `flatten`
    pub snapshotter: SnapshotterKind,
    /// `platform`: `os/arch[/variant]` to select from indexes instead of this machine's
    pub platform: Option<String>,
    /// `allow_device_nodes`: create character and block devices from layers (refused
    /// by default: a container has no business shipping device nodes)
    pub allow_device_nodes: bool,
    /// `unpack_limits`
    pub unpack_limits: UnpackLimits,
    /// `low_speed_limit`: a registry response body (layer, manifest, token) that brings
    /// fewer bytes per second than this, averaged over `low_speed_time_secs` of waiting,
    /// is abandoned (0: no minimum; a stalled body then waits forever)
    pub low_speed_limit: u64,
    /// `low_speed_time_secs`: the window of `low_speed_limit`
    pub low_speed_time_secs: u64,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            work_dir: PathBuf::from(DEFAULT_WORK_DIR),
            image_security_policy_uri: None,
            image_security_policy: None,
            sigstore_config_uri: None,
            sigstore_config: None,
            authenticated_registry_credentials_uri: None,
            registry_configuration_uri: None,
            registry_config: None,
            max_concurrent_layer_downloads_per_image: DEFAULT_MAX_CONCURRENT_LAYER_DOWNLOADS,
            image_pull_proxy: None,
            extra_root_certificates: Vec::new(),
            snapshotter: SnapshotterKind::default(),
            platform: None,
            allow_device_nodes: false,
            unpack_limits: UnpackLimits::default(),
            low_speed_limit: DEFAULT_LOW_SPEED_LIMIT,
            low_speed_time_secs: DEFAULT_LOW_SPEED_TIME_SECS,
        }
    }
}

impl ImageConfig {
    /// A default configuration with another work directory.
    pub fn with_work_dir(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            ..Self::default()
        }
    }

    /// Parses the `[image]` table (TOML, as in the CDH config file).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            what: "[image] configuration",
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a JSON image configuration (upstream's `<work_dir>/config.json` form).
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            what: "image configuration JSON",
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values the pull relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.work_dir.is_absolute() {
            return Err(ConfigError::Invalid {
                key: "work_dir",
                reason: format!("{} is not an absolute path", self.work_dir.display()),
            });
        }
        if let Some(registry) = &self.registry_config {
            registry.validate()?;
        }
        if self.low_speed_limit > 0 && self.low_speed_time_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "low_speed_time_secs",
                reason: "must be at least 1 when low_speed_limit is set".into(),
            });
        }
        if let Some(platform) = &self.platform {
            PlatformSpec::parse(platform).map_err(|e| ConfigError::Invalid {
                key: "platform",
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The minimum transfer rate of registry responses, if any.
    pub fn low_speed(&self) -> Option<crate::registry::LowSpeed> {
        (self.low_speed_limit > 0).then(|| crate::registry::LowSpeed {
            bytes_per_sec: self.low_speed_limit,
            window: std::time::Duration::from_secs(self.low_speed_time_secs),
        })
    }

    /// Layers of one image fetched at once (at least 1).
    pub fn layer_concurrency(&self) -> usize {
        self.max_concurrent_layer_downloads_per_image.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_image_section_loads_with_defaults_for_the_rest() {
        let text = r#"
            work_dir = "/run/image-rs"
            authenticated_registry_credentials_uri = "kbs:///default/credential/test"
            max_concurrent_layer_downloads_per_image = 5
            extra_root_certificates = ["-----BEGIN CERTIFICATE-----"]
            some_future_key = true
            [image_pull_proxy]
            https_proxy = "http://proxy:3128"
            no_proxy = "localhost,.internal"
            [registry_config]
            unqualified-search-registries = ["quay.io", "docker.io"]
            [[registry_config.registry]]
            prefix = "docker.io/library"
            location = "mirror.local/lib"
            insecure = true
            [[registry_config.registry.mirror]]
            location = "cache.local:5000/lib"
        "#;
        let c = ImageConfig::from_toml(text).unwrap();
        assert_eq!(c.work_dir, PathBuf::from("/run/image-rs"));
        assert_eq!(c.layer_concurrency(), 5);
        assert_eq!(c.snapshotter, SnapshotterKind::Overlay);
        assert!(!c.allow_device_nodes);
        let proxy = c.image_pull_proxy.unwrap();
        assert_eq!(proxy.https_proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(proxy.http_proxy, None);
        let r = c.registry_config.unwrap();
        assert_eq!(r.unqualified_search_registries, ["quay.io", "docker.io"]);
        assert_eq!(r.registry[0].mirror[0].location, "cache.local:5000/lib");
        assert!(r.registry[0].insecure);

        let d = ImageConfig::from_toml("").unwrap();
        assert_eq!(d, ImageConfig::default());
        assert_eq!(d.work_dir, PathBuf::from(DEFAULT_WORK_DIR));
        assert_eq!(d.layer_concurrency(), 3);
        let zero = ImageConfig::from_toml("max_concurrent_layer_downloads_per_image = 0").unwrap();
        assert_eq!(zero.layer_concurrency(), 1);
    }

    #[test]
    fn our_keys_select_snapshotter_platform_and_limits() {
        let c = ImageConfig::from_toml(
            "snapshotter = \"flatten\"\nplatform = \"linux/arm64/v8\"\nallow_device_nodes = true\n[unpack_limits]\nmax_entry_bytes = 1024\n",
        )
        .unwrap();
        assert_eq!(c.snapshotter, SnapshotterKind::Flatten);
        assert!(c.allow_device_nodes);
        assert_eq!(c.unpack_limits.max_entry_bytes, 1024);
        assert_eq!(c.unpack_limits.max_compression_ratio, 256);
        let slow = ImageConfig::from_toml(
            "low_speed_limit = 10\nlow_speed_time_secs = 2\n[unpack_limits]\nmax_compression_ratio = 0\n",
        )
        .unwrap();
        assert_eq!(
            slow.low_speed(),
            Some(crate::registry::LowSpeed {
                bytes_per_sec: 10,
                window: std::time::Duration::from_secs(2)
            })
        );
        assert_eq!(slow.unpack_limits.max_compression_ratio, 0);
        assert_eq!(
            ImageConfig::from_toml("low_speed_limit = 0\nlow_speed_time_secs = 0")
                .unwrap()
                .low_speed(),
            None
        );
        assert_eq!(
            c.unpack_limits.max_layer_bytes,
            UnpackLimits::default().max_layer_bytes
        );
        let json =
            ImageConfig::from_json(r#"{"work_dir":"/var/lib/image-rs","snapshotter":"overlayfs"}"#)
                .unwrap();
        assert_eq!(json.work_dir, PathBuf::from("/var/lib/image-rs"));
    }

    #[test]
    fn bad_configurations_are_refused() {
        for bad in [
            "work_dir = \"relative/dir\"",
            "work_dir = 3",
            "max_concurrent_layer_downloads_per_image = -1",
            "snapshotter = \"nydus\"",
            "platform = \"linux\"",
            "low_speed_time_secs = 0",
            "[registry_config]\n[[registry_config.registry]]\ninsecure = true",
            "[registry_config]\n[[registry_config.registry]]\nprefix = \"*.example.com\"\nlocation = \"x.io\"",
            "[registry_config]\n[[registry_config.registry]]\nprefix = \"ex*ample.com\"",
            "[registry_config]\n[[registry_config.registry]]\nprefix = \"a.io\"\n[[registry_config.registry.mirror]]\ninsecure = true",
        ] {
            assert!(ImageConfig::from_toml(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RegistryConfig::from_toml("registry = 5").is_err());
        assert!(ImageConfig::from_json("{\"work_dir\": [").is_err());
    }
}
