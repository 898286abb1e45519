//! registries.conf v2 resolution: which registries to try for a reference, in order.
//!
//! - An *unqualified* name (`busybox`, `user/app`) is tried at each
//!   `unqualified-search-registries` entry; a qualified one (`docker.io/library/busybox`,
//!   `quay.io/x/y`) only where it says. Upstream also sent explicitly qualified
//!   `docker.io/...` references to every search registry, which lets another registry
//!   substitute the image; that is not done here.
//! - Each candidate gets the `[[registry]]` entry with the longest matching prefix (a
//!   prefix matches up to `/`, `:`, `@` or the end; `*.domain` matches hosts under it):
//!   `blocked` drops it, each mirror becomes a source (in order), then the `location`
//!   replaces the matched prefix (or the reference stays as it is).

use crate::config::RegistryConfig;
use crate::reference::{Reference, ReferenceError, DEFAULT_REGISTRY};

/// How a source was derived from the requested reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// the reference itself (possibly at a search registry)
    Direct,
    /// a `[[registry.mirror]]`
    Mirror,
    /// a `[[registry]]` `location` rewrite
    Remapped,
}

/// One place to pull the image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSource {
    /// the reference at that place
    pub reference: Reference,
    /// plain HTTP (or unverified TLS) allowed
    pub insecure: bool,
    /// how it was derived
    pub kind: SourceKind,
}

/// Why no source could be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// every candidate is blocked by registries.conf
    #[error(
        "pulling {reference} is blocked by the registry configuration (blocked prefix {prefix:?})"
    )]
    Blocked {
        /// the requested reference
        reference: String,
        /// the blocking prefix
        prefix: String,
    },
    /// an unqualified name and no search registries
    #[error("{0} names no registry and unqualified-search-registries is empty: use a fully qualified reference")]
    NoSearchRegistries(String),
    /// a mirror or location rewrite produced an invalid reference
    #[error("registry configuration rewrites {reference} into an invalid reference: {source}")]
    BadRewrite {
        /// the reference being rewritten
        reference: String,
        /// the parse error of the result
        #[source]
        source: ReferenceError,
    },
}

fn host_of(location: &str) -> &str {
    location.split('/').next().unwrap_or(location)
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| h.trim_start_matches('['));
    }
    host.split(':').next().unwrap_or(host)
}

/// How much of `full` (`registry/repository[:tag][@digest]`) an entry's prefix matches.
fn match_len(prefix: &str, full: &str, registry: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix('*') {
        // "*.example.com": any host below example.com (with any port).
        return host_without_port(registry)
            .ends_with(domain)
            .then_some(registry.len());
    }
    let rest = full.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with(['/', ':', '@'])).then_some(prefix.len())
}

fn rewrite(
    reference: &Reference,
    full: &str,
    matched: usize,
    location: &str,
) -> Result<Reference, ResolveError> {
    let rewritten = format!("{location}{}", &full[matched..]);
    Reference::parse(&rewritten).map_err(|source| ResolveError::BadRewrite {
        reference: reference.to_string(),
        source,
    })
}

/// The sources to try for `requested`, in order.
pub fn resolve(
    requested: &Reference,
    config: &RegistryConfig,
) -> Result<Vec<PullSource>, ResolveError> {
    let candidates: Vec<Reference> = if requested.is_qualified() {
        vec![requested.clone()]
    } else {
        if config.unqualified_search_registries.is_empty() {
            return Err(ResolveError::NoSearchRegistries(requested.to_string()));
        }
        let mut out = Vec::new();
        for registry in &config.unqualified_search_registries {
            let repository = if registry == DEFAULT_REGISTRY {
                requested.repository()
            } else {
                // `library/` is docker.io's namespace for official images, added when the
                // name was normalized; other registries do not have it.
                requested
                    .repository()
                    .strip_prefix("library/")
                    .filter(|r| !r.contains('/'))
                    .unwrap_or(requested.repository())
            };
            out.push(
                requested
                    .with_location(registry, repository)
                    .map_err(|source| ResolveError::BadRewrite {
                        reference: requested.to_string(),
                        source,
                    })?,
            );
        }
        out
    };

    let mut sources = Vec::new();
    let mut blocked_by = None;
    for candidate in candidates {
        let full = candidate.to_string();
        let rule = config
            .registry
            .iter()
            .filter_map(|entry| {
                let prefix = if entry.prefix.is_empty() {
                    &entry.location
                } else {
                    &entry.prefix
                };
                match_len(prefix, &full, candidate.registry()).map(|len| (len, entry, prefix))
            })
            .max_by_key(|(len, _, _)| *len);
        let Some((matched, entry, prefix)) = rule else {
            sources.push(PullSource {
                reference: candidate,
                insecure: false,
                kind: SourceKind::Direct,
            });
            continue;
        };
        if entry.blocked {
            tracing::info!(reference = %full, prefix = %prefix, "blocked by the registry configuration");
            blocked_by.get_or_insert_with(|| prefix.clone());
            continue;
        }
        let wildcard = prefix.starts_with('*');
        for mirror in &entry.mirror {
            let reference = if wildcard {
                // A wildcard matched the host: the mirror replaces the host.
                rewrite(
                    &candidate,
                    &full,
                    candidate.registry().len(),
                    host_of(&mirror.location),
                )?
            } else {
                rewrite(&candidate, &full, matched, &mirror.location)?
            };
            sources.push(PullSource {
                reference,
                insecure: mirror.insecure,
                kind: SourceKind::Mirror,
            });
        }
        // An entry without prefix applies to its own location: nothing to rewrite.
        if entry.location.is_empty() || entry.prefix.is_empty() || wildcard {
            sources.push(PullSource {
                reference: candidate,
                insecure: entry.insecure,
                kind: SourceKind::Direct,
            });
        } else {
            sources.push(PullSource {
                reference: rewrite(&candidate, &full, matched, &entry.location)?,
                insecure: entry.insecure,
                kind: SourceKind::Remapped,
            });
        }
    }
    if sources.is_empty() {
        return Err(ResolveError::Blocked {
            reference: requested.to_string(),
            prefix: blocked_by.unwrap_or_default(),
        });
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(
        reference: &str,
        conf: &str,
    ) -> Result<Vec<(String, bool, SourceKind)>, ResolveError> {
        let config = RegistryConfig::from_toml(conf).unwrap();
        resolve(&Reference::parse(reference).unwrap(), &config).map(|v| {
            v.into_iter()
                .map(|s| (s.reference.to_string(), s.insecure, s.kind))
                .collect()
        })
    }

    #[test]
    fn unqualified_names_use_the_search_registries_qualified_ones_do_not() {
        let conf = "unqualified-search-registries = [\"quay.io\", \"docker.io\"]";
        assert_eq!(
            resolve_text("busybox", conf).unwrap(),
            vec![
                ("quay.io/busybox:latest".into(), false, SourceKind::Direct),
                (
                    "docker.io/library/busybox:latest".into(),
                    false,
                    SourceKind::Direct
                ),
            ]
        );
        assert_eq!(
            resolve_text("user/app:v1", conf).unwrap()[0].0,
            "quay.io/user/app:v1"
        );
        assert_eq!(
            resolve_text("docker.io/library/busybox", conf).unwrap(),
            vec![(
                "docker.io/library/busybox:latest".into(),
                false,
                SourceKind::Direct
            )]
        );
        assert!(matches!(
            resolve_text("busybox", "unqualified-search-registries = []"),
            Err(ResolveError::NoSearchRegistries(_))
        ));
    }

    #[test]
    fn longest_prefix_decides_mirrors_location_and_insecure() {
        let conf = r#"
            [[registry]]
            prefix = "example.com"
            location = "fallback.io"
            [[registry]]
            prefix = "example.com/team"
            location = "internal.local:5000/mirror/team"
            insecure = true
            [[registry.mirror]]
            location = "cache.local/team"
            [[registry.mirror]]
            location = "cache2.local/t"
            insecure = true
        "#;
        assert_eq!(
            resolve_text("example.com/team/app:v1", conf).unwrap(),
            vec![
                ("cache.local/team/app:v1".into(), false, SourceKind::Mirror),
                ("cache2.local/t/app:v1".into(), true, SourceKind::Mirror),
                (
                    "internal.local:5000/mirror/team/app:v1".into(),
                    true,
                    SourceKind::Remapped
                ),
            ]
        );
        // "example.com/teamster" does not match the "example.com/team" prefix.
        assert_eq!(
            resolve_text("example.com/teamster/app", conf).unwrap(),
            vec![(
                "fallback.io/teamster/app:latest".into(),
                false,
                SourceKind::Remapped
            )]
        );
        let d = format!("sha256:{}", "c".repeat(64));
        assert_eq!(
            resolve_text(&format!("example.com/x@{d}"), conf).unwrap()[0].0,
            format!("fallback.io/x@{d}")
        );
    }

    #[test]
    fn blocked_and_wildcard_rules() {
        let conf = r#"
            [[registry]]
            prefix = "*.evil.io"
            blocked = true
            [[registry]]
            prefix = "*.corp.io"
            insecure = true
            [[registry.mirror]]
            location = "mirror.corp.io:5000"
            [[registry]]
            location = "127.0.0.1:5000"
            insecure = true
        "#;
        let err = resolve_text("registry.evil.io/app", conf).unwrap_err();
        assert!(
            matches!(err, ResolveError::Blocked { ref prefix, .. } if prefix == "*.evil.io"),
            "{err:?}"
        );
        assert_eq!(
            resolve_text("a.corp.io:443/x/y:z", conf).unwrap(),
            vec![
                (
                    "mirror.corp.io:5000/x/y:z".into(),
                    false,
                    SourceKind::Mirror
                ),
                ("a.corp.io:443/x/y:z".into(), true, SourceKind::Direct),
            ]
        );
        // An entry without prefix applies to its location (here: insecure).
        assert_eq!(
            resolve_text("127.0.0.1:5000/t/p:v1", conf).unwrap(),
            vec![("127.0.0.1:5000/t/p:v1".into(), true, SourceKind::Direct)]
        );
        assert_eq!(
            resolve_text("evil.io/app", conf).unwrap()[0].0,
            "evil.io/app:latest"
        );
    }

    #[test]
    fn a_rewrite_into_an_invalid_reference_is_an_error() {
        let conf = "[[registry]]\nprefix = \"example.com\"\nlocation = \"BAD HOST\"";
        assert!(matches!(
            resolve_text("example.com/app", conf),
            Err(ResolveError::BadRewrite { .. })
        ));
    }
}
