//! Descriptors, image manifests and indexes (OCI and Docker schema 2), and the strict
//! parser for the ones a registry sends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_types::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::media_types::{DOCKER_SCHEMA1, OCI_CONFIG};

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
    fn bad_manifests_fail_with_the_right_kind() {
        let ok = manifest_json(Some(OCI_MANIFEST));
        let malformed = |body: &str| {
            matches!(
                parse_manifest(body.as_bytes(), None),
                Err(ManifestError::Malformed { .. })
            )
        };
        // truncated anywhere
        for cut in [1, ok.len() / 3, ok.len() / 2, ok.len() - 1] {
            assert!(malformed(&ok[..cut]), "{}", &ok[..cut]);
        }
        // wrong JSON types
        for (from, to) in [
            ("\"size\":20", "\"size\":\"20\""),
            ("\"size\":20", "\"size\":1e3"),
            ("\"size\":20", "\"size\":18446744073709551616"),
            ("\"layers\":[", "\"layers\":{\"x\":"),
            ("\"annotations\":{\"k\":\"v\"}", "\"annotations\":{\"k\":1}"),
        ] {
            let body = ok.replacen(from, to, 1);
            assert_ne!(body, ok, "{from}");
            assert!(malformed(&body), "{body}");
        }
        let config_as_string = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":\"x\",\"layers\":[]}}"
        );
        assert!(malformed(&config_as_string));
        assert!(matches!(
            parse_manifest(b"{\"schemaVersion\":\"2\",\"layers\":[]}", None),
            Err(ManifestError::Malformed { media_type, .. }) if media_type == "manifest"
        ));
        // bad digest forms in a descriptor
        for bad in [
            "sha256:".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(64)),
            format!("md5:{}", "a".repeat(32)),
            format!("sha256-{}", "a".repeat(64)),
            "../../etc/passwd".to_string(),
        ] {
            assert!(malformed(&ok.replace(&digest('b'), &bad)), "{bad}");
        }
        // sha384 and sha512 are digests too
        let sha384 = format!("sha384:{}", "b".repeat(96));
        let (_, kind) = parse_manifest(ok.replace(&digest('b'), &sha384).as_bytes(), None).unwrap();
        let ManifestKind::Image(m) = kind else {
            panic!("not an image")
        };
        assert_eq!(m.layers[0].digest, sha384);
        // refused types and versions say which
        assert_eq!(
            parse_manifest(manifest_json(Some(DOCKER_SCHEMA1)).as_bytes(), None),
            Err(ManifestError::UnsupportedMediaType(DOCKER_SCHEMA1.into()))
        );
        assert_eq!(
            parse_manifest(
                ok.replace("\"schemaVersion\":2", "\"schemaVersion\":3")
                    .as_bytes(),
                None
            ),
            Err(ManifestError::SchemaVersion(3))
        );
        // hostile nesting is refused by the recursion limit, not by a stack overflow
        let deep = format!(
            "{{\"schemaVersion\":2,\"layers\":[],\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(malformed(&deep));
    }
}
