//! The Azure vTPM attesters against a real software TPM standing in for the Azure vTPM:
//! the HCL report sits in NV index 0x01400001, the AK at 0x81000003; IMDS is a recorded
//! fake (the real one is never called).

#![cfg(all(feature = "az-snp-vtpm-attester", feature = "az-tdx-vtpm-attester"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use attester::{
    probe_az_snp_vtpm, probe_az_tdx_vtpm, Attester, AttesterError, AzSnpVtpmAttester,
    AzSnpVtpmEvidence, AzTdxVtpmAttester, AzTdxVtpmEvidence, AzTpmQuote, Env, Imds, ImdsError,
    InitDataResult, Platform, RuntimeMeasurement, Tee, TpmLocation, TPM_TCTI_ENV,
};
use common::Swtpm;
use sha2::{Digest, Sha256};
use tss_esapi::{structures::Attest, traits::UnMarshall};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/evidence");

/// Recorded IMDS answers; records the TD reports it was asked to quote.
#[derive(Debug)]
struct RecordedImds {
    vcek_pem: String,
    td_quote: Vec<u8>,
    td_reports: Mutex<Vec<Vec<u8>>>,
}

#[async_trait]
impl Imds for RecordedImds {
    async fn vcek_pem(&self) -> Result<String, ImdsError> {
        Ok(self.vcek_pem.clone())
    }

    async fn td_quote(&self, td_report: &[u8]) -> Result<Vec<u8>, ImdsError> {
        self.td_reports.lock().unwrap().push(td_report.to_vec());
        Ok(self.td_quote.clone())
    }
}

fn recorded_imds() -> Arc<RecordedImds> {
    Arc::new(RecordedImds {
        vcek_pem: std::fs::read_to_string(format!("{VECTORS}/az-snp-vtpm/vcek.pem")).unwrap(),
        td_quote: std::fs::read(format!("{VECTORS}/az-tdx-vtpm/td-quote.bin")).unwrap(),
        td_reports: Mutex::new(Vec::new()),
    })
}

/// An HCL report laid out as the paravisor writes it (header, 1184-byte hardware report
/// area, IGVM request data, JSON variable data); small enough for swtpm's 2 KiB NV.
fn hcl_report(report_type: u32, hw_report: &[u8], user_data: Option<&[u8]>) -> Vec<u8> {
    let var = match user_data {
        Some(data) => format!(
            r#"{{"keys":[{{"kid":"HCLAkPub","kty":"RSA"}}],"user-data":"{}"}}"#,
            hex::encode_upper(data)
        ),
        None => r#"{"keys":[{"kid":"HCLAkPub","kty":"RSA"}]}"#.to_string(),
    };
    let mut bytes = vec![0u8; 32 + 1184];
    bytes[..4].copy_from_slice(b"HCLA");
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    bytes[32..32 + hw_report.len()].copy_from_slice(hw_report);
    for word in [20 + var.len() as u32, 1, report_type, 1, var.len() as u32] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(var.as_bytes());
    bytes
}

/// A vTPM like Azure's: an AK at 0x81000003 and the HCL report in NV.
fn azure_vtpm(swtpm: &Swtpm, dir: &Path, hcl: Option<&[u8]>) {
    swtpm.persist_ak(dir, "ak.pem", "0x81000003");
    if let Some(hcl) = hcl {
        std::fs::write(dir.join("hcl.bin"), hcl).unwrap();
        let size = hcl.len().to_string();
        swtpm.tool(
            dir,
            &[
                "tpm2_nvdefine",
                "0x01400001",
                "-C",
                "o",
                "-s",
                &size,
                "-a",
                "ownerread|ownerwrite",
            ],
        );
        swtpm.tool(
            dir,
            &["tpm2_nvwrite", "0x01400001", "-C", "o", "-i", "hcl.bin"],
        );
    }
}

/// Checks the bare RSA signature of an Azure quote with tpm2_checkquote.
fn checkquote(swtpm: &Swtpm, dir: &Path, quote: &AzTpmQuote, nonce: &[u8]) {
    let mut signature = vec![0x00, 0x14, 0x00, 0x0B];
    signature.extend_from_slice(&(quote.signature.len() as u16).to_be_bytes());
    signature.extend_from_slice(&quote.signature);
    std::fs::write(dir.join("quote.sig"), signature).unwrap();
    std::fs::write(dir.join("quote.msg"), &quote.message).unwrap();
    swtpm.checkquote(dir, nonce);
    let attest = Attest::unmarshall(&quote.message).unwrap();
    assert_eq!(
        attest.extra_data().value(),
        nonce,
        "the nonce is the report data as is"
    );
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(64, 0);
    out
}

#[tokio::test]
async fn az_snp_evidence_is_hcl_report_quote_and_vcek() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    let report_data: Vec<u8> = (100u8..148).collect();
    let hcl = hcl_report(2, &[0x5A; 1184], Some(&padded(&report_data)));
    azure_vtpm(&swtpm, work.path(), Some(&hcl));

    let imds = recorded_imds();
    let attester = AzSnpVtpmAttester::new(TpmLocation::from_tcti(swtpm.tcti()), imds.clone());
    assert_eq!(attester.tee(), Tee::AzSnpVtpm);
    let value = attester.get_evidence(&report_data).await.unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["hcl_report", "tpm_quote", "vcek", "version"]);
    let evidence: AzSnpVtpmEvidence = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(serde_json::to_value(&evidence).unwrap(), value);
    assert_eq!(evidence.version, 2);
    assert_eq!(evidence.hcl_report, hcl);
    let pem = std::fs::read_to_string(format!("{VECTORS}/az-snp-vtpm/vcek.pem")).unwrap();
    let first = &pem[..pem.find("-----END CERTIFICATE-----").unwrap()];
    let b64: String = first.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    assert_eq!(
        evidence.vcek,
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    );
    assert_eq!(evidence.tpm_quote.pcrs.len(), 24);
    checkquote(&swtpm, work.path(), &evidence.tpm_quote, &report_data);

    // the report data went to the HCL user-data index, zero-padded
    let out = swtpm.tool(
        work.path(),
        &["tpm2_nvread", "0x01400002", "-C", "o", "-o", "user.bin"],
    );
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(work.path().join("user.bin")).unwrap(),
        padded(&report_data)
    );
    assert_eq!(swtpm.transient_handles(work.path()), "");
    assert!(imds.td_reports.lock().unwrap().is_empty());

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
async fn az_tdx_evidence_carries_the_td_quote_of_the_hcl_tdreport() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    let tdreport = std::fs::read(format!("{VECTORS}/tdx_report_1.bin")).unwrap();
    let nonce = b"challenge";
    let hcl = hcl_report(4, &tdreport, Some(&padded(nonce)));
    azure_vtpm(&swtpm, work.path(), Some(&hcl));

    let imds = recorded_imds();
    let attester = AzTdxVtpmAttester::new(TpmLocation::from_tcti(swtpm.tcti()), imds.clone());
    let value = attester.get_evidence(nonce).await.unwrap();
    let evidence: AzTdxVtpmEvidence = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(serde_json::to_value(&evidence).unwrap(), value);
    assert_eq!(evidence.version, 2);
    assert_eq!(evidence.hcl_report, hcl);
    assert_eq!(
        evidence.td_quote,
        std::fs::read(format!("{VECTORS}/az-tdx-vtpm/td-quote.bin")).unwrap()
    );
    assert_eq!(*imds.td_reports.lock().unwrap(), vec![tdreport]);
    checkquote(&swtpm, work.path(), &evidence.tpm_quote, nonce);

    // an SNP attester on a TDX vTPM refuses instead of sending the wrong evidence
    let snp = AzSnpVtpmAttester::new(TpmLocation::from_tcti(swtpm.tcti()), recorded_imds());
    let err = snp.get_evidence(nonce).await.unwrap_err();
    assert!(err.to_string().contains("not an SEV-SNP report"), "{err}");
}

#[tokio::test]
async fn a_stale_hcl_report_is_waited_for_then_used() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    // the paravisor of this fake never refreshes: user data stays at another value
    let hcl = hcl_report(2, &[1; 1184], Some(&[0xEE; 64]));
    azure_vtpm(&swtpm, work.path(), Some(&hcl));
    let attester = AzSnpVtpmAttester::new(TpmLocation::from_tcti(swtpm.tcti()), recorded_imds())
        .with_refresh_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let evidence: AzSnpVtpmEvidence =
        serde_json::from_value(attester.get_evidence(b"nonce").await.unwrap()).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(evidence.hcl_report, hcl);
}

#[tokio::test]
async fn without_the_vtpm_ak_the_error_names_the_handle() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    let hcl = hcl_report(2, &[1; 1184], None);
    std::fs::write(work.path().join("hcl.bin"), &hcl).unwrap();
    let size = hcl.len().to_string();
    swtpm.tool(
        work.path(),
        &[
            "tpm2_nvdefine",
            "0x01400001",
            "-C",
            "o",
            "-s",
            &size,
            "-a",
            "ownerread|ownerwrite",
        ],
    );
    swtpm.tool(
        work.path(),
        &["tpm2_nvwrite", "0x01400001", "-C", "o", "-i", "hcl.bin"],
    );
    let attester = AzSnpVtpmAttester::new(TpmLocation::from_tcti(swtpm.tcti()), recorded_imds());
    let err = attester.get_evidence(b"x").await.unwrap_err();
    assert!(err.to_string().contains("0x81000003"), "{err}");
}

#[tokio::test]
async fn detection_reads_the_hcl_report_type_from_nv() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let platform = Platform::new(root.path());
    let env: Env = [(TPM_TCTI_ENV.to_string(), swtpm.tcti())]
        .into_iter()
        .collect();

    // a plain TPM: not Azure, but a TPM
    assert!(probe_az_snp_vtpm(&platform, &env).unwrap().is_none());
    assert!(probe_az_tdx_vtpm(&platform, &env).unwrap().is_none());
    #[cfg(feature = "tpm-attester")]
    {
        let detected = attester::detect(
            &platform,
            &attester::DetectOptions {
                sample: attester::SamplePolicy::Refused("test".into()),
                env: env.clone(),
            },
        )
        .unwrap();
        assert_eq!(detected.primary.tee(), Tee::Tpm);
    }

    azure_vtpm(&swtpm, work.path(), Some(&hcl_report(2, &[1; 1184], None)));
    assert_eq!(
        probe_az_snp_vtpm(&platform, &env).unwrap().unwrap().tee(),
        Tee::AzSnpVtpm
    );
    assert!(probe_az_tdx_vtpm(&platform, &env).unwrap().is_none());
    let detected = attester::detect(
        &platform,
        &attester::DetectOptions {
            sample: attester::SamplePolicy::Refused("test".into()),
            env: env.clone(),
        },
    )
    .unwrap();
    assert_eq!(detected.primary.tee(), Tee::AzSnpVtpm);
    assert!(detected.additional.is_empty());

    // rewrite the report as a TDX one
    let tdx = hcl_report(4, &[0x81; 1024], None);
    std::fs::write(work.path().join("hcl.bin"), &tdx).unwrap();
    swtpm.tool(
        work.path(),
        &["tpm2_nvwrite", "0x01400001", "-C", "o", "-i", "hcl.bin"],
    );
    assert!(probe_az_snp_vtpm(&platform, &env).unwrap().is_none());
    assert_eq!(
        probe_az_tdx_vtpm(&platform, &env).unwrap().unwrap().tee(),
        Tee::AzTdxVtpm
    );
}

#[tokio::test]
async fn initdata_and_measurements_use_the_vtpm_pcrs() {
    let swtpm = Swtpm::start();
    let work = tempfile::tempdir().unwrap();
    azure_vtpm(
        &swtpm,
        work.path(),
        Some(&hcl_report(4, &[0x81; 1024], None)),
    );
    let attester = AzTdxVtpmAttester::new(TpmLocation::from_tcti(swtpm.tcti()), recorded_imds());
    // runtime measurements default to the application PCR, as trustee's vTPM verifiers expect
    assert_eq!(attester.default_runtime_pcr(), 23);
    let digest: [u8; 32] = Sha256::digest(b"initdata").into();
    assert_eq!(
        attester.bind_init_data(&digest).await.unwrap(),
        InitDataResult::Bound
    );
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(digest);
    assert_eq!(swtpm.pcrread(work.path(), 8), hex::encode(h.finalize()));
    let err = attester.bind_init_data(&[1; 48]).await.unwrap_err();
    assert!(
        matches!(err, AttesterError::InitDataDigestSize { .. }),
        "{err}"
    );

    let outcome = attester
        .extend_runtime_measurement(b"domain operation content", 23)
        .await
        .unwrap();
    assert!(matches!(outcome, RuntimeMeasurement::Extended(ref r) if r.register_index == 23));
    let value = attester.read_register(23).await.unwrap().unwrap();
    assert_eq!(hex::encode(value.value), swtpm.pcrread(work.path(), 23));
}
