//! The Attestation Agent's runtime eventlog (AAEL).
//!
//! Each runtime event (`<domain> <operation> <content>`, see [`AaelEvent`]) is hashed and
//! extended into a platform register by the attester, and recorded as a TCG2 crypto-agile
//! entry ([`tcg2`]) in the log file `<dir>/eventlog` (default dir
//! [`DEFAULT_EVENTLOG_DIR`]). A verifier replays the log against the register values in the
//! evidence; the TDX and CSV attesters embed the file in their evidence.
//!
//! The entry names the register the attester really extended
//! ([`ExtendedRegister::register_index`], e.g. CC MR 4 = RTMR3 for PCR 17 on TDX) and the
//! digest it extended.
//!
//! # Crash safety
//!
//! Extending a register and appending to a file cannot be one atomic step, so each
//! measurement goes through a write-ahead record `<dir>/.wal_event_entry`:
//!
//! 1. read the register (when the platform can), write the record (log offset, PCR,
//!    register value, event text) to a temporary file, fsync, rename it into place;
//! 2. extend the register;
//! 3. append the entry at the recorded offset, fsync;
//! 4. delete the record.
//!
//! An attester error or `NotSupported` at step 2 means nothing was extended: the record is
//! deleted. A record found later (at startup, or before the next measurement if a step
//! failed in this process) is resolved like this:
//!
//! | state found | action |
//! |---|---|
//! | the log holds the entry at the offset | delete the record |
//! | this process extended the register | append, delete |
//! | register = H(value before ‖ event digest) | append, delete |
//! | register = value before | extend, append, delete |
//! | register unreadable, or neither value | **extend, append, delete** (below) |
//!
//! A torn entry at the offset is cut off first; any other content there, or a log shorter
//! than the offset, is an error (the log is ours alone, so it was damaged). So is a
//! register read that fails (an error, not "cannot read"): the record stays, and the open
//! (at startup: the agent) or the measurement fails with the reason.
//!
//! The last row is the documented safe choice. When the outcome of the interrupted
//! extend cannot be known, the agent extends again: the log then never names an event the
//! register does not hold. If the first extend had happened, the register holds the event
//! twice, the log no longer replays, and a verifier rejects the evidence: fail closed,
//! never a log that verifies while hiding or inventing a measurement. Platforms whose
//! attester implements [`Attester::read_register`] never take that row unless another
//! process extended the same register.

pub(crate) mod tcg2;
#[cfg(test)]
pub(crate) mod test_tee;
mod wal;

use std::{
    fs::{File, OpenOptions},
    io::{self, Read},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use attester::{Attester, AttesterError, ExtendedRegister, HashAlgorithm, RuntimeMeasurement};
use tracing::{debug, error, info, warn};

// The event encoding is part of the wire the data hub shares with the agent (protos).
pub use protos::{AaelEvent, EventError, EventField};
pub use wal::WalError;

use self::{
    tcg2::{DigestSizes, ParseErrorKind, Tcg2Event},
    wal::{WalRecord, MAX_WAL_LEN},
};

/// Directory of the log and its write-ahead record.
pub const DEFAULT_EVENTLOG_DIR: &str = "/run/attestation-agent";
/// File name of the log (binary TCG2 entries, append-only).
pub(crate) const EVENTLOG_FILE_NAME: &str = "eventlog";
/// File name of the write-ahead record.
pub(crate) const WAL_FILE_NAME: &str = ".wal_event_entry";
/// The record is written here first and renamed into place, so a record is never torn.
const WAL_TMP_FILE_NAME: &str = ".wal_event_entry.tmp";

/// Why the eventlog could not be opened or could not record an event.
#[derive(Debug, thiserror::Error)]
pub enum EventlogError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// what the agent was doing
        action: &'static str,
        /// the file or directory
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// Another process holds the log.
    #[error(
        "the eventlog {path} is locked by another process (another attestation-agent?); \
         only one agent may write it"
    )]
    Busy {
        /// the log
        path: PathBuf,
    },
    /// The log holds something that is not a sequence of AAEL entries.
    #[error(
        "the eventlog {path} is damaged: {reason}. Only the attestation agent writes it, so \
         it was changed by someone else; its events can no longer be verified, so no more \
         are recorded"
    )]
    CorruptLog {
        /// the log
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
    /// The write-ahead record left by an interrupted measurement cannot be read.
    #[error(
        "the write-ahead record {path} of an interrupted measurement is unusable: {source}. \
         Move it away to start the agent; the log may then lack that event and no longer \
         replay"
    )]
    CorruptWal {
        /// the record
        path: PathBuf,
        /// what is wrong
        source: WalError,
    },
    /// The attester failed to extend the register.
    #[error("extending the register of PCR {pcr}: {source}")]
    Extend {
        /// the PCR requested
        pcr: u64,
        /// the cause
        source: AttesterError,
    },
    /// The attester failed to read the register.
    #[error("reading the register of PCR {pcr}: {source}")]
    ReadRegister {
        /// the PCR requested
        pcr: u64,
        /// the cause
        source: AttesterError,
    },
    /// The attester reports a register the log format cannot name.
    #[error("the attester extended register {register_index}, beyond the log's 32-bit MR index")]
    RegisterIndex {
        /// the register
        register_index: u64,
    },
    /// The attester reports a digest of the wrong size for its algorithm.
    #[error("the attester extended a {found}-byte {algorithm:?} digest; {algorithm:?} digests are {expected} bytes")]
    DigestLength {
        /// the algorithm
        algorithm: HashAlgorithm,
        /// its digest size
        expected: usize,
        /// the size received
        found: usize,
    },
    /// A blocking file task did not complete.
    #[error("eventlog file task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A crash injected by a test.
    #[cfg(test)]
    #[error("simulated crash at {0:?}")]
    SimulatedCrash(tests::CrashPoint),
}

/// Stops an operation at a crash point chosen by a test (compiled out otherwise).
macro_rules! crash_point {
    ($log:expr, $point:ident) => {
        #[cfg(test)]
        $log.simulated_crash(tests::CrashPoint::$point)?;
    };
}

/// What this process knows about a measurement whose write-ahead record is on disk.
#[derive(Debug, Clone)]
enum Pending {
    /// The outcome of the extend is unknown (record found at startup).
    Unknown,
    /// The register was extended; the entry may not be in the log yet.
    Extended(ExtendedRegister),
}

/// How an interrupted extend ended, judged from the register.
#[derive(Debug)]
enum Outcome {
    Extended(ExtendedRegister),
    NotExtended,
    Unknown(&'static str),
}

/// The open log file and the paths around it.
#[derive(Debug)]
struct LogFiles {
    dir: PathBuf,
    log_path: PathBuf,
    wal_path: PathBuf,
    wal_tmp_path: PathBuf,
    log: File,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> EventlogError + 'a {
    move |source| EventlogError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl LogFiles {
    /// Creates the directory, opens and locks the log, removes a stale temporary record.
    /// Returns the files and whether a write-ahead record is present.
    fn open(dir: PathBuf) -> Result<(Self, bool), EventlogError> {
        std::fs::create_dir_all(&dir).map_err(io_err("creating the eventlog directory", &dir))?;
        let log_path = dir.join(EVENTLOG_FILE_NAME);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&log_path)
            .map_err(io_err("opening the eventlog", &log_path))?;
        match log.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(EventlogError::Busy { path: log_path })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_err("locking the eventlog", &log_path)(e))
            }
        }
        let files = Self {
            wal_path: dir.join(WAL_FILE_NAME),
            wal_tmp_path: dir.join(WAL_TMP_FILE_NAME),
            log_path,
            dir,
            log,
        };
        // a temporary record was never renamed into place: its extend never started
        match std::fs::remove_file(&files.wal_tmp_path) {
            Ok(()) => {
                info!(path = %files.wal_tmp_path.display(), "removed an unfinished write-ahead record")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io_err(
                    "removing the unfinished write-ahead record",
                    &files.wal_tmp_path,
                )(e))
            }
        }
        let wal_present = files.wal_path.try_exists().map_err(io_err(
            "looking for the write-ahead record",
            &files.wal_path,
        ))?;
        Ok((files, wal_present))
    }

    fn sync_dir(&self) -> Result<(), EventlogError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing the eventlog directory", &self.dir))
    }

    fn write_wal(&self, record: &[u8]) -> Result<(), EventlogError> {
        let write = |path: &Path| -> io::Result<()> {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?;
            file.write_all_at(record, 0)?;
            file.sync_all()
        };
        write(&self.wal_tmp_path)
            .map_err(io_err("writing the write-ahead record", &self.wal_tmp_path))?;
        std::fs::rename(&self.wal_tmp_path, &self.wal_path)
            .map_err(io_err("renaming the write-ahead record to", &self.wal_path))?;
        self.sync_dir()
    }

    fn read_wal(&self) -> Result<WalRecord, EventlogError> {
        let mut bytes = Vec::new();
        File::open(&self.wal_path)
            .and_then(|f| f.take(MAX_WAL_LEN as u64 + 1).read_to_end(&mut bytes))
            .map_err(io_err("reading the write-ahead record", &self.wal_path))?;
        WalRecord::decode(&bytes).map_err(|source| EventlogError::CorruptWal {
            path: self.wal_path.clone(),
            source,
        })
    }

    fn remove_wal(&self) -> Result<(), EventlogError> {
        match std::fs::remove_file(&self.wal_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing the write-ahead record", &self.wal_path)(e)),
        }
        self.sync_dir()
    }

    fn corrupt(&self, reason: String) -> EventlogError {
        EventlogError::CorruptLog {
            path: self.log_path.clone(),
            reason,
        }
    }

    /// The log's bytes from `offset` to its end.
    fn read_log_from(&self, offset: u64) -> Result<Vec<u8>, EventlogError> {
        let len = self
            .log
            .metadata()
            .map_err(io_err("reading the size of the eventlog", &self.log_path))?
            .len();
        let tail_len = len.checked_sub(offset).ok_or_else(|| {
            self.corrupt(format!(
                "it is {len} bytes long, shorter than the {offset} bytes it had before the \
                 interrupted measurement"
            ))
        })?;
        let tail_len = usize::try_from(tail_len)
            .map_err(|_| self.corrupt(format!("it is implausibly large ({len} bytes)")))?;
        let mut tail = vec![0; tail_len];
        self.log
            .read_exact_at(&mut tail, offset)
            .map_err(io_err("reading the eventlog", &self.log_path))?;
        Ok(tail)
    }

    /// Checks that the log is a sequence of AAEL entries; returns its length.
    fn check_log(&self) -> Result<u64, EventlogError> {
        let bytes = self.read_log_from(0)?;
        let entries = tcg2::parse_entries(&bytes, &DigestSizes::well_known())
            .map_err(|e| self.corrupt(e.to_string()))?;
        for (i, entry) in entries.iter().enumerate() {
            entry
                .aael_event()
                .map_err(|e| self.corrupt(format!("entry {i} is not an AAEL event: {e}")))?;
        }
        debug!(
            entries = entries.len(),
            bytes = bytes.len(),
            "eventlog checked"
        );
        Ok(bytes.len() as u64)
    }

    /// Writes `entry` at `offset`, cutting off whatever followed (a torn entry), and syncs.
    fn write_entry(&self, offset: u64, entry: &[u8]) -> Result<(), EventlogError> {
        let write = || -> io::Result<()> {
            self.log.set_len(offset)?;
            self.log.write_all_at(entry, offset)?;
            self.log.sync_data()
        };
        write().map_err(io_err("appending to the eventlog", &self.log_path))
    }
}

/// The open eventlog. One per agent: the log file is locked while it is open.
#[derive(Debug)]
pub(crate) struct AaEventlog {
    files: Arc<LogFiles>,
    /// Where the next entry goes.
    log_len: u64,
    /// A write-ahead record is on disk.
    pending: Option<Pending>,
    #[cfg(test)]
    crash_at: Option<tests::CrashPoint>,
}

impl AaEventlog {
    /// Opens (creating) the log in `dir`, resolves a write-ahead record left by an
    /// interrupted measurement (see the module docs), and checks the log.
    pub(crate) async fn open(dir: &Path, attester: &dyn Attester) -> Result<Self, EventlogError> {
        let dir = dir.to_path_buf();
        let (files, wal_present) =
            tokio::task::spawn_blocking(move || LogFiles::open(dir)).await??;
        let mut log = Self {
            files: Arc::new(files),
            log_len: 0,
            pending: wal_present.then_some(Pending::Unknown),
            #[cfg(test)]
            crash_at: None,
        };
        log.recover(attester).await?;
        log.log_len = log.io(|f| f.check_log()).await?;
        info!(path = %log.files.log_path.display(), bytes = log.log_len, "eventlog open");
        Ok(log)
    }

    /// The log file.
    #[cfg(test)]
    pub(crate) fn log_path(&self) -> &Path {
        &self.files.log_path
    }

    /// Measures `event` into the register of `pcr` and records it. `NotSupported` when the
    /// platform has no runtime-measurement registers (nothing is written then).
    pub(crate) async fn extend(
        &mut self,
        attester: &dyn Attester,
        event: &AaelEvent,
        pcr: u64,
    ) -> Result<RuntimeMeasurement, EventlogError> {
        // an earlier measurement of this process that failed half-way is finished first
        self.recover(attester).await?;
        let before = attester
            .read_register(pcr)
            .await
            .map_err(|source| EventlogError::ReadRegister { pcr, source })?;
        let record = WalRecord {
            log_offset: self.log_len,
            pcr,
            before,
            event: event.clone(),
        }
        .encode();
        self.io(move |f| f.write_wal(&record)).await?;
        self.pending = Some(Pending::Unknown);
        crash_point!(self, AfterWal);

        let register = match attester
            .extend_runtime_measurement(&event.encode(), pcr)
            .await
        {
            Ok(RuntimeMeasurement::Extended(register)) => register,
            Ok(RuntimeMeasurement::NotSupported) => {
                self.discard_wal().await;
                return Ok(RuntimeMeasurement::NotSupported);
            }
            Err(source) => {
                // an attester error means the register was not extended
                self.discard_wal().await;
                return Err(EventlogError::Extend { pcr, source });
            }
        };
        self.pending = Some(Pending::Extended(register.clone()));
        crash_point!(self, AfterExtend);
        let entry = entry_for(&register, event)?;
        self.commit(self.log_len, entry).await?;
        info!(
            event = %event,
            pcr,
            register = register.register_index,
            digest = %hex::encode(&register.digest),
            "runtime event measured"
        );
        Ok(RuntimeMeasurement::Extended(register))
    }

    /// Runs a file operation on the blocking pool.
    async fn io<T: Send + 'static>(
        &self,
        op: impl FnOnce(&LogFiles) -> Result<T, EventlogError> + Send + 'static,
    ) -> Result<T, EventlogError> {
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || op(&files)).await?
    }

    /// Deletes the record of a measurement that extended nothing. If that fails the record
    /// stays pending and is resolved (from the register) before the next measurement.
    async fn discard_wal(&mut self) {
        match self.io(|f| f.remove_wal()).await {
            Ok(()) => self.pending = None,
            Err(e) => {
                warn!(error = %e, "could not remove the write-ahead record; it is resolved before the next measurement")
            }
        }
    }

    /// Appends `entry` at `offset` and deletes the record.
    async fn commit(&mut self, offset: u64, entry: Vec<u8>) -> Result<(), EventlogError> {
        let end = offset + entry.len() as u64;
        #[cfg(test)]
        if self.crash_at == Some(tests::CrashPoint::MidAppend) {
            let half = entry[..entry.len() / 2].to_vec();
            self.io(move |f| f.write_entry(offset, &half)).await?;
            return Err(EventlogError::SimulatedCrash(tests::CrashPoint::MidAppend));
        }
        self.io(move |f| f.write_entry(offset, &entry)).await?;
        self.log_len = end;
        crash_point!(self, AfterAppend);
        match self.io(|f| f.remove_wal()).await {
            Ok(()) => self.pending = None,
            // the entry is in the log: the next recovery sees that and removes the record
            Err(e) => {
                warn!(error = %e, "could not remove the write-ahead record of a recorded event");
                self.pending = Some(Pending::Unknown);
            }
        }
        Ok(())
    }

    /// Resolves a pending write-ahead record (see the module docs). On error the record
    /// stays pending.
    async fn recover(&mut self, attester: &dyn Attester) -> Result<(), EventlogError> {
        let Some(pending) = self.pending.clone() else {
            return Ok(());
        };
        let record = self.io(|f| f.read_wal()).await?;
        let offset = record.log_offset;
        warn!(
            event = %record.event,
            pcr = record.pcr,
            "resolving an interrupted runtime measurement"
        );
        let tail = self.io(move |f| f.read_log_from(offset)).await?;
        if !tail.is_empty() {
            match tcg2::parse_entry(&tail, &DigestSizes::well_known()) {
                Ok((entry, len))
                    if len == tail.len() && entry.aael_event().as_ref() == Ok(&record.event) =>
                {
                    info!(
                        "the interrupted measurement was recorded; removing its write-ahead record"
                    );
                    self.io(|f| f.remove_wal()).await?;
                    self.log_len = offset + len as u64;
                    self.pending = None;
                    return Ok(());
                }
                Err(e) if matches!(e.kind, ParseErrorKind::Truncated { .. }) => {
                    info!(bytes = tail.len(), "cutting off a torn entry");
                }
                _ => {
                    return Err(self.files.corrupt(format!(
                        "the {} bytes at offset {offset}, where the interrupted measurement's \
                         entry goes, are not that entry",
                        tail.len()
                    )))
                }
            }
        }
        let outcome = match pending {
            Pending::Extended(register) => Outcome::Extended(register),
            Pending::Unknown => interrupted_outcome(attester, &record).await?,
        };
        let register = match outcome {
            Outcome::Extended(register) => {
                info!("the register holds the interrupted event; recording it");
                register
            }
            Outcome::NotExtended | Outcome::Unknown(_) => {
                if let Outcome::Unknown(why) = outcome {
                    error!(
                        why,
                        "cannot tell whether the interrupted event was extended; extending it \
                         (again): if it had been, the log no longer replays and verifiers \
                         reject the evidence"
                    );
                } else {
                    info!("the register lacks the interrupted event; extending it");
                }
                let measured = attester
                    .extend_runtime_measurement(&record.event.encode(), record.pcr)
                    .await
                    .map_err(|source| EventlogError::Extend {
                        pcr: record.pcr,
                        source,
                    })?;
                match measured {
                    RuntimeMeasurement::Extended(register) => register,
                    RuntimeMeasurement::NotSupported => {
                        warn!("the platform measures no runtime events; dropping the interrupted event");
                        self.io(|f| f.remove_wal()).await?;
                        self.pending = None;
                        return Ok(());
                    }
                }
            }
        };
        self.pending = Some(Pending::Extended(register.clone()));
        let entry = entry_for(&register, &record.event)?;
        self.commit(offset, entry).await
    }

    #[cfg(test)]
    fn simulated_crash(&self, point: tests::CrashPoint) -> Result<(), EventlogError> {
        match self.crash_at {
            Some(at) if at == point => Err(EventlogError::SimulatedCrash(point)),
            _ => Ok(()),
        }
    }
}

/// Judges from the register whether the extend of `record` happened.
async fn interrupted_outcome(
    attester: &dyn Attester,
    record: &WalRecord,
) -> Result<Outcome, EventlogError> {
    let Some(before) = &record.before else {
        return Ok(Outcome::Unknown(
            "the register could not be read before the extend",
        ));
    };
    let now =
        attester
            .read_register(record.pcr)
            .await
            .map_err(|source| EventlogError::ReadRegister {
                pcr: record.pcr,
                source,
            })?;
    let Some(now) = now else {
        return Ok(Outcome::Unknown("the register cannot be read now"));
    };
    if now.register_index != before.register_index || now.algorithm != before.algorithm {
        return Ok(Outcome::Unknown(
            "the PCR maps to another register than before",
        ));
    }
    let digest = tcg2::digest(before.algorithm, &record.event.encode());
    if now.value == tcg2::extended_value(before.algorithm, &before.value, &digest) {
        Ok(Outcome::Extended(ExtendedRegister {
            register_index: before.register_index,
            algorithm: before.algorithm,
            digest,
        }))
    } else if now.value == before.value {
        Ok(Outcome::NotExtended)
    } else {
        Ok(Outcome::Unknown(
            "the register holds neither its old value nor the extended one (another process extended it)",
        ))
    }
}

/// The log entry for `event` extended as `register` says.
fn entry_for(register: &ExtendedRegister, event: &AaelEvent) -> Result<Vec<u8>, EventlogError> {
    let mr_index =
        u32::try_from(register.register_index).map_err(|_| EventlogError::RegisterIndex {
            register_index: register.register_index,
        })?;
    let expected = tcg2::digest_len(register.algorithm);
    if register.digest.len() != expected {
        return Err(EventlogError::DigestLength {
            algorithm: register.algorithm,
            expected,
            found: register.digest.len(),
        });
    }
    Ok(Tcg2Event::aael(mr_index, register.algorithm, register.digest.clone(), event).encode())
}

#[cfg(test)]
mod tests;
