//! The agent built with `nvidia-attester`: on a guest without NVIDIA GPUs (this machine)
//! it starts, serves the CPU's evidence and answers the additional-evidence calls with no
//! device; with NVML present (the attester's fake `libnvidia-ml` serving a real H100's
//! recorded evidence) the GPU evidence is the additional evidence.

#![cfg(feature = "nvidia-attester")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine};
use protos::{attestation_agent as aa, attestation_agent_ttrpc::AttestationAgentServiceClient};
use serde_json::{json, Value};
use testkit::process::{Daemon, Ready};

const ATTESTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../attester");
/// The report data whose first 32 bytes are the nonce of the recorded H100 report.
const HOPPER_REPORT_DATA: &str = "87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fece279b616efefc2aae21da80cf5581250";

/// Starts the agent (sample CPU attester allowed) with `nvml` as `AA_NVML_LIBRARY`, or
/// with the variable unset so the loader searches as on a real guest.
async fn start(dir: &Path, nvml: Option<&Path>) -> (Daemon, PathBuf) {
    let socket = dir.join("aa.sock");
    let config = dir.join("aa.toml");
    std::fs::write(&config, "[attester]\nallow_sample = true\n").unwrap();
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, "console=ttyS0\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attestation-agent"));
    for var in [
        "AA_SAMPLE_ATTESTER",
        "ENABLE_SAMPLE_DEVICE",
        "AA_KBC_PARAMS",
        "AA_NVML_LIBRARY",
    ] {
        cmd.env_remove(var);
    }
    if let Some(nvml) = nvml {
        cmd.env("AA_NVML_LIBRARY", nvml);
    }
    cmd.env("RUST_LOG", "info")
        .arg("--kernel-cmdline")
        .arg(&cmdline)
        .arg("-a")
        .arg(format!("unix://{}", socket.display()))
        .arg("-c")
        .arg(&config);
    let log_dir = dir.to_path_buf();
    let ready = Ready::Unix(socket.clone());
    let daemon = tokio::task::spawn_blocking(move || {
        Daemon::spawn(
            "attestation-agent",
            cmd,
            &log_dir,
            ready,
            Duration::from_secs(6),
        )
    })
    .await
    .unwrap()
    .unwrap();
    (daemon, socket)
}

async fn client(socket: &Path) -> AttestationAgentServiceClient {
    let addr = format!("unix://{}", socket.display());
    AttestationAgentServiceClient::new(ttrpc::r#async::Client::connect(&addr).await.unwrap())
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(10_000_000_000)
}

async fn additional(c: &AttestationAgentServiceClient, runtime_data: &[u8]) -> Vec<u8> {
    c.get_additional_evidence(
        ctx(),
        &aa::GetAdditionalEvidenceRequest {
            RuntimeData: runtime_data.to_vec(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .Evidence
}

async fn additional_tees(c: &AttestationAgentServiceClient) -> Vec<String> {
    c.get_additional_tees(ctx(), &aa::GetAdditionalTeesRequest::new())
        .await
        .unwrap()
        .additional_tees
}

async fn stop(daemon: Daemon) -> String {
    let stderr = daemon.stderr();
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    stderr
}

#[tokio::test]
async fn without_gpus_the_agent_serves_cpu_evidence_and_no_device() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-libnvidia-ml.so.1");
    // the loader's own search (this machine has no NVIDIA driver), then a configured
    // library that is not there
    for nvml in [None, Some(missing.as_path())] {
        let run = tempfile::tempdir().unwrap();
        let (daemon, socket) = start(run.path(), nvml).await;
        let c = client(&socket).await;
        let evidence = c
            .get_evidence(
                ctx(),
                &aa::GetEvidenceRequest {
                    RuntimeData: b"cpu".to_vec(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let evidence: Value = serde_json::from_slice(&evidence.Evidence).unwrap();
        assert_eq!(
            evidence,
            json!({"svn": "1", "report_data": STANDARD.encode(b"cpu")})
        );
        let tee = c
            .get_tee_type(ctx(), &aa::GetTeeTypeRequest::new())
            .await
            .unwrap();
        assert_eq!(tee.tee, "sample");
        // no device: no additional TEE, empty additional evidence (what the KBS attest
        // body's `additional_evidence` then carries)
        assert!(additional_tees(&c).await.is_empty());
        assert!(additional(&c, b"device nonce").await.is_empty());
        drop(c);
        let stderr = stop(daemon).await;
        assert!(stderr.contains("no NVIDIA device"), "{stderr}");
        assert!(stderr.contains("libnvidia-ml.so"), "{stderr}");
    }
}

/// Builds the attester's fake NVML serving the recorded H100 evidence into `dir`.
fn fake_nvml(dir: &Path) -> PathBuf {
    let data = Path::new(ATTESTER).join("tests/data/nvidia");
    let report = std::fs::read_to_string(data.join("hopper_report.hex")).unwrap();
    std::fs::write(dir.join("gpus"), "1").unwrap();
    std::fs::write(dir.join("gpu0.report"), hex::decode(report.trim()).unwrap()).unwrap();
    std::fs::copy(data.join("hopper_cert_chain.pem"), dir.join("gpu0.certs")).unwrap();
    std::fs::write(dir.join("gpu0.arch"), "9").unwrap();
    std::fs::write(dir.join("gpu0.uuid"), "GPU-aa").unwrap();
    let lib = dir.join("libnvidia-ml.so.1");
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(format!("-DFAKE_DIR=\"{}\"", dir.display()))
        .arg(Path::new(ATTESTER).join("tests/nvidia/fake_nvml.c"))
        .output()
        .expect("gcc is needed to build the fake libnvidia-ml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

#[tokio::test]
async fn with_nvml_the_gpu_evidence_is_the_additional_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_nvml(dir.path());
    let (daemon, socket) = start(dir.path(), Some(&lib)).await;
    let c = client(&socket).await;
    assert_eq!(additional_tees(&c).await, ["nvidia"]);
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();
    let all: Value = serde_json::from_slice(&additional(&c, &report_data).await).unwrap();
    let devices = all["nvidia"]["device_evidence_list"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["arch"], "HOPPER");
    assert_eq!(devices[0]["uuid"], "GPU-aa");
    let report = STANDARD
        .decode(devices[0]["evidence"].as_str().unwrap())
        .unwrap();
    assert_eq!(report[4..36], report_data[..32]);
    assert_eq!(
        std::fs::read(dir.path().join("gpu0.nonce")).unwrap(),
        report_data[..32]
    );
    // another nonce: the GPU answers with the recorded report and the call fails clearly
    let result = c
        .get_additional_evidence(
            ctx(),
            &aa::GetAdditionalEvidenceRequest {
                RuntimeData: vec![1; 48],
                ..Default::default()
            },
        )
        .await;
    match result {
        Err(ttrpc::Error::RpcStatus(status)) => {
            assert!(status.message().contains("nonce asked for"), "{status:?}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    drop(c);
    stop(daemon).await;
}
