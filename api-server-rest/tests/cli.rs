//! The binary: flag handling, serving, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_api-server-rest");

#[test]
fn unknown_features_exit_1_with_a_clear_message() {
    for bad in ["bogus", "Resource", ""] {
        let out = Command::new(BIN).args(["-f", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("use resource, attestation or all"),
            "{bad}: {stderr}"
        );
    }
    let out = Command::new(BIN)
        .args(["--bind", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("api-server-rest {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--bind",
        "--features",
        "--cdh_addr",
        "--aa_addr",
        "--withhold-tee-key",
        "tee_keypair",
        "127.0.0.1:8006",
        "unix:///run/confidential-containers/cdh.sock",
        "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

fn get(port: u16, target: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn serves_and_stops_on_sigterm() {
    let port = testkit::process::free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["-b", &format!("127.0.0.1:{port}"), "--features", "all"])
        .args(["-c", &format!("unix://{}/cdh.sock", dir.path().display())])
        .args(["-a", &format!("unix://{}/aa.sock", dir.path().display())])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let info = loop {
        if let Some(response) = get(port, "/info") {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // the agent is not running: 500 with a short text, the server stays up
    assert!(info.starts_with("HTTP/1.1 500"), "{info}");
    assert!(
        info.ends_with("\r\n\r\nFailed to get TEE information"),
        "{info}"
    );
    let openapi = get(port, "/openapi.json").unwrap();
    assert!(openapi.starts_with("HTTP/1.1 200"), "{openapi}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(15) {
            child.kill().unwrap();
            panic!("did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(get(port, "/info").is_none());
}

/// The binary hands out the TEE key pair of a `kbs` token as upstream does, except with
/// --withhold-tee-key.
#[tokio::test]
async fn withhold_tee_key_flag() {
    let daemons = common::Daemons::start().await;
    for (flag, expected) in [
        (
            None,
            serde_json::json!({ "token": common::KBS_TOKEN, "tee_keypair": common::TEE_KEY_PEM }),
        ),
        (
            Some("--withhold-tee-key"),
            serde_json::json!({ "token": common::KBS_TOKEN }),
        ),
    ] {
        let port = testkit::process::free_port().unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["-b", &format!("127.0.0.1:{port}"), "-f", "attestation"])
            .args(["-a", &daemons.aa_addr])
            .stderr(Stdio::null());
        if let Some(flag) = flag {
            command.arg(flag);
        }
        let mut child = command.spawn().unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let resp = common::request(addr, "GET", "/aa/token?token_type=kbs").await;
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(resp.status, 200, "{flag:?}: {}", resp.text());
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body, expected, "{flag:?}");
    }
}
