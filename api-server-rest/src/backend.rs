//! ttRPC clients of the attestation agent and the confidential data hub: the suite's
//! [`AaClient`] and a [`Connection`] to the hub, from `protos`.
//!
//! Each daemon gets one connection, opened on the first request (the daemons may start
//! after the shim) and shared by all requests. A reading call that fails on the connection
//! itself, rather than with a status from the daemon, drops that connection, reconnects
//! once and retries, so a daemon restarted on the same socket is picked up by the next
//! request. `ExtendRuntimeMeasurement` changes state (a register and the event log), so it
//! is never sent twice: it goes over a connection of its own, opened for that call, which
//! also cannot be a stale one. One deadline covers connecting, the call and the retry.

use std::{fmt, time::Duration};

use protos::{
    api::GetResourceRequest, api_ttrpc::GetResourceServiceClient,
    attestation_agent::RuntimeMeasurementResult, AaClient, CallError, Connection,
};
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
pub(crate) enum Daemon {
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
pub(crate) enum BackendError {
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
    /// The daemon's answer does not have the expected shape (e.g. a result value this
    /// shim does not know).
    #[error("the {daemon} answered {method} with something unexpected: {reason}")]
    BadAnswer {
        /// the daemon
        daemon: Daemon,
        /// the ttRPC method
        method: &'static str,
        /// what is wrong
        reason: String,
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
    /// The shim's view of a failed call to `daemon`.
    fn from_call(daemon: Daemon, error: CallError) -> Self {
        match error {
            CallError::Connect { addr, source } => Self::Connect {
                daemon,
                addr,
                source,
            },
            CallError::Status {
                method,
                code,
                message,
            } => Self::Status {
                daemon,
                method,
                code,
                message,
            },
            CallError::Transport { method, source, .. } => Self::Transport {
                daemon,
                method,
                source,
            },
            CallError::Timeout {
                method, timeout, ..
            } => Self::Timeout {
                daemon,
                method,
                timeout,
            },
            CallError::BadAnswer { method, reason } => Self::BadAnswer {
                daemon,
                method,
                reason,
            },
        }
    }

    /// Whether the daemon said the thing asked for does not exist (`NOT_FOUND`).
    pub(crate) fn is_not_found(&self) -> bool {
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
    pub(crate) fn invalid_argument_message(&self) -> Option<&str> {
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
pub(crate) enum MeasurementOutcome {
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

/// The two daemons the shim forwards to.
#[derive(Debug)]
pub struct Backends {
    aa: AaClient,
    cdh: Connection,
    timeout: Duration,
}

impl Backends {
    /// Clients for the configured addresses; nothing is connected yet.
    pub fn new(config: BackendConfig) -> Self {
        Self {
            aa: AaClient::new(config.aa_addr, config.timeout),
            cdh: Connection::new(config.cdh_addr),
            timeout: config.timeout,
        }
    }

    /// CDH `GetResource` for a `kbs://` resource URI.
    pub(crate) async fn get_resource(&self, uri: &str) -> Result<Vec<u8>, BackendError> {
        let req = GetResourceRequest {
            ResourcePath: uri.to_string(),
            ..Default::default()
        };
        let resp = self
            .cdh
            .call("GetResource", self.timeout, |client, ctx| {
                let req = &req;
                async move {
                    GetResourceServiceClient::new(client)
                        .get_resource(ctx, req)
                        .await
                }
            })
            .await
            .map_err(|e| BackendError::from_call(Daemon::ConfidentialDataHub, e))?;
        Ok(resp.Resource)
    }

    /// AA `GetEvidence` bound to `runtime_data`.
    pub(crate) async fn get_evidence(
        &self,
        runtime_data: Vec<u8>,
    ) -> Result<Vec<u8>, BackendError> {
        self.aa.get_evidence(&runtime_data).await.map_err(aa_error)
    }

    /// AA `GetAdditionalEvidence` bound to `runtime_data` (empty when there are no devices).
    pub(crate) async fn get_additional_evidence(
        &self,
        runtime_data: Vec<u8>,
    ) -> Result<Vec<u8>, BackendError> {
        self.aa
            .get_additional_evidence(&runtime_data)
            .await
            .map_err(aa_error)
    }

    /// AA `GetToken` for `token_type` (`kbs`, `coco_as`): the token bytes as AA answers
    /// them, wiped from memory when dropped (a `kbs` reply carries the TEE private key).
    pub(crate) async fn get_token(
        &self,
        token_type: &str,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.aa.get_token(token_type).await.map_err(aa_error)
    }

    /// AA `GetTeeType`.
    pub(crate) async fn tee_type(&self) -> Result<String, BackendError> {
        self.aa.get_tee_type().await.map_err(aa_error)
    }

    /// AA `GetAdditionalTees`.
    pub(crate) async fn additional_tees(&self) -> Result<Vec<String>, BackendError> {
        self.aa.get_additional_tees().await.map_err(aa_error)
    }

    /// AA `ExtendRuntimeMeasurement` for `event`, sent at most once (see the module
    /// comment). `register_index` is forwarded only when the caller gave one.
    pub(crate) async fn extend_runtime_measurement(
        &self,
        event: &AaelEvent,
    ) -> Result<MeasurementOutcome, BackendError> {
        let result = self
            .aa
            .extend_runtime_measurement(
                &event.domain,
                &event.operation,
                &event.content,
                event.register_index,
            )
            .await
            .map_err(aa_error)?;
        Ok(match result {
            RuntimeMeasurementResult::OK => MeasurementOutcome::Recorded,
            RuntimeMeasurementResult::NOT_SUPPORTED => MeasurementOutcome::NotSupported,
            RuntimeMeasurementResult::NOT_ENABLED => MeasurementOutcome::NotEnabled,
        })
    }
}

fn aa_error(error: CallError) -> BackendError {
    BackendError::from_call(Daemon::AttestationAgent, error)
}
