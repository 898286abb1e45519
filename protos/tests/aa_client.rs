//! The typed attestation-agent client against a real ttRPC server on a unix socket: the
//! token refresh metadata, one reconnect to a restarted agent, state-changing calls sent
//! once, and the error kinds (connect, status, timeout, unknown answer).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use protos::{
    attestation_agent as aa, attestation_agent_ttrpc as aa_ttrpc, server::RunningServer, AaClient,
    CallError,
};
use ttrpc::r#async::TtrpcContext;

/// An agent that answers from fixed values and records what it was sent.
#[derive(Default)]
struct Agent {
    tee: String,
    /// `coco-token-refresh` values of each GetToken (`None`: absent)
    refresh: Mutex<Vec<Option<Vec<String>>>>,
    extends: Mutex<Vec<aa::ExtendRuntimeMeasurementRequest>>,
    /// raw `Result` value answered to ExtendRuntimeMeasurement
    extend_result: i32,
    /// GetEvidence sleeps this long first
    evidence_delay: Duration,
}

#[async_trait::async_trait]
impl aa_ttrpc::AttestationAgentService for Agent {
    async fn get_token(
        &self,
        ctx: &TtrpcContext,
        req: aa::GetTokenRequest,
    ) -> ttrpc::Result<aa::GetTokenResponse> {
        self.refresh
            .lock()
            .unwrap()
            .push(ctx.metadata.get("coco-token-refresh").cloned());
        if req.TokenType != "kbs" {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("unknown token type {}", req.TokenType),
            )));
        }
        Ok(aa::GetTokenResponse {
            Token: b"token-bytes".to_vec(),
            ..Default::default()
        })
    }

    async fn get_tee_type(
        &self,
        _: &TtrpcContext,
        _: aa::GetTeeTypeRequest,
    ) -> ttrpc::Result<aa::GetTeeTypeResponse> {
        Ok(aa::GetTeeTypeResponse {
            tee: self.tee.clone(),
            ..Default::default()
        })
    }

    async fn get_evidence(
        &self,
        _: &TtrpcContext,
        req: aa::GetEvidenceRequest,
    ) -> ttrpc::Result<aa::GetEvidenceResponse> {
        tokio::time::sleep(self.evidence_delay).await;
        Ok(aa::GetEvidenceResponse {
            Evidence: req.RuntimeData,
            ..Default::default()
        })
    }

    async fn extend_runtime_measurement(
        &self,
        _: &TtrpcContext,
        req: aa::ExtendRuntimeMeasurementRequest,
    ) -> ttrpc::Result<aa::ExtendRuntimeMeasurementResponse> {
        self.extends.lock().unwrap().push(req);
        Ok(aa::ExtendRuntimeMeasurementResponse {
            Result: protobuf::EnumOrUnknown::from_i32(self.extend_result),
            ..Default::default()
        })
    }
}

async fn serve(addr: &str, agent: Arc<Agent>) -> RunningServer {
    protos::server::start(addr, [aa_ttrpc::create_attestation_agent_service(agent)])
        .await
        .unwrap()
}

fn socket(dir: &tempfile::TempDir) -> String {
    format!("unix://{}", dir.path().join("aa.sock").display())
}

#[tokio::test]
async fn only_a_fresh_token_request_carries_the_refresh_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let addr = socket(&dir);
    let agent = Arc::new(Agent::default());
    let server = serve(&addr, agent.clone()).await;
    let client = AaClient::new(&addr, Duration::from_secs(10));
    assert_eq!(
        client.get_token("kbs").await.unwrap().as_slice(),
        b"token-bytes"
    );
    assert_eq!(
        client.get_fresh_token("kbs").await.unwrap().as_slice(),
        b"token-bytes"
    );
    assert_eq!(
        *agent.refresh.lock().unwrap(),
        [None, Some(vec!["1".to_string()])]
    );
    // a status from the agent is passed on, with its code and message
    let err = client.get_token("nope").await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::INVALID_ARGUMENT));
    assert!(
        err.to_string()
            .starts_with("GetToken failed with INVALID_ARGUMENT: unknown token type nope"),
        "{err}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_agent_is_reached_through_one_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let addr = socket(&dir);
    let first = Arc::new(Agent {
        tee: "first".into(),
        ..Default::default()
    });
    let server = serve(&addr, first).await;
    let client = AaClient::connect(&addr, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(client.get_tee_type().await.unwrap(), "first");
    server.stop().await.unwrap();
    // nobody there: the reconnect fails with a connect error naming the socket
    match client.get_tee_type().await.unwrap_err() {
        CallError::Connect { addr: named, .. } => assert_eq!(named, addr),
        other => panic!("{other:?}"),
    }
    let second = Arc::new(Agent {
        tee: "second".into(),
        ..Default::default()
    });
    let server = serve(&addr, second).await;
    assert_eq!(client.get_tee_type().await.unwrap(), "second");
    // clones share the connection
    assert_eq!(client.clone().get_tee_type().await.unwrap(), "second");
    // a restart between two calls: the dead connection is dropped and the call sent again
    server.stop().await.unwrap();
    let third = Arc::new(Agent {
        tee: "third".into(),
        ..Default::default()
    });
    let server = serve(&addr, third).await;
    assert_eq!(client.get_tee_type().await.unwrap(), "third");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn measurements_are_sent_once_and_unknown_results_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = socket(&dir);
    let agent = Arc::new(Agent {
        extend_result: 0,
        ..Default::default()
    });
    let server = serve(&addr, agent.clone()).await;
    let client = AaClient::new(&addr, Duration::from_secs(10));
    assert_eq!(
        client
            .extend_runtime_measurement("d", "o", "c", Some(17))
            .await
            .unwrap(),
        aa::RuntimeMeasurementResult::OK
    );
    let extends = agent.extends.lock().unwrap().clone();
    assert_eq!(extends.len(), 1);
    assert_eq!(
        (
            extends[0].Domain.as_str(),
            extends[0].Operation.as_str(),
            extends[0].Content.as_str(),
            extends[0].RegisterIndex
        ),
        ("d", "o", "c", Some(17))
    );
    server.stop().await.unwrap();

    let odd = Arc::new(Agent {
        extend_result: 7,
        ..Default::default()
    });
    let server = serve(&addr, odd.clone()).await;
    match client.extend_runtime_measurement("d", "o", "c", None).await {
        Err(CallError::BadAnswer { method, reason }) => {
            assert_eq!(method, "ExtendRuntimeMeasurement");
            assert!(reason.contains('7'), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(odd.extends.lock().unwrap().len(), 1);
    server.stop().await.unwrap();
    // with the agent gone the measurement fails at connecting, and is not retried later
    assert!(matches!(
        client.extend_runtime_measurement("d", "o", "c", None).await,
        Err(CallError::Connect { .. })
    ));
    assert_eq!(odd.extends.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_slow_agent_times_out_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let addr = socket(&dir);
    let agent = Arc::new(Agent {
        evidence_delay: Duration::from_secs(5),
        ..Default::default()
    });
    let server = serve(&addr, agent).await;
    let client = AaClient::new(&addr, Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = client.get_evidence(b"rd").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    match &err {
        CallError::Timeout {
            method, timeout, ..
        } => {
            assert_eq!(*method, "GetEvidence");
            assert_eq!(*timeout, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("no answer within 300ms"), "{err}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_absent_agent_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let addr = socket(&dir);
    let err = AaClient::connect(&addr, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Connect { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with(&format!("cannot connect to {addr}")));
    assert_eq!(err.code(), None);
}
