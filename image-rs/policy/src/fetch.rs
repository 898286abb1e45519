//! Where signatures come from:
//! - lookaside stores configured in registries.d, `file://` and `http(s)://`
//!   (`<base>/<repository>@sha256=<hex>/signature-<n>`, n = 1, 2, … until one is missing);
//! - the registry's signature extension (`X-Registry-Supports-Signatures: 1` on `/v2/`,
//!   then `GET /extensions/v2/<repository>/signatures/<digest>`);
//! - cosign attachments: the `<alg>-<hex>.sig` tag of the repository, whose
//!   `application/vnd.dev.cosign.simplesigning.v1+json` layers are payloads signed in
//!   their `dev.cosignproject.cosign/signature` annotation.
//!
//! Every request goes through image-rs's registry client with the pull's own session
//! ([`image_rs::PolicyRequest::repository`]): the same scheme for insecure
//! registries, credentials, token cache, proxies and root CAs as the pull itself.
//!
//! Everything fetched here is untrusted input: sizes and counts are bounded, and nothing
//! is believed before it is verified by the caller.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use image_rs::Digest;
use image_rs::ManifestKind;
use image_rs::{RegistryClient, RegistryError, Repository};
use serde::Deserialize;

use crate::registries_d::Lookaside;

/// Largest signature (one lookaside file, one cosign payload) read.
pub(crate) const MAX_SIGNATURE_BYTES: u64 = 4 << 20;
/// Largest signature-extension response read.
const MAX_SIGNATURE_LIST_BYTES: usize = 4 << 20;
/// Most signatures read from one place for one digest.
pub(crate) const MAX_SIGNATURES: usize = 16;
/// Most signature bytes read from one place for one digest (guest memory is scarce).
const MAX_SIGNATURE_BYTES_PER_SOURCE: usize = 16 << 20;
/// The cosign signature layer media type.
pub(crate) const COSIGN_PAYLOAD_MEDIA_TYPE: &str =
    "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 cosign signature.
pub(crate) const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The header with which a registry announces the signature extension on `/v2/`.
const SIGNATURE_EXTENSION_HEADER: &str = "X-Registry-Supports-Signatures";

/// A signature as found, with where it was found (for messages).
#[derive(Debug, Clone)]
pub(crate) struct Found<T> {
    /// URL, file or tag it came from
    pub(crate) source: String,
    /// the signature
    pub(crate) value: T,
}

/// A cosign signature: the payload and its base64 signature (`None` when the layer has
/// no signature annotation).
#[derive(Debug, Clone)]
pub(crate) struct CosignSignature {
    pub(crate) payload: Vec<u8>,
    pub(crate) signature_b64: Option<String>,
}

#[derive(Deserialize)]
struct ExtensionSignatureList {
    #[serde(default)]
    signatures: Vec<ExtensionSignature>,
}

#[derive(Deserialize)]
struct ExtensionSignature {
    #[serde(rename = "schemaVersion")]
    schema_version: i64,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    content: String,
}

/// Fetches signatures through the pull's registry session (image-rs's client: the pull's
/// scheme, credentials, proxies and roots); shared by all evaluations, it remembers which
/// registries serve the signature extension.
#[derive(Debug)]
pub(crate) struct SignatureFetcher {
    extension_support: Mutex<HashMap<String, (Instant, bool)>>,
    support_ttl: Duration,
}

impl SignatureFetcher {
    pub(crate) fn new(support_ttl: Duration) -> Self {
        Self {
            extension_support: Mutex::new(HashMap::new()),
            support_ttl,
        }
    }

    /// Signatures of `repository` for `digest` in a lookaside store; http(s) stores are
    /// read with `client` (no registry credentials are sent to them).
    pub(crate) async fn lookaside(
        &self,
        client: &RegistryClient,
        store: &Lookaside,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Found<Vec<u8>>>, String> {
        let mut found = Vec::new();
        let mut total = 0;
        for index in 1..=MAX_SIGNATURES + 1 {
            let url = store.signature_url(repository, digest, index);
            let body = match url.scheme() {
                "file" => read_signature_file(&url).await?,
                _ => read_signature_http(client, &url).await?,
            };
            let Some(body) = body else { break };
            if index > MAX_SIGNATURES {
                tracing::warn!(%url, "more than {MAX_SIGNATURES} signatures in a lookaside store: the rest is ignored");
                break;
            }
            total += body.len();
            if total > MAX_SIGNATURE_BYTES_PER_SOURCE {
                return Err(format!(
                    "{url}: the signatures of this image exceed {MAX_SIGNATURE_BYTES_PER_SOURCE} bytes"
                ));
            }
            found.push(Found {
                source: url.to_string(),
                value: body,
            });
        }
        Ok(found)
    }

    /// Whether the registry of `repository` serves the signature extension (announced on
    /// `/v2/`; the answer is remembered for the cache TTL).
    async fn extension_supported(&self, repository: &mut Repository) -> Result<bool, String> {
        let registry = repository.registry().to_string();
        if let Some((checked, supported)) = self.lock_support().get(&registry) {
            if checked.elapsed() < self.support_ttl {
                return Ok(*supported);
            }
        }
        let response = repository
            .get("/v2/", "registry API root")
            .await
            .map_err(|e| e.to_string())?;
        let supported = response
            .header(SIGNATURE_EXTENSION_HEADER)
            .is_some_and(|v| v.trim() == "1");
        self.lock_support()
            .insert(registry, (Instant::now(), supported));
        Ok(supported)
    }

    fn lock_support(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, bool)>> {
        self.extension_support
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Signatures served through the registry's signature extension, if it has one.
    pub(crate) async fn extension(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Found<Vec<u8>>>, String> {
        let mut repository = repository.clone();
        if !self.extension_supported(&mut repository).await? {
            return Ok(Vec::new());
        }
        let path = format!(
            "/extensions/v2/{}/signatures/{digest}",
            repository.repository()
        );
        let response = match repository.get(&path, "signature list").await {
            Ok(response) => response,
            Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let url = response.url().to_string();
        let body = response
            .body("signature list", MAX_SIGNATURE_LIST_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let list: ExtensionSignatureList = serde_json::from_slice(&body)
            .map_err(|e| format!("{url}: invalid signature list: {e}"))?;
        let mut found = Vec::new();
        for signature in list.signatures.into_iter().take(MAX_SIGNATURES) {
            if signature.schema_version != 2 || signature.kind != "atomic" {
                continue;
            }
            let content = base64::engine::general_purpose::STANDARD
                .decode(signature.content.as_bytes())
                .map_err(|e| {
                    format!(
                        "{url}: signature {:?} content is not base64: {e}",
                        signature.name
                    )
                })?;
            found.push(Found {
                source: format!("{url} ({})", signature.name),
                value: content,
            });
        }
        Ok(found)
    }

    /// cosign signatures attached to `digest` in `repository`.
    pub(crate) async fn cosign(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Found<CosignSignature>>, String> {
        let tag = format!("{}-{}.sig", digest.algorithm().name(), digest.hex());
        let mut repository = repository.clone();
        let source = format!("{}:{tag}", repository.name());
        let manifest = match repository.fetch_manifest(&tag, None).await {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(format!("{source}: {e}")),
        };
        let ManifestKind::Image(manifest) = manifest.kind else {
            return Err(format!("{source} is an index, not a signature manifest"));
        };
        let mut found = Vec::new();
        let mut total = 0;
        for layer in manifest
            .layers
            .iter()
            .filter(|l| l.media_type == COSIGN_PAYLOAD_MEDIA_TYPE)
            .take(MAX_SIGNATURES)
        {
            let layer_source = format!("{source} layer {}", layer.digest);
            let Some(signature_b64) = layer.annotations.get(COSIGN_SIGNATURE_ANNOTATION) else {
                found.push(Found {
                    source: layer_source,
                    value: CosignSignature {
                        payload: Vec::new(),
                        signature_b64: None,
                    },
                });
                continue;
            };
            total += usize::try_from(layer.size).unwrap_or(usize::MAX);
            if total > MAX_SIGNATURE_BYTES_PER_SOURCE {
                return Err(format!(
                    "{source}: the signature payloads exceed {MAX_SIGNATURE_BYTES_PER_SOURCE} bytes"
                ));
            }
            let payload = repository
                .fetch_blob(layer, "cosign signature payload", MAX_SIGNATURE_BYTES)
                .await
                .map_err(|e| format!("{layer_source}: {e}"))?;
            found.push(Found {
                source: layer_source,
                value: CosignSignature {
                    payload,
                    signature_b64: Some(signature_b64.clone()),
                },
            });
        }
        Ok(found)
    }
}

/// A lookaside signature from an http(s) server; `None` when there is none (404).
async fn read_signature_http(
    client: &RegistryClient,
    url: &url::Url,
) -> Result<Option<Vec<u8>>, String> {
    match client
        .fetch_url(url, "lookaside signature", MAX_SIGNATURE_BYTES as usize)
        .await
    {
        Ok(body) => Ok(Some(body)),
        Err(RegistryError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

async fn read_signature_file(url: &url::Url) -> Result<Option<Vec<u8>>, String> {
    let path = url
        .to_file_path()
        .map_err(|()| format!("{url} is not a local file URL"))?;
    let metadata = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !metadata.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if metadata.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_SIGNATURE_BYTES} bytes",
            path.display()
        ));
    }
    tokio::fs::read(&path)
        .await
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_rs::ClientSettings;

    #[tokio::test]
    async fn lookaside_files_are_read_in_order_until_one_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::sha256_of(b"m");
        let sigdir = dir.path().join(format!("team/app@sha256={}", digest.hex()));
        std::fs::create_dir_all(&sigdir).unwrap();
        std::fs::write(sigdir.join("signature-1"), b"one").unwrap();
        std::fs::write(sigdir.join("signature-2"), b"two").unwrap();
        std::fs::write(sigdir.join("signature-4"), b"four (after a gap: not read)").unwrap();
        let store = Lookaside {
            base: url::Url::parse(&format!("file://{}", dir.path().display())).unwrap(),
            scope: "default-docker".into(),
        };
        let fetcher = SignatureFetcher::new(Duration::from_secs(60));
        let client = RegistryClient::new(&ClientSettings::default()).unwrap();
        let found = fetcher
            .lookaside(&client, &store, "team/app", &digest)
            .await
            .unwrap();
        let bodies: Vec<&[u8]> = found.iter().map(|f| f.value.as_slice()).collect();
        assert_eq!(bodies, [&b"one"[..], b"two"]);
        assert!(fetcher
            .lookaside(&client, &store, "team/other", &digest)
            .await
            .unwrap()
            .is_empty());
        std::fs::create_dir_all(sigdir.join("signature-3")).unwrap();
        assert!(fetcher
            .lookaside(&client, &store, "team/app", &digest)
            .await
            .unwrap_err()
            .contains("not a regular file"));
        let big = dir.path().join(format!("big@sha256={}", digest.hex()));
        std::fs::create_dir_all(&big).unwrap();
        std::fs::write(
            big.join("signature-1"),
            vec![0u8; MAX_SIGNATURE_BYTES as usize + 1],
        )
        .unwrap();
        assert!(fetcher
            .lookaside(&client, &store, "big", &digest)
            .await
            .unwrap_err()
            .contains("larger"));
    }
}
