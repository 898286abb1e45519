//! Intel TDX.
//!
//! - Quote: configfs-tsm with provider `tdx_guest` (64 bytes of report data in `inblob`,
//!   the TD quote in `outblob`); the quote must carry our report data.
//! - MRCONFIGID and RTMRs: the sysfs measurement files of Linux ≥ 6.16
//!   (`/sys/devices/virtual/misc/tdx_guest/measurements/{mrconfigid,rtmr<N>:sha384}`), or
//!   the TDREPORT from the `/dev/tdx_guest` ioctl when they are absent.
//! - Runtime measurement: a SHA-384 digest written to `rtmr<N>:sha384` extends that RTMR.
//! - Evidence: `{"cc_eventlog": <base64|null>, "quote": "<base64>"}`.

mod ioctl;
mod quote;
mod report;

use std::{fmt, io, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};
use tracing::debug;

pub(crate) use ioctl::TdxGuestIoctl;
pub use quote::{QuoteError, TdQuote};
pub(crate) use report::MR_SIZE;
pub use report::{TdReport, TdReportError};

use crate::{
    eventlog,
    support::{blocking, io_error, pad_digest, pad_report_data, read_optional},
    tsm::{self, TsmEntry},
    Attester, AttesterError, Env, ExtendedRegister, HashAlgorithm, InitDataResult, Platform,
    RegisterValue, RuntimeMeasurement, Tee,
};

/// The TDX guest device.
pub(crate) const DEVICE_PATH: &str = "/dev/tdx_guest";
/// The sysfs measurement registers (Linux ≥ 6.16).
pub(crate) const MEASUREMENTS_DIR: &str = "/sys/devices/virtual/misc/tdx_guest/measurements";
/// The configfs-tsm provider of TDX.
pub(crate) const TSM_PROVIDER: &str = "tdx_guest";
/// Bytes of report data a TD quote binds.
pub(crate) const REPORT_DATA_SIZE: usize = 64;

const TEE: Tee = Tee::Tdx;

/// The TDREPORT source: the `/dev/tdx_guest` ioctl on a guest, recorded replies in tests.
pub(crate) trait TdxGuestDevice: Send + Sync + fmt::Debug {
    /// The 1024-byte TDREPORT binding `report_data` (`TDX_CMD_GET_REPORT0`).
    fn get_report(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>>;
}

/// TDX evidence as trustee's TDX verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxEvidence {
    /// base64 of the CC eventlog (trimmed CCEL ‖ AAEL ‖ end marker), `null` without one.
    pub cc_eventlog: Option<String>,
    /// base64 of the TD quote.
    pub quote: String,
}

/// The RTMR (0..=3) that a PCR index maps to: PCR 1,7 → RTMR0; 2-6 → RTMR1; 8-15 → RTMR2;
/// everything else → RTMR3. The CC measurement register index (what the eventlog records)
/// is the RTMR index + 1.
pub(crate) fn pcr_to_rtmr(pcr: u64) -> usize {
    match pcr {
        1 | 7 => 0,
        2..=6 => 1,
        8..=15 => 2,
        _ => 3,
    }
}

/// The TDX attester.
#[derive(Debug, Clone)]
pub(crate) struct TdxAttester {
    platform: Platform,
    aael: PathBuf,
    device: Arc<dyn TdxGuestDevice>,
}

impl TdxAttester {
    /// The attester of this platform, using the kernel's `/dev/tdx_guest`.
    pub(crate) fn new(platform: Platform, env: &Env) -> Self {
        let device = Arc::new(TdxGuestIoctl::new(platform.path(DEVICE_PATH)));
        Self::with_device(platform, env, device)
    }

    /// The attester with another TDREPORT source (recorded replies in tests).
    pub(crate) fn with_device(
        platform: Platform,
        env: &Env,
        device: Arc<dyn TdxGuestDevice>,
    ) -> Self {
        let aael = eventlog::aael_path(&platform, env);
        Self {
            platform,
            aael,
            device,
        }
    }

    fn measurement_file(&self, name: &str) -> PathBuf {
        self.platform.path(MEASUREMENTS_DIR).join(name)
    }

    fn has_sysfs_measurements(&self) -> bool {
        self.platform.path(MEASUREMENTS_DIR).is_dir()
    }

    /// A register from its sysfs file (`None` when the file does not exist).
    fn read_measurement(&self, name: &str) -> Result<Option<[u8; MR_SIZE]>, AttesterError> {
        let path = self.measurement_file(name);
        let Some(bytes) = read_optional(TEE, &path)? else {
            return Ok(None);
        };
        parse_measurement(&bytes)
            .map(Some)
            .ok_or_else(|| AttesterError::Platform {
                tee: TEE,
                message: format!(
                    "{} holds {} bytes, not a {MR_SIZE}-byte register value",
                    path.display(),
                    bytes.len()
                ),
            })
    }

    fn tdreport(&self) -> Result<TdReport, AttesterError> {
        let path = self.platform.path(DEVICE_PATH);
        let bytes = self
            .device
            .get_report(&[0; REPORT_DATA_SIZE])
            .map_err(|e| io_error(TEE, "get a TDREPORT from", &path, e))?;
        TdReport::parse(&bytes).map_err(|e| AttesterError::Platform {
            tee: TEE,
            message: format!("the TDREPORT from {} is malformed: {e}", path.display()),
        })
    }

    fn mrconfigid(&self) -> Result<[u8; MR_SIZE], AttesterError> {
        if let Some(value) = self.read_measurement("mrconfigid")? {
            return Ok(value);
        }
        Ok(self.tdreport()?.mrconfigid())
    }

    fn rtmr(&self, index: usize) -> Result<[u8; MR_SIZE], AttesterError> {
        if let Some(value) = self.read_measurement(&format!("rtmr{index}:sha384"))? {
            return Ok(value);
        }
        self.tdreport()?
            .rtmr(index)
            .ok_or(AttesterError::InvalidRegister {
                tee: TEE,
                index: index as u64,
                valid: "RTMR 0-3",
            })
    }

    fn evidence(&self, report_data: [u8; REPORT_DATA_SIZE]) -> Result<TdxEvidence, AttesterError> {
        let quote = TsmEntry::open(&self.platform, TEE, TSM_PROVIDER)?
            .require(TEE, TSM_PROVIDER)?
            .generate(&report_data)?;
        check_quote_binds(&quote, &report_data)?;
        let cc_eventlog = eventlog::cc_eventlog(&self.platform, &self.aael, TEE)?;
        Ok(TdxEvidence {
            cc_eventlog: cc_eventlog.map(|log| STANDARD.encode(log)),
            quote: STANDARD.encode(quote),
        })
    }
}

/// A sysfs register value: the raw 48 bytes, or 96 hex digits (with an optional newline).
fn parse_measurement(bytes: &[u8]) -> Option<[u8; MR_SIZE]> {
    let mut value = [0u8; MR_SIZE];
    if bytes.len() == MR_SIZE {
        value.copy_from_slice(bytes);
        return Some(value);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim_end();
    hex::decode_to_slice(text, &mut value).ok()?;
    Some(value)
}

/// The quote must carry the report data we asked for; otherwise it answers another request.
fn check_quote_binds(
    quote: &[u8],
    report_data: &[u8; REPORT_DATA_SIZE],
) -> Result<(), AttesterError> {
    match TdQuote::parse(quote) {
        Ok(parsed) if parsed.report_data() == report_data => Ok(()),
        Ok(parsed) => Err(AttesterError::Platform {
            tee: TEE,
            message: format!(
                "the TD quote binds report data {} instead of the requested {}",
                hex::encode(parsed.report_data()),
                hex::encode(report_data)
            ),
        }),
        Err(QuoteError::UnknownVersion(version)) => {
            debug!(
                version,
                "TD quote layout not known here; report data not cross-checked"
            );
            Ok(())
        }
        Err(e) => Err(AttesterError::Platform {
            tee: TEE,
            message: format!("configfs-tsm returned a malformed TD quote: {e}"),
        }),
    }
}

/// Looks for TDX: the `/dev/tdx_guest` device or a configfs-tsm `tdx_guest` provider.
pub(crate) fn probe(
    platform: &Platform,
    env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    let found =
        platform.path(DEVICE_PATH).exists() || tsm::provider_present(platform, TEE, TSM_PROVIDER);
    Ok(found.then(|| Box::new(TdxAttester::new(platform.clone(), env)) as Box<dyn Attester>))
}

#[async_trait]
impl Attester for TdxAttester {
    fn tee(&self) -> Tee {
        TEE
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let report_data = pad_report_data::<REPORT_DATA_SIZE>(TEE, report_data)?;
        let this = self.clone();
        let evidence = blocking(TEE, move || this.evidence(report_data)).await?;
        Ok(serde_json::json!(evidence))
    }

    async fn bind_init_data(&self, digest: &[u8]) -> Result<InitDataResult, AttesterError> {
        let expected = pad_digest::<MR_SIZE>(
            TEE,
            "MRCONFIGID",
            "at most 48 bytes (sha256 or sha384)",
            digest,
        )?;
        let this = self.clone();
        let mrconfigid = blocking(TEE, move || this.mrconfigid()).await?;
        if mrconfigid != expected {
            return Err(AttesterError::InitDataMismatch {
                tee: TEE,
                platform_hex: hex::encode(mrconfigid),
                expected_hex: hex::encode(expected),
            });
        }
        Ok(InitDataResult::Bound)
    }

    async fn extend_runtime_measurement(
        &self,
        event: &[u8],
        pcr: u64,
    ) -> Result<RuntimeMeasurement, AttesterError> {
        if !self.has_sysfs_measurements() {
            debug!("no TDX sysfs measurement files: runtime measurement is not supported");
            return Ok(RuntimeMeasurement::NotSupported);
        }
        let rtmr = pcr_to_rtmr(pcr);
        let digest = Sha384::digest(event).to_vec();
        let path = self.measurement_file(&format!("rtmr{rtmr}:sha384"));
        let written = digest.clone();
        blocking(TEE, move || {
            std::fs::write(&path, &written).map_err(|e| io_error(TEE, "extend", &path, e))
        })
        .await?;
        Ok(RuntimeMeasurement::Extended(ExtendedRegister {
            register_index: rtmr as u64 + 1,
            algorithm: HashAlgorithm::Sha384,
            digest,
        }))
    }

    async fn read_register(&self, pcr: u64) -> Result<Option<RegisterValue>, AttesterError> {
        let rtmr = pcr_to_rtmr(pcr);
        let this = self.clone();
        let value = blocking(TEE, move || this.rtmr(rtmr)).await?;
        Ok(Some(RegisterValue {
            register_index: rtmr as u64 + 1,
            algorithm: HashAlgorithm::Sha384,
            value: value.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests;
