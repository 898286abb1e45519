use std::sync::Mutex;

use serde_json::Value;

use super::*;

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/evidence/csv_evidence.json"
);

fn recorded() -> Value {
    serde_json::from_slice(&std::fs::read(VECTOR).expect("recorded CSV evidence")).unwrap()
}

/// The recorded (restored) report page.
fn recorded_page() -> Vec<u8> {
    let evidence: CsvEvidence = serde_json::from_value(recorded()).unwrap();
    evidence.attestation_report.data
}

#[test]
fn recorded_evidence_round_trips_and_is_rebuilt_from_its_page() {
    let value = recorded();
    let evidence: CsvEvidence = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(serde_json::to_value(&evidence).unwrap(), value);
    // the PEK certificate and serial number decode from the page exactly as recorded
    let rebuilt = evidence_from_report(
        &evidence.attestation_report.data,
        evidence.cc_eventlog.clone(),
    )
    .unwrap();
    assert_eq!(serde_json::to_value(&rebuilt).unwrap(), value);
    assert_eq!(rebuilt.cert_chain.pek.body.data.pubkey.usage, 0x1002);
    assert_eq!(&rebuilt.serial_number[..14], b"KPA64911240507");
}

/// Encodes a page as the firmware returns it: TEE info fields and signer XORed with the
/// anonce, signer MACed with the request's mnonce.
#[derive(Debug)]
struct FirmwareLike {
    tamper_mac: bool,
    wrong_mnonce: bool,
    requests: Mutex<Vec<[u8; REQUEST_SIZE]>>,
}

impl CsvGuestDevice for FirmwareLike {
    fn attestation_report(&self, request: &[u8; REQUEST_SIZE]) -> io::Result<Vec<u8>> {
        self.requests.lock().unwrap().push(*request);
        let mut page = recorded_page();
        let mut anonce = [0u8; 4];
        anonce.copy_from_slice(&page[ANONCE]);
        let mut data = request[..64].to_vec();
        xor_with(&mut data, anonce);
        page[REPORT_DATA].copy_from_slice(&data);
        let mut mnonce = request[64..80].to_vec();
        if self.wrong_mnonce {
            mnonce[0] ^= 1;
        }
        xor_with(&mut mnonce, anonce);
        page[MNONCE].copy_from_slice(&mnonce);
        xor_with(&mut page[PEK_CERT], anonce);
        xor_with(&mut page[SERIAL], anonce);
        page[SIGNER_RESERVED].fill(0x5A);
        let mut mac = <Hmac<Sm3> as Mac>::new_from_slice(&request[64..80]).unwrap();
        mac.update(&page[PEK_CERT.start..SIGNER_RESERVED.end]);
        let mut tag = mac.finalize().into_bytes().to_vec();
        if self.tamper_mac {
            tag[0] ^= 1;
        }
        page[SIGNER_MAC].copy_from_slice(&tag);
        Ok(page)
    }
}

fn device(tamper_mac: bool, wrong_mnonce: bool) -> Arc<FirmwareLike> {
    Arc::new(FirmwareLike {
        tamper_mac,
        wrong_mnonce,
        requests: Mutex::new(Vec::new()),
    })
}

#[tokio::test]
async fn evidence_restores_the_signer_and_binds_our_report_data() {
    let dir = tempfile::tempdir().unwrap();
    let dev = device(false, false);
    let attester =
        CsvAttester::with_device(Platform::new(dir.path()), &Env::default(), dev.clone());
    let value = attester.get_evidence(&[0x42; 32]).await.unwrap();
    let evidence: CsvEvidence = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(serde_json::to_value(&evidence).unwrap(), value);

    let request = dev.requests.lock().unwrap()[0];
    let mut data = [0u8; 64];
    data[..32].fill(0x42);
    assert_eq!(request[..64], data);
    let hash = Sm3::new().chain_update(&request[..80]).finalize();
    assert_eq!(
        request[80..],
        hash[..],
        "the request hash is SM3(data ‖ mnonce)"
    );

    // everything but the XORed TEE info matches the recorded evidence
    let recorded: CsvEvidence = serde_json::from_value(recorded()).unwrap();
    assert_eq!(evidence.cert_chain, recorded.cert_chain);
    assert_eq!(evidence.serial_number, recorded.serial_number);
    assert_eq!(evidence.cc_eventlog, None);
    let page = &evidence.attestation_report.data;
    assert_eq!(page[SIGNER_RESERVED], [0u8; 32]);
    let mut anonce = [0u8; 4];
    anonce.copy_from_slice(&page[ANONCE]);
    let mut echoed = page[REPORT_DATA].to_vec();
    xor_with(&mut echoed, anonce);
    assert_eq!(echoed, data);
}

#[tokio::test]
async fn a_report_not_answering_our_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (dev, expected) in [
        (device(true, false), "MAC"),
        (device(false, true), "mnonce"),
    ] {
        let attester = CsvAttester::with_device(Platform::new(dir.path()), &Env::default(), dev);
        let err = attester.get_evidence(b"x").await.unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
    let attester = CsvAttester::with_device(
        Platform::new(dir.path()),
        &Env::default(),
        device(false, false),
    );
    let err = attester.get_evidence(&[1; 65]).await.unwrap_err();
    assert!(
        matches!(err, AttesterError::ReportDataTooLong { .. }),
        "{err}"
    );
}

#[test]
fn malformed_pages_and_certificates_are_refused() {
    assert!(matches!(
        CsvCertificate::parse(&[0; 10]),
        Err(CsvError::Size { len: 10, .. })
    ));
    assert!(evidence_from_report(&[0; 100], None).is_err());
    let mut short = vec![0u8; 100];
    assert!(verify_and_restore(&mut short, &[0; 64], &[0; 16]).is_err());
}

#[test]
fn detection_by_device_node() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::new(dir.path());
    assert!(probe(&platform, &Env::default()).unwrap().is_none());
    std::fs::create_dir_all(platform.path("/dev")).unwrap();
    std::fs::write(platform.path(DEVICE_PATH), b"").unwrap();
    assert_eq!(
        probe(&platform, &Env::default()).unwrap().unwrap().tee(),
        Tee::Csv
    );
}
