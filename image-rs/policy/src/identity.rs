//! Docker references as containers/image compares them, and the `signedIdentity` rules
//! (`matchExact`, `matchRepoDigestOrExact`, `matchRepository`, `exactReference`,
//! `exactRepository`, `remapIdentity`) that decide whether the identity a signature
//! claims is acceptable for the image being pulled.

use std::fmt;

use image_rs::Reference;

/// A normalized docker reference that, unlike [`Reference`], remembers whether it names
/// a tag and/or a digest (`ParseNormalizedNamed` semantics: `busybox` is
/// `docker.io/library/busybox`, name only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerRef {
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a text is not a docker reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadReference(pub String);

impl fmt::Display for BadReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` (`name[:tag][@digest]`) carries a tag: a `:` after the last `/` of the
/// part before any `@` (a registry port is before a `/`).
fn text_has_tag(text: &str) -> bool {
    let before_digest = text.split('@').next().unwrap_or(text);
    let last_component = before_digest.rsplit('/').next().unwrap_or(before_digest);
    last_component.contains(':')
}

impl DockerRef {
    /// Parses and normalizes like `reference.ParseNormalizedNamed` (a name alone is kept
    /// name-only: no default tag is added).
    pub(crate) fn parse_normalized(text: &str) -> Result<Self, BadReference> {
        let parsed = Reference::parse(text).map_err(|e| BadReference(e.to_string()))?;
        let tag = if text_has_tag(text) {
            parsed.tag().map(str::to_string)
        } else {
            None
        };
        Ok(Self {
            name: parsed.name(),
            tag,
            digest: parsed.digest().map(ToString::to_string),
        })
    }

    /// Parses like `reference.ParseNamed`: the text must already be in canonical form.
    fn parse_canonical(text: &str) -> Result<Self, BadReference> {
        let parsed = Self::parse_normalized(text)?;
        if parsed.to_string() != text {
            return Err(BadReference(format!(
                "{text:?} is not in canonical form ({parsed})"
            )));
        }
        Ok(parsed)
    }

    /// The reference of an image being pulled (it always has a tag or a digest).
    pub(crate) fn of(reference: &Reference) -> Self {
        Self {
            name: reference.name(),
            tag: reference.tag().map(str::to_string),
            digest: reference.digest().map(ToString::to_string),
        }
    }

    /// Neither a tag nor a digest.
    pub(crate) fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `signedIdentity`: which identities a signature may claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignedIdentity {
    /// the signature names exactly the reference pulled (tag or digest)
    MatchExact,
    /// as `MatchExact` for a tag; for a digest reference, any signature of the repository
    /// (the digest itself is checked against the manifest)
    MatchRepoDigestOrExact,
    /// any reference in the same repository
    MatchRepository,
    /// exactly this reference, whatever was pulled
    ExactReference(String),
    /// any reference in this repository, whatever was pulled
    ExactRepository(String),
    /// the pulled reference with `prefix` replaced by `signed_prefix`, then
    /// `MatchRepoDigestOrExact`
    RemapIdentity {
        /// prefix of the pulled reference's name
        prefix: String,
        /// what it becomes in the signed identity
        signed_prefix: String,
    },
}

impl SignedIdentity {
    /// Whether a signature claiming `signed` is acceptable for an image pulled as
    /// `intended`.
    pub(crate) fn matches(&self, intended: &DockerRef, signed: &str) -> bool {
        let Ok(signature) = DockerRef::parse_normalized(signed) else {
            return false;
        };
        match self {
            SignedIdentity::MatchExact => {
                !intended.is_name_only() && !signature.is_name_only() && signature == *intended
            }
            SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(intended, &signature),
            SignedIdentity::MatchRepository => signature.name == intended.name,
            SignedIdentity::ExactReference(reference) => {
                let Ok(wanted) = DockerRef::parse_normalized(reference) else {
                    return false;
                };
                !wanted.is_name_only() && !signature.is_name_only() && signature == wanted
            }
            SignedIdentity::ExactRepository(repository) => {
                let Ok(wanted) = DockerRef::parse_normalized(repository) else {
                    return false;
                };
                signature.name == wanted.name
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => match remap(intended, prefix, signed_prefix) {
                Some(remapped) => repo_digest_or_exact(&remapped, &signature),
                None => false,
            },
        }
    }

    /// Checks the values a policy gives (at load time).
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            SignedIdentity::ExactReference(reference) => {
                let parsed = DockerRef::parse_normalized(reference)
                    .map_err(|e| format!("exactReference dockerReference {reference:?}: {e}"))?;
                if parsed.is_name_only() {
                    return Err(format!(
                        "exactReference dockerReference {reference:?} has neither a tag nor a digest"
                    ));
                }
                Ok(())
            }
            SignedIdentity::ExactRepository(repository) => DockerRef::parse_normalized(repository)
                .map(|_| ())
                .map_err(|e| format!("exactRepository dockerRepository {repository:?}: {e}")),
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                validate_remap_prefix("prefix", prefix)?;
                validate_remap_prefix("signedPrefix", signed_prefix)
            }
            _ => Ok(()),
        }
    }
}

/// `matchRepoDigestOrExact` on parsed values.
fn repo_digest_or_exact(intended: &DockerRef, signature: &DockerRef) -> bool {
    if signature.is_name_only() {
        return false;
    }
    if intended.tag.is_some() {
        // a tag (with or without a digest): the signature must name exactly that
        signature == intended
    } else if intended.digest.is_some() {
        // the digest is bound by the manifest-digest check of the signature
        signature.name == intended.name
    } else {
        false
    }
}

/// A remap prefix is a registry host (`host[:port]`) or `host[:port]/path`.
fn validate_remap_prefix(key: &str, prefix: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("remapIdentity {key} {prefix:?}: {why}"));
    if prefix.is_empty() {
        return bad("empty");
    }
    if prefix.contains(['@']) || prefix.ends_with('/') {
        return bad("must be host[:port] or host[:port]/path");
    }
    let probe = if prefix.contains('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/x")
    };
    match Reference::parse(&probe) {
        Ok(r) if r.is_qualified() && r.tag() == Some("latest") && !text_has_tag(&probe) => {
            let name_ok = if prefix.contains('/') {
                r.name() == prefix
            } else {
                r.registry() == prefix
            };
            if name_ok {
                Ok(())
            } else {
                bad("not in normalized form (a registry host must come first)")
            }
        }
        Ok(_) => bad("must start with a registry host and carry no tag"),
        Err(e) => bad(&e.reason),
    }
}

/// The pulled reference with its `prefix` replaced, or `None` when that does not give a
/// canonical reference. A name that does not start with `prefix` stays as it is.
fn remap(intended: &DockerRef, prefix: &str, signed_prefix: &str) -> Option<DockerRef> {
    let name = &intended.name;
    let matches = name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'/');
    if !matches {
        return Some(intended.clone());
    }
    let rewritten = intended.to_string().replacen(prefix, signed_prefix, 1);
    DockerRef::parse_canonical(&rewritten).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(text: &str) -> DockerRef {
        DockerRef::of(&Reference::parse(text).unwrap())
    }

    #[test]
    fn normalized_parsing_keeps_name_only_references() {
        let r = DockerRef::parse_normalized("busybox").unwrap();
        assert!(r.is_name_only());
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        let r = DockerRef::parse_normalized("busybox:1").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:1");
        let r = DockerRef::parse_normalized("localhost:5000/a/b").unwrap();
        assert!(r.is_name_only());
        assert_eq!(r.name, "localhost:5000/a/b");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = DockerRef::parse_normalized(&format!("quay.io/x@{d}")).unwrap();
        assert_eq!(r.to_string(), format!("quay.io/x@{d}"));
        assert!(!r.is_name_only());
        assert!(DockerRef::parse_canonical("docker.io/busybox:1").is_err());
        assert!(DockerRef::parse_canonical("docker.io/library/busybox:1").is_ok());
        for bad in ["", "upper/X", "quay.io/a..b", "x@sha256:1"] {
            assert!(DockerRef::parse_normalized(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identity_rules_follow_containers_image() {
        let d = format!("sha256:{}", "b".repeat(64));
        let by_tag = pulled("quay.io/org/app:v1");
        let by_digest = pulled(&format!("quay.io/org/app@{d}"));
        let exact = SignedIdentity::MatchExact;
        assert!(exact.matches(&by_tag, "quay.io/org/app:v1"));
        assert!(!exact.matches(&by_tag, "quay.io/org/app:v2"));
        assert!(!exact.matches(&by_tag, "quay.io/org/app"));
        assert!(!exact.matches(&by_digest, "quay.io/org/app:v1"));
        assert!(exact.matches(&by_digest, &format!("quay.io/org/app@{d}")));

        let default = SignedIdentity::MatchRepoDigestOrExact;
        assert!(default.matches(&by_tag, "quay.io/org/app:v1"));
        assert!(!default.matches(&by_tag, "quay.io/org/app:v2"));
        assert!(default.matches(&by_digest, "quay.io/org/app:v9"));
        assert!(!default.matches(&by_digest, "quay.io/org/app"));
        assert!(!default.matches(&by_digest, "quay.io/org/other:v9"));
        assert!(!default.matches(&by_tag, "not a reference"));

        let repo = SignedIdentity::MatchRepository;
        assert!(repo.matches(&by_tag, "quay.io/org/app:v2"));
        assert!(repo.matches(&by_tag, "quay.io/org/app"));
        assert!(!repo.matches(&by_tag, "quay.io/org/app2:v1"));

        let short = pulled("busybox");
        assert!(default.matches(&short, "busybox:latest"));
        assert!(default.matches(&short, "docker.io/library/busybox:latest"));

        let er = SignedIdentity::ExactReference("quay.io/other/x:v3".into());
        assert!(er.matches(&by_tag, "quay.io/other/x:v3"));
        assert!(!er.matches(&by_tag, "quay.io/org/app:v1"));
        let erepo = SignedIdentity::ExactRepository("quay.io/other/x".into());
        assert!(erepo.matches(&by_digest, "quay.io/other/x:anything"));
        assert!(!erepo.matches(&by_digest, "quay.io/org/app:v1"));
    }

    #[test]
    fn remap_identity_rewrites_the_prefix_then_matches() {
        let remap = SignedIdentity::RemapIdentity {
            prefix: "mirror.local/lib".into(),
            signed_prefix: "docker.io/library".into(),
        };
        let mirrored = pulled("mirror.local/lib/busybox:1.36");
        assert!(remap.matches(&mirrored, "docker.io/library/busybox:1.36"));
        assert!(remap.matches(&mirrored, "busybox:1.36"));
        assert!(!remap.matches(&mirrored, "mirror.local/lib/busybox:1.36"));
        assert!(!remap.matches(&mirrored, "docker.io/library/busybox:1.37"));
        // a prefix must end at a path boundary
        let other = pulled("mirror.local/library/busybox:1.36");
        assert!(remap.matches(&other, "mirror.local/library/busybox:1.36"));
        assert!(!remap.matches(&other, "docker.io/library/rary/busybox:1.36"));
        // a rewrite into a non-canonical name never matches
        let to_short = SignedIdentity::RemapIdentity {
            prefix: "mirror.local/lib".into(),
            signed_prefix: "docker.io".into(),
        };
        assert!(!to_short.matches(&mirrored, "docker.io/library/busybox:1.36"));
        assert!(!to_short.matches(&mirrored, "docker.io/busybox:1.36"));
    }

    #[test]
    fn bad_identity_values_are_refused() {
        for bad in [
            SignedIdentity::ExactReference("quay.io/x".into()),
            SignedIdentity::ExactReference("Not Valid".into()),
            SignedIdentity::ExactRepository("".into()),
            SignedIdentity::RemapIdentity {
                prefix: "busybox".into(),
                signed_prefix: "docker.io".into(),
            },
            SignedIdentity::RemapIdentity {
                prefix: "quay.io/x:tag".into(),
                signed_prefix: "docker.io".into(),
            },
            SignedIdentity::RemapIdentity {
                prefix: "quay.io/".into(),
                signed_prefix: "docker.io".into(),
            },
            SignedIdentity::RemapIdentity {
                prefix: "quay.io".into(),
                signed_prefix: "".into(),
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        for good in [
            SignedIdentity::ExactReference("busybox:1".into()),
            SignedIdentity::ExactRepository("busybox".into()),
            SignedIdentity::RemapIdentity {
                prefix: "localhost:5000/a".into(),
                signed_prefix: "docker.io".into(),
            },
        ] {
            assert!(good.validate().is_ok(), "{good:?}");
        }
    }
}
