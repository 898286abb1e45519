//! ttRPC clients between the daemons: [`Connection`], one connection to a daemon that is
//! opened on first use, shared by concurrent calls and replaced when it breaks, and
//! [`AaClient`], the typed attestation-agent client on top of it that the REST shim, the
//! KBS client of the data hub and the hub's own tools use.
//!
//! One deadline covers connecting, the call and the retry. A call that fails on the
//! connection itself (not with a status from the daemon) drops that connection, reconnects
//! once and is sent again, so a daemon restarted on the same socket is picked up by the next
//! call. A call that changes state ([`AaClient::extend_runtime_measurement`]) is never sent
//! twice: it goes over a connection of its own, which also cannot be a stale one.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use tokio::{
    sync::Mutex,
    time::{timeout_at, Instant},
};
use ttrpc::r#async::Client;
use zeroize::Zeroizing;

use crate::{
    attestation_agent::{
        BindInitDataRequest, ExtendRuntimeMeasurementRequest, GetAdditionalEvidenceRequest,
        GetAdditionalTeesRequest, GetEvidenceRequest, GetTeeTypeRequest, GetTokenRequest,
        RuntimeMeasurementResult,
    },
    attestation_agent_ttrpc::AttestationAgentServiceClient,
};

/// ttRPC metadata key asking the attestation agent to attest again rather than answer
/// `GetToken` from its token cache (sent after the KBS refused a token).
pub const TOKEN_REFRESH_METADATA_KEY: &str = "coco-token-refresh";
/// The value of [`TOKEN_REFRESH_METADATA_KEY`] that forces a new attestation.
pub const TOKEN_REFRESH_METADATA_VALUE: &str = "1";

/// Why a call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The socket could not be connected (daemon not running, wrong address).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// the ttRPC address
        addr: String,
        /// the cause
        source: ttrpc::Error,
    },
    /// The daemon answered with an error status.
    #[error("{method} failed with {code:?}: {message}")]
    Status {
        /// the ttRPC method
        method: &'static str,
        /// the status code
        code: ttrpc::Code,
        /// the daemon's message
        message: String,
    },
    /// The connection failed during the call (for a retried call: also after the
    /// reconnect).
    #[error("{method} to {addr} failed on the connection: {source}")]
    Transport {
        /// the ttRPC address
        addr: String,
        /// the ttRPC method
        method: &'static str,
        /// the cause
        source: ttrpc::Error,
    },
    /// No answer within the limit.
    #[error("{method} to {addr} got no answer within {timeout:?}")]
    Timeout {
        /// the ttRPC address
        addr: String,
        /// the ttRPC method
        method: &'static str,
        /// the limit
        timeout: Duration,
    },
    /// The answer does not have the expected shape.
    #[error("{method} answered something unexpected: {reason}")]
    BadAnswer {
        /// the ttRPC method
        method: &'static str,
        /// what is wrong
        reason: String,
    },
}

impl CallError {
    /// The daemon's status code, if it answered with one.
    pub fn code(&self) -> Option<ttrpc::Code> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The current connection; `generation` tells connections apart so that a caller who saw
/// an old connection fail does not drop a newer one another caller opened.
struct Slot {
    generation: u64,
    client: Option<Client>,
}

/// A connection to one daemon, opened on first use and replaced when it breaks; clones
/// share it.
#[derive(Clone)]
pub struct Connection {
    addr: String,
    slot: Arc<Mutex<Slot>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection to `addr` (`unix:///...`); nothing is connected yet.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            slot: Arc::new(Mutex::new(Slot {
                generation: 0,
                client: None,
            })),
        }
    }

    /// The daemon's ttRPC address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Opens the shared connection now (within `timeout`) instead of on the first call, for
    /// callers that report an absent daemon before doing anything else.
    pub async fn connect(&self, timeout: Duration) -> Result<(), CallError> {
        match tokio::time::timeout(timeout, self.shared()).await {
            Ok(connected) => connected.map(|_| ()),
            Err(_) => Err(CallError::Connect {
                addr: self.addr.clone(),
                source: ttrpc::Error::Others(format!("connecting took longer than {timeout:?}")),
            }),
        }
    }

    /// A new connection, not shared.
    async fn open(&self) -> Result<Client, CallError> {
        let client = Client::connect(&self.addr)
            .await
            .map_err(|source| CallError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        tracing::debug!(addr = %self.addr, "connected");
        Ok(client)
    }

    /// The live connection, connecting first if there is none. The lock is held while
    /// connecting so that concurrent first calls open one connection, not many.
    async fn shared(&self) -> Result<(u64, Client), CallError> {
        let mut slot = self.slot.lock().await;
        if let Some(client) = &slot.client {
            return Ok((slot.generation, client.clone()));
        }
        let client = self.open().await?;
        slot.generation += 1;
        slot.client = Some(client.clone());
        Ok((slot.generation, client))
    }

    /// Drops connection `generation` if it is still the current one.
    async fn forget(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.generation == generation {
            slot.client = None;
        }
    }

    /// Runs `rpc` on the shared connection within `timeout`; on a connection failure
    /// reconnects once and runs it again. Only for calls that may be repeated.
    pub async fn call<T, F, Fut>(
        &self,
        method: &'static str,
        timeout: Duration,
        rpc: F,
    ) -> Result<T, CallError>
    where
        F: Fn(Client, ttrpc::context::Context) -> Fut,
        Fut: Future<Output = ttrpc::Result<T>>,
    {
        let deadline = Instant::now() + timeout;
        let timed_out = || self.timed_out(method, timeout);
        let mut retried = false;
        loop {
            let (generation, client) = timeout_at(deadline, self.shared())
                .await
                .map_err(|_| timed_out())??;
            let ctx = context_until(deadline).ok_or_else(timed_out)?;
            match timeout_at(deadline, rpc(client, ctx)).await {
                Err(_) => return Err(timed_out()),
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(ttrpc::Error::RpcStatus(status))) => {
                    return Err(status_error(method, &status))
                }
                // ttRPC's own deadline (set to the same instant) ends the call this way
                Ok(Err(_)) if Instant::now() >= deadline => return Err(timed_out()),
                Ok(Err(source)) => {
                    self.forget(generation).await;
                    if retried {
                        return Err(CallError::Transport {
                            addr: self.addr.clone(),
                            method,
                            source,
                        });
                    }
                    tracing::info!(addr = %self.addr, method, error = %source, "connection lost; reconnecting once");
                    retried = true;
                }
            }
        }
    }

    /// Runs `rpc` once, within `timeout`, on a connection opened for it: for calls that
    /// must not be repeated. A connection failure after sending leaves open whether the
    /// daemon acted; it is reported, never retried.
    pub async fn call_once<T, F, Fut>(
        &self,
        method: &'static str,
        timeout: Duration,
        rpc: F,
    ) -> Result<T, CallError>
    where
        F: FnOnce(Client, ttrpc::context::Context) -> Fut,
        Fut: Future<Output = ttrpc::Result<T>>,
    {
        let deadline = Instant::now() + timeout;
        let timed_out = || self.timed_out(method, timeout);
        let client = timeout_at(deadline, self.open())
            .await
            .map_err(|_| timed_out())??;
        let ctx = context_until(deadline).ok_or_else(timed_out)?;
        match timeout_at(deadline, rpc(client, ctx)).await {
            Err(_) => Err(timed_out()),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(ttrpc::Error::RpcStatus(status))) => Err(status_error(method, &status)),
            Ok(Err(_)) if Instant::now() >= deadline => Err(timed_out()),
            Ok(Err(source)) => Err(CallError::Transport {
                addr: self.addr.clone(),
                method,
                source,
            }),
        }
    }

    fn timed_out(&self, method: &'static str, timeout: Duration) -> CallError {
        CallError::Timeout {
            addr: self.addr.clone(),
            method,
            timeout,
        }
    }
}

/// A ttRPC context whose timeout ends at `deadline`; `None` once it has passed (a zero
/// ttRPC timeout would mean "no limit").
fn context_until(deadline: Instant) -> Option<ttrpc::context::Context> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return None;
    }
    Some(ttrpc::context::with_timeout(
        i64::try_from(remaining.as_nanos()).unwrap_or(i64::MAX),
    ))
}

fn status_error(method: &'static str, status: &ttrpc::Status) -> CallError {
    CallError::Status {
        method,
        code: status.code(),
        message: status.message().to_string(),
    }
}

/// The attestation agent's ttRPC service, one method per RPC, each call bounded by the
/// client's timeout (see the module documentation for reconnects). Clones share the
/// connection.
#[derive(Debug, Clone)]
pub struct AaClient {
    connection: Connection,
    timeout: Duration,
}

impl AaClient {
    /// A client of the agent at `addr` (`unix:///...`), `timeout` per call; nothing is
    /// connected yet.
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Self {
        Self {
            connection: Connection::new(addr),
            timeout,
        }
    }

    /// A client already connected (see [`Connection::connect`]).
    pub async fn connect(addr: impl Into<String>, timeout: Duration) -> Result<Self, CallError> {
        let client = Self::new(addr, timeout);
        client.connection.connect(timeout).await?;
        Ok(client)
    }

    /// The agent's ttRPC address.
    pub fn addr(&self) -> &str {
        self.connection.addr()
    }

    /// The limit per call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GetEvidence` bound to `runtime_data`.
    pub async fn get_evidence(&self, runtime_data: &[u8]) -> Result<Vec<u8>, CallError> {
        let req = GetEvidenceRequest {
            RuntimeData: runtime_data.to_vec(),
            ..Default::default()
        };
        let answer = self
            .connection
            .call("GetEvidence", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_evidence(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(answer.Evidence)
    }

    /// `GetAdditionalEvidence` bound to `runtime_data` (empty when there are no devices).
    pub async fn get_additional_evidence(&self, runtime_data: &[u8]) -> Result<Vec<u8>, CallError> {
        let req = GetAdditionalEvidenceRequest {
            RuntimeData: runtime_data.to_vec(),
            ..Default::default()
        };
        let answer = self
            .connection
            .call("GetAdditionalEvidence", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_additional_evidence(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(answer.Evidence)
    }

    /// `GetToken` of `token_type` (`kbs`, `coco_as`), possibly from the agent's cache: the
    /// token bytes as the agent answers them, wiped when dropped (a `kbs` reply carries
    /// the TEE private key).
    pub async fn get_token(&self, token_type: &str) -> Result<Zeroizing<Vec<u8>>, CallError> {
        self.token(token_type, false).await
    }

    /// `GetToken` of `token_type` from a new attestation ([`TOKEN_REFRESH_METADATA_KEY`]
    /// set): for after the KBS refused the previous token.
    pub async fn get_fresh_token(&self, token_type: &str) -> Result<Zeroizing<Vec<u8>>, CallError> {
        self.token(token_type, true).await
    }

    async fn token(&self, token_type: &str, fresh: bool) -> Result<Zeroizing<Vec<u8>>, CallError> {
        let req = GetTokenRequest {
            TokenType: token_type.to_string(),
            ..Default::default()
        };
        let mut answer = self
            .connection
            .call("GetToken", self.timeout, |client, mut ctx| {
                let req = &req;
                if fresh {
                    ctx.add(
                        TOKEN_REFRESH_METADATA_KEY.to_string(),
                        TOKEN_REFRESH_METADATA_VALUE.to_string(),
                    );
                }
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_token(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(Zeroizing::new(std::mem::take(&mut answer.Token)))
    }

    /// `ExtendRuntimeMeasurement`, sent at most once (see the module documentation);
    /// `register_index` `None` means the agent's configured default.
    pub async fn extend_runtime_measurement(
        &self,
        domain: &str,
        operation: &str,
        content: &str,
        register_index: Option<u64>,
    ) -> Result<RuntimeMeasurementResult, CallError> {
        const METHOD: &str = "ExtendRuntimeMeasurement";
        let req = ExtendRuntimeMeasurementRequest {
            Domain: domain.to_string(),
            Operation: operation.to_string(),
            Content: content.to_string(),
            RegisterIndex: register_index,
            ..Default::default()
        };
        let answer = self
            .connection
            .call_once(METHOD, self.timeout, |client, ctx| async move {
                AttestationAgentServiceClient::new(client)
                    .extend_runtime_measurement(ctx, &req)
                    .await
            })
            .await?;
        answer
            .Result
            .enum_value()
            .map_err(|value| CallError::BadAnswer {
                method: METHOD,
                reason: format!("unknown result value {value}"),
            })
    }

    /// `BindInitData` with the initdata digest, sent at most once.
    pub async fn bind_init_data(&self, digest: &[u8]) -> Result<(), CallError> {
        let req = BindInitDataRequest {
            Digest: digest.to_vec(),
            ..Default::default()
        };
        // binding changes the agent's state: sent at most once, like a measurement
        self.connection
            .call_once("BindInitData", self.timeout, |client, ctx| async move {
                AttestationAgentServiceClient::new(client)
                    .bind_init_data(ctx, &req)
                    .await
            })
            .await
            .map(|_| ())
    }

    /// `GetTeeType`.
    pub async fn get_tee_type(&self) -> Result<String, CallError> {
        let req = GetTeeTypeRequest::default();
        let answer = self
            .connection
            .call("GetTeeType", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_tee_type(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(answer.tee)
    }

    /// `GetAdditionalTees`.
    pub async fn get_additional_tees(&self) -> Result<Vec<String>, CallError> {
        let req = GetAdditionalTeesRequest::default();
        let answer = self
            .connection
            .call("GetAdditionalTees", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_additional_tees(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(answer.additional_tees)
    }
}
