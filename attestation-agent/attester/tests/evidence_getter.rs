//! The `evidence-getter` CLI: `<tee>: <evidence JSON>` lines, primary TEE first.

#![cfg(all(feature = "bin", feature = "tpm-attester"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::Swtpm;

fn getter() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_evidence-getter"));
    for var in [
        "AA_SAMPLE_ATTESTER",
        "ENABLE_SAMPLE_DEVICE",
        "AA_TPM_TCTI",
        "AA_TPM_DEVICE",
    ] {
        command.env_remove(var);
    }
    command
}

#[test]
fn prints_one_line_per_tee() {
    let out = getter()
        .args(["--allow-sample", "--report-data", "00ff10"])
        .env("ENABLE_SAMPLE_DEVICE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "sample: {\"report_data\":\"AP8Q\",\"svn\":\"1\"}\n\
         sampledevice: {\"report_data\":\"AP8Q\",\"svn\":\"2\"}\n"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rd"), b"abc").unwrap();
    let arg = format!("@{}", dir.path().join("rd").display());
    let out = getter()
        .args(["--allow-sample", "--report-data", &arg])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "sample: {\"report_data\":\"YWJj\",\"svn\":\"1\"}\n"
    );
}

#[test]
fn refuses_bad_input_and_missing_tees() {
    for args in [
        vec!["--allow-sample", "--report-data", "zz"],
        vec!["--allow-sample", "--report-data", "@"],
        vec!["--allow-sample", "--report-data", "@/nonexistent/file"],
    ] {
        let out = getter().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    // no TEE on this machine and no opt-in: an error, not sample evidence
    let out = getter().output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no TEE found"));
}

#[test]
fn prints_tpm_evidence_from_a_real_tpm() {
    let swtpm = Swtpm::start();
    let out = getter()
        .args(["--report-data", &"ab".repeat(48)])
        .env("AA_TPM_TCTI", swtpm.tcti())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let json = text.strip_prefix("tpm: ").expect("a tpm line").trim_end();
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(value["tpm_quote"]["pcrs"].as_array().unwrap().len(), 24);
    assert!(value["ak_public"].is_string());
}
