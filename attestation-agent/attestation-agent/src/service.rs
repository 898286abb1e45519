//! The ttRPC `attestation_agent.AttestationAgentService`.
//!
//! Every method of the service is served. Failures carry a message that names the method
//! and the cause (upstream sent a fixed string and only logged the cause), with the code:
//!
//! - `INVALID_ARGUMENT`: an invalid runtime event (empty domain/operation, whitespace or
//!   control characters in them, a newline in the content, too long), a register index
//!   above 23, an initdata digest that is empty or longer than 64 bytes, or one the
//!   platform does not hold (the message shows both digests);
//! - `FAILED_PRECONDITION`: BindInitData on a platform that cannot bind initdata;
//! - `INTERNAL`: everything else (attester, eventlog file, KBS, ...).
//!
//! ExtendRuntimeMeasurement answers `OK` with `Result` = `NOT_ENABLED` when the eventlog is
//! off and `NOT_SUPPORTED` when the platform has no runtime-measurement registers. Upstream
//! served BindInitData on gRPC only; here it is on ttRPC too and answers `OK` only when the
//! platform holds the digest.
//!
//! GetToken reads one request metadata key, [`crate::TOKEN_REFRESH_METADATA_KEY`]: with the
//! value `1` the agent hands back a token obtained after the request (the caller's token was
//! refused). Tokens and keys are never logged.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use attester::AttesterError;
use protos::{
    attestation_agent::{
        BindInitDataRequest, BindInitDataResponse, ExtendRuntimeMeasurementRequest,
        ExtendRuntimeMeasurementResponse, GetAdditionalEvidenceRequest, GetAdditionalTeesRequest,
        GetAdditionalTeesResponse, GetEvidenceRequest, GetEvidenceResponse, GetTeeTypeRequest,
        GetTeeTypeResponse, GetTokenRequest, GetTokenResponse, RuntimeMeasurementResult,
    },
    attestation_agent_ttrpc::{create_attestation_agent_service, AttestationAgentService},
};
use tracing::{debug, error, warn};
use ttrpc::r#async::TtrpcContext;

use crate::{AaError, AttestationAgent, RuntimeMeasurementOutcome, TokenRefresh};

/// The ttRPC face of an [`AttestationAgent`].
#[derive(Debug, Clone)]
pub(crate) struct AaService {
    agent: Arc<AttestationAgent>,
}

impl AaService {
    /// Serves `agent`.
    pub(crate) fn new(agent: Arc<AttestationAgent>) -> Self {
        Self { agent }
    }
}

/// The service map for `protos::server::start`.
pub fn services(agent: Arc<AttestationAgent>) -> HashMap<String, ttrpc::r#async::Service> {
    create_attestation_agent_service(Arc::new(AaService::new(agent)))
}

/// The ttRPC status code of a failure.
fn code_of(err: &AaError) -> ttrpc::Code {
    match err {
        AaError::InvalidEvent(_)
        | AaError::InvalidRegisterIndex { .. }
        | AaError::InvalidInitDataDigest { .. }
        | AaError::InitDataAlreadyBound { .. }
        | AaError::BindInitData {
            source: AttesterError::InitDataMismatch { .. },
            ..
        } => ttrpc::Code::INVALID_ARGUMENT,
        AaError::InitDataUnsupported { .. } => ttrpc::Code::FAILED_PRECONDITION,
        _ => ttrpc::Code::INTERNAL,
    }
}

fn rpc_error(method: &str, err: &AaError) -> ttrpc::Error {
    let code = code_of(err);
    if code == ttrpc::Code::INTERNAL {
        error!(method, error = %err, "request failed");
    } else {
        warn!(method, error = %err, "request refused");
    }
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, format!("{method} failed: {err}")))
}

#[async_trait]
impl AttestationAgentService for AaService {
    async fn get_evidence(
        &self,
        _ctx: &TtrpcContext,
        req: GetEvidenceRequest,
    ) -> ttrpc::Result<GetEvidenceResponse> {
        debug!(runtime_data_len = req.RuntimeData.len(), "GetEvidence");
        let evidence = self
            .agent
            .get_evidence(&req.RuntimeData)
            .await
            .map_err(|e| rpc_error("GetEvidence", &e))?;
        Ok(GetEvidenceResponse {
            Evidence: evidence,
            ..Default::default()
        })
    }

    async fn get_additional_evidence(
        &self,
        _ctx: &TtrpcContext,
        req: GetAdditionalEvidenceRequest,
    ) -> ttrpc::Result<GetEvidenceResponse> {
        debug!(
            runtime_data_len = req.RuntimeData.len(),
            "GetAdditionalEvidence"
        );
        let evidence = self
            .agent
            .get_additional_evidence(&req.RuntimeData)
            .await
            .map_err(|e| rpc_error("GetAdditionalEvidence", &e))?;
        Ok(GetEvidenceResponse {
            Evidence: evidence,
            ..Default::default()
        })
    }

    async fn get_token(
        &self,
        ctx: &TtrpcContext,
        req: GetTokenRequest,
    ) -> ttrpc::Result<GetTokenResponse> {
        let refresh = TokenRefresh::from_metadata(&ctx.metadata);
        debug!(token_type = ?req.TokenType, ?refresh, "GetToken");
        let token = self
            .agent
            .get_token(&req.TokenType, refresh)
            .await
            .map_err(|e| rpc_error("GetToken", &e))?;
        Ok(GetTokenResponse {
            Token: token.to_vec(),
            ..Default::default()
        })
    }

    async fn extend_runtime_measurement(
        &self,
        _ctx: &TtrpcContext,
        req: ExtendRuntimeMeasurementRequest,
    ) -> ttrpc::Result<ExtendRuntimeMeasurementResponse> {
        debug!(
            domain = %req.Domain,
            operation = %req.Operation,
            register_index = ?req.RegisterIndex,
            "ExtendRuntimeMeasurement"
        );
        let outcome = self
            .agent
            .extend_runtime_measurement(
                &req.Domain,
                &req.Operation,
                &req.Content,
                req.RegisterIndex,
            )
            .await
            .map_err(|e| rpc_error("ExtendRuntimeMeasurement", &e))?;
        let result = match outcome {
            RuntimeMeasurementOutcome::Recorded(_) => RuntimeMeasurementResult::OK,
            RuntimeMeasurementOutcome::NotSupported => RuntimeMeasurementResult::NOT_SUPPORTED,
            RuntimeMeasurementOutcome::NotEnabled => RuntimeMeasurementResult::NOT_ENABLED,
        };
        Ok(ExtendRuntimeMeasurementResponse {
            Result: result.into(),
            ..Default::default()
        })
    }

    async fn bind_init_data(
        &self,
        _ctx: &TtrpcContext,
        req: BindInitDataRequest,
    ) -> ttrpc::Result<BindInitDataResponse> {
        debug!(digest = %hex::encode(&req.Digest), "BindInitData");
        self.agent
            .bind_init_data_digest(&req.Digest)
            .await
            .map_err(|e| rpc_error("BindInitData", &e))?;
        Ok(BindInitDataResponse::default())
    }

    async fn get_tee_type(
        &self,
        _ctx: &TtrpcContext,
        _req: GetTeeTypeRequest,
    ) -> ttrpc::Result<GetTeeTypeResponse> {
        Ok(GetTeeTypeResponse {
            tee: self.agent.get_tee_type().to_string(),
            ..Default::default()
        })
    }

    async fn get_additional_tees(
        &self,
        _ctx: &TtrpcContext,
        _req: GetAdditionalTeesRequest,
    ) -> ttrpc::Result<GetAdditionalTeesResponse> {
        Ok(GetAdditionalTeesResponse {
            additional_tees: self
                .agent
                .get_additional_tees()
                .into_iter()
                .map(|tee| tee.to_string())
                .collect(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agent_service_is_registered() {
        let agent = Arc::new(crate::AttestationAgent::new(
            crate::config::Config::default(),
            attester::Detected {
                primary: Box::new(attester::SampleAttester),
                additional: vec![],
            },
        ));
        let map = services(agent);
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            vec!["attestation_agent.AttestationAgentService"]
        );
    }

    #[test]
    fn refusals_have_their_own_codes() {
        use crate::eventlog::{EventError, EventField};
        let tee = attester::Tee::Tdx;
        for (err, code) in [
            (
                AaError::InvalidEvent(EventError::Empty {
                    field: EventField::Domain,
                }),
                ttrpc::Code::INVALID_ARGUMENT,
            ),
            (
                AaError::InvalidRegisterIndex { index: 24 },
                ttrpc::Code::INVALID_ARGUMENT,
            ),
            (
                AaError::InvalidInitDataDigest { len: 0 },
                ttrpc::Code::INVALID_ARGUMENT,
            ),
            (
                AaError::InitDataAlreadyBound {
                    tee,
                    bound_hex: "aa".into(),
                    given_hex: "bb".into(),
                },
                ttrpc::Code::INVALID_ARGUMENT,
            ),
            (
                AaError::BindInitData {
                    tee,
                    source: AttesterError::InitDataMismatch {
                        tee,
                        platform_hex: "aa".into(),
                        expected_hex: "bb".into(),
                    },
                },
                ttrpc::Code::INVALID_ARGUMENT,
            ),
            (
                AaError::InitDataUnsupported { tee },
                ttrpc::Code::FAILED_PRECONDITION,
            ),
            (AaError::EventlogNotOpen, ttrpc::Code::INTERNAL),
            (
                AaError::BindInitData {
                    tee,
                    source: AttesterError::InvalidEnvFlag {
                        name: "X",
                        value: "y".into(),
                    },
                },
                ttrpc::Code::INTERNAL,
            ),
        ] {
            let ttrpc::Error::RpcStatus(status) = rpc_error("M", &err) else {
                panic!("not an RPC status")
            };
            assert_eq!(status.code(), code, "{err}");
            assert_eq!(status.message(), format!("M failed: {err}"));
        }
    }

    #[test]
    fn errors_are_internal_and_say_what_failed() {
        let err = AaError::Evidence {
            tee: attester::Tee::Tdx,
            source: attester::AttesterError::InvalidEnvFlag {
                name: "X",
                value: "y".into(),
            },
        };
        let ttrpc::Error::RpcStatus(status) = rpc_error("GetEvidence", &err) else {
            panic!("not an RPC status")
        };
        assert_eq!(status.code(), ttrpc::Code::INTERNAL);
        assert!(status
            .message()
            .starts_with("GetEvidence failed: getting tdx evidence: "));
    }
}
