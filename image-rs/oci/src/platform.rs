//! The platform (`os/architecture[/variant]`) to pick from an index.

use crate::manifest::{Descriptor, ImageIndex, Platform};
use crate::media_types::{DOCKER_MANIFEST_LIST, OCI_INDEX};

/// Why a platform text is not `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not os/architecture[/variant] (letters, digits, `_` and `.`)")]
pub struct PlatformSpecError(String);

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
    pub fn parse(text: &str) -> Result<Self, PlatformSpecError> {
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
            _ => Err(PlatformSpecError(text.chars().take(160).collect())),
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
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::digest::Digest;
    use crate::media_types::OCI_MANIFEST;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
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
            assert_eq!(
                PlatformSpec::parse(bad),
                Err(PlatformSpecError(bad.to_string())),
                "{bad}"
            );
        }
    }
}
