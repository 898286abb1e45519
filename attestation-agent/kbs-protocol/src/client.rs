//! The KBS client: RCAR handshake (background-check mode) or tokens from a provider
//! (passport mode), a token cache shared by all callers, and resource fetches.
//!
//! Semantics (better than upstream, see reference-behaviour §3.2-3.4 and §12.17):
//! - a token and its TEE key are reused until `exp` minus a margin, or until the KBS refuses
//!   them; concurrent callers share one in-flight attestation (and its failure);
//! - a 401 with a cached token costs exactly one re-attestation and one retry; a 401 with a
//!   token attested for during the same call is final (trustee answers 401 both for a
//!   policy denial and for a missing resource), and is remembered per token so that asking
//!   again for a denied path does not re-attest. In passport mode a token counts as attested
//!   for only when the provider was asked for [`TokenNeed::NewAttestation`] (its answer to
//!   [`TokenNeed::Valid`] may come from its cache);
//! - 403 (policy denial in newer trustee) and 404 are final;
//! - network errors, timeouts and 5xx answers are retried with backoff and jitter.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tracing::{debug, info};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::evidence::EvidenceProvider;
use crate::http::{Reply, RetryPolicy, Transport};
use crate::jwe::JweOptions;
use crate::keypair::{TeeKeyAlgorithm, TeeKeyPair};
use crate::report_data::{device_report_data, primary_report_data};
use crate::resource_uri::{ResourceUri, DEFAULT_PLUGIN};
use crate::token::{Token, TokenNeed, TokenProvider};
use crate::wire::{
    Attestation, Challenge, CompositeEvidence, InitData, JweResponse, Request, RuntimeData,
    TokenResponse, SESSION_COOKIE,
};

/// Client configuration; [`KbsClientConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct KbsClientConfig {
    /// KBS base URL (`http://` or `https://`, optional path prefix).
    pub url: url::Url,
    /// Extra trusted root CAs in PEM (AA `kbs_cert`, CDH `KBS_CERT`), added to the
    /// built-in public roots.
    pub extra_root_certs_pem: Vec<String>,
    /// TEE key pair type generated for each attestation.
    pub tee_key_algorithm: TeeKeyAlgorithm,
    /// Accept `RSA1_5`-wrapped replies (deprecated; off by default).
    pub allow_rsa1_5: bool,
    /// Initdata TOML sent as `init-data` (`{"format":"toml","body":...}`).
    pub initdata_toml: Option<String>,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Limit for one [`KbsClient::get_resource`], [`KbsClient::get_token`] or
    /// [`KbsClient::refresh_token`] call, its attestation and retries included: a KBS that
    /// trickles its replies or keeps failing cannot hold a caller longer than this. Below
    /// the 50 s that CDH gives AA and the REST shim gives CDH, so the answer is this
    /// client's error, not the caller's timeout.
    pub operation_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// A cached token is replaced when it expires within this margin (capped at half the
    /// token's lifetime, so short-lived tokens are still reused).
    pub token_refresh_margin: Duration,
    /// After the KBS called a brand-new token invalid, reads fail without attesting again
    /// for this long (a 401 storm costs one attestation per backoff, not one per read).
    pub token_refusal_backoff: Duration,
}

impl KbsClientConfig {
    /// Defaults for the KBS at `url`: P-256 key, no RSA1_5, 60 s request timeout, 45 s per
    /// operation, 4 tries, 30 s refresh margin.
    pub fn new(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url).map_err(|e| Error::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                reason: "the scheme must be http or https".to_string(),
            });
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::InvalidUrl {
                url: url.to_string(),
                reason: "the KBS URL takes no query or fragment".to_string(),
            });
        }
        Ok(Self {
            url: parsed,
            extra_root_certs_pem: Vec::new(),
            tee_key_algorithm: TeeKeyAlgorithm::default(),
            allow_rsa1_5: false,
            initdata_toml: None,
            request_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(45),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            token_refresh_margin: Duration::from_secs(30),
            token_refusal_backoff: Duration::from_secs(5),
        })
    }
}

/// Where tokens come from.
enum CredentialSource {
    BackgroundCheck(Arc<dyn EvidenceProvider>),
    Passport(Arc<dyn TokenProvider>),
}

/// A token, the key it binds, and (background-check mode) the KBS session cookie.
struct Credential {
    token: Token,
    keypair: Arc<TeeKeyPair>,
    session_cookie: Option<String>,
    obtained_at: Instant,
    obtained_wall: SystemTime,
    /// For a token issued just now: when it expires on this host's monotonic clock
    /// (`obtained_at + exp - iat`), immune to skew between the KBS's clock and this one.
    local_expiry: Option<Instant>,
    /// Whether the token comes from an attestation made for this client (a handshake, or
    /// a provider asked for a new attestation), not from a provider's cache.
    attested: bool,
    /// Paths the KBS refused with this token while it was brand new.
    denied_paths: StdMutex<HashSet<String>>,
    /// When the KBS called this token, brand new, invalid (`TokenVerifierError`).
    token_refused_at: StdMutex<Option<Instant>>,
}

/// Whether a 401 refuses the token itself (trustee's `TokenVerifierError`, `TokenNotFound`)
/// rather than the path (`PolicyDeny`, `PluginInternalError` for a missing resource).
fn refuses_token(err: &Error) -> bool {
    err.error_information()
        .is_some_and(|info| matches!(info.kind(), "TokenVerifierError" | "TokenNotFound"))
}

impl Credential {
    fn new(
        token: Token,
        keypair: Arc<TeeKeyPair>,
        session_cookie: Option<String>,
        attested: bool,
    ) -> Self {
        let obtained_at = Instant::now();
        // A cached token handed out by a provider may be old already: only a token from an
        // attestation made for this call starts its lifetime now.
        let local_expiry = attested
            .then(|| token.lifetime())
            .flatten()
            .and_then(|lifetime| obtained_at.checked_add(lifetime));
        Self {
            token,
            keypair,
            session_cookie,
            attested,
            obtained_at,
            obtained_wall: SystemTime::now(),
            local_expiry,
            denied_paths: StdMutex::new(HashSet::new()),
            token_refused_at: StdMutex::new(None),
        }
    }

    fn is_fresh(&self, margin: Duration) -> bool {
        if let Some(expiry) = self.local_expiry {
            let margin = margin.min(expiry.duration_since(self.obtained_at) / 2);
            return Instant::now() + margin < expiry;
        }
        let lifetime = self
            .token
            .expires_at()
            .and_then(|exp| exp.duration_since(self.obtained_wall).ok());
        let margin = match lifetime {
            Some(lifetime) => margin.min(lifetime / 2),
            None => margin,
        };
        self.token.is_fresh(margin)
    }

    fn was_denied(&self, path: &str) -> bool {
        self.denied_paths
            .lock()
            .map(|set| set.contains(path))
            .unwrap_or(false)
    }

    /// Remembers a refusal of this (brand new) token: of the token itself, or of `path`.
    fn remember_refusal(&self, path: &str, err: &Error) {
        if refuses_token(err) {
            if let Ok(mut refused) = self.token_refused_at.lock() {
                *refused = Some(Instant::now());
            }
        } else if let Ok(mut set) = self.denied_paths.lock() {
            set.insert(path.to_string());
        }
    }

    /// Whether the KBS called this token invalid within `backoff`.
    fn refused_within(&self, backoff: Duration) -> bool {
        self.token_refused_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < backoff)
    }
}

#[derive(Default)]
struct CacheState {
    credential: Option<Arc<Credential>>,
    /// Outcome of the latest attempt if it failed, shared with the callers that waited on it.
    last_failure: Option<Error>,
    /// The KBS refused the last token: the next one must come from a new attestation.
    refused: bool,
}

/// Challenges remembered to refuse a KBS that repeats its nonce.
const REMEMBERED_NONCES: usize = 64;
/// Longest nonce accepted (trustee's is 44 characters; an SE challenge is a JSON request of
/// a few KiB).
const MAX_NONCE_LEN: usize = 16 * 1024;

struct Inner {
    config: KbsClientConfig,
    /// SHA-256 of the latest [`REMEMBERED_NONCES`] challenge nonces.
    seen_nonces: StdMutex<VecDeque<[u8; 32]>>,
    transport: Transport,
    source: CredentialSource,
    cache: Mutex<CacheState>,
    /// Number of finished attempts to obtain a credential.
    attempts_finished: AtomicU64,
}

/// Outcome of one resource GET.
enum Fetch {
    Ok(Zeroizing<Vec<u8>>),
    Unauthorized(Error),
}

/// A KBS client; cheap to clone (clones share the token cache).
#[derive(Clone)]
pub struct KbsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KbsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbsClient")
            .field("url", &self.inner.config.url.as_str())
            .field(
                "mode",
                &match self.inner.source {
                    CredentialSource::BackgroundCheck(_) => "background-check",
                    CredentialSource::Passport(_) => "passport",
                },
            )
            .finish_non_exhaustive()
    }
}

fn session_cookie(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|cookie| cookie.split(';').next())
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

impl KbsClient {
    /// Background-check mode: this client attests with evidence from `evidence`.
    pub fn background_check(
        config: KbsClientConfig,
        evidence: Arc<dyn EvidenceProvider>,
    ) -> Result<Self> {
        Self::build(config, CredentialSource::BackgroundCheck(evidence))
    }

    /// Passport mode: tokens and keys come from `tokens` (CDH: AA's `GetToken("kbs")`).
    pub fn passport(config: KbsClientConfig, tokens: Arc<dyn TokenProvider>) -> Result<Self> {
        Self::build(config, CredentialSource::Passport(tokens))
    }

    fn build(config: KbsClientConfig, source: CredentialSource) -> Result<Self> {
        let transport = Transport::new(
            &config.url,
            &config.extra_root_certs_pem,
            config.request_timeout,
            config.connect_timeout,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                transport,
                source,
                cache: Mutex::new(CacheState::default()),
                attempts_finished: AtomicU64::new(0),
                seen_nonces: StdMutex::new(VecDeque::with_capacity(REMEMBERED_NONCES)),
            }),
        })
    }

    pub fn config(&self) -> &KbsClientConfig {
        &self.inner.config
    }

    /// A valid token and its TEE key pair: the cached one, or a fresh attestation. This is
    /// what AA's `GetToken("kbs")` returns.
    pub async fn get_token(&self) -> Result<(Token, Arc<TeeKeyPair>)> {
        let credential = self.within_deadline("auth", self.credential()).await?;
        Ok((credential.token.clone(), credential.keypair.clone()))
    }

    /// A token obtained after this call began, for a caller whose token the KBS refused
    /// (AA's forced refresh). Concurrent refreshes share one attestation: a token another
    /// caller obtained after this call began is new to this caller too.
    pub async fn refresh_token(&self) -> Result<(Token, Arc<TeeKeyPair>)> {
        let credential = self
            .within_deadline("auth", self.credential_obtained_after(Some(Instant::now())))
            .await?;
        Ok((credential.token.clone(), credential.keypair.clone()))
    }

    /// Forgets the cached token as refused (the next call attests again).
    pub async fn invalidate_token(&self) {
        let mut cache = self.inner.cache.lock().await;
        cache.credential = None;
        cache.refused = true;
    }

    /// Fetches and decrypts a resource: `GET {url}/kbs/v0/<uri.kbs_path()>`.
    pub async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>> {
        let path = uri.kbs_path();
        self.within_deadline(&path, self.get_resource_unbounded(&path, uri))
            .await
    }

    async fn get_resource_unbounded(
        &self,
        path: &str,
        uri: &ResourceUri,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let jwe_required = uri.plugin() == DEFAULT_PLUGIN;
        let started = Instant::now();
        let credential = self.credential().await?;
        let fresh = credential.attested && credential.obtained_at >= started;
        match self.fetch(path, jwe_required, &credential).await? {
            Fetch::Ok(bytes) => Ok(bytes),
            Fetch::Unauthorized(err) if fresh => {
                credential.remember_refusal(path, &err);
                Err(err)
            }
            // A path denied to this token stays denied; a token the KBS called invalid is
            // not replaced again before the backoff (at most one attestation per backoff
            // during a 401 storm), but is replaced after it (the KBS may have revoked it).
            Fetch::Unauthorized(err)
                if (!refuses_token(&err) && credential.was_denied(path))
                    || credential.refused_within(self.inner.config.token_refusal_backoff) =>
            {
                Err(err)
            }
            Fetch::Unauthorized(_) => {
                info!(
                    path,
                    "the KBS refused the cached token; attesting again once"
                );
                self.invalidate(&credential).await;
                let renewed = self.credential().await?;
                match self.fetch(path, jwe_required, &renewed).await? {
                    Fetch::Ok(bytes) => Ok(bytes),
                    Fetch::Unauthorized(err) => {
                        renewed.remember_refusal(path, &err);
                        Err(err)
                    }
                }
            }
        }
    }

    /// The cached credential if fresh, else the outcome of one shared attempt to get one.
    async fn credential(&self) -> Result<Arc<Credential>> {
        self.credential_obtained_after(None).await
    }

    /// Like [`Self::credential`], but a cached credential obtained before `not_before` is
    /// replaced.
    async fn credential_obtained_after(
        &self,
        not_before: Option<Instant>,
    ) -> Result<Arc<Credential>> {
        let seen = self.inner.attempts_finished.load(Ordering::Acquire);
        let mut cache = self.inner.cache.lock().await;
        if let Some(credential) = &cache.credential {
            let recent_enough = not_before.is_none_or(|t| credential.obtained_at >= t);
            if recent_enough && credential.is_fresh(self.inner.config.token_refresh_margin) {
                return Ok(credential.clone());
            }
        }
        // An attempt finished while this caller waited: share its failure instead of
        // hammering the KBS once per waiting caller.
        if self.inner.attempts_finished.load(Ordering::Acquire) > seen {
            if let Some(err) = &cache.last_failure {
                return Err(err.clone());
            }
        }
        cache.credential = None;
        // a caller asking for a token newer than its own had it refused
        let need = if cache.refused || not_before.is_some() {
            TokenNeed::NewAttestation
        } else {
            TokenNeed::Valid
        };
        let outcome = self.obtain(need).await;
        self.inner.attempts_finished.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(credential) => {
                let credential = Arc::new(credential);
                cache.credential = Some(credential.clone());
                cache.last_failure = None;
                cache.refused = false;
                Ok(credential)
            }
            Err(err) => {
                cache.last_failure = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Drops `stale` from the cache unless another caller already replaced it.
    async fn invalidate(&self, stale: &Arc<Credential>) {
        let mut cache = self.inner.cache.lock().await;
        if cache
            .credential
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, stale))
        {
            cache.credential = None;
            cache.refused = true;
        }
    }

    async fn obtain(&self, need: TokenNeed) -> Result<Credential> {
        match &self.inner.source {
            CredentialSource::Passport(tokens) => {
                let (token, keypair) = tokens
                    .get_token(need)
                    .await
                    .map_err(|e| Error::TokenProvider(e.to_string()))?;
                Ok(Credential::new(
                    token,
                    Arc::new(keypair),
                    None,
                    need == TokenNeed::NewAttestation,
                ))
            }
            CredentialSource::BackgroundCheck(evidence) => {
                let algorithm = self.inner.config.tee_key_algorithm;
                let keypair = tokio::task::spawn_blocking(move || TeeKeyPair::generate(algorithm))
                    .await
                    .map_err(|e| Error::Task(e.to_string()))??;
                let keypair = Arc::new(keypair);
                let tee = evidence
                    .tee()
                    .await
                    .map_err(|e| Error::Evidence(e.to_string()))?;
                // A lost /attest reply may have consumed the nonce: retry the whole handshake.
                self.inner
                    .config
                    .retry
                    .run("RCAR handshake", || {
                        self.handshake(&tee, evidence.as_ref(), keypair.clone())
                    })
                    .await
            }
        }
    }

    /// Refuses a nonce that cannot give the evidence freshness: empty, absurdly long, or
    /// one this client already bound evidence to (a replaying or broken KBS).
    fn check_nonce(&self, url: &str, nonce: &str) -> Result<()> {
        let refuse = |reason: String| Error::Protocol {
            url: url.to_string(),
            reason,
        };
        if nonce.is_empty() {
            return Err(refuse("the challenge nonce is empty".to_string()));
        }
        if nonce.len() > MAX_NONCE_LEN {
            return Err(refuse(format!(
                "the challenge nonce has {} bytes, more than {MAX_NONCE_LEN}",
                nonce.len()
            )));
        }
        let digest: [u8; 32] = Sha256::digest(nonce.as_bytes()).into();
        let mut seen = self
            .inner
            .seen_nonces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.contains(&digest) {
            return Err(refuse(
                "the KBS repeated a challenge nonce this client already answered".to_string(),
            ));
        }
        if seen.len() == REMEMBERED_NONCES {
            seen.pop_front();
        }
        seen.push_back(digest);
        Ok(())
    }

    /// Runs one public operation within [`KbsClientConfig::operation_timeout`].
    async fn within_deadline<T>(
        &self,
        what: &str,
        operation: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let limit = self.inner.config.operation_timeout;
        tokio::time::timeout(limit, operation)
            .await
            .map_err(|_| Error::Timeout {
                url: self.inner.transport.endpoint(what),
                timeout_ms: limit.as_millis(),
            })?
    }

    /// One Request-Challenge-Attestation-Response exchange.
    async fn handshake(
        &self,
        tee: &str,
        evidence: &dyn EvidenceProvider,
        keypair: Arc<TeeKeyPair>,
    ) -> Result<Credential> {
        let transport = &self.inner.transport;
        let request = serde_json::to_vec(&Request::new(tee)).map_err(|e| Error::Protocol {
            url: transport.endpoint("auth"),
            reason: e.to_string(),
        })?;
        let reply = transport.send(transport.post_json("auth", request)).await?;
        if reply.status != 200 {
            let (info, body) = reply.error_parts();
            return Err(Error::AuthRejected {
                status: reply.status,
                info,
                body,
            });
        }
        let challenge: Challenge =
            serde_json::from_slice(&reply.body).map_err(|e| Error::Protocol {
                url: reply.url.clone(),
                reason: format!("challenge: {e}"),
            })?;
        let cookie = session_cookie(&reply).ok_or_else(|| Error::Protocol {
            url: reply.url.clone(),
            reason: format!("no {SESSION_COOKIE} cookie in the challenge reply"),
        })?;
        self.check_nonce(&reply.url, &challenge.nonce)?;
        let hash = challenge.hash_algorithm()?;
        let tee_pubkey = keypair.public_jwk();
        let json_error = |e: serde_json::Error| Error::Protocol {
            url: reply.url.clone(),
            reason: format!("canonicalizing the runtime data: {e}"),
        };

        let device_binding =
            device_report_data(hash, &challenge.nonce, &tee_pubkey).map_err(json_error)?;
        let additional_evidence = evidence
            .additional_evidence(&device_binding)
            .await
            .map_err(|e| Error::Evidence(e.to_string()))?;
        let binding =
            primary_report_data(hash, &challenge.nonce, &tee_pubkey, &additional_evidence)
                .map_err(json_error)?;
        let primary_evidence = evidence
            .primary_evidence(&binding)
            .await
            .map_err(|e| Error::Evidence(e.to_string()))?;

        let attestation = Attestation {
            init_data: self
                .inner
                .config
                .initdata_toml
                .as_deref()
                .map(InitData::toml),
            runtime_data: RuntimeData {
                nonce: challenge.nonce.clone(),
                tee_pubkey,
            },
            tee_evidence: CompositeEvidence {
                primary_evidence,
                additional_evidence,
            },
        };
        let body = serde_json::to_vec(&attestation).map_err(json_error)?;
        let reply = transport
            .send(transport.post_json("attest", body).header(
                reqwest::header::COOKIE,
                format!("{SESSION_COOKIE}={cookie}"),
            ))
            .await?;
        if reply.status != 200 {
            let (info, body) = reply.error_parts();
            return Err(Error::AttestationRejected {
                status: reply.status,
                info,
                body,
            });
        }
        let response: TokenResponse =
            serde_json::from_slice(&reply.body).map_err(|e| Error::Protocol {
                url: reply.url.clone(),
                reason: format!("token reply: {e}"),
            })?;
        let token = Token::parse(&response.token)?;
        debug!(expires_at = ?token.expires_at(), "attested to the KBS");
        Ok(Credential::new(token, keypair, Some(cookie), true))
    }

    /// One resource GET (with transport retries) using `credential`.
    async fn fetch(
        &self,
        path: &str,
        jwe_required: bool,
        credential: &Credential,
    ) -> Result<Fetch> {
        let transport = &self.inner.transport;
        let reply = self
            .inner
            .config
            .retry
            .run("KBS resource request", || {
                let mut request = transport.get(path).bearer_auth(credential.token.as_str());
                if let Some(cookie) = &credential.session_cookie {
                    request = request.header(
                        reqwest::header::COOKIE,
                        format!("{SESSION_COOKIE}={cookie}"),
                    );
                }
                transport.send(request)
            })
            .await?;
        let (info, body) = reply.error_parts();
        match reply.status {
            200 => {}
            401 => {
                return Ok(Fetch::Unauthorized(Error::Unauthorized {
                    path: path.to_string(),
                    info,
                    body,
                }))
            }
            403 => {
                return Err(Error::Forbidden {
                    path: path.to_string(),
                    info,
                    body,
                })
            }
            404 => {
                return Err(Error::NotFound {
                    path: path.to_string(),
                    info,
                    body,
                })
            }
            status => {
                return Err(Error::UnexpectedStatus {
                    url: reply.url,
                    status,
                    info,
                    body,
                })
            }
        }
        match serde_json::from_slice::<JweResponse>(&reply.body) {
            Ok(jwe) => {
                let keypair = credential.keypair.clone();
                let options = JweOptions {
                    allow_rsa1_5: self.inner.config.allow_rsa1_5,
                };
                // RSA decryption is CPU work: keep it off the async workers.
                let plaintext =
                    tokio::task::spawn_blocking(move || keypair.decrypt_jwe(&jwe, options))
                        .await
                        .map_err(|e| Error::Task(e.to_string()))??;
                Ok(Fetch::Ok(plaintext))
            }
            // Only the resource plugin is known to encrypt; other plugins may answer in clear.
            Err(_) if !jwe_required => Ok(Fetch::Ok(Zeroizing::new(reply.body))),
            Err(e) => Err(Error::Protocol {
                url: reply.url,
                reason: format!("the resource reply is not a flattened JWE: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_refuses_unusable_urls() {
        for bad in [
            "",
            "kbs.example",
            "ftp://kbs.example",
            "http://kbs?x=1",
            "http://kbs/#f",
        ] {
            assert!(
                matches!(KbsClientConfig::new(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
        let config = KbsClientConfig::new("https://kbs.example:8080").unwrap();
        assert_eq!(config.tee_key_algorithm, TeeKeyAlgorithm::EcP256);
        assert!(!config.allow_rsa1_5);
    }
}
