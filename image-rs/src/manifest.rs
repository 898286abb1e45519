//! OCI and Docker manifests, indexes and image configs (the parts a puller reads), media
//! types, and platform selection from an index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 (refused: unsigned content addressing of its own kind).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1, signed.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Largest manifest or index accepted (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest image config accepted.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// `mediaType`
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `digest`
    pub digest: Digest,
    /// `size` in bytes
    pub size: u64,
    /// `annotations`
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `platform` (index entries)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// `platform` of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `os`
    pub os: String,
    /// `architecture`
    pub architecture: String,
    /// `variant`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version`
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// `schemaVersion` (must be 2)
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// `mediaType`, when present
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `config`
    pub config: Descriptor,
    /// `layers`, bottom first
    pub layers: Vec<Descriptor>,
    /// `annotations`
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    /// `schemaVersion` (must be 2)
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// `mediaType`, when present
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `manifests`
    pub manifests: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// an image manifest
    Image(Box<ImageManifest>),
    /// an index of manifests
    Index(ImageIndex),
}

/// Why a manifest document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// the media type is not one of the four this puller reads
    #[error(
        "unsupported manifest media type {0:?} (OCI and Docker schema 2 manifests and indexes are)"
    )]
    UnsupportedMediaType(String),
    /// the JSON does not match the media type's schema
    #[error("malformed {media_type}: {message}")]
    Malformed {
        /// the media type it was parsed as
        media_type: String,
        /// the parser's message
        message: String,
    },
    /// `schemaVersion` is not 2
    #[error("schemaVersion {0} is not 2")]
    SchemaVersion(u32),
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    manifests: Option<serde::de::IgnoredAny>,
    layers: Option<serde::de::IgnoredAny>,
}

/// Parses a manifest or index. Its media type is the document's `mediaType`; when the
/// document has none (skopeo writes some that way), the HTTP `Content-Type`; failing both,
/// the shape (`manifests` = index, `layers` = manifest).
pub fn parse_manifest(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<(String, ManifestKind), ManifestError> {
    let probe: Probe = serde_json::from_slice(body).map_err(|e| ManifestError::Malformed {
        media_type: content_type.unwrap_or("manifest").to_string(),
        message: e.to_string(),
    })?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let media_type = match (probe.media_type, content_type) {
        (Some(m), _) => m,
        (None, Some(c)) => c,
        (None, None) if probe.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if probe.layers.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => return Err(ManifestError::UnsupportedMediaType(String::new())),
    };
    if probe.schema_version != Some(2) {
        return Err(ManifestError::SchemaVersion(
            probe.schema_version.unwrap_or(0),
        ));
    }
    let malformed = |e: serde_json::Error| ManifestError::Malformed {
        media_type: media_type.clone(),
        message: e.to_string(),
    };
    let kind = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            ManifestKind::Image(serde_json::from_slice(body).map_err(malformed)?)
        }
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            ManifestKind::Index(serde_json::from_slice(body).map_err(malformed)?)
        }
        _ => return Err(ManifestError::UnsupportedMediaType(media_type)),
    };
    Ok((media_type, kind))
}

/// `config` of the image config (the runtime defaults), with docker's field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// `User`
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ExposedPorts`
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `Env`
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `Entrypoint`
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `Volumes`
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// `WorkingDir`
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    /// `Labels`
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `StopSignal`
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
}

/// `rootfs` of the image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// `type` (must be `layers`)
    #[serde(rename = "type")]
    pub fs_type: String,
    /// `diff_ids`: digests of the uncompressed layer tars, bottom first
    pub diff_ids: Vec<Digest>,
}

/// The image config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfiguration {
    /// `architecture`
    #[serde(default)]
    pub architecture: String,
    /// `os`
    #[serde(default)]
    pub os: String,
    /// `variant`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version`
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// `created`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `author`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// `config`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// `rootfs`
    pub rootfs: RootFs,
}

/// The platform to pick from an index: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// operating system (`linux`)
    pub os: String,
    /// GOARCH-style architecture (`amd64`, `arm64`, `s390x`, ...)
    pub architecture: String,
    /// variant (`v8`, `v7`, ...), if it matters
    pub variant: Option<String>,
}

/// GOARCH name of a Rust `target_arch`.
fn goarch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl PlatformSpec {
    /// The machine this code runs on (linux, its architecture; arm64 means v8).
    pub fn current() -> Self {
        let architecture = goarch(std::env::consts::ARCH).to_string();
        let variant = (architecture == "arm64").then(|| "v8".to_string());
        Self {
            os: "linux".into(),
            architecture,
            variant,
        }
    }

    /// Parses `os/architecture[/variant]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Self {
                os: os.to_string(),
                architecture: goarch(arch).to_string(),
                variant: None,
            }),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => Ok(Self {
                os: os.to_string(),
                architecture: goarch(arch).to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(format!("{text:?} is not os/architecture[/variant]")),
        }
    }

    /// Whether an index entry's platform runs here. arm64 without a variant means v8.
    pub fn matches(&self, platform: &Platform) -> bool {
        if platform.os != self.os || goarch(&platform.architecture) != self.architecture {
            return false;
        }
        let normalize = |v: Option<&str>| -> Option<String> {
            match (self.architecture.as_str(), v) {
                ("arm64", None) => Some("v8".into()),
                (_, v) => v.map(str::to_string),
            }
        };
        match (&self.variant, normalize(platform.variant.as_deref())) {
            (None, _) => true,
            (Some(want), Some(have)) => *want == have,
            (Some(_), None) => true,
        }
    }

    /// The first manifest of `index` for this platform.
    pub fn select<'a>(&self, index: &'a ImageIndex) -> Option<&'a Descriptor> {
        index
            .manifests
            .iter()
            .filter(|d| d.media_type != OCI_INDEX && d.media_type != DOCKER_MANIFEST_LIST)
            .find(|d| d.platform.as_ref().is_some_and(|p| self.matches(p)))
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn manifest_json(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!("\"mediaType\":\"{m}\","))
            .unwrap_or_default();
        format!(
            "{{\"schemaVersion\":2,{mt}\"config\":{{\"mediaType\":\"{OCI_CONFIG}\",\"digest\":\"{}\",\"size\":10}},\"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{}\",\"size\":20,\"annotations\":{{\"k\":\"v\"}}}}]}}",
            digest('a'),
            digest('b')
        )
    }

    #[test]
    fn media_type_comes_from_the_body_then_the_content_type_then_the_shape() {
        let (mt, kind) = parse_manifest(
            manifest_json(Some(OCI_MANIFEST)).as_bytes(),
            Some("text/html"),
        )
        .unwrap();
        assert_eq!(mt, OCI_MANIFEST);
        let ManifestKind::Image(m) = kind else {
            panic!("not an image")
        };
        assert_eq!(m.layers[0].annotations["k"], "v");
        assert_eq!(m.layers[0].size, 20);

        let (mt, _) = parse_manifest(
            manifest_json(None).as_bytes(),
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        let (mt, _) =
            parse_manifest(manifest_json(None).as_bytes(), Some("application/json")).unwrap();
        assert_eq!(mt, OCI_MANIFEST);
        let index = format!(
            "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{}\",\"size\":1,\"platform\":{{\"os\":\"linux\",\"architecture\":\"arm64\"}}}}]}}",
            digest('c')
        );
        let (mt, kind) = parse_manifest(index.as_bytes(), None).unwrap();
        assert_eq!(mt, OCI_INDEX);
        assert!(matches!(kind, ManifestKind::Index(_)));
    }

    #[test]
    fn bad_manifests_are_refused() {
        let cases: Vec<(String, Option<&str>)> = vec![
            ("".into(), None),
            ("{".into(), None),
            ("[]".into(), None),
            (manifest_json(Some(DOCKER_SCHEMA1)), None),
            (manifest_json(Some("text/html")), None),
            (
                manifest_json(Some(OCI_MANIFEST))
                    .replace("\"schemaVersion\":2", "\"schemaVersion\":1"),
                None,
            ),
            (
                manifest_json(Some(OCI_MANIFEST)).replace("\"size\":20", "\"size\":-1"),
                None,
            ),
            (
                manifest_json(Some(OCI_MANIFEST)).replace(&digest('b'), "sha256:../../x"),
                None,
            ),
            (
                manifest_json(Some(OCI_MANIFEST)).replace("\"layers\"", "\"layerz\""),
                None,
            ),
            (manifest_json(Some(OCI_INDEX)), None),
            ("{\"schemaVersion\":2}".into(), None),
        ];
        for (body, ct) in cases {
            assert!(
                parse_manifest(body.as_bytes(), ct).is_err(),
                "{body} accepted"
            );
        }
    }

    #[test]
    fn platform_selection_follows_os_arch_and_variant() {
        let entry = |arch: &str, variant: Option<&str>, c: char| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::parse(&digest(c)).unwrap(),
            size: 1,
            annotations: BTreeMap::new(),
            platform: Some(Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
                os_version: None,
            }),
        };
        let index = ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                Descriptor {
                    platform: Some(Platform {
                        os: "unknown".into(),
                        architecture: "unknown".into(),
                        variant: None,
                        os_version: None,
                    }),
                    ..entry("x", None, '0')
                },
                entry("amd64", None, 'a'),
                entry("arm", Some("v7"), 'b'),
                entry("arm64", None, 'c'),
                entry("s390x", None, 'd'),
            ],
        };
        let pick = |spec: &str| {
            PlatformSpec::parse(spec)
                .unwrap()
                .select(&index)
                .map(|d| d.digest.to_string())
        };
        assert_eq!(pick("linux/amd64"), Some(digest('a')));
        assert_eq!(pick("linux/x86_64"), Some(digest('a')));
        assert_eq!(pick("linux/arm64/v8"), Some(digest('c')));
        assert_eq!(pick("linux/aarch64"), Some(digest('c')));
        assert_eq!(pick("linux/arm/v7"), Some(digest('b')));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/riscv64"), None);
        assert_eq!(pick("windows/amd64"), None);
        assert!(PlatformSpec::current().os == "linux");
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
        ] {
            assert!(PlatformSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
