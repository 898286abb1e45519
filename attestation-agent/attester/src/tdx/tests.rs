use std::{path::Path, sync::Mutex};

use serde_json::json;

use super::*;
use crate::tsm::{
    emulator::{Answer, TsmEmulator},
    REPORT_DIR,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/evidence");

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(format!("{VECTORS}/{name}")).expect("recorded vector")
}

/// Replies with a recorded TDREPORT and records the requests.
#[derive(Debug)]
struct RecordedDevice {
    report: Vec<u8>,
    requests: Mutex<Vec<[u8; 64]>>,
}

impl RecordedDevice {
    fn new(report: Vec<u8>) -> Arc<Self> {
        Arc::new(Self {
            report,
            requests: Mutex::new(Vec::new()),
        })
    }
}

impl TdxGuestDevice for RecordedDevice {
    fn get_report(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>> {
        self.requests.lock().unwrap().push(*report_data);
        Ok(self.report.clone())
    }
}

/// A device node that must not be used.
#[derive(Debug)]
struct NoDevice;

impl TdxGuestDevice for NoDevice {
    fn get_report(&self, _: &[u8; 64]) -> io::Result<Vec<u8>> {
        Err(io::Error::from(io::ErrorKind::NotFound))
    }
}

fn write(root: &Path, path: &str, bytes: &[u8]) {
    let full = Platform::new(root).path(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, bytes).unwrap();
}

fn tdx_tree(root: &Path, echo: bool) -> (Platform, Arc<TsmEmulator>) {
    TsmEmulator::install(
        root,
        Answer {
            provider: "tdx_guest".into(),
            outblob: vector("tdx_quote_4.dat"),
            echo_at: echo.then_some(568),
            auxblob: None,
            extra_writers: 0,
        },
    )
}

#[tokio::test]
async fn evidence_is_the_quote_for_our_report_data_and_the_eventlog() {
    let dir = tempfile::tempdir().unwrap();
    let (platform, emulator) = tdx_tree(dir.path(), true);
    let attester = TdxAttester::with_device(platform, &Env::default(), Arc::new(NoDevice));
    let report_data: Vec<u8> = (0u8..48).collect();

    let evidence = attester.get_evidence(&report_data).await.unwrap();
    let mut padded = report_data.clone();
    padded.resize(64, 0);
    let mut quote = vector("tdx_quote_4.dat");
    quote[568..632].copy_from_slice(&padded);
    assert_eq!(
        evidence,
        json!({"cc_eventlog": null, "quote": STANDARD.encode(&quote)})
    );
    assert_eq!(*emulator.inblobs.lock().unwrap(), vec![padded.clone()]);
    // the evidence is what trustee's verifier deserializes
    let parsed: TdxEvidence = serde_json::from_value(evidence).unwrap();
    assert_eq!(parsed.cc_eventlog, None);

    // with an agent eventlog (AAEL_PATH) and no CCEL: header ‖ AAEL ‖ end marker
    write(dir.path(), "/var/aael", b"entries");
    let env: Env = [("AAEL_PATH", "/var/aael")].into_iter().collect();
    let (platform, _) = tdx_tree(dir.path(), true);
    let attester = TdxAttester::with_device(platform, &env, Arc::new(NoDevice));
    let evidence = attester.get_evidence(&report_data).await.unwrap();
    let log = [
        &eventlog::SPEC_ID_HEADER[..],
        b"entries",
        &eventlog::END_MARKER[..],
    ]
    .concat();
    assert_eq!(
        evidence,
        json!({"cc_eventlog": STANDARD.encode(log), "quote": STANDARD.encode(&quote)})
    );
    // entries are removed after each request
    let left = std::fs::read_dir(Platform::new(dir.path()).path(REPORT_DIR))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn report_data_longer_than_64_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (platform, emulator) = tdx_tree(dir.path(), true);
    let attester = TdxAttester::with_device(platform, &Env::default(), Arc::new(NoDevice));
    let err = attester.get_evidence(&[1; 65]).await.unwrap_err();
    assert!(
        matches!(
            err,
            AttesterError::ReportDataTooLong {
                tee: Tee::Tdx,
                len: 65,
                max: 64
            }
        ),
        "{err}"
    );
    assert!(emulator.inblobs.lock().unwrap().is_empty());
    // exactly 64 is fine
    attester.get_evidence(&[1; 64]).await.unwrap();
}

#[tokio::test]
async fn a_quote_for_other_report_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (platform, _) = tdx_tree(dir.path(), false);
    let attester = TdxAttester::with_device(platform, &Env::default(), Arc::new(NoDevice));
    let err = attester.get_evidence(b"nonce").await.unwrap_err();
    assert!(
        err.to_string().contains("instead of the requested"),
        "{err}"
    );
}

#[tokio::test]
async fn without_configfs_tsm_the_error_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let attester = TdxAttester::with_device(
        Platform::new(dir.path()),
        &Env::default(),
        Arc::new(NoDevice),
    );
    let err = attester.get_evidence(b"x").await.unwrap_err();
    assert!(err.to_string().contains("CONFIG_TSM_REPORTS"), "{err}");
}

fn report_with_mrconfigid(value: &[u8; 48]) -> Vec<u8> {
    let mut report = vector("tdx_report_1.bin");
    report[576..624].copy_from_slice(value);
    report
}

#[tokio::test]
async fn initdata_is_checked_against_mrconfigid_from_the_tdreport() {
    let dir = tempfile::tempdir().unwrap();
    let digest = [0x5a; 32];
    let mut mrconfigid = [0u8; 48];
    mrconfigid[..32].copy_from_slice(&digest);
    let device = RecordedDevice::new(report_with_mrconfigid(&mrconfigid));
    let attester =
        TdxAttester::with_device(Platform::new(dir.path()), &Env::default(), device.clone());

    assert_eq!(
        attester.bind_init_data(&digest).await.unwrap(),
        InitDataResult::Bound
    );
    assert_eq!(*device.requests.lock().unwrap(), vec![[0u8; 64]]);
    // a sha384 digest that fills the register
    let full = [0x77; 48];
    let attester = TdxAttester::with_device(
        Platform::new(dir.path()),
        &Env::default(),
        RecordedDevice::new(report_with_mrconfigid(&full)),
    );
    assert_eq!(
        attester.bind_init_data(&full).await.unwrap(),
        InitDataResult::Bound
    );

    // mismatch: both values in the error
    let err = attester.bind_init_data(&[0x11; 32]).await.unwrap_err();
    match &err {
        AttesterError::InitDataMismatch {
            tee,
            platform_hex,
            expected_hex,
        } => {
            assert_eq!(*tee, Tee::Tdx);
            assert_eq!(platform_hex, &hex::encode(full));
            assert_eq!(
                expected_hex,
                &format!("{}{}", "11".repeat(32), "00".repeat(16))
            );
        }
        other => panic!("{other}"),
    }

    // a sha512 digest does not fit and is not truncated
    let err = attester.bind_init_data(&[0x77; 64]).await.unwrap_err();
    assert!(
        matches!(
            err,
            AttesterError::InitDataDigestSize {
                tee: Tee::Tdx,
                len: 64,
                register: "MRCONFIGID",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn initdata_uses_sysfs_mrconfigid_when_present() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!("{MEASUREMENTS_DIR}/mrconfigid"),
        &[0x42; 48],
    );
    let attester = TdxAttester::with_device(
        Platform::new(dir.path()),
        &Env::default(),
        Arc::new(NoDevice),
    );
    assert_eq!(
        attester.bind_init_data(&[0x42; 48]).await.unwrap(),
        InitDataResult::Bound
    );
    // hex text is accepted too
    write(
        dir.path(),
        &format!("{MEASUREMENTS_DIR}/mrconfigid"),
        format!("{}\n", "43".repeat(48)).as_bytes(),
    );
    assert_eq!(
        attester.bind_init_data(&[0x43; 48]).await.unwrap(),
        InitDataResult::Bound
    );
    // anything else is refused
    write(
        dir.path(),
        &format!("{MEASUREMENTS_DIR}/mrconfigid"),
        b"short",
    );
    let err = attester.bind_init_data(&[0x43; 48]).await.unwrap_err();
    assert!(err.to_string().contains("not a 48-byte register"), "{err}");
}

#[tokio::test]
async fn a_malformed_tdreport_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let attester = TdxAttester::with_device(
        Platform::new(dir.path()),
        &Env::default(),
        RecordedDevice::new(vec![0x81; 100]),
    );
    let err = attester.bind_init_data(&[0; 32]).await.unwrap_err();
    assert!(err.to_string().contains("TDREPORT"), "{err}");
    let attester = TdxAttester::with_device(
        Platform::new(dir.path()),
        &Env::default(),
        Arc::new(NoDevice),
    );
    let err = attester.bind_init_data(&[0; 32]).await.unwrap_err();
    assert!(matches!(err, AttesterError::Io { .. }), "{err}");
}

#[test]
fn pcr_mapping_follows_the_spec() {
    for (pcr, rtmr) in [
        (0, 3),
        (1, 0),
        (7, 0),
        (2, 1),
        (6, 1),
        (8, 2),
        (15, 2),
        (16, 3),
        (17, 3),
        (23, 3),
        (u64::MAX, 3),
    ] {
        assert_eq!(pcr_to_rtmr(pcr), rtmr, "PCR {pcr}");
    }
}

#[tokio::test]
async fn runtime_measurements_extend_the_mapped_rtmr_through_sysfs() {
    let dir = tempfile::tempdir().unwrap();
    let attester = TdxAttester::with_device(
        Platform::new(dir.path()),
        &Env::default(),
        Arc::new(NoDevice),
    );
    // without the sysfs files the platform cannot extend
    assert_eq!(
        attester
            .extend_runtime_measurement(b"domain operation content", 17)
            .await
            .unwrap(),
        RuntimeMeasurement::NotSupported
    );

    let rtmr3 = format!("{MEASUREMENTS_DIR}/rtmr3:sha384");
    write(dir.path(), &rtmr3, &[0; 48]);
    let event = b"domain operation content";
    let outcome = attester
        .extend_runtime_measurement(event, 17)
        .await
        .unwrap();
    let digest = Sha384::digest(event).to_vec();
    assert_eq!(
        outcome,
        RuntimeMeasurement::Extended(ExtendedRegister {
            register_index: 4,
            algorithm: HashAlgorithm::Sha384,
            digest: digest.clone(),
        })
    );
    // the digest (48 raw bytes) is what was written to the register file
    assert_eq!(
        std::fs::read(Platform::new(dir.path()).path(&rtmr3)).unwrap(),
        digest
    );
}

#[tokio::test]
async fn registers_are_read_from_sysfs_or_the_tdreport() {
    let dir = tempfile::tempdir().unwrap();
    let attester = TdxAttester::with_device(
        Platform::new(dir.path()),
        &Env::default(),
        RecordedDevice::new(vector("tdx_report_1.bin")),
    );
    let value = attester.read_register(1).await.unwrap().unwrap();
    assert_eq!(value.register_index, 1);
    assert_eq!(value.algorithm, HashAlgorithm::Sha384);
    assert_eq!(
        hex::encode(&value.value),
        "f4ec1a04670fe7926cd5de4aef9aaa7689ab4ceaa132d7c5242b47f67dfaaea64c372a17ad68fef9a6ac99aabbddabdc"
    );
    write(
        dir.path(),
        &format!("{MEASUREMENTS_DIR}/rtmr3:sha384"),
        &[9; 48],
    );
    let value = attester.read_register(17).await.unwrap().unwrap();
    assert_eq!(value.register_index, 4);
    assert_eq!(value.value, vec![9; 48]);
}

#[test]
fn detection_by_device_or_configfs_provider() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::default();
    assert!(probe(&Platform::new(dir.path()), &env).unwrap().is_none());

    // configfs-tsm answers for `tdx_guest` (other providers: `tsm::tests`)
    let (platform, _) = tdx_tree(dir.path(), true);
    let found = probe(&platform, &env).unwrap().unwrap();
    assert_eq!(found.tee(), Tee::Tdx);

    let other = tempfile::tempdir().unwrap();
    write(other.path(), DEVICE_PATH, b"");
    let found = probe(&Platform::new(other.path()), &env).unwrap().unwrap();
    assert_eq!(found.tee(), Tee::Tdx);
}
