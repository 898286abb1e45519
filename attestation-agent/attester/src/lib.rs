//! Attesters: one small [`Attester`] trait, an attester per TEE, and [`detect`] which picks
//! the attesters of the platform the agent runs on.
//!
//! What the crate offers, all at its root:
//! - the [`Attester`] trait and its results ([`InitDataResult`], [`RuntimeMeasurement`],
//!   [`ExtendedRegister`], [`RegisterValue`], [`HashAlgorithm`]) and [`AttesterError`];
//! - detection: [`detect`] with [`DetectOptions`] and [`SamplePolicy`], giving [`Detected`]
//!   (the primary attester plus device attesters), and [`compiled_attesters`];
//! - the seams: [`Platform`] (a root path, and [`ConfigFs`] for TSM reports) and [`Env`] (a
//!   snapshot of the variables attesters read), so tests drive the real code with fake
//!   trees and fake variables;
//! - the sample attesters, which prove nothing and are used only when asked for (no silent
//!   downgrade, see [`detect`]);
//! - per hardware attester compiled in, its evidence format as its verifier reads it (e.g.
//!   `TdxEvidence`, `SnpEvidence`, `AzSnpVtpmEvidence`) and the parsers and probes other
//!   crates, tests and fuzz targets use. Names that only mean something inside one platform
//!   carry its prefix (`probe_tpm`, `parse_snp_report`, `TPM_TCTI_ENV`).
//!
//! Hardware attesters are compiled in by cargo features (`tdx-attester`, `snp-attester`,
//! `sgx-attester`, `cca-attester`, `se-attester`, `csv-attester`, `tpm-attester`,
//! `az-snp-vtpm-attester`, `az-tdx-vtpm-attester`, `nvidia-attester`, `all-attesters`).

// Only the small device modules (`*/ioctl.rs`, and `nvidia/nvml.rs` for the driver's C
// library) allow `unsafe`, each block with a SAFETY note.
#![deny(unsafe_code)]

mod detect;
mod platform;
mod sample;
#[cfg(any(
    feature = "tdx-attester",
    feature = "snp-attester",
    feature = "sgx-attester",
    feature = "cca-attester",
    feature = "se-attester",
    feature = "csv-attester",
    feature = "tpm"
))]
mod support;
mod tee;

#[cfg(any(feature = "tdx-attester", feature = "csv-attester"))]
mod eventlog;
#[cfg(any(
    feature = "tdx-attester",
    feature = "snp-attester",
    feature = "cca-attester"
))]
mod tsm;

#[cfg(any(feature = "az-snp-vtpm-attester", feature = "az-tdx-vtpm-attester"))]
mod azure;
#[cfg(feature = "cca-attester")]
mod cca;
#[cfg(feature = "csv-attester")]
mod csv;
#[cfg(feature = "nvidia-attester")]
mod nvidia;
#[cfg(feature = "se-attester")]
mod se;
#[cfg(feature = "sgx-attester")]
mod sgx;
#[cfg(feature = "snp-attester")]
mod snp;
#[cfg(feature = "tdx-attester")]
mod tdx;
#[cfg(feature = "tpm")]
mod tpm;

use async_trait::async_trait;

/// Detection: which attesters this build has and which of them speak for this platform.
pub use detect::{
    compiled_attesters, detect, parse_flag, DetectOptions, Detected, DeviceEvidenceError, Env,
    SamplePolicy,
};
/// The kernel interfaces attesters reach, rooted so tests can use fake trees.
pub use platform::{ConfigFs, KernelConfigFs, Platform};
/// The sample attesters (evidence that proves nothing, used only when allowed).
pub use sample::{SampleAttester, SampleDeviceAttester};
/// The TEE names of the wire protocol.
pub use tee::{Tee, UnknownTee};

// Per-platform API: what other crates, the tests and the fuzz targets use, nothing more.
// Names that only make sense inside their module (`probe`, `TCTI_ENV`, ...) get a platform
// prefix here.

/// The CCEL ACPI table's event log, cut at its end marker (TDX and CSV evidence carry it).
#[cfg(any(feature = "tdx-attester", feature = "csv-attester"))]
pub use eventlog::{trim_ccel, CcelError};

/// TDX: the evidence, and the TD quote and TDREPORT parsers.
#[cfg(feature = "tdx-attester")]
pub use tdx::{QuoteError, TdQuote, TdReport, TdReportError, TdxEvidence};

/// SEV-SNP: the evidence and its attestation-report parser.
#[cfg(feature = "snp-attester")]
pub use snp::{parse_report as parse_snp_report, SnpError, SnpEvidence};

/// SGX: the evidence (Gramine or Occlum DCAP quote).
#[cfg(feature = "sgx-attester")]
pub use sgx::SgxEvidence;

/// Arm CCA: the evidence (the CCA token).
#[cfg(feature = "cca-attester")]
pub use cca::CcaEvidence;

/// Hygon CSV: the evidence, and building it from a report page.
#[cfg(feature = "csv-attester")]
pub use csv::{
    evidence_from_report as csv_evidence_from_report, CsvError, CsvEvidence, CsvReportWrapper,
};

/// TPM: where the TPM is (shared by the TPM and the Azure vTPM attesters).
#[cfg(feature = "tpm")]
pub use tpm::{TpmLocation, TCTI_ENV as TPM_TCTI_ENV};

/// TPM: the probe, the evidence and the variable naming the attestation key.
#[cfg(feature = "tpm-attester")]
pub use tpm::{probe as probe_tpm, TpmEvidence, TpmQuote, AK_HANDLE_ENV as TPM_AK_HANDLE_ENV};

/// Azure SEV-SNP vTPM: the probe.
#[cfg(feature = "az-snp-vtpm-attester")]
pub use azure::probe_snp as probe_az_snp_vtpm;
/// Azure TDX vTPM: the probe.
#[cfg(feature = "az-tdx-vtpm-attester")]
pub use azure::probe_tdx as probe_az_tdx_vtpm;
/// Azure vTPM (SEV-SNP and TDX): the attesters, their evidence, the HCL report and the IMDS
/// client seam.
#[cfg(any(feature = "az-snp-vtpm-attester", feature = "az-tdx-vtpm-attester"))]
pub use azure::{
    quote_from_bincode as az_tpm_quote_from_bincode, AzSnpVtpmAttester, AzSnpVtpmEvidence,
    AzTdxVtpmAttester, AzTdxVtpmEvidence, AzTpmQuote, HclError, HclReport, HclReportType, Imds,
    ImdsError,
};

/// NVIDIA GPUs: the device attester, found through the driver's NVML library.
#[cfg(feature = "nvidia-attester")]
pub use nvidia::{
    find as find_nvidia_gpus, NoDevice as NoNvidiaDevice, NvidiaAttester,
    LIBRARY_ENV as NVML_LIBRARY_ENV,
};

/// Environment variable that allows the sample attester when no TEE is found (`1`).
pub const SAMPLE_ATTESTER_ENV: &str = "AA_SAMPLE_ATTESTER";
/// Environment variable that adds the sample device attester (`1`).
pub const SAMPLE_DEVICE_ENV: &str = "ENABLE_SAMPLE_DEVICE";

/// What an attester did with an initdata digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitDataResult {
    /// The platform holds this digest (checked or extended into a register).
    Bound,
    /// The platform has no way to bind initdata; the caller logs and carries on.
    Unsupported,
}

/// Hash algorithm of a platform's measurement registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// SHA-256 (TPM and Azure vTPM PCRs).
    Sha256,
    /// SHA-384 (TDX RTMRs).
    Sha384,
    /// SHA-512.
    Sha512,
    /// SM3 (Hygon CSV).
    Sm3,
}

/// A register extended by [`Attester::extend_runtime_measurement`]: what the eventlog
/// records, so the log entry always names the register that was really extended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedRegister {
    /// Index of the register extended, as the eventlog's TCG2 entry records it (MR index):
    /// the PCR on TPM and vTPM platforms, the CC MR index (RTMR index + 1) on TDX and CSV.
    pub register_index: u64,
    /// The register's hash algorithm.
    pub algorithm: HashAlgorithm,
    /// Digest of the event that was extended into the register.
    pub digest: Vec<u8>,
}

/// Outcome of a runtime-measurement request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeMeasurement {
    /// The event was hashed and extended.
    Extended(ExtendedRegister),
    /// The platform has no runtime-measurement registers (answered `NOT_SUPPORTED`).
    NotSupported,
}

/// The current value of a runtime-measurement register, read by
/// [`Attester::read_register`] so the eventlog can tell after a crash whether an extend
/// happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterValue {
    /// Index of the register as [`ExtendedRegister::register_index`] names it.
    pub register_index: u64,
    /// The register's hash algorithm.
    pub algorithm: HashAlgorithm,
    /// The register's current value.
    pub value: Vec<u8>,
}

/// Why an attester or detection failed. The text says what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttesterError {
    /// No TEE was found and the sample attester was refused.
    #[error(
        "no TEE found on this platform (hardware attesters compiled in: {compiled}) and the \
         sample attester is refused by {refused_by}. Run inside a supported TEE with the \
         matching attester compiled in; to let the sample attester stand in (its evidence \
         proves nothing; the KBS decides whether to trust it), set \
         `[attester] allow_sample = true` in the attestation-agent config, the kernel \
         parameter aa.allow_sample=true or {SAMPLE_ATTESTER_ENV}=1"
    )]
    NoTeeDetected {
        /// comma-separated hardware attesters of this build, or `none`
        compiled: String,
        /// the setting that refused the sample attester
        refused_by: String,
    },
    /// A boolean environment variable holds something else.
    #[error("environment variable {name}={value:?} is not a boolean: use 1/true/yes/on or 0/false/no/off")]
    InvalidEnvFlag {
        /// the variable
        name: &'static str,
        /// its value
        value: String,
    },
    /// The platform holds another initdata digest than the one given.
    #[error(
        "initdata digest mismatch on {tee}: the platform holds {platform_hex} but the initdata \
         digest is {expected_hex}; the initdata given is not the one this VM was launched with"
    )]
    InitDataMismatch {
        /// the TEE that checked
        tee: Tee,
        /// hex of the value the platform holds
        platform_hex: String,
        /// hex of the digest asked for
        expected_hex: String,
    },
    /// Reading or writing a kernel interface (device, sysfs, configfs, eventlog) failed.
    #[error("{tee}: cannot {action} {}: {source}", path.display())]
    Io {
        /// the TEE whose interface failed
        tee: Tee,
        /// what was attempted, e.g. "read" or "write"
        action: &'static str,
        /// the file or device (under the platform root)
        path: std::path::PathBuf,
        /// the cause
        #[source]
        source: std::io::Error,
    },
    /// The report data does not fit the platform's report-data field.
    #[error(
        "{tee}: report data is {len} bytes but the platform report holds at most {max}; \
         bind a digest of the data instead of the data itself"
    )]
    ReportDataTooLong {
        /// the TEE
        tee: Tee,
        /// bytes given
        len: usize,
        /// bytes the platform field holds
        max: usize,
    },
    /// The initdata digest does not fit the register it is checked against or extended into.
    #[error(
        "{tee}: the initdata digest is {len} bytes but {register} takes {expected}; \
         choose an initdata `algorithm` whose digest has that size"
    )]
    InitDataDigestSize {
        /// the TEE
        tee: Tee,
        /// bytes given
        len: usize,
        /// the register, e.g. "MRCONFIGID"
        register: &'static str,
        /// the accepted size, e.g. "exactly 32 bytes (sha256)"
        expected: &'static str,
    },
    /// The platform answered something this attester cannot use (wrong provider, malformed
    /// report, failed status, ...).
    #[error("{tee}: {message}")]
    Platform {
        /// the TEE
        tee: Tee,
        /// what was wrong
        message: String,
    },
    /// A library or service the attester depends on failed (the TPM stack, Azure IMDS).
    #[error("{tee}: {operation} failed: {source}")]
    Backend {
        /// the TEE
        tee: Tee,
        /// what was attempted
        operation: String,
        /// the cause
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An environment variable the attesters read holds an unusable value.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    InvalidEnvValue {
        /// the variable
        name: &'static str,
        /// its value
        value: String,
        /// what is expected instead
        reason: String,
    },
    /// A runtime-measurement register index that does not exist on this platform.
    #[error("{tee}: there is no register {index} to extend or read ({valid})")]
    InvalidRegister {
        /// the TEE
        tee: Tee,
        /// the index asked for
        index: u64,
        /// the valid range
        valid: &'static str,
    },
}

/// The PCR runtime measurements go to by default on confidential-computing platforms
/// (the last runtime register, e.g. TDX RTMR 3).
pub const DEFAULT_RUNTIME_PCR: u64 = 17;
/// The default on TPM-backed platforms: PCRs 17 to 22 are DRTM registers that locality 0
/// (the OS) cannot extend, PCR 23 is the application register (what trustee's vTPM
/// verifiers replay the AA eventlog against).
pub const TPM_RUNTIME_PCR: u64 = 23;

/// One TEE's evidence producer.
#[async_trait]
pub trait Attester: Send + Sync {
    /// Which TEE this attester speaks for.
    fn tee(&self) -> Tee;

    /// Evidence binding `report_data` (normally a digest computed by the caller), as the
    /// JSON value the verifier of this TEE expects.
    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError>;

    /// Checks (or extends) the initdata digest against the platform.
    async fn bind_init_data(&self, _digest: &[u8]) -> Result<InitDataResult, AttesterError> {
        Ok(InitDataResult::Unsupported)
    }

    /// The PCR runtime measurements go to when neither the request nor the configuration
    /// names one.
    fn default_runtime_pcr(&self) -> u64 {
        DEFAULT_RUNTIME_PCR
    }

    /// Hashes `event` (an eventlog event) with the platform algorithm and extends it into
    /// the register that `pcr` maps to on this platform.
    async fn extend_runtime_measurement(
        &self,
        _event: &[u8],
        _pcr: u64,
    ) -> Result<RuntimeMeasurement, AttesterError> {
        Ok(RuntimeMeasurement::NotSupported)
    }

    /// The current value of the register that `extend_runtime_measurement(_, pcr)` extends,
    /// or `None` when the platform cannot read it. The eventlog uses it to recover from a
    /// crash between an extend and the log append.
    async fn read_register(&self, _pcr: u64) -> Result<Option<RegisterValue>, AttesterError> {
        Ok(None)
    }
}
