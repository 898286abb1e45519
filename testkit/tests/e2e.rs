//! End to end: the three real binaries on temporary sockets and a free loopback port, driven
//! over HTTP (as a workload container does) and directly over ttRPC (as kata-agent does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration};

use base64::Engine;
use protos::{api, api_ttrpc, attestation_agent as aa, attestation_agent_ttrpc as aa_ttrpc};
use testkit::suite::{KbcSetup, Suite};

const SECRET: &[u8] = b"e2e secret \x00\x01\xff bytes";

fn ttrpc_ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(10_000_000_000)
}

async fn client(sock: &Path) -> ttrpc::r#async::Client {
    ttrpc::r#async::Client::connect(&format!("unix://{}", sock.display()))
        .await
        .unwrap()
}

fn get(suite: &Suite, path: &str) -> (u16, Vec<u8>) {
    tokio::task::block_in_place(|| suite.get(path)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_serve_resources_and_evidence_over_http_and_ttrpc() {
    let suite = Suite::new(&KbcSetup::OfflineFs(vec![
        ("default/key/1".into(), SECRET.to_vec()),
        ("other/type/tag".into(), b"other".to_vec()),
    ]))
    .unwrap();
    let aa_daemon = suite.start_aa().unwrap();
    let mut cdh_daemon = suite.start_cdh().unwrap();
    let asr_daemon = suite.start_asr().unwrap();

    // Over HTTP, as a workload container does.
    let (status, body) = get(&suite, "/cdh/resource/default/key/1");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, SECRET);

    let (status, body) = get(&suite, "/aa/evidence?runtime_data=e2e-runtime-data");
    assert_eq!(status, 200);
    let evidence: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        evidence,
        serde_json::json!({"svn": "1", "report_data": "ZTJlLXJ1bnRpbWUtZGF0YQ=="})
    );

    let (status, body) = get(&suite, "/info");
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["tee"], "sample");
    assert_eq!(info["feature"], "all");

    assert_eq!(get(&suite, "/cdh/resource/default/key/404").0, 404);
    let (status, _) = get(&suite, "/cdh/resource/../../etc/passwd");
    assert!(status == 400 || status == 404, "{status}");

    // Directly over ttRPC, as kata-agent does.
    let cdh = api_ttrpc::GetResourceServiceClient::new(client(&suite.cdh_sock).await);
    let resource = cdh
        .get_resource(
            ttrpc_ctx(),
            &api::GetResourceRequest {
                ResourcePath: "kbs:///other/type/tag".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(resource.Resource, b"other");

    let agent = aa_ttrpc::AttestationAgentServiceClient::new(client(&suite.aa_sock).await);
    let evidence = agent
        .get_evidence(
            ttrpc_ctx(),
            &aa::GetEvidenceRequest {
                RuntimeData: vec![0xaa; 48],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let evidence: serde_json::Value = serde_json::from_slice(&evidence.Evidence).unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode([0xaa; 48]);
    assert_eq!(evidence["report_data"], expected.as_str());
    let tee = agent
        .get_tee_type(ttrpc_ctx(), &aa::GetTeeTypeRequest::new())
        .await
        .unwrap();
    assert_eq!(tee.tee, "sample");

    // The REST shim reconnects after the data hub restarts on the same socket.
    let stopped = cdh_daemon
        .signal_and_wait("TERM", Duration::from_secs(10))
        .unwrap();
    assert!(stopped.success(), "{stopped}");
    assert!(
        !suite.cdh_sock.exists(),
        "CDH removes its socket on SIGTERM"
    );
    assert_eq!(get(&suite, "/cdh/resource/default/key/1").0, 500);
    let restarted = suite.start_cdh().unwrap();
    let (status, body) = get(&suite, "/cdh/resource/default/key/1");
    assert_eq!(status, 200);
    assert_eq!(body, SECRET);

    // Everything stops cleanly on SIGTERM and removes its socket.
    for daemon in [asr_daemon, restarted, aa_daemon] {
        let status = daemon.stop().unwrap();
        assert!(status.success(), "{status}");
    }
    assert!(!suite.aa_sock.exists());
    assert!(!suite.cdh_sock.exists());
}
