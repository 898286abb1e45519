//! Image references (`[registry/]repository[:tag][@digest]`), parsed and normalized as
//! docker and containers/image do: a first component with a `.` or `:` (or `localhost`, or
//! an uppercase letter) is a registry; otherwise the name is *unqualified*, meaning
//! `docker.io`, with `library/` in front of a single-component name.

use std::fmt;

use oci_model::Digest;

/// The registry of unqualified references.
pub(crate) const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag of references with neither tag nor digest.
pub(crate) const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// the text (shortened)
    pub reference: String,
    /// what is wrong
    pub reason: String,
}

/// A normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
    qualified: bool,
}

fn is_registry_component(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [ipv6]:port
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    is_domain_name(name)
}

/// Whether `name` is a DNS name as registries are named: dot-separated labels of ASCII
/// letters, digits and `-`, none empty and none starting or ending with `-`.
pub fn is_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum_lower(bytes[0]) || !is_alnum_lower(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum_lower(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum_lower(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parses and normalizes a reference.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let bad = |reason: &str| ReferenceError {
            reference: text.chars().take(300).collect(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.len() > 4096 {
            return Err(bad("longer than 4096 bytes"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(Digest::parse(digest).map_err(|e| bad(&e.to_string()))?),
            ),
            None => (text, None),
        };
        // A tag is after the last ':' that follows the last '/' (a registry port is not).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(bad("invalid tag"));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(bad("no repository name"));
        }
        let (registry, path, qualified) = match name.split_once('/') {
            Some((first, path)) if is_registry_component(first) => {
                if !valid_host(first) {
                    return Err(bad("invalid registry host"));
                }
                (first.to_string(), path.to_string(), true)
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string(), false),
        };
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        if !path.split('/').all(valid_path_component) {
            return Err(bad(
                "invalid repository (lowercase letters, digits and single separators `.`, `_`, `__`, `-` between `/`)",
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad("name longer than 255 characters"));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
            qualified,
        })
    }

    /// The same reference at another registry and repository (mirrors, remapping).
    pub fn with_location(&self, registry: &str, repository: &str) -> Result<Self, ReferenceError> {
        let mut text = format!("{registry}/{repository}");
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest.as_str());
        }
        Self::parse(&text)
    }

    /// The registry host (`docker.io` for unqualified names).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether the text named a registry explicitly.
    pub fn is_qualified(&self) -> bool {
        self.qualified
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest if any, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The host to connect to: `docker.io` is served by `registry-1.docker.io`.
    pub fn endpoint_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest", false),
            (
                "library/busybox:1.36",
                "docker.io/library/busybox:1.36",
                false,
            ),
            ("user/app", "docker.io/user/app:latest", false),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                true,
            ),
            ("index.docker.io/user/app:v1", "docker.io/user/app:v1", true),
            ("quay.io/org/app:v1", "quay.io/org/app:v1", true),
            ("localhost/app", "localhost/app:latest", true),
            ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t", true),
            (
                "127.0.0.1:5000/test/plain:v1",
                "127.0.0.1:5000/test/plain:v1",
                true,
            ),
            ("[::1]:5000/app:v1", "[::1]:5000/app:v1", true),
            (
                "a.b-c.d/x__y/z-w.v:Tag_1.0-rc",
                "a.b-c.d/x__y/z-w.v:Tag_1.0-rc",
                true,
            ),
        ];
        for (input, expected, qualified) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), expected, "{input}");
            assert_eq!(r.is_qualified(), qualified, "{input}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("quay.io/app@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_reference(), d);
        let r = Reference::parse(&format!("quay.io/app:v2@{d}")).unwrap();
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(
            Reference::parse("busybox").unwrap().endpoint_host(),
            "registry-1.docker.io"
        );
        let moved = r.with_location("mirror.local:5000", "cache/app").unwrap();
        assert_eq!(
            moved.to_string(),
            format!("mirror.local:5000/cache/app:v2@{d}")
        );
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            ":tag",
            "UPPER",
            "app:",
            "app:-bad",
            "app:has/slash",
            "app@sha256:abc",
            "app@md5:00",
            "quay.io/",
            "quay.io//app",
            "quay.io/app/",
            "quay.io/../etc",
            "quay.io/a..b",
            "quay.io/-a",
            "bad_host.io:port/app",
            "host:99999999/app",
            "a b",
            "quay.io/app:v1:v2",
            &format!("quay.io/{}", "a/".repeat(200)),
            &format!("app:{}", "t".repeat(129)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domain_names() {
        for good in ["localhost", "quay.io", "a-b.example.com", "x1.y2"] {
            assert!(is_domain_name(good), "{good:?} refused");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "-a.io",
            "a-.io",
            "a_b.io",
            "a.io:5000",
            "ä.io",
            "a/b",
        ] {
            assert!(!is_domain_name(bad), "{bad:?} accepted");
        }
    }
}
