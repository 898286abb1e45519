//! The TPM attester against a real software TPM: the quote verifies with `tpm2_checkquote`,
//! initdata and runtime measurements are visible with `tpm2_pcrread`, and no transient
//! object is left behind.

#![cfg(feature = "tpm-attester")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attester::{
    probe_tpm, Attester, AttesterError, Env, HashAlgorithm, InitDataResult, Platform,
    RuntimeMeasurement, Tee, TpmEvidence, TPM_AK_HANDLE_ENV, TPM_TCTI_ENV,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use common::{spki_pem, Swtpm};
use sha2::{Digest, Sha256};
use tss_esapi::{
    structures::{Attest, AttestInfo},
    traits::UnMarshall,
};

fn attester_for(swtpm: &Swtpm, extra: &[(&str, &str)]) -> Box<dyn Attester> {
    let root = tempfile::tempdir().unwrap();
    let mut vars = vec![(TPM_TCTI_ENV.to_string(), swtpm.tcti())];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Env = vars.into_iter().collect();
    probe_tpm(&Platform::new(root.path()), &env)
        .unwrap()
        .expect("a configured TCTI is a TPM")
}

/// Writes the evidence's quote parts and checks them with tpm2_checkquote.
fn checkquote(swtpm: &Swtpm, dir: &std::path::Path, evidence: &TpmEvidence, nonce: &[u8]) {
    let ak = STANDARD.decode(&evidence.ak_public).unwrap();
    std::fs::write(dir.join("ak.pem"), spki_pem(&ak)).unwrap();
    std::fs::write(
        dir.join("quote.msg"),
        STANDARD.decode(&evidence.tpm_quote.message).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("quote.sig"),
        STANDARD.decode(&evidence.tpm_quote.signature).unwrap(),
    )
    .unwrap();
    swtpm.checkquote(dir, nonce);
}

/// The nonce and PCR digest inside a quote message.
fn quote_contents(evidence: &TpmEvidence) -> (Vec<u8>, Vec<u8>) {
    let message = STANDARD.decode(&evidence.tpm_quote.message).unwrap();
    let attest = Attest::unmarshall(&message).unwrap();
    let AttestInfo::Quote { info } = attest.attested() else {
        panic!("not a quote");
    };
    (
        attest.extra_data().value().to_vec(),
        info.pcr_digest().value().to_vec(),
    )
}

#[tokio::test]
async fn quote_verifies_with_tpm2_checkquote_and_binds_the_report_data() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    let attester = attester_for(&swtpm, &[]);
    assert_eq!(attester.tee(), Tee::Tpm);

    // a SHA-384 digest, as kbs_protocol passes it: zero-padded to 64 bytes, not truncated
    let report_data: Vec<u8> = (1u8..=48).collect();
    let value = attester.get_evidence(&report_data).await.unwrap();
    let object = value.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["ak_public", "tpm_quote"]);
    let evidence: TpmEvidence = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(serde_json::to_value(&evidence).unwrap(), value);

    let mut nonce = report_data.clone();
    nonce.resize(64, 0);
    let (extra_data, pcr_digest) = quote_contents(&evidence);
    assert_eq!(extra_data, nonce);
    assert_eq!(evidence.tpm_quote.pcrs.len(), 24);
    let mut hasher = Sha256::new();
    for pcr in &evidence.tpm_quote.pcrs {
        assert_eq!(pcr.len(), 64, "{pcr}");
        hasher.update(hex::decode(pcr).unwrap());
    }
    assert_eq!(hasher.finalize().to_vec(), pcr_digest);
    // the PCR values are the TPM's (PCR 17 starts at all ones after startup)
    assert_eq!(evidence.tpm_quote.pcrs[17], swtpm.pcrread(work.path(), 17));

    checkquote(&swtpm, work.path(), &evidence, &nonce);
    // a wrong nonce does not verify
    let output = std::process::Command::new("tpm2_checkquote")
        .args([
            "-u",
            "ak.pem",
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-g",
            "sha256",
        ])
        .args(["-q", &hex::encode([0u8; 64])])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(!output.status.success());

    // the created AK is a primary key: the same AK every time, and it was flushed
    let again: TpmEvidence =
        serde_json::from_value(attester.get_evidence(b"again").await.unwrap()).unwrap();
    assert_eq!(again.ak_public, evidence.ak_public);
    assert_eq!(swtpm.transient_handles(work.path()), "");

    // report data longer than the qualifying data is refused
    let err = attester.get_evidence(&[0; 65]).await.unwrap_err();
    assert!(
        matches!(
            err,
            AttesterError::ReportDataTooLong {
                len: 65,
                max: 64,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_persistent_ak_is_used_when_present() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    swtpm.persist_ak(dir, "ak.pub", "0x81010007");

    let attester = attester_for(&swtpm, &[(TPM_AK_HANDLE_ENV, "0x81010007")]);
    let evidence: TpmEvidence =
        serde_json::from_value(attester.get_evidence(b"persistent").await.unwrap()).unwrap();
    let ak_pem = std::fs::read_to_string(dir.join("ak.pub")).unwrap();
    assert_eq!(
        spki_pem(&STANDARD.decode(&evidence.ak_public).unwrap()).replace('\n', ""),
        ak_pem.replace('\n', "")
    );
    let mut nonce = b"persistent".to_vec();
    nonce.resize(64, 0);
    checkquote(&swtpm, dir, &evidence, &nonce);
    assert_eq!(swtpm.transient_handles(dir), "");
}

#[tokio::test]
async fn initdata_extends_pcr8_once_and_measurements_extend_their_pcr() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    let attester = attester_for(&swtpm, &[]);
    let digest: [u8; 32] = Sha256::digest(b"initdata toml").into();

    // only a SHA-256 digest fits PCR 8: nothing is extended otherwise
    let err = attester.bind_init_data(&[7; 48]).await.unwrap_err();
    assert!(
        matches!(
            err,
            AttesterError::InitDataDigestSize {
                len: 48,
                register: "PCR 8",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(swtpm.pcrread(work.path(), 8), "00".repeat(32));

    assert_eq!(
        attester.bind_init_data(&digest).await.unwrap(),
        InitDataResult::Bound
    );
    let expected = {
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(digest);
        hex::encode(h.finalize())
    };
    assert_eq!(swtpm.pcrread(work.path(), 8), expected);
    // an agent restart binds the same initdata again without a second extend
    assert_eq!(
        attester.bind_init_data(&digest).await.unwrap(),
        InitDataResult::Bound
    );
    assert_eq!(swtpm.pcrread(work.path(), 8), expected);
    // other initdata: a mismatch naming both values
    let err = attester.bind_init_data(&[1; 32]).await.unwrap_err();
    match err {
        AttesterError::InitDataMismatch {
            tee: Tee::Tpm,
            platform_hex,
            ..
        } => assert_eq!(platform_hex, expected),
        other => panic!("{other}"),
    }

    // runtime measurement: SHA-256 of the event into the PCR asked for. PCR 17 belongs to a
    // dynamic launch and cannot be extended from locality 0: a clear error, not a hang
    let event = b"domain operation content";
    let err = attester
        .extend_runtime_measurement(event, 17)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("locality"), "{err}");
    // so the TPM's default register is the application PCR 23
    assert_eq!(attester.default_runtime_pcr(), 23);
    let before = attester.read_register(23).await.unwrap().unwrap();
    assert_eq!(hex::encode(&before.value), swtpm.pcrread(work.path(), 23));
    let outcome = attester
        .extend_runtime_measurement(event, 23)
        .await
        .unwrap();
    let event_digest = Sha256::digest(event).to_vec();
    let RuntimeMeasurement::Extended(register) = outcome else {
        panic!("TPM supports runtime measurement");
    };
    assert_eq!(register.register_index, 23);
    assert_eq!(register.algorithm, HashAlgorithm::Sha256);
    assert_eq!(register.digest, event_digest);
    let mut h = Sha256::new();
    h.update(&before.value);
    h.update(&event_digest);
    let after = hex::encode(h.finalize());
    assert_eq!(swtpm.pcrread(work.path(), 23), after);
    let read = attester.read_register(23).await.unwrap().unwrap();
    assert_eq!(hex::encode(read.value), after);
    assert_eq!(read.register_index, 23);

    let err = attester
        .extend_runtime_measurement(event, 24)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttesterError::InvalidRegister { index: 24, .. }),
        "{err}"
    );
    assert!(attester.read_register(99).await.is_err());
    assert_eq!(swtpm.transient_handles(work.path()), "");
}

#[tokio::test]
async fn an_unreachable_tpm_is_an_error_not_a_hang() {
    let env: Env = [(TPM_TCTI_ENV, "swtpm:host=127.0.0.1,port=1")]
        .into_iter()
        .collect();
    let root = tempfile::tempdir().unwrap();
    let attester = probe_tpm(&Platform::new(root.path()), &env)
        .unwrap()
        .unwrap();
    let err = attester.get_evidence(b"x").await.unwrap_err();
    assert!(matches!(err, AttesterError::Backend { .. }), "{err}");
    assert!(err.to_string().contains("opening the TPM"), "{err}");
}
