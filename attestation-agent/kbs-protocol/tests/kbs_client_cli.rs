//! The `kbs-client` binary against the test KBS (built with `--features bin`).
#![cfg(feature = "bin")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use testkit::kbs::KbsConfig;

const BIN: &str = env!("CARGO_BIN_EXE_kbs-client");

/// Runs the binary off the async workers (the test KBS runs on them).
async fn run(args: &[&str], sample: bool) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(BIN);
        command
            .args(&args)
            .env_remove("AA_SAMPLE_ATTESTER")
            .env_remove("ENABLE_SAMPLE_DEVICE");
        if sample {
            command.env("AA_SAMPLE_ATTESTER", "1");
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn prints_the_resource_over_https_with_the_cert_file() {
    let kbs = start_kbs(KbsConfig {
        tls: true,
        ..KbsConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("ca.pem");
    std::fs::write(&cert, kbs.ca_pem().unwrap()).unwrap();
    let initdata = dir.path().join("initdata.toml");
    std::fs::write(&initdata, "version = \"0.1.0\"\n").unwrap();
    let url = kbs.url();
    let cert = cert.to_str().unwrap().to_string();
    let initdata = initdata.to_str().unwrap().to_string();
    for path in ["default/key/1", "kbs:///default/key/1"] {
        let args = [
            "--url",
            &url,
            "--cert-file",
            &cert,
            "get-resource",
            "--path",
            path,
            "--initdata",
            &initdata,
        ];
        let output = run(&args, true).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = String::from_utf8(output.stdout).unwrap();
        assert_eq!(STANDARD.decode(printed.trim()).unwrap(), SECRET);
    }
    assert_eq!(
        kbs.last_init_data().unwrap()["body"],
        serde_json::json!("version = \"0.1.0\"\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_without_the_sample_switch_and_reports_kbs_errors() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let url = kbs.url();
    let args = [
        "--url",
        url.as_str(),
        "get-resource",
        "--path",
        "default/key/1",
    ];
    let output = run(&args, false).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no TEE found"), "{stderr}");
    assert!(stderr.contains("AA_SAMPLE_ATTESTER=1"), "{stderr}");
    assert!(stderr.contains("--allow-sample"), "{stderr}");
    assert_eq!(kbs.counters().auth, 0);

    // the flag is the same opt-in as the environment variable
    let mut with_flag = args.to_vec();
    with_flag.insert(2, "--allow-sample");
    let output = run(&with_flag, false).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        STANDARD
            .decode(String::from_utf8(output.stdout).unwrap().trim())
            .unwrap(),
        SECRET
    );

    let output = run(
        &[
            "--url",
            &url,
            "get-resource",
            "--path",
            "default/key/missing",
        ],
        true,
    )
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("PluginInternalError"));

    let output = run(
        &["--url", &url, "get-resource", "--path", "../etc/passwd"],
        true,
    )
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid resource path"));
    // one handshake for the --allow-sample read, one for the missing resource
    assert_eq!(kbs.counters().auth, 2);
}
