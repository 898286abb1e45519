//! Tests of the log files, the write-ahead protocol and crash recovery.

use std::sync::{atomic::Ordering, Arc};

use attester::SampleAttester;

use super::{test_tee::MemoryTee, *};

/// Where a test stops a measurement, as a crash of the agent would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// the write-ahead record is on disk, the register not extended
    AfterWal,
    /// the register is extended, nothing appended
    AfterExtend,
    /// half the entry is appended
    MidAppend,
    /// the entry is appended, the record not removed
    AfterAppend,
}

const ALL_POINTS: [CrashPoint; 4] = [
    CrashPoint::AfterWal,
    CrashPoint::AfterExtend,
    CrashPoint::MidAppend,
    CrashPoint::AfterAppend,
];

fn ev(content: &str) -> AaelEvent {
    AaelEvent::new("domain", "operation", content).unwrap()
}

fn log_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(EVENTLOG_FILE_NAME)).unwrap()
}

fn entries(dir: &Path) -> Vec<Tcg2Event> {
    tcg2::parse_entries(&log_bytes(dir), &DigestSizes::well_known()).unwrap()
}

fn contents(dir: &Path) -> Vec<String> {
    entries(dir)
        .iter()
        .map(|e| e.aael_event().unwrap().content().to_string())
        .collect()
}

/// Replays the log: the register values it implies.
fn replay(dir: &Path, tee: &MemoryTee) -> std::collections::BTreeMap<u64, Vec<u8>> {
    let mut registers = std::collections::BTreeMap::new();
    for e in entries(dir) {
        let id = tcg2::tpm_algorithm_id(tee.algorithm);
        let digest = e.digest_for(id).unwrap().to_vec();
        // every digest is the event's digest
        assert_eq!(digest, tcg2::digest(tee.algorithm, &e.event));
        let index = u64::from(e.mr_index);
        let current = registers
            .remove(&index)
            .unwrap_or_else(|| vec![0; tcg2::digest_len(tee.algorithm)]);
        registers.insert(
            index,
            tcg2::extended_value(tee.algorithm, &current, &digest),
        );
    }
    registers
}

fn assert_replays(dir: &Path, tee: &MemoryTee) {
    assert_eq!(replay(dir, tee), *tee.registers.lock().unwrap());
}

fn wal_exists(dir: &Path) -> bool {
    dir.join(WAL_FILE_NAME).exists()
}

#[tokio::test]
async fn events_are_extended_and_logged_with_the_real_register() {
    let dir = tempfile::tempdir().unwrap();
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
    assert_eq!(log.log_path(), dir.path().join("eventlog"));
    assert!(log_bytes(dir.path()).is_empty());

    let RuntimeMeasurement::Extended(r17) = log.extend(&tee, &ev("a"), 17).await.unwrap() else {
        panic!("not extended")
    };
    assert_eq!(r17.register_index, 4);
    assert_eq!(r17.algorithm, HashAlgorithm::Sha384);
    assert_eq!(
        r17.digest,
        tcg2::digest(HashAlgorithm::Sha384, &ev("a").encode())
    );
    // another PCR is another register, and the entry says so (upstream logged the
    // configured PCR's register whatever it extended)
    let RuntimeMeasurement::Extended(r8) = log.extend(&tee, &ev("b"), 8).await.unwrap() else {
        panic!("not extended")
    };
    assert_eq!(r8.register_index, 3);
    let logged = entries(dir.path());
    assert_eq!(
        logged.iter().map(|e| e.mr_index).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert!(logged.iter().all(|e| e.event_type == tcg2::EV_EVENT_TAG));
    assert_eq!(contents(dir.path()), vec!["a", "b"]);
    assert_replays(dir.path(), &tee);
    assert!(!wal_exists(dir.path()));

    // the exact bytes of the first entry
    let first = Tcg2Event::aael(4, HashAlgorithm::Sha384, r17.digest.clone(), &ev("a")).encode();
    assert!(log_bytes(dir.path()).starts_with(&first));

    // reopening keeps appending after the existing entries
    drop(log);
    let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
    log.extend(&tee, &ev("c"), 17).await.unwrap();
    assert_eq!(contents(dir.path()), vec!["a", "b", "c"]);
    assert_replays(dir.path(), &tee);
}

#[tokio::test]
async fn every_register_algorithm() {
    for algorithm in [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
        HashAlgorithm::Sm3,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tee = MemoryTee::new(algorithm, true);
        let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
        log.extend(&tee, &ev("x"), 17).await.unwrap();
        let e = &entries(dir.path())[0];
        assert_eq!(e.digests[0].algorithm_id, tcg2::tpm_algorithm_id(algorithm));
        assert_eq!(e.digests[0].digest.len(), tcg2::digest_len(algorithm));
        assert_replays(dir.path(), &tee);
    }
    // the sha256 vector through the whole path
    let dir = tempfile::tempdir().unwrap();
    let tee = MemoryTee::new(HashAlgorithm::Sha256, false);
    let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
    log.extend(
        &tee,
        &AaelEvent::new("domain", "operation", "content").unwrap(),
        17,
    )
    .await
    .unwrap();
    assert_eq!(
        hex::encode(&entries(dir.path())[0].digests[0].digest),
        "46df8dacf00a07d34a83cdf56d7978697790787cf2ba1432ef7c38f22cd96351"
    );
}

#[tokio::test]
async fn not_supported_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AaEventlog::open(dir.path(), &SampleAttester).await.unwrap();
    assert_eq!(
        log.extend(&SampleAttester, &ev("x"), 17).await.unwrap(),
        RuntimeMeasurement::NotSupported
    );
    assert!(log_bytes(dir.path()).is_empty());
    assert!(!wal_exists(dir.path()));
}

#[tokio::test]
async fn a_failed_extend_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
    log.extend(&tee, &ev("a"), 17).await.unwrap();
    tee.failing.store(true, Ordering::SeqCst);
    let err = log.extend(&tee, &ev("b"), 17).await.unwrap_err();
    assert!(
        matches!(err, EventlogError::Extend { pcr: 17, .. }),
        "{err}"
    );
    assert!(!wal_exists(dir.path()));
    tee.failing.store(false, Ordering::SeqCst);
    log.extend(&tee, &ev("c"), 17).await.unwrap();
    assert_eq!(contents(dir.path()), vec!["a", "c"]);
    assert_replays(dir.path(), &tee);
}

#[tokio::test]
async fn a_bad_attester_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tee = MemoryTee {
        bad_digest_len: Some(20),
        ..MemoryTee::new(HashAlgorithm::Sha384, true)
    };
    let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
    let err = log.extend(&tee, &ev("a"), 17).await.unwrap_err();
    assert!(
        matches!(
            err,
            EventlogError::DigestLength {
                algorithm: HashAlgorithm::Sha384,
                expected: 48,
                found: 20
            }
        ),
        "{err}"
    );
    // the extend happened: the record stays for recovery, nothing half-written
    assert!(wal_exists(dir.path()));
    assert!(log_bytes(dir.path()).is_empty());
}

/// Crashes a measurement at `point`, restarts (a new `AaEventlog` on the same files and
/// registers) and checks the recovered log.
async fn crash_and_restart(point: CrashPoint, readable: bool) {
    let dir = tempfile::tempdir().unwrap();
    let tee = Arc::new(MemoryTee::new(HashAlgorithm::Sha384, readable));
    let mut log = AaEventlog::open(dir.path(), &*tee).await.unwrap();
    log.extend(&*tee, &ev("before"), 17).await.unwrap();
    log.crash_at = Some(point);
    let err = log.extend(&*tee, &ev("crashed"), 17).await.unwrap_err();
    assert!(
        matches!(err, EventlogError::SimulatedCrash(p) if p == point),
        "{err}"
    );
    assert!(wal_exists(dir.path()), "{point:?}");
    drop(log);

    let extends_before_restart = tee.extends.load(Ordering::SeqCst);
    let mut log = AaEventlog::open(dir.path(), &*tee).await.unwrap();
    assert!(!wal_exists(dir.path()), "{point:?}");
    assert_eq!(contents(dir.path()), vec!["before", "crashed"], "{point:?}");
    let re_extended = tee.extends.load(Ordering::SeqCst) - extends_before_restart;

    let extended_before_crash = point != CrashPoint::AfterWal;
    let appended_before_crash = point == CrashPoint::AfterAppend;
    if appended_before_crash || (readable && extended_before_crash) {
        // the log or the register tells what happened: nothing is extended twice
        assert_eq!(re_extended, 0, "{point:?} readable={readable}");
        assert_replays(dir.path(), &tee);
    } else if !extended_before_crash {
        assert_eq!(re_extended, 1, "{point:?} readable={readable}");
        assert_replays(dir.path(), &tee);
    } else {
        // unreadable register, extended before the crash: the documented safe choice
        // extends again; the log no longer replays (verifiers reject it)
        assert_eq!(re_extended, 1, "{point:?}");
        assert_ne!(replay(dir.path(), &tee), *tee.registers.lock().unwrap());
        let digest = tcg2::digest(tee.algorithm, &ev("crashed").encode());
        let mut doubled = replay(dir.path(), &tee);
        let v = doubled.remove(&4).unwrap();
        doubled.insert(4, tcg2::extended_value(tee.algorithm, &v, &digest));
        assert_eq!(doubled, *tee.registers.lock().unwrap());
    }

    // the log goes on
    log.extend(&*tee, &ev("after"), 17).await.unwrap();
    assert_eq!(contents(dir.path()), vec!["before", "crashed", "after"]);
}

#[tokio::test]
async fn crash_at_each_step_with_a_readable_register() {
    for point in ALL_POINTS {
        crash_and_restart(point, true).await;
    }
}

#[tokio::test]
async fn crash_at_each_step_with_an_unreadable_register() {
    for point in ALL_POINTS {
        crash_and_restart(point, false).await;
    }
}

/// A step that fails in a running agent is finished before its next measurement; the
/// agent knows it extended, so it never extends twice, even without reading the register.
#[tokio::test]
async fn a_failed_append_is_finished_by_the_next_measurement() {
    for point in [
        CrashPoint::AfterExtend,
        CrashPoint::MidAppend,
        CrashPoint::AfterAppend,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tee = MemoryTee::new(HashAlgorithm::Sha384, false);
        let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
        log.crash_at = Some(point);
        log.extend(&tee, &ev("first"), 17).await.unwrap_err();
        log.crash_at = None;
        log.extend(&tee, &ev("second"), 17).await.unwrap();
        assert_eq!(tee.extends.load(Ordering::SeqCst), 2, "{point:?}");
        assert_eq!(contents(dir.path()), vec!["first", "second"], "{point:?}");
        assert_replays(dir.path(), &tee);
        assert!(!wal_exists(dir.path()));
    }
}

#[tokio::test]
async fn a_foreign_extend_after_the_crash_takes_the_safe_choice() {
    let dir = tempfile::tempdir().unwrap();
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
    log.crash_at = Some(CrashPoint::AfterWal);
    log.extend(&tee, &ev("x"), 17).await.unwrap_err();
    drop(log);
    tee.foreign_extend(4, &[7; 48]);
    AaEventlog::open(dir.path(), &tee).await.unwrap();
    assert_eq!(tee.extends.load(Ordering::SeqCst), 1);
    assert_eq!(contents(dir.path()), vec!["x"]);
}

#[tokio::test]
async fn a_platform_without_measurement_drops_the_interrupted_event() {
    let dir = tempfile::tempdir().unwrap();
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    let mut log = AaEventlog::open(dir.path(), &tee).await.unwrap();
    log.crash_at = Some(CrashPoint::AfterWal);
    log.extend(&tee, &ev("x"), 17).await.unwrap_err();
    drop(log);
    AaEventlog::open(dir.path(), &SampleAttester).await.unwrap();
    assert!(!wal_exists(dir.path()));
    assert!(log_bytes(dir.path()).is_empty());
}

#[tokio::test]
async fn a_stale_temporary_record_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".wal_event_entry.tmp"), b"AAELWAL1 torn").unwrap();
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    AaEventlog::open(dir.path(), &tee).await.unwrap();
    assert!(!dir.path().join(".wal_event_entry.tmp").exists());
    assert_eq!(tee.extends.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn one_agent_per_log() {
    let dir = tempfile::tempdir().unwrap();
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    let first = AaEventlog::open(dir.path(), &tee).await.unwrap();
    let err = AaEventlog::open(dir.path(), &tee).await.unwrap_err();
    assert!(matches!(err, EventlogError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    drop(first);
    AaEventlog::open(dir.path(), &tee).await.unwrap();
}

/// A bad log or record refuses the open and changes nothing on disk.
async fn refused(dir: &Path, tee: &MemoryTee) -> EventlogError {
    // an absent log is created empty before the record is read
    let log_or_empty = || std::fs::read(dir.join(EVENTLOG_FILE_NAME)).unwrap_or_default();
    let log = log_or_empty();
    let wal = std::fs::read(dir.join(WAL_FILE_NAME)).ok();
    let err = AaEventlog::open(dir, tee).await.unwrap_err();
    assert_eq!(log_or_empty(), log);
    assert_eq!(std::fs::read(dir.join(WAL_FILE_NAME)).ok(), wal);
    assert_eq!(tee.extends.load(Ordering::SeqCst), 0);
    err
}

fn one_entry() -> Vec<u8> {
    Tcg2Event::aael(4, HashAlgorithm::Sha384, vec![1; 48], &ev("a")).encode()
}

#[tokio::test]
async fn damaged_logs_are_refused() {
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    let entry = one_entry();
    let mut wrong_tag = entry.clone();
    let tag_at = entry.len() - 8 - "domain operation a".len();
    wrong_tag[tag_at..tag_at + 4].copy_from_slice(b"XXXX");
    let mut wrong_type = entry.clone();
    wrong_type[4] = 0x7;
    let mut huge_event = entry.clone();
    huge_event[62..66].copy_from_slice(&u32::MAX.to_le_bytes());
    for (name, bytes, reason) in [
        ("torn", entry[..entry.len() - 1].to_vec(), "ends inside"),
        ("garbage", b"hello".to_vec(), "ends inside"),
        ("wrong tag", wrong_tag, "not the AAEL id"),
        ("wrong type", wrong_type, "not EV_EVENT_TAG"),
        ("oversized", huge_event, "ends inside the event"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EVENTLOG_FILE_NAME), &bytes).unwrap();
        let err = refused(dir.path(), &tee).await;
        assert!(
            matches!(err, EventlogError::CorruptLog { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(reason), "{name}: {err}");
    }
}

#[tokio::test]
async fn damaged_records_are_refused() {
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    let good = WalRecord {
        log_offset: 0,
        pcr: 17,
        before: None,
        event: ev("x"),
    }
    .encode();
    for (name, wal, want) in [
        ("empty", vec![], WalError::Truncated("marker")),
        (
            "upstream format",
            [&[0u8; 8][..], &[0; 48], b"d o c"].concat(),
            WalError::Magic,
        ),
        (
            "torn",
            good[..good.len() - 2].to_vec(),
            WalError::Truncated("event text"),
        ),
        (
            "oversized",
            [good.clone(), vec![0; MAX_WAL_LEN]].concat(),
            WalError::TrailingBytes(MAX_WAL_LEN + 1 - good.len()),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WAL_FILE_NAME), &wal).unwrap();
        let err = refused(dir.path(), &tee).await;
        match &err {
            EventlogError::CorruptWal { source, .. } => assert_eq!(source, &want, "{name}"),
            other => panic!("{name}: {other}"),
        }
        assert!(err.to_string().contains("Move it away"), "{err}");
    }
}

#[tokio::test]
async fn a_record_that_does_not_fit_the_log_is_refused() {
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    // the log is shorter than the record's offset
    let dir = tempfile::tempdir().unwrap();
    let wal = WalRecord {
        log_offset: 500,
        pcr: 17,
        before: None,
        event: ev("x"),
    };
    std::fs::write(dir.path().join(WAL_FILE_NAME), wal.encode()).unwrap();
    std::fs::write(dir.path().join(EVENTLOG_FILE_NAME), one_entry()).unwrap();
    let err = refused(dir.path(), &tee).await;
    assert!(
        err.to_string().contains("shorter than the 500 bytes"),
        "{err}"
    );

    // another complete entry sits where the pending one goes
    let dir = tempfile::tempdir().unwrap();
    let wal = WalRecord {
        log_offset: 0,
        ..wal
    };
    std::fs::write(dir.path().join(WAL_FILE_NAME), wal.encode()).unwrap();
    std::fs::write(dir.path().join(EVENTLOG_FILE_NAME), one_entry()).unwrap();
    let err = refused(dir.path(), &tee).await;
    assert!(matches!(err, EventlogError::CorruptLog { .. }), "{err}");
    assert!(err.to_string().contains("are not that entry"), "{err}");
}

#[tokio::test]
async fn the_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("run/attestation-agent");
    let tee = MemoryTee::new(HashAlgorithm::Sha384, true);
    let mut log = AaEventlog::open(&nested, &tee).await.unwrap();
    log.extend(&tee, &ev("x"), 17).await.unwrap();
    assert_eq!(contents(&nested), vec!["x"]);
    // a file where the directory should be
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"").unwrap();
    let err = AaEventlog::open(&blocked, &tee).await.unwrap_err();
    assert!(
        matches!(
            err,
            EventlogError::Io {
                action: "creating the eventlog directory",
                ..
            }
        ),
        "{err}"
    );
}
