//! ttRPC clients of the attestation agent and the confidential data hub.
//!
//! Each daemon gets one connection, opened on the first request (the daemons may start
//! after the shim) and shared by all requests. A reading call that fails on the connection
//! itself, rather than with a status from the daemon, drops that connection, reconnects
//! once and retries, so a daemon restarted on the same socket is picked up by the next
//! request. `ExtendRuntimeMeasurement` changes state (a register and the event log), so it
//! is never sent twice: it goes over a connection of its own, opened for that call, which
//! also cannot be a stale one. One deadline covers connecting, the call and the retry.

use std::{fmt, future::Future, time::Duration};

use protos::{
    api::GetResourceRequest,
    api_ttrpc::GetResourceServiceClient,
    attestation_agent::{
        ExtendRuntimeMeasurementRequest, GetAdditionalEvidenceRequest, GetAdditionalTeesRequest,
        GetEvidenceRequest, GetTeeTypeRequest, GetTokenRequest, RuntimeMeasurementResult,
    },
    attestation_agent_ttrpc::AttestationAgentServiceClient,
};
use tokio::{
    sync::Mutex,
    time::{timeout_at, Instant},
};
use ttrpc::r#async::Client;
use zeroize::Zeroizing;

use crate::aael::AaelEvent;

/// Default ttRPC address of the attestation agent.
pub const DEFAULT_AA_ADDR: &str =
    "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock";
/// Default ttRPC address of the confidential data hub.
pub const DEFAULT_CDH_ADDR: &str = "unix:///run/confidential-containers/cdh.sock";
/// Default limit for one backend call, connecting and the retry included (as upstream).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(50);

/// The daemon behind a backend call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// the attestation agent
    AttestationAgent,
    /// the confidential data hub
    ConfidentialDataHub,
}

impl fmt::Display for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AttestationAgent => "attestation agent",
            Self::ConfidentialDataHub => "confidential data hub",
        })
    }
}

/// A backend call that did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The daemon's socket could not be connected (daemon not running, wrong address).
    #[error("cannot connect to the {daemon} at {addr}: {source}")]
    Connect {
        /// the daemon
        daemon: Daemon,
        /// its ttRPC address
        addr: String,
        /// the cause
        source: ttrpc::Error,
    },
    /// The daemon answered with an error status.
    #[error("the {daemon} answered {method} with {code:?}: {message}")]
    Status {
        /// the daemon
        daemon: Daemon,
        /// the ttRPC method
        method: &'static str,
        /// the status code
        code: ttrpc::Code,
        /// the status message
        message: String,
    },
    /// The connection failed during the call, also after one reconnect.
    #[error("{method} to the {daemon} failed on the connection: {source}")]
    Transport {
        /// the daemon
        daemon: Daemon,
        /// the ttRPC method
        method: &'static str,
        /// the cause
        source: ttrpc::Error,
    },
    /// The daemon answered with a result value this shim does not know.
    #[error("the {daemon} answered {method} with the unknown result value {value}")]
    UnknownResult {
        /// the daemon
        daemon: Daemon,
        /// the ttRPC method
        method: &'static str,
        /// the raw enum value
        value: i32,
    },
    /// No answer within the configured time.
    #[error("{method} to the {daemon} got no answer within {timeout:?}")]
    Timeout {
        /// the daemon
        daemon: Daemon,
        /// the ttRPC method
        method: &'static str,
        /// the configured limit
        timeout: Duration,
    },
}

impl BackendError {
    /// Whether the daemon said the thing asked for does not exist (`NOT_FOUND`).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Status {
                code: ttrpc::Code::NOT_FOUND,
                ..
            }
        )
    }

    /// The daemon's message when it refused the request as invalid (`INVALID_ARGUMENT`):
    /// it describes the caller's own input.
    pub fn invalid_argument_message(&self) -> Option<&str> {
        match self {
            Self::Status {
                code: ttrpc::Code::INVALID_ARGUMENT,
                message,
                ..
            } => Some(message),
            _ => None,
        }
    }
}

/// What the attestation agent did with a runtime event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasurementOutcome {
    /// recorded in the event log and extended into the register
    Recorded,
    /// the TEE has no runtime-measurement registers
    NotSupported,
    /// the agent's event log is off (`[eventlog_config] enable_eventlog = false`)
    NotEnabled,
}

/// Addresses and limits of the backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// ttRPC address of the attestation agent
    pub aa_addr: String,
    /// ttRPC address of the confidential data hub
    pub cdh_addr: String,
    /// limit for one call, connecting and the retry included
    pub timeout: Duration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            aa_addr: DEFAULT_AA_ADDR.to_string(),
            cdh_addr: DEFAULT_CDH_ADDR.to_string(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The current connection to one daemon; `generation` tells connections apart so a request
/// that saw an old connection fail does not drop a newer one another request opened.
struct Slot {
    generation: u64,
    client: Option<Client>,
}

/// A connection to one daemon, opened on first use and replaced when it breaks.
struct LazyClient {
    daemon: Daemon,
    addr: String,
    slot: Mutex<Slot>,
}

impl fmt::Debug for LazyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyClient")
            .field("daemon", &self.daemon)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LazyClient {
    fn new(daemon: Daemon, addr: String) -> Self {
        Self {
            daemon,
            addr,
            slot: Mutex::new(Slot {
                generation: 0,
                client: None,
            }),
        }
    }

    /// A new connection, not shared.
    async fn connect(&self) -> Result<Client, BackendError> {
        let client = Client::connect(&self.addr)
            .await
            .map_err(|source| BackendError::Connect {
                daemon: self.daemon,
                addr: self.addr.clone(),
                source,
            })?;
        tracing::debug!(daemon = %self.daemon, addr = %self.addr, "connected");
        Ok(client)
    }

    /// The live connection, connecting first if there is none. The lock is held while
    /// connecting so concurrent first requests open one connection, not many.
    async fn get(&self) -> Result<(u64, Client), BackendError> {
        let mut slot = self.slot.lock().await;
        if let Some(client) = &slot.client {
            return Ok((slot.generation, client.clone()));
        }
        let client = self.connect().await?;
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
}

/// The two daemons the shim forwards to.
#[derive(Debug)]
pub struct Backends {
    aa: LazyClient,
    cdh: LazyClient,
    timeout: Duration,
}

impl Backends {
    /// Clients for the configured addresses; nothing is connected yet.
    pub fn new(config: BackendConfig) -> Self {
        Self {
            aa: LazyClient::new(Daemon::AttestationAgent, config.aa_addr),
            cdh: LazyClient::new(Daemon::ConfidentialDataHub, config.cdh_addr),
            timeout: config.timeout,
        }
    }

    /// CDH `GetResource` for a `kbs://` resource URI.
    pub async fn get_resource(&self, uri: &str) -> Result<Vec<u8>, BackendError> {
        let req = GetResourceRequest {
            ResourcePath: uri.to_string(),
            ..Default::default()
        };
        let resp = self
            .call(&self.cdh, "GetResource", |client, ctx| {
                let req = &req;
                async move {
                    GetResourceServiceClient::new(client)
                        .get_resource(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(resp.Resource)
    }

    /// AA `GetEvidence` bound to `runtime_data`.
    pub async fn get_evidence(&self, runtime_data: Vec<u8>) -> Result<Vec<u8>, BackendError> {
        let req = GetEvidenceRequest {
            RuntimeData: runtime_data,
            ..Default::default()
        };
        let resp = self
            .call(&self.aa, "GetEvidence", |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_evidence(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(resp.Evidence)
    }

    /// AA `GetAdditionalEvidence` bound to `runtime_data` (empty when there are no devices).
    pub async fn get_additional_evidence(
        &self,
        runtime_data: Vec<u8>,
    ) -> Result<Vec<u8>, BackendError> {
        let req = GetAdditionalEvidenceRequest {
            RuntimeData: runtime_data,
            ..Default::default()
        };
        let resp = self
            .call(&self.aa, "GetAdditionalEvidence", |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_additional_evidence(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(resp.Evidence)
    }

    /// AA `GetToken` for `token_type` (`kbs`, `coco_as`): the token bytes as AA answers
    /// them, wiped from memory when dropped (a `kbs` reply carries the TEE private key).
    pub async fn get_token(&self, token_type: &str) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let req = GetTokenRequest {
            TokenType: token_type.to_string(),
            ..Default::default()
        };
        let mut resp = self
            .call(&self.aa, "GetToken", |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_token(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(Zeroizing::new(std::mem::take(&mut resp.Token)))
    }

    /// AA `GetTeeType`.
    pub async fn tee_type(&self) -> Result<String, BackendError> {
        let req = GetTeeTypeRequest::default();
        let resp = self
            .call(&self.aa, "GetTeeType", |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_tee_type(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(resp.tee)
    }

    /// AA `GetAdditionalTees`.
    pub async fn additional_tees(&self) -> Result<Vec<String>, BackendError> {
        let req = GetAdditionalTeesRequest::default();
        let resp = self
            .call(&self.aa, "GetAdditionalTees", |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .get_additional_tees(ctx, req)
                        .await
                }
            })
            .await?;
        Ok(resp.additional_tees)
    }

    /// AA `ExtendRuntimeMeasurement` for `event`, sent at most once (see the module
    /// comment). `register_index` is forwarded only when the caller gave one.
    pub async fn extend_runtime_measurement(
        &self,
        event: &AaelEvent,
    ) -> Result<MeasurementOutcome, BackendError> {
        const METHOD: &str = "ExtendRuntimeMeasurement";
        let req = ExtendRuntimeMeasurementRequest {
            Domain: event.domain.clone(),
            Operation: event.operation.clone(),
            Content: event.content.clone(),
            RegisterIndex: event.register_index,
            ..Default::default()
        };
        let resp = self
            .call_once(&self.aa, METHOD, |client, ctx| {
                let req = &req;
                async move {
                    AttestationAgentServiceClient::new(client)
                        .extend_runtime_measurement(ctx, req)
                        .await
                }
            })
            .await?;
        match resp.Result.enum_value() {
            Ok(RuntimeMeasurementResult::OK) => Ok(MeasurementOutcome::Recorded),
            Ok(RuntimeMeasurementResult::NOT_SUPPORTED) => Ok(MeasurementOutcome::NotSupported),
            Ok(RuntimeMeasurementResult::NOT_ENABLED) => Ok(MeasurementOutcome::NotEnabled),
            Err(value) => Err(BackendError::UnknownResult {
                daemon: self.aa.daemon,
                method: METHOD,
                value,
            }),
        }
    }

    /// Runs `rpc` on the daemon's connection within the deadline; on a connection failure
    /// reconnects once and runs it again.
    async fn call<T, F, Fut>(
        &self,
        backend: &LazyClient,
        method: &'static str,
        rpc: F,
    ) -> Result<T, BackendError>
    where
        F: Fn(Client, ttrpc::context::Context) -> Fut,
        Fut: Future<Output = ttrpc::Result<T>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut retried = false;
        loop {
            let (generation, client) = timeout_at(deadline, backend.get())
                .await
                .map_err(|_| self.timed_out(backend, method))??;
            let ctx = self.context_until(deadline, backend, method)?;
            match timeout_at(deadline, rpc(client, ctx)).await {
                Err(_) => return Err(self.timed_out(backend, method)),
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(ttrpc::Error::RpcStatus(status))) => {
                    return Err(status_error(backend, method, &status))
                }
                Ok(Err(source)) => {
                    backend.forget(generation).await;
                    if Instant::now() >= deadline {
                        return Err(self.timed_out(backend, method));
                    }
                    if retried {
                        return Err(BackendError::Transport {
                            daemon: backend.daemon,
                            method,
                            source,
                        });
                    }
                    tracing::info!(
                        daemon = %backend.daemon,
                        method,
                        error = %source,
                        "connection lost; reconnecting once"
                    );
                    retried = true;
                }
            }
        }
    }

    /// Runs `rpc` once, within the deadline, on a connection opened for it: for calls
    /// that must not be repeated. A connection failure after sending leaves open whether
    /// the daemon acted; it is reported, never retried.
    async fn call_once<T, F, Fut>(
        &self,
        backend: &LazyClient,
        method: &'static str,
        rpc: F,
    ) -> Result<T, BackendError>
    where
        F: FnOnce(Client, ttrpc::context::Context) -> Fut,
        Fut: Future<Output = ttrpc::Result<T>>,
    {
        let deadline = Instant::now() + self.timeout;
        let client = timeout_at(deadline, backend.connect())
            .await
            .map_err(|_| self.timed_out(backend, method))??;
        let ctx = self.context_until(deadline, backend, method)?;
        match timeout_at(deadline, rpc(client, ctx)).await {
            Err(_) => Err(self.timed_out(backend, method)),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(ttrpc::Error::RpcStatus(status))) => Err(status_error(backend, method, &status)),
            Ok(Err(source)) => Err(BackendError::Transport {
                daemon: backend.daemon,
                method,
                source,
            }),
        }
    }

    /// A ttRPC context whose timeout ends at `deadline`.
    fn context_until(
        &self,
        deadline: Instant,
        backend: &LazyClient,
        method: &'static str,
    ) -> Result<ttrpc::context::Context, BackendError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            // a zero ttRPC timeout would mean "wait forever"
            return Err(self.timed_out(backend, method));
        }
        let nanos = i64::try_from(remaining.as_nanos()).unwrap_or(i64::MAX);
        Ok(ttrpc::context::with_timeout(nanos))
    }

    fn timed_out(&self, backend: &LazyClient, method: &'static str) -> BackendError {
        BackendError::Timeout {
            daemon: backend.daemon,
            method,
            timeout: self.timeout,
        }
    }
}

fn status_error(
    backend: &LazyClient,
    method: &'static str,
    status: &ttrpc::Status,
) -> BackendError {
    BackendError::Status {
        daemon: backend.daemon,
        method,
        code: status.code(),
        message: status.message().to_string(),
    }
}
