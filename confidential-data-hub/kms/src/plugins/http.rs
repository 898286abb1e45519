//! The HTTPS client of the `aliyun` and `ehsm` providers (`http-client`: rustls with
//! aws-lc-rs), the trust anchors each provider chooses, bounded answers and time limits.

use std::{net::SocketAddr, time::Duration};

use http_client::error_chain;

/// Limit for one request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer body read from a KMS.
pub(crate) const MAX_ANSWER_LEN: usize = 1024 * 1024;

/// Which certificates a client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roots {
    /// The public web PKI (Mozilla's roots) and the given PEM certificates.
    WebPkiAnd,
    /// Only the given PEM certificates (a private CA, e.g. a KMS instance's).
    #[cfg(feature = "aliyun")]
    Only,
}

/// An HTTPS client trusting `roots` (with `pems`, each one or more PEM certificates), with
/// `resolve` sending connections for a host name to a fixed address (the name is still the
/// one the server's certificate must carry).
pub(crate) fn client(
    roots: Roots,
    pems: &[&str],
    resolve: Option<(&str, SocketAddr)>,
) -> Result<reqwest::Client, String> {
    let mut builder = builder(roots, pems).https_only().timeout(REQUEST_TIMEOUT);
    if let Some((host, addr)) = resolve {
        builder = builder.resolve(host, addr);
    }
    builder.build().map_err(|e| e.to_string())
}

/// A plain-HTTP client for a link-local metadata service (short limits, no proxy).
#[cfg(feature = "aliyun")]
pub(crate) fn plain_client() -> Result<reqwest::Client, String> {
    builder(Roots::WebPkiAnd, &[])
        .timeout(CONNECT_TIMEOUT * 2)
        .no_system_proxy()
        .build()
        .map_err(|e| e.to_string())
}

fn builder(roots: Roots, pems: &[&str]) -> http_client::ClientBuilder {
    let builder = http_client::ClientBuilder::new()
        .extra_roots(pems)
        .no_redirects()
        .user_agent(concat!("confidential-data-hub/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT);
    match roots {
        Roots::WebPkiAnd => builder,
        #[cfg(feature = "aliyun")]
        Roots::Only => builder.only_extra_roots(),
    }
}

/// The body of `response`, at most [`MAX_ANSWER_LEN`] bytes.
pub(crate) async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER_LEN {
            return Err(format!("answer larger than {MAX_ANSWER_LEN} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether `name` is a safe single path component built from `[A-Za-z0-9._-]` (it becomes
/// part of a credential file name) and not `.`/`..`.
pub(crate) fn is_safe_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Reads a credential file of at most 64 KiB; the error never shows its contents.
pub(crate) async fn read_credential_file(
    path: &std::path::Path,
) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use tokio::io::AsyncReadExt as _;
    const MAX: u64 = 64 * 1024;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let mut contents = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX + 1)
        .read_to_end(&mut contents)
        .await
        .map_err(|e| e.to_string())?;
    if contents.len() as u64 > MAX {
        return Err(format!("larger than {MAX} bytes"));
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_become_file_names_are_checked() {
        for ok in ["KAAP.f4c8-1", "kst-abc123", "86f0e9fe-7f05-4110", "a_b"] {
            assert!(is_safe_name(ok, 64), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\0b", "a b", "é", "x\n"] {
            assert!(!is_safe_name(bad, 64), "{bad:?}");
        }
        assert!(!is_safe_name(&"a".repeat(65), 64));
    }

    #[test]
    fn trust_anchors_must_be_certificates() {
        #[cfg(feature = "aliyun")]
        assert!(client(Roots::Only, &[], None).is_err());
        assert!(client(Roots::WebPkiAnd, &["not a pem"], None).is_err());
        assert!(client(
            Roots::WebPkiAnd,
            &["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
            None
        )
        .is_err());
        assert!(client(Roots::WebPkiAnd, &[], None).is_ok());
    }

    #[tokio::test]
    async fn credential_files_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        assert!(read_credential_file(&path).await.is_err());
        std::fs::write(&path, vec![b'x'; 64 * 1024 + 1]).unwrap();
        assert!(read_credential_file(&path)
            .await
            .unwrap_err()
            .contains("larger than"));
        std::fs::write(&path, b"ok").unwrap();
        assert_eq!(read_credential_file(&path).await.unwrap().as_slice(), b"ok");
    }
}
