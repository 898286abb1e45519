//! Scopes of the `docker` transport, shared by policy.json and registries.d: the exact
//! identity (`host/repo:tag` or `host/repo@digest`), then the repository and its parent
//! namespaces up to the host, then `*.domain` wildcards of the host (port stripped).

use image_rs::{is_domain_name, Reference};

/// The exact identities of `reference`: `name:tag`, `name@digest`, or both when the
/// reference has both (each must satisfy the policy).
pub(crate) fn identities(reference: &Reference) -> Vec<String> {
    let name = reference.name();
    let mut out = Vec::new();
    if let Some(tag) = reference.tag() {
        out.push(format!("{name}:{tag}"));
    }
    if let Some(digest) = reference.digest() {
        out.push(format!("{name}@{digest}"));
    }
    out
}

/// `host/a/b`, `host/a`, `host`, then `*.domain` wildcards of the host.
pub(crate) fn namespaces(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = name;
    loop {
        out.push(current.to_string());
        match current.rfind('/') {
            Some(i) => current = &current[..i],
            None => break,
        }
    }
    if current.starts_with('[') {
        // an IPv6 literal has no domain to wildcard
        return out;
    }
    let mut host = current.split(':').next().unwrap_or(current);
    while let Some(dot) = host.find('.') {
        host = &host[dot + 1..];
        out.push(format!("*.{host}"));
    }
    out
}

/// Checks a `docker` scope key: `""`, `*.domain`, `host[:port][/path]`, or a full
/// reference with a tag or digest, in normalized form. A scope that can never match (such
/// as `docker.io/busybox:latest`, which is `docker.io/library/busybox:latest`) is an
/// error rather than a silently dead rule.
pub(crate) fn validate_docker_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Ok(());
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        return if is_domain_name(domain) {
            Ok(())
        } else {
            Err(format!(
                "wildcard scope {scope:?} must be `*.` followed by a domain (no port, path or tag)"
            ))
        };
    }
    if scope.contains('*') {
        return Err(format!(
            "scope {scope:?}: `*` is only allowed as a leading `*.`"
        ));
    }
    let bad = |why: String| Err(format!("scope {scope:?}: {why}"));
    let last = scope.rsplit('/').next().unwrap_or(scope);
    let has_tag_or_digest = scope.contains('@') || (scope.contains('/') && last.contains(':'));
    if has_tag_or_digest {
        return match Reference::parse(scope) {
            Ok(r) if !r.is_qualified() => bad("must start with a registry host".into()),
            Ok(r) if identities(&r).len() != 1 => {
                bad("a scope names a tag or a digest, not both".into())
            }
            Ok(r) if r.to_string() != scope => bad(format!(
                "never matches: images are named {r} after normalization"
            )),
            Ok(_) => Ok(()),
            Err(e) => bad(e.reason),
        };
    }
    if !scope.contains('/') {
        // a registry host
        return match Reference::parse(&format!("{scope}/x")) {
            Ok(r) if r.is_qualified() && r.registry() == scope => Ok(()),
            Ok(_) => bad(
                "must start with a registry host (a name with a `.` or a `:port`, or `localhost`)"
                    .into(),
            ),
            Err(e) => bad(e.reason),
        };
    }
    // a namespace: a registry host, then path components (not normalized: `docker.io/x`
    // is the namespace of user `x`)
    let (host, path) = scope.split_once('/').unwrap_or((scope, ""));
    match Reference::parse(&format!("{host}/x")) {
        Ok(r) if r.is_qualified() && r.registry() == host => {}
        Ok(_) => return bad("must start with a registry host".into()),
        Err(e) => return bad(e.reason),
    }
    match Reference::parse(&format!("localhost/{path}")) {
        Ok(r) if r.name() == format!("localhost/{path}") => Ok(()),
        Ok(_) => bad("invalid repository path".into()),
        Err(e) => bad(e.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_containers_image() {
        assert_eq!(
            namespaces("registry.example.com:5000/ns/app"),
            [
                "registry.example.com:5000/ns/app",
                "registry.example.com:5000/ns",
                "registry.example.com:5000",
                "*.example.com",
                "*.com"
            ]
        );
        assert_eq!(namespaces("localhost/app"), ["localhost/app", "localhost"]);
        assert_eq!(
            namespaces("[::1]:5000/app"),
            ["[::1]:5000/app", "[::1]:5000"]
        );
        let d = format!("sha256:{}", "d".repeat(64));
        let r = Reference::parse(&format!("quay.io/a:v1@{d}")).unwrap();
        assert_eq!(
            identities(&r),
            ["quay.io/a:v1".to_string(), format!("quay.io/a@{d}")]
        );
        assert_eq!(
            identities(&Reference::parse("busybox").unwrap()),
            ["docker.io/library/busybox:latest"]
        );
    }

    #[test]
    fn scopes_are_validated() {
        let d = format!("sha256:{}", "d".repeat(64));
        for good in [
            "".to_string(),
            "*.example.com".into(),
            "docker.io".into(),
            "localhost".into(),
            "localhost:5000".into(),
            "127.0.0.1:5000/ns".into(),
            "docker.io/library".into(),
            "docker.io/library/busybox".into(),
            "docker.io/library/busybox:latest".into(),
            "docker.io/someone".into(),
            format!("quay.io/a@{d}"),
        ] {
            assert!(
                validate_docker_scope(&good).is_ok(),
                "{good}: {:?}",
                validate_docker_scope(&good)
            );
        }
        for bad in [
            "*".to_string(),
            "*.".into(),
            "*.example.com:5000".into(),
            "*.example.com/ns".into(),
            "quay.*.io".into(),
            "busybox".into(),
            "library/busybox".into(),
            "docker.io/busybox:latest".into(),
            "Quay.io/UPPER".into(),
            "quay.io/a:v1:v2".into(),
            format!("quay.io/a:v1@{d}"),
            "quay.io/a@sha256:12".into(),
            "quay.io/../etc".into(),
        ] {
            assert!(validate_docker_scope(&bad).is_err(), "{bad}");
        }
    }
}
