//! `cc_kbc`: KBS resources after attestation, in passport mode.
//!
//! The attestation agent (AA) attests to the KBS and hands out the token with its TEE key
//! pair (`GetToken("kbs")` over ttRPC); this KBC presents the token as
//! `Authorization: Bearer` and decrypts the reply with the key. One [`CcKbc`] serves the
//! whole process, so its token is reused by every `GetResource` until it expires or the KBS
//! refuses it (upstream asked AA for a new attestation on every call).
//!
//! - The KBS is always the configured one (`[kbc] url`, root CA `[kbc] kbs_cert`): a host
//!   or port in the resource URI (`kbs://other.host/...`) is ignored, as upstream does.
//! - When the KBS refuses a token, the client asks for a new one and AA is told to attest
//!   again (ttRPC metadata [`TOKEN_REFRESH_METADATA`] = `1`) instead of answering from its
//!   token cache.
//! - A refusal with a freshly attested token is final: trustee answers 401 both for a policy
//!   denial and for a resource it does not hold, so it becomes [`KbcError::Denied`]; a 404
//!   becomes [`KbcError::NotFound`].
//! - Concurrent reads of the same resource share one KBS request (nothing is cached beyond
//!   the request in flight: a resource may change). At most [`MAX_KBS_REQUESTS`] requests
//!   are in flight; a read that gets no slot within [`KBS_SLOT_WAIT`] fails at once with
//!   [`KbcError::Busy`] instead of queueing without bound behind a slow KBS.

use std::{
    collections::HashMap,
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use futures::{
    future::{BoxFuture, Shared},
    FutureExt,
};
use kbs_protocol::{
    decode_aa_token_reply, KbsClient, KbsClientConfig, ProviderError, ResourceUri, TeeKeyPair,
    Token, TokenNeed, TokenProvider, TokenReplyError,
};
use protos::{AaClient, CallError};
use tokio::sync::Semaphore;
use tracing::debug;
use zeroize::Zeroizing;

use crate::{Kbc, KbcError};

/// The token type CDH asks AA for.
pub(crate) const KBS_TOKEN_TYPE: &str = "kbs";
/// ttRPC metadata key telling AA to attest again rather than answer from its token cache.
pub use protos::TOKEN_REFRESH_METADATA_KEY as TOKEN_REFRESH_METADATA;
/// Limit for one `GetToken` call, connecting and the reconnect included (as upstream).
pub(crate) const AA_TOKEN_TIMEOUT: Duration = Duration::from_secs(50);
/// Distinct resource requests in flight to the KBS at once.
pub(crate) const MAX_KBS_REQUESTS: usize = 32;
/// How long a read waits for one of the [`MAX_KBS_REQUESTS`] slots before it fails.
pub(crate) const KBS_SLOT_WAIT: Duration = Duration::from_secs(2);

/// Why AA gave no usable token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AaTokenError {
    /// AA's socket could not be connected (AA not running, wrong `[aa] aa_socket`).
    #[error("cannot connect to the attestation agent at {addr}: {source}")]
    Connect {
        /// AA's ttRPC address
        addr: String,
        /// the cause
        source: ttrpc::Error,
    },
    /// AA answered with an error status.
    #[error("the attestation agent answered GetToken(\"kbs\") with {code:?}: {message}")]
    Status {
        /// the status code
        code: ttrpc::Code,
        /// AA's message
        message: String,
    },
    /// The connection failed during the call, also after one reconnect.
    #[error("GetToken to the attestation agent at {addr} failed on the connection: {source}")]
    Transport {
        /// AA's ttRPC address
        addr: String,
        /// the cause
        source: ttrpc::Error,
    },
    /// No answer in time.
    #[error("the attestation agent at {addr} did not answer GetToken within {timeout:?}")]
    Timeout {
        /// AA's ttRPC address
        addr: String,
        /// the limit
        timeout: Duration,
    },
    /// The reply is not `{"token","tee_keypair"}` with a JWT and a private key.
    #[error("the attestation agent's token reply is unusable: {0}")]
    Reply(#[from] TokenReplyError),
}

/// The passport-mode [`TokenProvider`]: AA's `GetToken("kbs")` over ttRPC, on a connection
/// opened on first use and replaced once when it turns out dead ([`AaClient`]).
///
/// `kbs_protocol` asks for [`TokenNeed::NewAttestation`] after the KBS refused a token;
/// that request carries [`TOKEN_REFRESH_METADATA`] so that AA attests again instead of
/// answering from its cache.
pub struct AaTokenProvider {
    aa: AaClient,
    tokens_handed_out: AtomicU64,
}

impl fmt::Debug for AaTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AaTokenProvider")
            .field("addr", &self.aa.addr())
            .field("timeout", &self.aa.timeout())
            .field("tokens_handed_out", &self.tokens_handed_out())
            .finish_non_exhaustive()
    }
}

impl AaTokenProvider {
    /// A provider for AA at `addr` (`unix:///...`); nothing is connected yet.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            aa: AaClient::new(addr, AA_TOKEN_TIMEOUT),
            tokens_handed_out: AtomicU64::new(0),
        }
    }

    /// The same provider with another limit per `GetToken` call.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            aa: AaClient::new(self.aa.addr(), timeout),
            ..self
        }
    }

    /// How many tokens this provider has handed out.
    pub fn tokens_handed_out(&self) -> u64 {
        self.tokens_handed_out.load(Ordering::Acquire)
    }

    /// AA's `GetToken("kbs")` reply bytes; `refresh` asks AA to attest again.
    async fn request_token(&self, refresh: bool) -> Result<Zeroizing<Vec<u8>>, AaTokenError> {
        let reply = if refresh {
            self.aa.get_fresh_token(KBS_TOKEN_TYPE).await
        } else {
            self.aa.get_token(KBS_TOKEN_TYPE).await
        };
        reply.map_err(|e| self.token_error(e))
    }

    /// The caller's view of a failed call: named for AA and for `GetToken("kbs")`.
    fn token_error(&self, error: CallError) -> AaTokenError {
        let addr = self.aa.addr().to_string();
        match error {
            CallError::Connect { addr, source } => AaTokenError::Connect { addr, source },
            CallError::Status { code, message, .. } => AaTokenError::Status { code, message },
            CallError::Transport { source, .. } => AaTokenError::Transport { addr, source },
            CallError::Timeout { timeout, .. } => AaTokenError::Timeout { addr, timeout },
            // GetToken's answer is bytes: nothing in it can have the wrong shape here
            CallError::BadAnswer { method, reason } => AaTokenError::Transport {
                addr,
                source: ttrpc::Error::Others(format!("{method}: {reason}")),
            },
        }
    }
}

#[async_trait]
impl TokenProvider for AaTokenProvider {
    async fn get_token(&self, need: TokenNeed) -> Result<(Token, TeeKeyPair), ProviderError> {
        let refresh = need == TokenNeed::NewAttestation;
        let reply = self.request_token(refresh).await?;
        let (token, keypair) = decode_aa_token_reply(&reply).map_err(AaTokenError::Reply)?;
        self.tokens_handed_out.fetch_add(1, Ordering::AcqRel);
        debug!(refresh, expires_at = ?token.expires_at(), "got a KBS token from the attestation agent");
        Ok((token, keypair))
    }
}

/// How a shared KBS request ended; every reader that joined it gets a copy.
type FetchOutcome = Result<Arc<Zeroizing<Vec<u8>>>, FetchFailure>;

#[derive(Debug, Clone)]
enum FetchFailure {
    Kbs(kbs_protocol::Error),
    /// no request slot within the wait
    Busy(Duration),
}

/// A KBS request that concurrent readers of the same resource await together.
type SharedFetch = Shared<BoxFuture<'static, FetchOutcome>>;

/// The `cc_kbc` KBC: one passport-mode [`KbsClient`] with tokens from AA.
pub struct CcKbc {
    client: KbsClient,
    tokens: Arc<AaTokenProvider>,
    /// requests in flight, by KBS path
    in_flight: Arc<std::sync::Mutex<HashMap<String, SharedFetch>>>,
    slots: Arc<Semaphore>,
    slot_wait: Duration,
}

impl fmt::Debug for CcKbc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CcKbc")
            .field("client", &self.client)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl CcKbc {
    /// `cc_kbc` for the KBS at `kbs_url` (trusting `kbs_cert` besides the public roots)
    /// with tokens from AA at `aa_socket`. Nothing is contacted before the first request.
    pub fn new(kbs_url: &str, kbs_cert: Option<&str>, aa_socket: &str) -> Result<Self, KbcError> {
        if kbs_url.is_empty() {
            return Err(KbcError::MissingKbsUrl);
        }
        let mut config = KbsClientConfig::new(kbs_url).map_err(|e| KbcError::Setup(Box::new(e)))?;
        // `kbs_cert = ""` (upstream's example config) means no certificate
        config.extra_root_certs_pem.extend(
            kbs_cert
                .filter(|pem| !pem.trim().is_empty())
                .map(str::to_string),
        );
        Self::with_config(config, AaTokenProvider::new(aa_socket))
    }

    /// `cc_kbc` with a client configuration and token provider of the caller's choosing.
    pub fn with_config(config: KbsClientConfig, tokens: AaTokenProvider) -> Result<Self, KbcError> {
        let tokens = Arc::new(tokens);
        let client = KbsClient::passport(config, tokens.clone())
            .map_err(|e| KbcError::Setup(Box::new(e)))?;
        Ok(Self {
            client,
            tokens,
            in_flight: Arc::default(),
            slots: Arc::new(Semaphore::new(MAX_KBS_REQUESTS)),
            slot_wait: KBS_SLOT_WAIT,
        })
    }

    /// At most `requests` KBS requests in flight; a read waits at most `wait` for a slot.
    pub fn with_request_limit(mut self, requests: usize, wait: Duration) -> Self {
        self.slots = Arc::new(Semaphore::new(requests.max(1)));
        self.slot_wait = wait;
        self
    }

    /// The request in flight for `uri`, or a new one that later readers join.
    fn shared_fetch(&self, key: &str, uri: &ResourceUri) -> SharedFetch {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(fetch) = in_flight.get(key) {
            return fetch.clone();
        }
        let (client, slots, wait, uri) = (
            self.client.clone(),
            self.slots.clone(),
            self.slot_wait,
            uri.clone(),
        );
        let fetch = async move {
            let _slot = tokio::time::timeout(wait, slots.acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or(FetchFailure::Busy(wait))?;
            client
                .get_resource(&uri)
                .await
                .map(Arc::new)
                .map_err(FetchFailure::Kbs)
        }
        .boxed()
        .shared();
        in_flight.insert(key.to_string(), fetch.clone());
        fetch
    }

    /// Forgets `fetch` once it has ended, unless a newer request took its place.
    fn finished(&self, key: &str, fetch: &SharedFetch) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if in_flight
            .get(key)
            .is_some_and(|current| current.ptr_eq(fetch))
        {
            in_flight.remove(key);
        }
    }

    /// The token provider (its counters show how often AA was asked).
    pub fn token_provider(&self) -> &AaTokenProvider {
        &self.tokens
    }
}

/// The KBC error for a failed fetch of `uri`.
fn kbc_error(uri: &ResourceUri, error: kbs_protocol::Error) -> KbcError {
    match error {
        kbs_protocol::Error::NotFound { .. } => KbcError::NotFound(uri.to_string()),
        kbs_protocol::Error::Unauthorized { .. } | kbs_protocol::Error::Forbidden { .. } => {
            KbcError::Denied {
                uri: uri.to_string(),
                source: Box::new(error),
            }
        }
        other => KbcError::Kbs {
            uri: uri.to_string(),
            source: Box::new(other),
        },
    }
}

#[async_trait]
impl Kbc for CcKbc {
    async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
        if let Some(host) = uri.host() {
            debug!(%uri, host, kbs = %self.client.config().url, "the host in a resource URI is ignored; using the configured KBS");
        }
        let key = uri.kbs_path();
        let fetch = self.shared_fetch(&key, uri);
        let outcome = fetch.clone().await;
        self.finished(&key, &fetch);
        match outcome {
            // each reader gets its own copy, zeroized when it drops it
            Ok(bytes) => Ok(Zeroizing::new(bytes.to_vec())),
            Err(FetchFailure::Kbs(e)) => Err(kbc_error(uri, e)),
            Err(FetchFailure::Busy(waited)) => Err(KbcError::Busy {
                uri: uri.to_string(),
                waited,
            }),
        }
    }
}
