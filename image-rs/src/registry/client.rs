//! Registry HTTP client (distribution spec v2): manifests and blobs, anonymous, basic and
//! bearer-token auth (tokens cached per repository), plain HTTP or unverified TLS for
//! registries marked insecure, proxies and extra root CAs. TLS is `http-client`'s (rustls
//! with the aws-lc-rs provider).
//!
//! Against a hostile registry: every body is read with a size limit (refused up front
//! when its announced length is already over it) and a minimum rate ([`LowSpeed`]), so
//! neither an endless nor a trickling answer holds a pull; redirects are followed at
//! most 10 times; a 401 is answered once; credentials go to a token realm only over
//! HTTPS or on the registry's own host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_client::error_chain;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::config::ProxyConfig;
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use oci_model::{parse_manifest, Descriptor, ManifestError, ManifestKind, MAX_MANIFEST_BYTES};
use oci_model::{Digest, Hasher};

const USER_AGENT: &str = concat!("image-rs/", env!("CARGO_PKG_VERSION"));
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
const MAX_TOKEN_RESPONSE: usize = 1 << 20;
const MAX_ERROR_BODY: usize = 4096;

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// the HTTP client could not be built (bad CA or proxy)
    #[error("registry client setup: {0}")]
    Setup(String),
    /// the request did not get an HTTP response
    #[error("request to {url} failed: {message}")]
    Transport {
        /// the URL
        url: String,
        /// the error chain
        message: String,
    },
    /// the registry refused the credentials (or wants some)
    #[error("{registry} refused access to {repository} ({status}): {message}")]
    Unauthorized {
        /// registry host
        registry: String,
        /// repository
        repository: String,
        /// 401 or 403
        status: u16,
        /// server message
        message: String,
    },
    /// no such manifest, blob or other resource
    #[error("{what} not found at {url}")]
    NotFound {
        /// what was asked for
        what: &'static str,
        /// the URL
        url: String,
    },
    /// any other unexpected status
    #[error("{url} answered {status}: {message}")]
    Status {
        /// the URL
        url: String,
        /// HTTP status
        status: u16,
        /// server message (shortened)
        message: String,
    },
    /// a bearer-token endpoint answered nonsense
    #[error("token endpoint {realm}: {message}")]
    Token {
        /// the realm URL
        realm: String,
        /// what was wrong
        message: String,
    },
    /// a response (manifest, image config, signature, ...) is larger than accepted
    #[error("{what} from {url} is larger than {limit} bytes")]
    TooLarge {
        /// what was fetched
        what: &'static str,
        /// the URL
        url: String,
        /// the limit
        limit: u64,
    },
    /// an answer (its head or its body) arrived slower than the configured minimum rate
    /// (a stalled or trickling registry)
    #[error("{url} sent {bytes} bytes in {seconds} s, less than the {limit} bytes/s required (image.low_speed_limit, over image.low_speed_time_secs): stalled or trickling registry")]
    TooSlow {
        /// the URL
        url: String,
        /// bytes received in the window
        bytes: u64,
        /// the window, in seconds
        seconds: u64,
        /// the minimum rate, bytes per second
        limit: u64,
    },
    /// a bearer-token realm this client will not send the credentials to
    #[error("{registry} asks for a token from {realm}, a plain-HTTP endpoint on another host: the credentials for {registry} are not sent there in clear text")]
    RealmRefused {
        /// registry host
        registry: String,
        /// the realm URL
        realm: String,
    },
    /// the content does not have the digest it was asked by
    #[error("{what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// what was fetched
        what: &'static str,
        /// the digest asked for
        expected: Digest,
        /// the digest of what arrived
        actual: Digest,
    },
    /// the content does not have the size its descriptor says
    #[error("{what} size mismatch: descriptor says {expected} bytes, registry sent {actual}")]
    SizeMismatch {
        /// what was fetched
        what: &'static str,
        /// descriptor size
        expected: u64,
        /// bytes received or announced
        actual: u64,
    },
    /// a request this client does not make (a registry path not starting with `/`, a
    /// URL that is not http(s))
    #[error("invalid request {request:?}: {reason}")]
    InvalidRequest {
        /// the path or URL
        request: String,
        /// why it is refused
        reason: &'static str,
    },
    /// the manifest is not one this puller reads
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Settings of the HTTP clients.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// proxies
    pub proxy: Option<ProxyConfig>,
    /// extra trusted root certificates (PEM)
    pub extra_root_certificates: Vec<String>,
    /// every response body (manifest, blob, token) must arrive at this rate at least
    pub low_speed: Option<LowSpeed>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            proxy: None,
            extra_root_certificates: Vec::new(),
            low_speed: Some(LowSpeed::default()),
        }
    }
}

/// A minimum transfer rate (curl's `LOW_SPEED_LIMIT`/`LOW_SPEED_TIME`): a body that
/// brings fewer than `bytes_per_sec × window` bytes in any `window` of waiting for it
/// is abandoned. Only time spent waiting on the registry counts, not time the pull
/// spends writing what it already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowSpeed {
    /// the minimum rate, bytes per second (at least 1)
    pub bytes_per_sec: u64,
    /// the window the rate is averaged over
    pub window: Duration,
}

impl Default for LowSpeed {
    fn default() -> Self {
        Self {
            bytes_per_sec: crate::config::DEFAULT_LOW_SPEED_LIMIT,
            window: Duration::from_secs(crate::config::DEFAULT_LOW_SPEED_TIME_SECS),
        }
    }
}

/// The rate check of one body.
#[derive(Debug)]
struct Progress {
    limit: Option<LowSpeed>,
    waited: Duration,
    bytes: u64,
}

impl Progress {
    fn new(limit: Option<LowSpeed>) -> Self {
        Self {
            limit,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    /// The next chunk of `response`, refused when the window closes with too few bytes.
    async fn chunk(
        &mut self,
        response: &mut reqwest::Response,
        url: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        let transport = |e: reqwest::Error| RegistryError::Transport {
            url: url.to_string(),
            message: error_chain(&e),
        };
        let Some(limit) = self.limit else {
            return response.chunk().await.map_err(transport);
        };
        loop {
            let started = Instant::now();
            let left = limit.window.saturating_sub(self.waited);
            // `chunk` is cancel-safe: a frame is either returned or left in the body.
            let next = tokio::time::timeout(left, response.chunk()).await;
            self.waited += started.elapsed();
            if let Ok(Ok(Some(chunk))) = &next {
                self.bytes += chunk.len() as u64;
            }
            if self.waited >= limit.window {
                let seconds = limit.window.as_secs().max(1);
                if self.bytes < limit.bytes_per_sec.saturating_mul(seconds) {
                    return Err(RegistryError::TooSlow {
                        url: url.to_string(),
                        bytes: self.bytes,
                        seconds,
                        limit: limit.bytes_per_sec,
                    });
                }
                self.waited = Duration::ZERO;
                self.bytes = 0;
            }
            match next {
                Ok(result) => return result.map_err(transport),
                // the window closed with enough bytes: wait on in a new one
                Err(_elapsed) => continue,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    HttpsUnverified,
    Http,
}

#[derive(Default)]
struct SharedState {
    /// scheme chosen for each insecure registry host
    schemes: HashMap<String, Scheme>,
    /// bearer tokens per (host, repository)
    tokens: HashMap<(String, String), String>,
}

/// Names where tokens are held, never the tokens (a `PolicyRequest` may be logged).
impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("schemes", &self.schemes)
            .field("tokens_for", &self.tokens.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The registry client; cheap to clone and shared by concurrent pulls.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    state: Arc<Mutex<SharedState>>,
    low_speed: Option<LowSpeed>,
}

/// A client with the proxies and roots of `settings`; `insecure` accepts any certificate.
fn build_http(settings: &ClientSettings, insecure: bool) -> Result<reqwest::Client, RegistryError> {
    let mut builder = http_client::ClientBuilder::new()
        .extra_roots(&settings.extra_root_certificates)
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(8)
        // Only configured proxies are used: the environment of a guest daemon is not config.
        .no_system_proxy();
    if insecure {
        builder = builder.accept_any_certificate();
    }
    if let Some(proxy) = &settings.proxy {
        let no_proxy = proxy
            .no_proxy
            .as_deref()
            .and_then(reqwest::NoProxy::from_string);
        if let Some(url) = proxy.https_proxy.as_deref().filter(|u| !u.is_empty()) {
            let p = reqwest::Proxy::https(url).map_err(|e| {
                RegistryError::Setup(format!("https_proxy {url:?}: {}", error_chain(&e)))
            })?;
            builder = builder.proxy(p.no_proxy(no_proxy.clone()));
        }
        if let Some(url) = proxy.http_proxy.as_deref().filter(|u| !u.is_empty()) {
            let p = reqwest::Proxy::http(url).map_err(|e| {
                RegistryError::Setup(format!("http_proxy {url:?}: {}", error_chain(&e)))
            })?;
            builder = builder.proxy(p.no_proxy(no_proxy));
        }
    }
    builder
        .build()
        .map_err(|e| RegistryError::Setup(e.to_string()))
}

impl RegistryClient {
    /// Builds the clients (verified TLS with webpki roots plus the extra ones, and the
    /// unverified one for insecure registries).
    pub fn new(settings: &ClientSettings) -> Result<Self, RegistryError> {
        Ok(Self {
            verified: build_http(settings, false)?,
            unverified: build_http(settings, true)?,
            state: Arc::new(Mutex::new(SharedState::default())),
            low_speed: settings.low_speed,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        // The state is a cache: a panic elsewhere while holding it leaves it usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A session on the repository of `reference`. For an insecure registry the first
    /// session probes HTTPS (certificate unchecked) and falls back to plain HTTP.
    pub async fn repository(
        &self,
        reference: &Reference,
        insecure: bool,
        credentials: Option<Credentials>,
    ) -> Result<Repository, RegistryError> {
        let host = reference.endpoint_host().to_string();
        let scheme = if insecure {
            let known = self.lock().schemes.get(&host).copied();
            match known {
                Some(s) => s,
                None => {
                    let s = self.probe_insecure(&host).await;
                    self.lock().schemes.insert(host.clone(), s);
                    s
                }
            }
        } else {
            Scheme::Https
        };
        let (http, base) = match scheme {
            Scheme::Https => (self.verified.clone(), format!("https://{host}")),
            Scheme::HttpsUnverified => (self.unverified.clone(), format!("https://{host}")),
            Scheme::Http => (self.verified.clone(), format!("http://{host}")),
        };
        Ok(Repository {
            client: self.clone(),
            http,
            base,
            host,
            repository: reference.repository().to_string(),
            credentials,
            basic: false,
        })
    }

    async fn probe_insecure(&self, host: &str) -> Scheme {
        let url = format!("https://{host}/v2/");
        match self
            .unverified
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(_) => Scheme::HttpsUnverified,
            Err(e) => {
                tracing::debug!(host, error = %error_chain(&e), "insecure registry: HTTPS failed, using HTTP");
                Scheme::Http
            }
        }
    }

    /// GET of a URL outside the registry API (a signature lookaside server, say) with this
    /// client's proxies and roots: TLS always verified, no credentials sent. Returns the
    /// body, at most `limit` bytes; 404 is [`RegistryError::NotFound`], any other status
    /// that is not a success [`RegistryError::Status`]. `what` names the resource in errors.
    pub async fn fetch_url(
        &self,
        url: &url::Url,
        what: &'static str,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        if !matches!(url.scheme(), "https" | "http") {
            return Err(RegistryError::InvalidRequest {
                request: url.to_string(),
                reason: "not an http(s) URL",
            });
        }
        let url = url.as_str();
        let response = send_bounded(self.verified.get(url), self.low_speed, url).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what,
                url: url.to_string(),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                message: error_body(response, self.low_speed).await,
            });
        }
        RegistryResponse {
            response,
            url: url.to_string(),
            low_speed: self.low_speed,
        }
        .body(what, limit)
        .await
    }
}

/// A challenge from `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Scheme k="v", k2=v2` (first challenge with a known scheme; quoted strings may
/// contain commas and backslash escapes).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    let mut map = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
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
        map.insert(key, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: map.remove("realm")?,
            service: map.remove("service"),
            scope: map.remove("scope"),
        }),
        _ => None,
    }
}

/// Whether the credentials of the registry at `base` may be sent to the token realm
/// `realm`. A realm on another host is normal (Docker Hub's is `auth.docker.io`), so it
/// is accepted as upstream does, but only over HTTPS: a plain-HTTP realm is accepted only
/// on the registry's own host (any port), where the registry connection is no better.
fn credentials_may_go_to(realm: &url::Url, base: &str) -> bool {
    if realm.scheme() == "https" {
        return true;
    }
    let registry_host = url::Url::parse(base)
        .ok()
        .and_then(|b| b.host_str().map(str::to_ascii_lowercase));
    registry_host.is_some() && realm.host_str().map(str::to_ascii_lowercase) == registry_host
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// A manifest as fetched: its bytes, digest and parsed form.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// the exact bytes
    pub bytes: Vec<u8>,
    /// their digest
    pub digest: Digest,
    /// the media type used to parse them
    pub media_type: String,
    /// the parsed document
    pub kind: ManifestKind,
}

/// A blob being downloaded.
#[derive(Debug)]
pub struct BlobStream {
    response: reqwest::Response,
    url: String,
    progress: Progress,
}

impl BlobStream {
    /// The next chunk of the body, `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, RegistryError> {
        self.progress.chunk(&mut self.response, &self.url).await
    }
}

/// A successful answer of the registry, its body not read yet.
#[derive(Debug)]
pub struct RegistryResponse {
    response: reqwest::Response,
    url: String,
    low_speed: Option<LowSpeed>,
}

impl RegistryResponse {
    /// The URL that answered.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// The whole body, refused beyond `limit` bytes (`what` names it in errors).
    pub async fn body(self, what: &'static str, limit: usize) -> Result<Vec<u8>, RegistryError> {
        let url = self.url;
        read_limited(self.response, limit, self.low_speed, &url)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => RegistryError::TooLarge {
                    what,
                    url,
                    limit: limit as u64,
                },
                ReadError::Failed(e) => e,
            })
    }
}

/// Requests against one repository of one registry (clones share the client's token
/// cache).
#[derive(Debug, Clone)]
pub struct Repository {
    client: RegistryClient,
    http: reqwest::Client,
    base: String,
    host: String,
    repository: String,
    credentials: Option<Credentials>,
    basic: bool,
}

impl Repository {
    fn cached_token(&self) -> Option<String> {
        self.client
            .lock()
            .tokens
            .get(&(self.host.clone(), self.repository.clone()))
            .cloned()
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let token_err = |message: String| RegistryError::Token {
            realm: realm.to_string(),
            message,
        };
        let mut url =
            url::Url::parse(realm).map_err(|e| token_err(format!("realm is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(token_err("realm is not an http(s) URL".into()));
        }
        if self.credentials.is_some() && !credentials_may_go_to(&url, &self.base) {
            return Err(RegistryError::RealmRefused {
                registry: self.host.clone(),
                realm: realm.to_string(),
            });
        }
        let default_scope = format!("repository:{}:pull", self.repository);
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope.unwrap_or(&default_scope));
        }
        let mut request = self.http.get(url.as_str());
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(c.password.as_str()));
        }
        let response = send_bounded(request, self.client.low_speed, realm).await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.host.clone(),
                repository: self.repository.clone(),
                status: status.as_u16(),
                message: format!(
                    "token endpoint: {}",
                    error_body(response, self.client.low_speed).await
                ),
            });
        }
        if !status.is_success() {
            return Err(token_err(format!("answered {status}")));
        }
        let body = read_limited(response, MAX_TOKEN_RESPONSE, self.client.low_speed, realm)
            .await
            .map_err(|e| token_err(e.to_string()))?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| token_err(format!("invalid JSON: {e}")))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("no token in the response".into()))
    }

    /// GET with auth: the cached token (or basic credentials) first; on a 401 challenge,
    /// one retry with a fresh token or basic credentials.
    async fn send(
        &mut self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut retried = false;
        loop {
            let mut request = self.http.get(url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(token) = self.cached_token() {
                request = request.bearer_auth(token);
            } else if let (true, Some(c)) = (self.basic, &self.credentials) {
                request = request.basic_auth(&c.username, Some(c.password.as_str()));
            }
            let response = send_bounded(request, self.client.low_speed, url).await?;
            if response.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(response);
            }
            retried = true;
            let challenge = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(parse_challenge)
                .min_by_key(|c| matches!(c, Challenge::Basic));
            match challenge {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let token = self
                        .fetch_token(&realm, service.as_deref(), scope.as_deref())
                        .await?;
                    self.client
                        .lock()
                        .tokens
                        .insert((self.host.clone(), self.repository.clone()), token);
                }
                Some(Challenge::Basic) if self.credentials.is_some() && !self.basic => {
                    self.basic = true;
                }
                _ => return Ok(response),
            }
        }
    }

    /// [`Repository::send`], then any status but a success is an error.
    async fn request(
        &mut self,
        url: String,
        accept: Option<&str>,
        what: &'static str,
    ) -> Result<RegistryResponse, RegistryError> {
        let response = self.send(&url, accept).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(RegistryResponse {
                response,
                url,
                low_speed: self.client.low_speed,
            });
        }
        let body = error_body(response, self.client.low_speed).await;
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                registry: self.host.clone(),
                repository: self.repository.clone(),
                status: status.as_u16(),
                message: body,
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound { what, url },
            _ => RegistryError::Status {
                url,
                status: status.as_u16(),
                message: body,
            },
        })
    }

    /// Authenticated GET of `path` on this registry (`/v2/`, or an API beside the
    /// distribution spec such as `/extensions/v2/<repository>/signatures/<digest>`), with
    /// this session's scheme, credentials and token cache. A status that is not a success
    /// is an error: [`RegistryError::NotFound`] for 404, [`RegistryError::Unauthorized`]
    /// for 401/403; `what` names the resource in errors.
    pub async fn get(
        &mut self,
        path: &str,
        what: &'static str,
    ) -> Result<RegistryResponse, RegistryError> {
        if !path.starts_with('/') {
            return Err(RegistryError::InvalidRequest {
                request: path.to_string(),
                reason: "a registry path starts with '/'",
            });
        }
        let url = format!("{}{path}", self.base);
        self.request(url, None, what).await
    }

    /// Fetches a manifest or index by tag or digest. Its digest is computed from the bytes
    /// (with the algorithm of `expected` when given) and must equal `expected`.
    pub async fn fetch_manifest(
        &mut self,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let response = self.request(url, Some(MANIFEST_ACCEPT), "manifest").await?;
        let content_type = response.header(CONTENT_TYPE.as_str()).map(str::to_string);
        let bytes = response.body("manifest", MAX_MANIFEST_BYTES).await?;
        let algorithm = expected.map_or(oci_model::Algorithm::Sha256, Digest::algorithm);
        let mut hasher = Hasher::new(algorithm);
        hasher.update(&bytes);
        let digest = hasher.finish();
        if let Some(expected) = expected {
            if &digest != expected {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest",
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let (media_type, kind) = parse_manifest(&bytes, content_type.as_deref())?;
        Ok(FetchedManifest {
            bytes,
            digest,
            media_type,
            kind,
        })
    }

    fn blob_url(&self, descriptor: &Descriptor) -> String {
        format!(
            "{}/v2/{}/blobs/{}",
            self.base, self.repository, descriptor.digest
        )
    }

    async fn open(
        &mut self,
        descriptor: &Descriptor,
        what: &'static str,
    ) -> Result<RegistryResponse, RegistryError> {
        let url = self.blob_url(descriptor);
        let response = self.request(url, None, what).await?;
        if let Some(length) = response
            .header(CONTENT_LENGTH.as_str())
            .and_then(|l| l.parse::<u64>().ok())
        {
            if length != descriptor.size {
                return Err(RegistryError::SizeMismatch {
                    what,
                    expected: descriptor.size,
                    actual: length,
                });
            }
        }
        Ok(response)
    }

    /// Fetches a small blob whole (an image config, a signature payload: `what` names it
    /// in errors), refusing it when its descriptor says more than `limit` bytes, and
    /// checking size and digest.
    pub async fn fetch_blob(
        &mut self,
        descriptor: &Descriptor,
        what: &'static str,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if descriptor.size > limit {
            return Err(RegistryError::TooLarge {
                what,
                url: self.blob_url(descriptor),
                limit,
            });
        }
        let expected = usize::try_from(descriptor.size).map_err(|_| RegistryError::TooLarge {
            what,
            url: self.blob_url(descriptor),
            limit,
        })?;
        let bytes = match self
            .open(descriptor, what)
            .await?
            .body(what, expected)
            .await
        {
            Ok(bytes) => bytes,
            // More bytes than the descriptor says: a size mismatch, not a size limit.
            Err(RegistryError::TooLarge { .. }) => {
                return Err(RegistryError::SizeMismatch {
                    what,
                    expected: descriptor.size,
                    actual: descriptor.size + 1,
                })
            }
            Err(e) => return Err(e),
        };
        if bytes.len() != expected {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: descriptor.size,
                actual: bytes.len() as u64,
            });
        }
        let mut hasher = Hasher::new(descriptor.digest.algorithm());
        hasher.update(&bytes);
        let actual = hasher.finish();
        if actual != descriptor.digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Starts streaming a blob; the caller hashes and counts it.
    pub async fn open_blob(
        &mut self,
        descriptor: &Descriptor,
    ) -> Result<BlobStream, RegistryError> {
        let RegistryResponse {
            response,
            url,
            low_speed,
        } = self.open(descriptor, "blob").await?;
        Ok(BlobStream {
            response,
            url,
            progress: Progress::new(low_speed),
        })
    }

    /// `host/repository` of this session.
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }

    /// The registry (`host[:port]`) this session talks to.
    pub fn registry(&self) -> &str {
        &self.host
    }

    /// The repository path (`team/app`) of this session.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The client this session belongs to (its proxies, roots and token cache), e.g. for
    /// [`RegistryClient::fetch_url`] with the settings of a pull.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }
}

/// Sends `request`; with a minimum rate, a response head that does not come within its
/// window is a stall like a body that does not.
async fn send_bounded(
    request: reqwest::RequestBuilder,
    low_speed: Option<LowSpeed>,
    url: &str,
) -> Result<reqwest::Response, RegistryError> {
    let transport = |e: reqwest::Error| RegistryError::Transport {
        url: url.to_string(),
        message: error_chain(&e),
    };
    let Some(limit) = low_speed else {
        return request.send().await.map_err(transport);
    };
    match tokio::time::timeout(limit.window, request.send()).await {
        Ok(response) => response.map_err(transport),
        Err(_elapsed) => Err(RegistryError::TooSlow {
            url: url.to_string(),
            bytes: 0,
            seconds: limit.window.as_secs().max(1),
            limit: limit.bytes_per_sec,
        }),
    }
}

/// The start of an error response's body, for messages.
async fn error_body(response: reqwest::Response, low_speed: Option<LowSpeed>) -> String {
    let url = response.url().to_string();
    read_limited(response, MAX_ERROR_BODY, low_speed, &url)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default()
}

enum ReadError {
    TooLarge,
    Failed(RegistryError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge => f.write_str("response too large"),
            ReadError::Failed(e) => e.fmt(f),
        }
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    low_speed: Option<LowSpeed>,
    url: &str,
) -> Result<Vec<u8>, ReadError> {
    // A length announced beyond the limit is refused before any byte is read.
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut progress = Progress::new(low_speed);
    let mut out = Vec::new();
    while let Some(chunk) = progress
        .chunk(&mut response, url)
        .await
        .map_err(ReadError::Failed)?
    {
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_like_docker_does() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(
                r#"bearer realm="https://a/t", scope="repository:x:pull,push", service=reg"#
            ),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: Some("reg".into()),
                scope: Some("repository:x:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://a/\"q\"""#),
            Some(Challenge::Bearer {
                realm: "https://a/\"q\"".into(),
                service: None,
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="test-registry""#),
            Some(Challenge::Basic)
        );
        for bad in [
            "",
            "Bearer",
            "Bearer service=x",
            "Negotiate abc",
            "Bearer realm=\"unterminated",
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn credentials_go_to_https_realms_or_the_registry_host_only() {
        let url = |u: &str| url::Url::parse(u).unwrap();
        let base = "http://127.0.0.1:5000";
        assert!(credentials_may_go_to(
            &url("https://auth.docker.io/token"),
            base
        ));
        assert!(credentials_may_go_to(
            &url("http://127.0.0.1:6000/token"),
            base
        ));
        assert!(credentials_may_go_to(&url("http://127.0.0.1/token"), base));
        assert!(!credentials_may_go_to(
            &url("http://127.0.0.2:5000/token"),
            base
        ));
        assert!(!credentials_may_go_to(
            &url("http://evil.example/token"),
            base
        ));
        assert!(credentials_may_go_to(
            &url("http://REG.example:1/t"),
            "https://reg.example"
        ));
        assert!(!credentials_may_go_to(
            &url("http://reg.example.evil/t"),
            "https://reg.example"
        ));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad_ca = ClientSettings {
            extra_root_certificates: vec!["not a certificate".into()],
            ..ClientSettings::default()
        };
        assert!(matches!(
            RegistryClient::new(&bad_ca),
            Err(RegistryError::Setup(_))
        ));
        let bad_proxy = ClientSettings {
            proxy: Some(ProxyConfig {
                https_proxy: Some("::not a url::".into()),
                ..ProxyConfig::default()
            }),
            ..ClientSettings::default()
        };
        assert!(matches!(
            RegistryClient::new(&bad_proxy),
            Err(RegistryError::Setup(_))
        ));
        assert!(RegistryClient::new(&ClientSettings::default()).is_ok());
    }
}
