//! configfs-tsm reports (`/sys/kernel/config/tsm/report`, Linux ≥ 6.7): the TEE-neutral
//! kernel interface for TDX quotes, SEV-SNP reports and Arm CCA tokens.
//!
//! Each request uses a fresh entry: `mkdir` makes the kernel create its attributes,
//! `provider` names the TEE driver, a write to `inblob` starts a request, `outblob` (and
//! `auxblob`) hold the answer, and `generation` counts the `inblob` writes. The entry is
//! removed afterwards. All file operations go through [`Platform::configfs_ops`].

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use tracing::warn;

use crate::{support::io_error, AttesterError, Platform, Tee};

/// The report directory below the platform root.
pub(crate) const REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// Entry names are unique per process and request, so concurrent requests never share one.
static NEXT_ENTRY: AtomicU64 = AtomicU64::new(0);

/// Attempts to find an unused entry name before giving up.
const CREATE_ATTEMPTS: usize = 8;

/// The outcome of opening a report entry for a provider.
#[derive(Debug)]
pub(crate) enum TsmEntry {
    /// A fresh entry of the wanted provider.
    Ready(TsmReport),
    /// The platform has no configfs-tsm report directory.
    Absent,
    /// configfs-tsm belongs to another TEE driver (the name it reports).
    OtherProvider(String),
}

/// One report entry; removed when dropped.
#[derive(Debug)]
pub(crate) struct TsmReport {
    platform: Platform,
    tee: Tee,
    entry: PathBuf,
}

impl TsmEntry {
    /// Creates a fresh entry and checks that its provider is `provider` (e.g. `tdx_guest`).
    pub(crate) fn open(
        platform: &Platform,
        tee: Tee,
        provider: &str,
    ) -> Result<TsmEntry, AttesterError> {
        let dir = platform.path(REPORT_DIR);
        if !dir.is_dir() {
            return Ok(TsmEntry::Absent);
        }
        let fs = platform.configfs_ops();
        let mut attempt = 0;
        let entry = loop {
            let name = format!(
                "aa-{}-{}",
                std::process::id(),
                NEXT_ENTRY.fetch_add(1, Ordering::Relaxed)
            );
            let entry = dir.join(name);
            match fs.create_dir(&entry) {
                Ok(()) => break entry,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    attempt += 1;
                    if attempt >= CREATE_ATTEMPTS {
                        return Err(io_error(tee, "create a report entry", &entry, e));
                    }
                }
                Err(e) => return Err(io_error(tee, "create a report entry", &entry, e)),
            }
        };
        let report = TsmReport {
            platform: platform.clone(),
            tee,
            entry,
        };
        let found = report.read_text("provider")?;
        if found == provider {
            Ok(TsmEntry::Ready(report))
        } else {
            Ok(TsmEntry::OtherProvider(found))
        }
    }

    /// The entry, or an error that says why there is none.
    #[cfg(any(feature = "tdx-attester", feature = "cca-attester"))]
    pub(crate) fn require(self, tee: Tee, provider: &str) -> Result<TsmReport, AttesterError> {
        match self {
            TsmEntry::Ready(report) => Ok(report),
            TsmEntry::Absent => Err(AttesterError::Platform {
                tee,
                message: format!(
                    "configfs-tsm reports are not available ({REPORT_DIR} is missing); \
                     the guest kernel needs CONFIG_TSM_REPORTS and configfs mounted at \
                     /sys/kernel/config"
                ),
            }),
            TsmEntry::OtherProvider(found) => Err(AttesterError::Platform {
                tee,
                message: format!(
                    "configfs-tsm reports come from provider `{found}`, not `{provider}`"
                ),
            }),
        }
    }
}

/// Whether configfs-tsm reports come from `provider`: the probe of the TEEs that can use
/// them. A failed probe is logged and counts as "no", so detection goes on to other TEEs.
pub(crate) fn provider_present(platform: &Platform, tee: Tee, provider: &str) -> bool {
    match TsmEntry::open(platform, tee, provider) {
        Ok(TsmEntry::Ready(_)) => true,
        Ok(_) => false,
        Err(e) => {
            warn!(%tee, error = %e, "cannot probe configfs-tsm");
            false
        }
    }
}

impl TsmReport {
    fn attribute(&self, name: &str) -> PathBuf {
        self.entry.join(name)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, AttesterError> {
        let path = self.attribute(name);
        self.platform
            .configfs_ops()
            .read(&path)
            .map_err(|e| io_error(self.tee, "read", &path, e))
    }

    fn read_text(&self, name: &str) -> Result<String, AttesterError> {
        let bytes = self.read(name)?;
        let text = String::from_utf8(bytes).map_err(|_| AttesterError::Platform {
            tee: self.tee,
            message: format!("configfs-tsm attribute `{name}` is not text"),
        })?;
        Ok(text.trim_end_matches('\n').to_string())
    }

    fn generation(&self) -> Result<u64, AttesterError> {
        let text = self.read_text("generation")?;
        text.trim().parse().map_err(|_| AttesterError::Platform {
            tee: self.tee,
            message: format!("configfs-tsm `generation` is {text:?}, not a number"),
        })
    }

    /// Writes `inblob` and reads `outblob`.
    #[cfg(any(feature = "tdx-attester", feature = "cca-attester"))]
    pub(crate) fn generate(&self, inblob: &[u8]) -> Result<Vec<u8>, AttesterError> {
        self.request(inblob, false).map(|(outblob, _)| outblob)
    }

    /// Writes `inblob` and reads `outblob` and `auxblob` (`None` when empty or absent).
    #[cfg(feature = "snp-attester")]
    pub(crate) fn generate_with_auxblob(
        &self,
        inblob: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), AttesterError> {
        self.request(inblob, true)
    }

    /// One request. The generation must advance by exactly one: otherwise another writer
    /// used the entry between our write and read, and the answer may not bind our `inblob`.
    fn request(
        &self,
        inblob: &[u8],
        want_auxblob: bool,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), AttesterError> {
        let before = self.generation()?;
        let inblob_path = self.attribute("inblob");
        self.platform
            .configfs_ops()
            .write(&inblob_path, inblob)
            .map_err(|e| io_error(self.tee, "write", &inblob_path, e))?;
        let outblob = self.read("outblob")?;
        let auxblob = if want_auxblob {
            self.read_auxblob()?
        } else {
            None
        };
        let after = self.generation()?;
        if after != before.wrapping_add(1) {
            return Err(AttesterError::Platform {
                tee: self.tee,
                message: format!(
                    "configfs-tsm generation went from {before} to {after} for one request: \
                     another writer used the report entry, so the answer may not be ours; retry"
                ),
            });
        }
        if outblob.is_empty() {
            return Err(AttesterError::Platform {
                tee: self.tee,
                message: "configfs-tsm returned an empty outblob".to_string(),
            });
        }
        Ok((outblob, auxblob))
    }

    fn read_auxblob(&self) -> Result<Option<Vec<u8>>, AttesterError> {
        let path = self.attribute("auxblob");
        match self.platform.configfs_ops().read(&path) {
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(self.tee, "read", &path, e)),
        }
    }

    /// The entry directory (tests check that it is removed).
    #[cfg(test)]
    pub(crate) fn entry(&self) -> &std::path::Path {
        &self.entry
    }
}

impl Drop for TsmReport {
    fn drop(&mut self) {
        if let Err(e) = self.platform.configfs_ops().remove_dir(&self.entry) {
            warn!(entry = %self.entry.display(), error = %e, "cannot remove the configfs-tsm report entry");
        }
    }
}

/// Whether `path` names an entry of the report directory (used by the test emulator).
#[cfg(test)]
pub(crate) fn is_report_entry(platform: &Platform, path: &std::path::Path) -> bool {
    path.parent() == Some(platform.path(REPORT_DIR).as_path())
}

#[cfg(test)]
pub(crate) mod emulator {
    //! A configfs-tsm emulator for tests: `mkdir` creates `provider` and `generation`, a
    //! write to `inblob` bumps the generation and produces `outblob` = the recorded answer
    //! with the inblob spliced in at a given offset (so tests see their report data echoed),
    //! and `auxblob`.

    use std::{
        io,
        path::Path,
        sync::{Arc, Mutex},
    };

    use crate::{ConfigFs, Platform};

    /// How the emulated provider answers.
    #[derive(Debug, Clone)]
    pub(crate) struct Answer {
        /// provider name written to `provider`
        pub(crate) provider: String,
        /// recorded outblob
        pub(crate) outblob: Vec<u8>,
        /// where the inblob is copied into the outblob, if anywhere
        pub(crate) echo_at: Option<usize>,
        /// recorded auxblob
        pub(crate) auxblob: Option<Vec<u8>>,
        /// extra generation bumps per inblob write (simulates a concurrent writer)
        pub(crate) extra_writers: u64,
    }

    /// The emulator; records every inblob it saw.
    #[derive(Debug)]
    pub(crate) struct TsmEmulator {
        answer: Answer,
        pub(crate) inblobs: Mutex<Vec<Vec<u8>>>,
    }

    impl TsmEmulator {
        pub(crate) fn install(root: &Path, answer: Answer) -> (Platform, Arc<TsmEmulator>) {
            std::fs::create_dir_all(Platform::new(root).path(super::REPORT_DIR)).unwrap();
            let emulator = Arc::new(TsmEmulator {
                answer,
                inblobs: Mutex::new(Vec::new()),
            });
            let platform = Platform::new(root).with_configfs(emulator.clone());
            (platform, emulator)
        }
    }

    impl ConfigFs for TsmEmulator {
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            std::fs::create_dir(path)?;
            std::fs::write(path.join("provider"), format!("{}\n", self.answer.provider))?;
            std::fs::write(path.join("generation"), "0\n")
        }

        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            std::fs::remove_dir_all(path)
        }

        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            std::fs::read(path)
        }

        fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
            std::fs::write(path, data)?;
            if path.file_name().and_then(|n| n.to_str()) != Some("inblob") {
                return Ok(());
            }
            let dir = path.parent().ok_or(io::ErrorKind::InvalidInput)?;
            self.inblobs.lock().unwrap().push(data.to_vec());
            let generation: u64 = std::fs::read_to_string(dir.join("generation"))?
                .trim()
                .parse()
                .map_err(|_| io::ErrorKind::InvalidData)?;
            let generation = generation + 1 + self.answer.extra_writers;
            std::fs::write(dir.join("generation"), format!("{generation}\n"))?;
            let mut outblob = self.answer.outblob.clone();
            if let Some(at) = self.answer.echo_at {
                outblob[at..at + data.len()].copy_from_slice(data);
            }
            std::fs::write(dir.join("outblob"), outblob)?;
            if let Some(aux) = &self.answer.auxblob {
                std::fs::write(dir.join("auxblob"), aux)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{emulator::*, *};

    fn ready(entry: TsmEntry) -> TsmReport {
        match entry {
            TsmEntry::Ready(report) => report,
            other => panic!("no report entry: {other:?}"),
        }
    }

    fn answer(provider: &str) -> Answer {
        Answer {
            provider: provider.into(),
            outblob: vec![0xAA; 16],
            echo_at: Some(4),
            auxblob: Some(b"aux".to_vec()),
            extra_writers: 0,
        }
    }

    #[test]
    fn a_request_echoes_through_a_fresh_entry_that_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (platform, emulator) = TsmEmulator::install(dir.path(), answer("tdx_guest"));
        let report = ready(TsmEntry::open(&platform, Tee::Tdx, "tdx_guest").unwrap());
        let entry = report.entry().to_path_buf();
        assert!(is_report_entry(&platform, &entry));
        assert!(entry.is_dir());
        let (outblob, auxblob) = report.request(b"1234", true).unwrap();
        assert_eq!(outblob, [&[0xAA; 4][..], b"1234", &[0xAA; 8][..]].concat());
        assert_eq!(auxblob.as_deref(), Some(&b"aux"[..]));
        assert_eq!(*emulator.inblobs.lock().unwrap(), vec![b"1234".to_vec()]);
        drop(report);
        assert!(!entry.exists(), "the entry must be removed after use");
        // entries are unique: a second request uses another directory
        let second = ready(TsmEntry::open(&platform, Tee::Tdx, "tdx_guest").unwrap());
        assert_ne!(second.entry(), entry);
    }

    #[test]
    fn absent_and_foreign_providers_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let absent = TsmEntry::open(&Platform::new(dir.path()), Tee::Tdx, "tdx_guest").unwrap();
        assert!(matches!(absent, TsmEntry::Absent));
        #[cfg(any(feature = "tdx-attester", feature = "cca-attester"))]
        {
            let err = absent.require(Tee::Tdx, "tdx_guest").unwrap_err();
            assert!(err.to_string().contains("not available"), "{err}");
        }

        let (platform, _) = TsmEmulator::install(dir.path(), answer("sev_guest"));
        let entry = TsmEntry::open(&platform, Tee::Tdx, "tdx_guest").unwrap();
        assert!(matches!(entry, TsmEntry::OtherProvider(ref p) if p == "sev_guest"));
        #[cfg(any(feature = "tdx-attester", feature = "cca-attester"))]
        {
            let err = entry.require(Tee::Tdx, "tdx_guest").unwrap_err();
            assert!(
                err.to_string()
                    .contains("provider `sev_guest`, not `tdx_guest`"),
                "{err}"
            );
        }
        // the probe entry was removed again
        let left: Vec<_> = std::fs::read_dir(platform.path(REPORT_DIR))
            .unwrap()
            .collect();
        assert!(left.is_empty());
    }

    #[test]
    fn the_provider_is_present_only_when_configfs_tsm_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::new(dir.path());
        assert!(!provider_present(&platform, Tee::Snp, "sev_guest"));

        // a report directory whose entries have no `provider`: the probe fails, and says no
        std::fs::create_dir_all(platform.path(REPORT_DIR)).unwrap();
        assert!(!provider_present(&platform, Tee::Snp, "sev_guest"));

        let other = tempfile::tempdir().unwrap();
        let (platform, _) = TsmEmulator::install(other.path(), answer("sev_guest"));
        assert!(provider_present(&platform, Tee::Snp, "sev_guest"));
        assert!(!provider_present(&platform, Tee::Tdx, "tdx_guest"));
        assert!(!provider_present(&platform, Tee::Cca, "arm_cca_guest"));
        // every probe entry was removed again
        let left: Vec<_> = std::fs::read_dir(platform.path(REPORT_DIR))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_concurrent_writer_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut racy = answer("tdx_guest");
        racy.extra_writers = 1;
        let (platform, _) = TsmEmulator::install(dir.path(), racy);
        let report = ready(TsmEntry::open(&platform, Tee::Tdx, "tdx_guest").unwrap());
        let err = report.request(b"x", false).unwrap_err();
        assert!(err.to_string().contains("from 0 to 2"), "{err}");
    }

    #[test]
    fn malformed_attributes_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (platform, _) = TsmEmulator::install(dir.path(), answer("tdx_guest"));
        let report = ready(TsmEntry::open(&platform, Tee::Tdx, "tdx_guest").unwrap());
        std::fs::write(report.entry().join("generation"), "many\n").unwrap();
        let err = report.request(b"x", false).unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
        std::fs::write(report.entry().join("generation"), [0xff, 0xfe]).unwrap();
        let err = report.request(b"x", false).unwrap_err();
        assert!(err.to_string().contains("not text"), "{err}");
    }

    #[test]
    fn an_empty_outblob_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut empty = answer("arm_cca_guest");
        empty.outblob = Vec::new();
        empty.echo_at = None;
        let (platform, _) = TsmEmulator::install(dir.path(), empty);
        let report = ready(TsmEntry::open(&platform, Tee::Cca, "arm_cca_guest").unwrap());
        let err = report.request(b"x", false).unwrap_err();
        assert!(err.to_string().contains("empty outblob"), "{err}");
    }
}
