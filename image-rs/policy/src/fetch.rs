//! Where signatures come from:
//! - lookaside stores configured in registries.d, `file://` and `http(s)://`
//!   (`<base>/<repository>@sha256=<hex>/signature-<n>`, n = 1, 2, … until one is missing);
//! - the registry's signature extension (`X-Registry-Supports-Signatures: 1` on `/v2/`,
//!   then `GET /extensions/v2/<repository>/signatures/<digest>`);
//! - cosign attachments: the `<alg>-<hex>.sig` tag of the repository, whose
//!   `application/vnd.dev.cosign.simplesigning.v1+json` layers are payloads signed in
//!   their `dev.cosignproject.cosign/signature` annotation.
//!
//! Everything fetched here is untrusted input: sizes and counts are bounded, and nothing
//! is believed before it is verified by the caller.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use image_rs::digest::Digest;
use image_rs::manifest::ManifestKind;
use image_rs::reference::Reference;
use image_rs::registry::{AuthFile, ClientSettings, Credentials, RegistryClient, RegistryError};
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
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
/// How long the `/v2/` probe of a registry may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("image-policy/", env!("CARGO_PKG_VERSION"));

/// A signature as found, with where it was found (for messages).
#[derive(Debug, Clone)]
pub(crate) struct Found<T> {
    /// URL, file or tag it came from
    pub source: String,
    /// the signature
    pub value: T,
}

/// A cosign signature: the payload and its base64 signature (`None` when the layer has
/// no signature annotation).
#[derive(Debug, Clone)]
pub(crate) struct CosignSignature {
    pub payload: Vec<u8>,
    pub signature_b64: Option<String>,
}

/// How the policy reaches registries for cosign tags and the signature extension.
#[derive(Debug, Clone, Default)]
pub struct RegistryAccess {
    /// registries (`host[:port]`) allowed over plain HTTP or unverified TLS
    pub insecure_registries: BTreeSet<String>,
    /// credentials (containers auth.json)
    pub auth: Option<AuthFile>,
}

impl RegistryAccess {
    fn insecure(&self, reference: &Reference) -> bool {
        self.insecure_registries.contains(reference.registry())
    }

    fn credentials(&self, reference: &Reference) -> Option<Credentials> {
        self.auth.as_ref().and_then(|a| a.lookup(reference))
    }
}

/// Accepts any server certificate (registries marked insecure only), still checking the
/// handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

fn http_client(
    settings: &ClientSettings,
    tls: rustls::ClientConfig,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .no_proxy();
    if let Some(proxy) = &settings.proxy {
        let no_proxy = proxy
            .no_proxy
            .as_deref()
            .and_then(reqwest::NoProxy::from_string);
        if let Some(url) = proxy.https_proxy.as_deref().filter(|u| !u.is_empty()) {
            let p = reqwest::Proxy::https(url)
                .map_err(|e| format!("https_proxy {url:?}: {}", error_chain(&e)))?;
            builder = builder.proxy(p.no_proxy(no_proxy.clone()));
        }
        if let Some(url) = proxy.http_proxy.as_deref().filter(|u| !u.is_empty()) {
            let p = reqwest::Proxy::http(url)
                .map_err(|e| format!("http_proxy {url:?}: {}", error_chain(&e)))?;
            builder = builder.proxy(p.no_proxy(no_proxy));
        }
    }
    builder.build().map_err(|e| error_chain(&e))
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

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut end = None;
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end? + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
        rest = next;
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if out.len() + chunk.len() > limit {
            return Err(format!("response larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Fetches signatures; shared by all evaluations (caches what registries support).
#[derive(Debug)]
pub(crate) struct SignatureFetcher {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    registry: RegistryClient,
    access: RegistryAccess,
    extension_support: Mutex<HashMap<String, (Instant, Option<String>)>>,
    support_ttl: Duration,
}

impl SignatureFetcher {
    pub(crate) fn new(
        settings: &ClientSettings,
        access: RegistryAccess,
        support_ttl: Duration,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for pem in &settings.extra_root_certificates {
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("extra root certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("extra root certificate: {e}"))?;
                found += 1;
            }
            if found == 0 {
                return Err("an extra root certificate has no PEM CERTIFICATE block".into());
            }
        }
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())
        };
        let verified_tls = builder()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let unverified_tls = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider.clone())))
            .with_no_client_auth();
        Ok(Self {
            verified: http_client(settings, verified_tls)?,
            unverified: http_client(settings, unverified_tls)?,
            registry: RegistryClient::new(settings).map_err(|e| e.to_string())?,
            access,
            extension_support: Mutex::new(HashMap::new()),
            support_ttl,
        })
    }

    /// Signatures of `repository` for `digest` in a lookaside store.
    pub(crate) async fn lookaside(
        &self,
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
                _ => self.read_signature_http(&url).await?,
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

    async fn read_signature_http(&self, url: &url::Url) -> Result<Option<Vec<u8>>, String> {
        let response = self
            .verified
            .get(url.as_str())
            .send()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => read_limited(response, MAX_SIGNATURE_BYTES as usize)
                .await
                .map(Some)
                .map_err(|e| format!("{url}: {e}")),
            s => Err(format!("{url} answered {s}")),
        }
    }

    /// Where the signature extension of the registry of `reference` is served, if it
    /// has one (probed on `/v2/`, HTTPS first; unverified HTTPS then plain HTTP for
    /// insecure registries; the answer is remembered for the cache TTL).
    async fn extension_base(
        &self,
        reference: &Reference,
    ) -> Result<Option<(reqwest::Client, String)>, String> {
        let host = reference.endpoint_host().to_string();
        let insecure = self.access.insecure(reference);
        let client_for = |base: &str| {
            if insecure && base.starts_with("https://") {
                self.unverified.clone()
            } else {
                self.verified.clone()
            }
        };
        if let Some((checked, support)) = self.lock_support().get(&host) {
            if checked.elapsed() < self.support_ttl {
                return Ok(support
                    .as_ref()
                    .map(|base| (client_for(base), base.clone())));
            }
        }
        let mut bases = vec![format!("https://{host}")];
        if insecure {
            bases.push(format!("http://{host}"));
        }
        let mut last_error = String::new();
        for base in bases {
            let probe = client_for(&base)
                .get(format!("{base}/v2/"))
                .timeout(PROBE_TIMEOUT);
            match probe.send().await {
                Ok(response) => {
                    let supported = response
                        .headers()
                        .get("X-Registry-Supports-Signatures")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.trim() == "1");
                    let support = supported.then(|| base.clone());
                    self.lock_support()
                        .insert(host, (Instant::now(), support.clone()));
                    return Ok(support.map(|base| (client_for(&base), base)));
                }
                Err(e) => last_error = format!("{base}/v2/: {}", error_chain(&e)),
            }
        }
        Err(last_error)
    }

    fn lock_support(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<String>)>> {
        self.extension_support
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Signatures served through the registry's signature extension, if it has one.
    pub(crate) async fn extension(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Vec<Found<Vec<u8>>>, String> {
        let Some((client, base)) = self.extension_base(reference).await? else {
            return Ok(Vec::new());
        };
        let url = format!(
            "{base}/extensions/v2/{}/signatures/{digest}",
            reference.repository()
        );
        let response = self
            .get_with_auth(&client, &url, reference)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let body = read_limited(response, MAX_SIGNATURE_LIST_BYTES)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
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

    async fn get_with_auth(
        &self,
        client: &reqwest::Client,
        url: &str,
        reference: &Reference,
    ) -> Result<reqwest::Response, String> {
        let credentials = self.access.credentials(reference);
        let response = client.get(url).send().await.map_err(|e| error_chain(&e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .min_by_key(|c| matches!(c, Challenge::Basic));
        let retry = client.get(url);
        let retry = match (challenge, &credentials) {
            (
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }),
                _,
            ) => {
                let default_scope = format!("repository:{}:pull", reference.repository());
                let token = self
                    .token(
                        client,
                        &realm,
                        service.as_deref(),
                        scope.as_deref().unwrap_or(&default_scope),
                        credentials.as_ref(),
                    )
                    .await?;
                retry.bearer_auth(token)
            }
            (Some(Challenge::Basic), Some(c)) => {
                retry.basic_auth(&c.username, Some(c.password.as_str()))
            }
            _ => return Ok(response),
        };
        retry.send().await.map_err(|e| error_chain(&e))
    }

    async fn token(
        &self,
        client: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, String> {
        let mut url = url::Url::parse(realm).map_err(|e| format!("token realm {realm:?}: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!("token realm {realm:?} is not an http(s) URL"));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let mut request = client.get(url.as_str());
        if let Some(c) = credentials {
            request = request.basic_auth(&c.username, Some(c.password.as_str()));
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("token endpoint {realm}: {}", error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!(
                "token endpoint {realm} answered {}",
                response.status()
            ));
        }
        let body = read_limited(response, 1 << 20).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("token endpoint {realm}: invalid JSON: {e}"))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("token endpoint {realm}: no token in the response"))
    }

    /// cosign signatures attached to `digest` in the repository of `reference`.
    pub(crate) async fn cosign(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Vec<Found<CosignSignature>>, String> {
        let tag = format!("{}-{}.sig", digest.algorithm().name(), digest.hex());
        let mut repository = self
            .registry
            .repository(
                reference,
                self.access.insecure(reference),
                self.access.credentials(reference),
            )
            .await
            .map_err(|e| e.to_string())?;
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
                .fetch_blob(layer, MAX_SIGNATURE_BYTES)
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

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://a/token",service="reg",scope="repository:x:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://a/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:x:pull".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="r""#),
            Some(Challenge::Basic)
        );
        for bad in [
            "",
            "Bearer",
            "Bearer service=x",
            "Digest realm=x",
            "Bearer realm=\"open",
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad}");
        }
    }

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
        let fetcher = SignatureFetcher::new(
            &ClientSettings::default(),
            RegistryAccess::default(),
            Duration::from_secs(60),
        )
        .unwrap();
        let found = fetcher
            .lookaside(&store, "team/app", &digest)
            .await
            .unwrap();
        let bodies: Vec<&[u8]> = found.iter().map(|f| f.value.as_slice()).collect();
        assert_eq!(bodies, [&b"one"[..], b"two"]);
        assert!(fetcher
            .lookaside(&store, "team/other", &digest)
            .await
            .unwrap()
            .is_empty());
        std::fs::create_dir_all(sigdir.join("signature-3")).unwrap();
        assert!(fetcher
            .lookaside(&store, "team/app", &digest)
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
            .lookaside(&store, "big", &digest)
            .await
            .unwrap_err()
            .contains("larger"));
    }
}
