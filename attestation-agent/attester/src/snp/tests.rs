use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::tsm::emulator::{Answer, TsmEmulator};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/evidence/snp");

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(format!("{VECTORS}/{name}")).expect("recorded vector")
}

/// A certificate table in the kernel's format holding `certs`.
fn cert_table(certs: &[(CertType, &[u8])]) -> Vec<u8> {
    let header = (certs.len() + 1) * CERT_ENTRY_SIZE;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (cert_type, der) in certs {
        table.extend_from_slice(&cert_type.to_bytes().unwrap());
        table.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
        table.extend_from_slice(&(der.len() as u32).to_le_bytes());
        data.extend_from_slice(der);
    }
    table.extend_from_slice(&[0; CERT_ENTRY_SIZE]);
    table.extend_from_slice(&data);
    table
}

/// Replies with a recorded report (echoing the report data) and certificate table.
#[derive(Debug)]
struct RecordedDevice {
    report: Vec<u8>,
    certs: Option<Vec<u8>>,
    echo: bool,
    requests: Mutex<Vec<([u8; 64], u32)>>,
}

impl SevGuestDevice for RecordedDevice {
    fn get_ext_report(
        &self,
        report_data: &[u8; 64],
        vmpl: u32,
    ) -> io::Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.requests.lock().unwrap().push((*report_data, vmpl));
        let mut report = self.report.clone();
        if self.echo {
            report[0x50..0x90].copy_from_slice(report_data);
        }
        Ok((report, self.certs.clone()))
    }
}

fn device(report: Vec<u8>, certs: Option<Vec<u8>>, echo: bool) -> Arc<RecordedDevice> {
    Arc::new(RecordedDevice {
        report,
        certs,
        echo,
        requests: Mutex::new(Vec::new()),
    })
}

#[test]
fn recorded_reports_parse_and_re_encode_to_the_same_bytes() {
    for name in ["test-report.bin", "test-vlek-report.bin"] {
        let bytes = vector(name);
        let report = parse_report(&bytes).unwrap();
        assert_eq!(report.to_bytes().unwrap().to_vec(), bytes, "{name}");
        assert_eq!(report.report_data[..], bytes[0x50..0x90], "{name}");
        assert_eq!(report.host_data[..], bytes[HOST_DATA], "{name}");
        // the JSON shape survives a round trip unchanged
        let value = serde_json::to_value(report).unwrap();
        let again: AttestationReport = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(again, report);
        assert_eq!(serde_json::to_value(again).unwrap(), value);
    }
}

#[tokio::test]
async fn evidence_from_the_ioctl_carries_report_and_certificates() {
    let recorded = vector("test-report.bin");
    let vcek = vector("test-vcek.der");
    let table = cert_table(&[(CertType::VCEK, &vcek)]);
    let dev = device(recorded.clone(), Some(table), false);
    let dir = tempfile::tempdir().unwrap();
    let attester = SnpAttester::with_device(Platform::new(dir.path()), dev.clone());

    // the recorded report binds its own report data: ask for exactly that
    let report_data = recorded[0x50..0x90].to_vec();
    let evidence = attester.get_evidence(&report_data).await.unwrap();
    assert_eq!(
        dev.requests.lock().unwrap().clone(),
        vec![(<[u8; 64]>::try_from(&report_data[..]).unwrap(), 0)]
    );

    let expected = SnpEvidence {
        attestation_report: parse_report(&recorded).unwrap(),
        cert_chain: Some(vec![CertTableEntry::new(CertType::VCEK, vcek.clone())]),
    };
    assert_eq!(evidence, serde_json::to_value(&expected).unwrap());
    // field names and encodings of the wire format
    assert_eq!(evidence["cert_chain"][0]["cert_type"], json!("VCEK"));
    assert_eq!(evidence["cert_chain"][0]["data"], json!(vcek));
    assert_eq!(evidence["attestation_report"]["vmpl"], json!(0));
    assert_eq!(
        evidence["attestation_report"]["report_data"],
        json!(report_data)
    );
    let parsed: SnpEvidence = serde_json::from_value(evidence).unwrap();
    assert_eq!(parsed, expected);
}

#[tokio::test]
async fn evidence_without_host_certificates_has_a_null_chain() {
    let recorded = vector("test-vlek-report.bin");
    let dir = tempfile::tempdir().unwrap();
    let attester = SnpAttester::with_device(
        Platform::new(dir.path()),
        device(recorded.clone(), None, false),
    );
    let evidence = attester.get_evidence(&recorded[0x50..0x90]).await.unwrap();
    assert_eq!(evidence["cert_chain"], serde_json::Value::Null);
}

#[tokio::test]
async fn configfs_tsm_is_preferred_and_its_auxblob_is_the_certificate_table() {
    let recorded = vector("test-report.bin");
    let vlek = vector("test-vlek.der");
    let dir = tempfile::tempdir().unwrap();
    let (platform, emulator) = TsmEmulator::install(
        dir.path(),
        Answer {
            provider: "sev_guest".into(),
            outblob: recorded.clone(),
            echo_at: Some(0x50),
            auxblob: Some(cert_table(&[
                (CertType::VLEK, &vlek),
                (CertType::ASK, b"ask"),
            ])),
            extra_writers: 0,
        },
    );
    let unused = device(Vec::new(), None, false);
    let attester = SnpAttester::with_device(platform, unused.clone());
    let evidence = attester.get_evidence(b"nonce").await.unwrap();
    assert!(unused.requests.lock().unwrap().is_empty());
    let mut padded = b"nonce".to_vec();
    padded.resize(64, 0);
    assert_eq!(*emulator.inblobs.lock().unwrap(), vec![padded.clone()]);
    let parsed: SnpEvidence = serde_json::from_value(evidence).unwrap();
    assert_eq!(parsed.attestation_report.report_data.to_vec(), padded);
    assert_eq!(
        parsed.cert_chain.unwrap(),
        vec![
            CertTableEntry::new(CertType::VLEK, vlek),
            CertTableEntry::new(CertType::ASK, b"ask".to_vec())
        ]
    );
}

#[tokio::test]
async fn report_data_is_padded_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dev = device(vector("test-report.bin"), None, true);
    let attester = SnpAttester::with_device(Platform::new(dir.path()), dev.clone());
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
    let evidence = attester.get_evidence(&[7; 48]).await.unwrap();
    let mut padded = vec![7u8; 48];
    padded.resize(64, 0);
    assert_eq!(evidence["attestation_report"]["report_data"], json!(padded));
}

#[tokio::test]
async fn a_report_for_other_data_or_of_wrong_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let attester = SnpAttester::with_device(
        Platform::new(dir.path()),
        device(vector("test-report.bin"), None, false),
    );
    let err = attester.get_evidence(b"mine").await.unwrap_err();
    assert!(err.to_string().contains("other report data"), "{err}");
    let attester =
        SnpAttester::with_device(Platform::new(dir.path()), device(vec![0; 100], None, false));
    let err = attester.get_evidence(b"mine").await.unwrap_err();
    assert!(err.to_string().contains("100 bytes, not 1184"), "{err}");
}

#[tokio::test]
async fn initdata_is_checked_against_hostdata() {
    let mut recorded = vector("test-report.bin");
    recorded[HOST_DATA].copy_from_slice(&[0xAB; 32]);
    let dir = tempfile::tempdir().unwrap();
    let dev = device(recorded, None, true);
    let attester = SnpAttester::with_device(Platform::new(dir.path()), dev.clone());
    assert_eq!(
        attester.bind_init_data(&[0xAB; 32]).await.unwrap(),
        InitDataResult::Bound
    );
    assert_eq!(dev.requests.lock().unwrap()[0], ([0; 64], 0));
    let err = attester.bind_init_data(&[0xAB; 16]).await.unwrap_err();
    match err {
        AttesterError::InitDataMismatch {
            platform_hex,
            expected_hex,
            ..
        } => {
            assert_eq!(platform_hex, "ab".repeat(32));
            assert_eq!(
                expected_hex,
                format!("{}{}", "ab".repeat(16), "00".repeat(16))
            );
        }
        other => panic!("{other}"),
    }
    let err = attester.bind_init_data(&[0xAB; 48]).await.unwrap_err();
    assert!(
        matches!(
            err,
            AttesterError::InitDataDigestSize {
                len: 48,
                register: "HOSTDATA",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn malformed_certificate_tables_are_refused() {
    let vcek = vector("test-vcek.der");
    let good = cert_table(&[(CertType::VCEK, &vcek)]);
    assert_eq!(parse_cert_table(&good).unwrap().len(), 1);
    // an all-zero table is empty
    assert!(parse_cert_table(&[0; 24]).unwrap().is_empty());
    // no terminator: an entry that points at itself, then the table ends
    let mut unterminated = CertType::VCEK.to_bytes().unwrap().to_vec();
    unterminated.extend_from_slice(&0u32.to_le_bytes());
    unterminated.extend_from_slice(&24u32.to_le_bytes());
    let err = parse_cert_table(&unterminated).unwrap_err();
    assert!(err.to_string().contains("runs past"), "{err}");
    assert!(parse_cert_table(&good[..CERT_ENTRY_SIZE]).is_err());
    // truncated data
    let err = parse_cert_table(&good[..good.len() - 1]).unwrap_err();
    assert!(err.to_string().contains("points outside"), "{err}");
    // offset overflow
    let mut hostile = good.clone();
    hostile[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    hostile[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(parse_cert_table(&hostile).is_err());
    // endless table
    let mut endless = Vec::new();
    for _ in 0..100 {
        endless.extend_from_slice(&CertType::ARK.to_bytes().unwrap());
        endless.extend_from_slice(&[0; 8]);
    }
    let err = parse_cert_table(&endless).unwrap_err();
    assert!(err.to_string().contains("more than 64"), "{err}");
    // malformed report bytes
    assert!(parse_report(&[0; 10]).is_err());
}

#[test]
fn detection_by_sysfs_device_or_configfs() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::default();
    assert!(probe(&Platform::new(dir.path()), &env).unwrap().is_none());
    std::fs::create_dir_all(Platform::new(dir.path()).path(SYSFS_PATH)).unwrap();
    let found = probe(&Platform::new(dir.path()), &env).unwrap().unwrap();
    assert_eq!(found.tee(), Tee::Snp);

    // configfs-tsm answers for `sev_guest` (other providers: `tsm::tests`)
    let other = tempfile::tempdir().unwrap();
    let (platform, _) = TsmEmulator::install(
        other.path(),
        Answer {
            provider: TSM_PROVIDER.into(),
            outblob: vec![1],
            echo_at: None,
            auxblob: None,
            extra_writers: 0,
        },
    );
    assert_eq!(probe(&platform, &env).unwrap().unwrap().tee(), Tee::Snp);
}
