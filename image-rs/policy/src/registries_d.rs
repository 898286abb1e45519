//! registries.d (`sigstore_config`): where simple-signing signatures of an image are
//! stored, as containers/image reads it.
//!
//! ```yaml
//! default-docker:
//!   lookaside: https://sigstore.example.com
//! docker:
//!   registry.example.com/team:
//!     lookaside: file:///run/image-security/sigstore
//! ```
//!
//! The namespace with the longest match wins (exact identity, repository, parent
//! namespaces, host, `*.domain`), then `default-docker`; `sigstore` is the older name of
//! `lookaside`. Signatures of image `host/repo` with manifest digest `sha256:<hex>` are
//! `<lookaside>/repo@sha256=<hex>/signature-1`, `signature-2`, … until one is missing.

use std::collections::BTreeMap;

use image_rs::Digest;
use image_rs::Reference;
use serde::Deserialize;

use crate::scope;
use crate::strict::UniqueMap;

/// One namespace's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Namespace {
    lookaside: Option<String>,
    #[serde(rename = "lookaside-staging")]
    lookaside_staging: Option<String>,
    sigstore: Option<String>,
    #[serde(rename = "sigstore-staging")]
    sigstore_staging: Option<String>,
    /// accepted for compatibility: cosign attachments are always consulted for
    /// `sigstoreSigned` requirements
    #[serde(rename = "use-sigstore-attachments")]
    _use_sigstore_attachments: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(rename = "default-docker")]
    default_docker: Option<Namespace>,
    docker: Option<UniqueMap<Namespace>>,
}

/// Where to read signatures for one image: a validated base URL and the repository path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookaside {
    /// `file`, `http` or `https` URL of the store
    pub(crate) base: url::Url,
    /// the namespace whose setting was used (`default-docker` or the scope)
    pub(crate) scope: String,
}

impl Lookaside {
    /// The URL of signature number `index` (1-based) of `repository` for `digest`.
    pub(crate) fn signature_url(
        &self,
        repository: &str,
        digest: &Digest,
        index: usize,
    ) -> url::Url {
        let mut url = self.base.clone();
        let path = format!(
            "{}/{repository}@{}={}/signature-{index}",
            self.base.path().trim_end_matches('/'),
            digest.algorithm().name(),
            digest.hex()
        );
        url.set_path(&path);
        url
    }
}

/// Merged registries.d configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistriesD {
    default_docker: Option<Namespace>,
    docker: BTreeMap<String, Namespace>,
}

fn only_comments(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    })
}

fn validate_url(key: &str, value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| format!("{key} {value:?} is not a URL: {e}"))?;
    match url.scheme() {
        "file" => {
            if url.host_str().is_some_and(|h| !h.is_empty()) {
                return Err(format!(
                    "{key} {value:?}: a file URL names no host (file:///path)"
                ));
            }
        }
        "http" | "https" => {
            if url.host_str().is_none() {
                return Err(format!("{key} {value:?}: no host"));
            }
        }
        other => {
            return Err(format!(
                "{key} {value:?}: scheme {other:?} is not supported (file, http, https)"
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{key} {value:?}: a lookaside URL has no query or fragment"
        ));
    }
    Ok(url)
}

impl Namespace {
    fn validate(&self, label: &str) -> Result<(), String> {
        for (key, value) in [
            ("lookaside", &self.lookaside),
            ("lookaside-staging", &self.lookaside_staging),
            ("sigstore", &self.sigstore),
            ("sigstore-staging", &self.sigstore_staging),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                validate_url(key, value).map_err(|e| format!("{label}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The read location (`lookaside`, else `sigstore`).
    fn read_location(&self) -> Option<&str> {
        self.lookaside
            .as_deref()
            .or(self.sigstore.as_deref())
            .filter(|s| !s.is_empty())
    }
}

impl RegistriesD {
    /// Parses one registries.d YAML document.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if only_comments(text) {
            return Ok(Self::default());
        }
        let document: Document =
            serde_yaml_ng::from_str(text).map_err(|e| format!("invalid registries.d YAML: {e}"))?;
        if let Some(ns) = &document.default_docker {
            ns.validate("default-docker")?;
        }
        let mut docker = BTreeMap::new();
        for (scope_key, ns) in document.docker.map(|d| d.0).unwrap_or_default() {
            scope::validate_docker_scope(&scope_key).map_err(|e| format!("docker: {e}"))?;
            if scope_key.is_empty() {
                return Err("docker: an empty scope is not allowed, use default-docker".into());
            }
            ns.validate(&format!("docker.{scope_key}"))?;
            docker.insert(scope_key, ns);
        }
        Ok(Self {
            default_docker: document.default_docker,
            docker,
        })
    }

    /// Adds another document's settings; a namespace configured twice is an error.
    pub(crate) fn merge(&mut self, other: RegistriesD) -> Result<(), String> {
        if let Some(ns) = other.default_docker {
            if self.default_docker.is_some() {
                return Err(
                    "default-docker is configured in more than one registries.d document".into(),
                );
            }
            self.default_docker = Some(ns);
        }
        for (key, ns) in other.docker {
            if self.docker.contains_key(&key) {
                return Err(format!(
                    "docker namespace {key:?} is configured in more than one registries.d document"
                ));
            }
            self.docker.insert(key, ns);
        }
        Ok(())
    }

    /// The lookaside store for `reference`, if one is configured.
    pub(crate) fn lookaside_for(&self, reference: &Reference) -> Option<Lookaside> {
        let candidates = scope::identities(reference)
            .into_iter()
            .chain(scope::namespaces(&reference.name()));
        for key in candidates {
            if let Some(location) = self.docker.get(&key).and_then(Namespace::read_location) {
                return validate_url("lookaside", location)
                    .ok()
                    .map(|base| Lookaside { base, scope: key });
            }
        }
        self.default_docker
            .as_ref()
            .and_then(Namespace::read_location)
            .and_then(|location| validate_url("lookaside", location).ok())
            .map(|base| Lookaside {
                base,
                scope: "default-docker".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_namespace_wins_then_default_docker() {
        let config = RegistriesD::parse(
            "
# comment
default-docker:
  sigstore: https://sigs.example.com/store/
docker:
  quay.io:
    lookaside: file:///srv/quay
  quay.io/team:
    lookaside: http://team.example.com:8080/sigs
    use-sigstore-attachments: true
  quay.io/team/attachments-only:
    use-sigstore-attachments: true
  '*.internal':
    lookaside: file:///srv/internal
",
        )
        .unwrap();
        let base = |r: &str| {
            config
                .lookaside_for(&Reference::parse(r).unwrap())
                .map(|l| (l.base.to_string(), l.scope))
        };
        assert_eq!(
            base("quay.io/other/app:v1"),
            Some(("file:///srv/quay".into(), "quay.io".into()))
        );
        assert_eq!(
            base("quay.io/team/app:v1"),
            Some((
                "http://team.example.com:8080/sigs".into(),
                "quay.io/team".into()
            ))
        );
        assert_eq!(
            base("quay.io/team/attachments-only:v1"),
            Some((
                "http://team.example.com:8080/sigs".into(),
                "quay.io/team".into()
            ))
        );
        assert_eq!(
            base("reg.internal:5000/x:v1"),
            Some(("file:///srv/internal".into(), "*.internal".into()))
        );
        assert_eq!(
            base("docker.io/library/busybox:1"),
            Some((
                "https://sigs.example.com/store/".into(),
                "default-docker".into()
            ))
        );

        let lookaside = config
            .lookaside_for(&Reference::parse("quay.io/team/app:v1").unwrap())
            .unwrap();
        let digest = Digest::parse(&format!("sha256:{}", "e".repeat(64))).unwrap();
        assert_eq!(
            lookaside.signature_url("team/app", &digest, 2).as_str(),
            format!(
                "http://team.example.com:8080/sigs/team/app@sha256={}/signature-2",
                "e".repeat(64)
            )
        );
        let store =
            RegistriesD::parse("default-docker:\n  lookaside: https://sigs.example.com/store/\n")
                .unwrap();
        let l = store
            .lookaside_for(&Reference::parse("busybox").unwrap())
            .unwrap();
        assert_eq!(
            l.signature_url("library/busybox", &digest, 1).as_str(),
            format!(
                "https://sigs.example.com/store/library/busybox@sha256={}/signature-1",
                "e".repeat(64)
            )
        );
    }

    #[test]
    fn empty_documents_configure_nothing() {
        for empty in ["", "# nothing\n", "default-docker: {}", "docker: {}\n"] {
            let config = RegistriesD::parse(empty).unwrap();
            assert_eq!(
                config.lookaside_for(&Reference::parse("quay.io/a:b").unwrap()),
                None,
                "{empty}"
            );
        }
    }

    #[test]
    fn bad_documents_are_refused() {
        for bad in [
            "default-docker: [1]",
            "default-docker:\n  lookaside: ftp://x/y\n",
            "default-docker:\n  lookaside: not a url\n",
            "default-docker:\n  lookaside: file://host/path\n",
            "default-docker:\n  lookside: file:///x\n",
            "docker:\n  busybox:\n    lookaside: file:///x\n",
            "docker:\n  quay.io:\n    lookaside: https://x/?q=1\n",
            "docker:\n  quay.io:\n    lookaside: file:///x\n  quay.io:\n    lookaside: file:///y\n",
            "unknown: 1\n",
            "docker: 5\n",
            "docker:\n  quay.io:\n    use-sigstore-attachments: maybe\n",
            "{",
        ] {
            assert!(RegistriesD::parse(bad).is_err(), "{bad}");
        }
        let mut a = RegistriesD::parse("default-docker:\n  lookaside: file:///a\n").unwrap();
        let b = RegistriesD::parse("default-docker:\n  lookaside: file:///b\n").unwrap();
        assert!(a.merge(b).is_err());
        let c = RegistriesD::parse("docker:\n  quay.io:\n    lookaside: file:///c\n").unwrap();
        let c2 = RegistriesD::parse("docker:\n  quay.io:\n    lookaside: file:///c2\n").unwrap();
        a.merge(c).unwrap();
        assert!(a.merge(c2).is_err());
    }
}
