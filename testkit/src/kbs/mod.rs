//! A KBS for tests, written from the protocol description and trustee's observed behaviour,
//! never more lenient than trustee:
//!
//! - `POST /kbs/v0/auth`: exact semver version check (`=0.4.0`; `0.4.0+build` passes), known
//!   TEE names only, a fresh 32-byte nonce and a `kbs-session-id=<hex>; Expires=...` cookie;
//! - `POST /kbs/v0/attest`: the session's nonce is usable once (stricter than trustee, which
//!   replays the old token), the JCS report data is recomputed and compared with the sample
//!   evidence's `report_data` exactly (no padding), device evidence (`sampledevice`) against
//!   the device binding; the reply is an ES256 JWT carrying the TEE key under trustee's EAR
//!   claim path `submods.cpu0."ear.veraison.annotated-evidence".runtime_data_claims."tee-pubkey"`;
//! - `GET /kbs/v0/resource/<repo>/<type>/<tag>`: token from the session cookie or
//!   `Authorization: Bearer`, signature and `exp` checked (no grace), a per-path policy
//!   (denial answered 401 `PolicyDeny` like the checked trustee), a missing resource answered
//!   401 `PluginInternalError` like trustee (or 404 by switch), the reply wrapped as a JWE for
//!   the key in the token (ECDH-ES+A256KW on P-256/P-521, RSA-OAEP-256, RSA1_5, and
//!   trustee's experimental ML-KEM-768+A192KW for an `AKP` key);
//! - `POST /kbs/v0/resource/<repo>/<type>/<tag>`: trustee's admin API, the body stored as
//!   the resource, authorized by `Authorization: Bearer <JWT>` signed EdDSA with the admin
//!   key ([`KbsConfig::admin_public_key`]; signature, `alg`, `exp`/`nbf`/`iat` checked); a bad
//!   or missing token is 401 `AdminAuthAccess`, a path outside trustee's resource pattern
//!   401 `PluginInternalError`, success 200 with an empty body;
//! - other plugins are 404 `PluginNotFound`; HTTPS with a generated CA on request.
//!
//! Fault switches (500s, 401 storms, delays, dropped connections, replies reset mid-body,
//! never ending or oversized, corrupted or misaddressed JWE, reused or malformed nonces,
//! clock skew, a reply-rate throttle), counters, token revocation and restart on the same
//! port let tests drive every client path.

mod crypto;
mod server;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use crypto::{corrupt_jwe, encrypt_for_jwk, JweCorruption};

/// How the KBS answers a read of a resource it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingResource {
    /// 401 `PluginInternalError`, as trustee does.
    #[default]
    Unauthorized,
    /// 404 (for clients' not-found paths).
    NotFound,
}

/// Policy decision for a resource path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    Allow,
    Deny,
}

/// Start-up configuration.
#[derive(Debug, Clone)]
pub struct KbsConfig {
    /// Serve HTTPS with a generated CA ([`TestKbs::ca_pem`]).
    pub tls: bool,
    /// Session (cookie) lifetime.
    pub session_lifetime: Duration,
    /// Lifetime of issued tokens (`exp`).
    pub token_lifetime: Duration,
    /// Semver requirement on the client's protocol version.
    pub version_requirement: String,
    /// `selected-hash-algorithm` put in the challenge (`None`: `extra-params` is `""` and the
    /// binding uses SHA-384).
    pub selected_hash_algorithm: Option<String>,
    pub missing_resource: MissingResource,
    /// Status of a policy denial: 401 (trustee as checked) or 403 (newer trustee).
    pub policy_deny_status: u16,
    /// Decision for paths without an explicit rule.
    pub default_access: Access,
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// The admin key (Ed25519 `PUBLIC KEY` PEM, as trustee's `auth_public_key`); `None`
    /// refuses every admin request, as trustee with no admin persona does.
    pub admin_public_key: Option<String>,
}

impl Default for KbsConfig {
    fn default() -> Self {
        Self {
            tls: false,
            session_lifetime: Duration::from_secs(300),
            token_lifetime: Duration::from_secs(300),
            version_requirement: "=0.4.0".to_string(),
            selected_hash_algorithm: None,
            missing_resource: MissingResource::default(),
            policy_deny_status: 401,
            default_access: Access::Allow,
            port: 0,
            admin_public_key: None,
        }
    }
}

/// Which requests the fault switches hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultTarget {
    #[default]
    All,
    Auth,
    Attest,
    Resource,
}

/// How the challenge (`/auth` reply) nonce is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonceFault {
    #[default]
    Fresh,
    /// Every challenge carries the same nonce (the sessions still work).
    Reused,
    /// `""`
    Empty,
    /// A 1 MiB string.
    Oversized,
    /// A number instead of a string.
    NotAString,
}

/// How a matching reply is broken on the wire (a 200 whose body never completes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFault {
    /// `Content-Length: 4096`, 1,000 bytes, then the connection is reset.
    ResetMidBody,
    /// Chunked, one byte every 100 ms, never finishing (slowloris).
    NeverEnding,
    /// Chunked, 64 KiB chunks as fast as the client reads, never finishing.
    Oversized,
    /// `Content-Length` of 1 TiB, then data as fast as the client reads.
    OversizedDeclared,
}

/// Fault switches; replace them with [`TestKbs::set_faults`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub target: FaultTarget,
    /// The next N matching requests are answered 500.
    pub fail_with_500: u32,
    /// The next N matching requests are answered 401 as trustee refuses (`AttestationError`
    /// on `/auth` and `/attest`, `TokenVerifierError` on resources).
    pub fail_with_401: u32,
    /// Every matching request gets this broken reply.
    pub broken_reply: Option<ReplyFault>,
    /// Challenges carry this nonce.
    pub nonce: NonceFault,
    /// Seconds added to the KBS's clock when it issues and checks tokens (clock skew).
    pub clock_offset_secs: i64,
    /// Matching replies leave at most this many per second, in arrival order (0: no limit).
    pub max_replies_per_sec: u32,
    /// The next N matching requests get their connection closed without a reply.
    pub drop_connections: u32,
    /// Every matching request waits this long first.
    pub delay: Duration,
    /// Resource replies are damaged this way.
    pub corrupt_jwe: Option<JweCorruption>,
    /// RSA keys get `RSA1_5` instead of the algorithm their JWK announces.
    pub force_rsa1_5: bool,
}

/// Request counters (all requests that reached the handler, whatever their outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub auth: u64,
    pub attest: u64,
    /// Attestations that produced a token.
    pub attest_ok: u64,
    pub resource_get: u64,
    /// Resource reads answered 200.
    pub resource_ok: u64,
    /// Admin writes (`POST /kbs/v0/resource/...`).
    pub resource_post: u64,
    /// Admin writes that stored a resource.
    pub resource_post_ok: u64,
}

/// One admin write the KBS accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminWrite {
    /// `repo/type/tag`
    pub path: String,
    /// the request's `Content-Type`, if any
    pub content_type: Option<String>,
    /// the JOSE header of the admin token
    pub header: Value,
    /// the claims of the admin token
    pub claims: Value,
}

#[derive(Default)]
pub(crate) struct AtomicCounters {
    pub auth: AtomicU64,
    pub attest: AtomicU64,
    pub attest_ok: AtomicU64,
    pub resource_get: AtomicU64,
    pub resource_ok: AtomicU64,
    pub resource_post: AtomicU64,
    pub resource_post_ok: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Everything the server shares between connections (and keeps across restarts).
pub(crate) struct KbsState {
    pub config: KbsConfig,
    pub sessions: Mutex<HashMap<String, server::Session>>,
    pub resources: Mutex<HashMap<String, Vec<u8>>>,
    pub policy: Mutex<HashMap<String, Access>>,
    pub faults: Mutex<Faults>,
    pub signer: Mutex<Arc<crypto::TokenSigner>>,
    pub counters: AtomicCounters,
    pub last_init_data: Mutex<Option<Value>>,
    pub last_tee_pubkey: Mutex<Option<Value>>,
    pub admin: Option<crypto::AdminVerifier>,
    pub admin_writes: Mutex<Vec<AdminWrite>>,
    /// When the next throttled reply may leave.
    pub throttle_next: Mutex<std::time::Instant>,
    /// The nonce of [`NonceFault::Reused`].
    pub reused_nonce: String,
}

/// A running test KBS. Dropping it stops the server.
pub struct TestKbs {
    state: Arc<KbsState>,
    addr: SocketAddr,
    tls: Option<Arc<tls::TlsMaterial>>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestKbs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKbs").field("url", &self.url()).finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TestKbs {
    /// Binds 127.0.0.1 and starts serving.
    pub async fn start(config: KbsConfig) -> std::io::Result<Self> {
        let tls = if config.tls {
            Some(Arc::new(tls::generate().map_err(std::io::Error::other)?))
        } else {
            None
        };
        let admin = match &config.admin_public_key {
            Some(pem) => Some(
                crypto::AdminVerifier::from_pem(pem)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(KbsState {
            config,
            sessions: Mutex::new(HashMap::new()),
            resources: Mutex::new(HashMap::new()),
            policy: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
            signer: Mutex::new(Arc::new(crypto::TokenSigner::generate())),
            counters: AtomicCounters::default(),
            last_init_data: Mutex::new(None),
            last_tee_pubkey: Mutex::new(None),
            admin,
            admin_writes: Mutex::new(Vec::new()),
            throttle_next: Mutex::new(std::time::Instant::now()),
            reused_nonce: server::fresh_nonce(),
        });
        let server = tokio::spawn(server::serve(listener, state.clone(), tls.clone()));
        Ok(Self {
            state,
            addr,
            tls,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:<port>` or `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the server certificate (HTTPS only).
    pub fn ca_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|tls| tls.ca_pem.clone())
    }

    pub fn counters(&self) -> Counters {
        let c = &self.state.counters;
        Counters {
            auth: c.auth.load(Ordering::Relaxed),
            attest: c.attest.load(Ordering::Relaxed),
            attest_ok: c.attest_ok.load(Ordering::Relaxed),
            resource_get: c.resource_get.load(Ordering::Relaxed),
            resource_ok: c.resource_ok.load(Ordering::Relaxed),
            resource_post: c.resource_post.load(Ordering::Relaxed),
            resource_post_ok: c.resource_post_ok.load(Ordering::Relaxed),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.state.faults) = faults;
    }

    /// Stores a resource under `repo/type/tag`.
    pub fn put_resource(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        lock(&self.state.resources).insert(path.to_string(), bytes.into());
    }

    /// The resource stored under `repo/type/tag`, if any.
    pub fn resource(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.state.resources).get(path).cloned()
    }

    /// The admin writes accepted so far, oldest first.
    pub fn admin_writes(&self) -> Vec<AdminWrite> {
        lock(&self.state.admin_writes).clone()
    }

    pub fn remove_resource(&self, path: &str) {
        lock(&self.state.resources).remove(path);
    }

    /// Sets the policy decision for `repo/type/tag`.
    pub fn set_access(&self, path: &str, access: Access) {
        lock(&self.state.policy).insert(path.to_string(), access);
    }

    /// Replaces the token signing key: every token issued so far is refused (as after a
    /// KBS restart with an ephemeral key).
    pub fn revoke_tokens(&self) {
        *lock(&self.state.signer) = Arc::new(crypto::TokenSigner::generate());
    }

    /// Forgets every session (cookies become unknown), keeping tokens valid.
    pub fn drop_sessions(&self) {
        lock(&self.state.sessions).clear();
    }

    /// The `tee-pubkey` (as the KBS keeps it) of the last successful attestation.
    pub fn last_tee_pubkey(&self) -> Option<Value> {
        lock(&self.state.last_tee_pubkey).clone()
    }

    /// The `init-data` of the last successful attestation.
    pub fn last_init_data(&self) -> Option<Value> {
        lock(&self.state.last_init_data).clone()
    }

    /// Stops serving, then serves again on the same port. Resources, policy and the token
    /// key survive; sessions do not.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.halt().await;
        self.drop_sessions();
        let listener = TcpListener::bind(self.addr).await?;
        self.server = Some(tokio::spawn(server::serve(
            listener,
            self.state.clone(),
            self.tls.clone(),
        )));
        Ok(())
    }

    /// Stops serving and closes every connection.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    async fn halt(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            // Waiting for the cancelled task guarantees the listener is closed.
            let _ = server.await;
        }
    }
}

impl Drop for TestKbs {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
