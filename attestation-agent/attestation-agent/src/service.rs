//! The ttRPC `attestation_agent.AttestationAgentService`.
//!
//! GetEvidence, GetAdditionalEvidence, GetToken, GetTeeType and GetAdditionalTees are served
//! here. ExtendRuntimeMeasurement and BindInitData are not overridden, so ttRPC answers them
//! `NOT_FOUND` until they are implemented. Failures are `INTERNAL` with a message that names
//! the method and the cause (upstream sent a fixed string and only logged the cause).
//!
//! GetToken reads one request metadata key, [`crate::TOKEN_REFRESH_METADATA_KEY`]: with the
//! value `1` the agent hands back a token obtained after the request (the caller's token was
//! refused). Tokens and keys are never logged.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use protos::{
    attestation_agent::{
        GetAdditionalEvidenceRequest, GetAdditionalTeesRequest, GetAdditionalTeesResponse,
        GetEvidenceRequest, GetEvidenceResponse, GetTeeTypeRequest, GetTeeTypeResponse,
        GetTokenRequest, GetTokenResponse,
    },
    attestation_agent_ttrpc::{create_attestation_agent_service, AttestationAgentService},
};
use tracing::{debug, error};
use ttrpc::r#async::TtrpcContext;

use crate::{AaError, AttestationAgent, TokenRefresh};

/// The ttRPC face of an [`AttestationAgent`].
#[derive(Debug, Clone)]
pub struct AaService {
    agent: Arc<AttestationAgent>,
}

impl AaService {
    /// Serves `agent`.
    pub fn new(agent: Arc<AttestationAgent>) -> Self {
        Self { agent }
    }
}

/// The service map for `protos::server::start`.
pub fn services(agent: Arc<AttestationAgent>) -> HashMap<String, ttrpc::r#async::Service> {
    create_attestation_agent_service(Arc::new(AaService::new(agent)))
}

fn internal(method: &str, err: &AaError) -> ttrpc::Error {
    error!(method, error = %err, "request failed");
    ttrpc::Error::RpcStatus(ttrpc::get_status(
        ttrpc::Code::INTERNAL,
        format!("{method} failed: {err}"),
    ))
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
            .map_err(|e| internal("GetEvidence", &e))?;
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
            .map_err(|e| internal("GetAdditionalEvidence", &e))?;
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
            .map_err(|e| internal("GetToken", &e))?;
        Ok(GetTokenResponse {
            Token: token.to_vec(),
            ..Default::default()
        })
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
    fn errors_are_internal_and_say_what_failed() {
        let err = AaError::Evidence {
            tee: attester::Tee::Tdx,
            source: attester::AttesterError::InvalidEnvFlag {
                name: "X",
                value: "y".into(),
            },
        };
        let ttrpc::Error::RpcStatus(status) = internal("GetEvidence", &err) else {
            panic!("not an RPC status")
        };
        assert_eq!(status.code(), ttrpc::Code::INTERNAL);
        assert!(status
            .message()
            .starts_with("GetEvidence failed: getting tdx evidence: "));
    }
}
