//! AMD SEV-SNP.
//!
//! - Report: configfs-tsm with provider `sev_guest` (`outblob` is the 1184-byte report,
//!   `auxblob` the certificate table) when present, else the `/dev/sev-guest`
//!   `SNP_GET_EXT_REPORT` ioctl; always at VMPL 0.
//! - Evidence: `{"attestation_report": <sev::AttestationReport>, "cert_chain":
//!   [CertTableEntry]|null}` in the serde shape of the `sev` crate, which is what trustee's
//!   SNP verifier deserializes.
//! - initdata: HOSTDATA (32 bytes) of a fresh report.

mod ioctl;

use std::{fmt, io, sync::Arc};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sev::{
    firmware::{
        guest::AttestationReport,
        host::{CertTableEntry, CertType},
    },
    parser::ByteParser,
};
use tracing::debug;

pub(crate) use ioctl::SevGuestIoctl;

use crate::{
    support::{blocking, io_error, pad_digest, pad_report_data},
    tsm::{self, TsmEntry},
    Attester, AttesterError, Env, InitDataResult, Platform, Tee,
};

/// The SEV guest device.
pub(crate) const DEVICE_PATH: &str = "/dev/sev-guest";
/// The platform device the sev-guest driver binds to.
pub(crate) const SYSFS_PATH: &str = "/sys/devices/platform/sev-guest";
/// The configfs-tsm provider of SEV-SNP.
pub(crate) const TSM_PROVIDER: &str = "sev_guest";
/// Size of an attestation report.
pub(crate) const REPORT_SIZE: usize = 1184;
/// Bytes of report data a report binds.
pub(crate) const REPORT_DATA_SIZE: usize = 64;
/// HOSTDATA: offset and size in the report.
const HOST_DATA: std::ops::Range<usize> = 0xC0..0xE0;
/// The VMPL reports are requested at (trustee accepts only VMPL 0).
const VMPL: u32 = 0;
/// Entries of a certificate table, at most (a table is a handful of certificates).
const MAX_CERT_ENTRIES: usize = 64;
/// Size of one certificate table entry: GUID, offset, length.
const CERT_ENTRY_SIZE: usize = 24;

const TEE: Tee = Tee::Snp;

/// The extended-report source: the `/dev/sev-guest` ioctl on a guest, recorded replies in
/// tests.
pub(crate) trait SevGuestDevice: Send + Sync + fmt::Debug {
    /// The report binding `report_data` at `vmpl`, and the host's certificate table (kernel
    /// GUID-table format), `None` when the host supplies none.
    fn get_ext_report(
        &self,
        report_data: &[u8; 64],
        vmpl: u32,
    ) -> io::Result<(Vec<u8>, Option<Vec<u8>>)>;
}

/// SNP evidence as trustee's SNP verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpEvidence {
    /// The attestation report.
    pub attestation_report: AttestationReport,
    /// The VCEK/VLEK and CA certificates from the host, if it supplies them.
    pub cert_chain: Option<Vec<CertTableEntry>>,
}

/// Why bytes are not SNP evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    /// The report could not be parsed.
    #[error("malformed attestation report: {0}")]
    Report(String),
    /// The certificate table could not be parsed.
    #[error("malformed certificate table: {0}")]
    CertTable(String),
}

/// Parses a 1184-byte attestation report.
pub fn parse_report(bytes: &[u8]) -> Result<AttestationReport, SnpError> {
    AttestationReport::from_bytes(bytes).map_err(|e| SnpError::Report(e.to_string()))
}

/// Parses a certificate table: 24-byte entries (GUID, u32 offset, u32 length, offsets from
/// the table start) ended by an all-zero entry.
pub(crate) fn parse_cert_table(table: &[u8]) -> Result<Vec<CertTableEntry>, SnpError> {
    let mut entries = Vec::new();
    for index in 0..=MAX_CERT_ENTRIES {
        let at = index * CERT_ENTRY_SIZE;
        let raw = table
            .get(at..at + CERT_ENTRY_SIZE)
            .ok_or_else(|| SnpError::CertTable(format!("entry {index} runs past the table")))?;
        if raw.iter().all(|b| *b == 0) {
            return Ok(entries);
        }
        if index == MAX_CERT_ENTRIES {
            break;
        }
        let cert_type = CertType::from_bytes(&raw[..16])
            .map_err(|e| SnpError::CertTable(format!("entry {index}: {e}")))?;
        let offset = u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]) as usize;
        let length = u32::from_le_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
        let data = offset
            .checked_add(length)
            .and_then(|end| table.get(offset..end))
            .ok_or_else(|| {
                SnpError::CertTable(format!(
                    "entry {index} ({cert_type}) points outside the table ({offset}+{length} > {})",
                    table.len()
                ))
            })?;
        entries.push(CertTableEntry::new(cert_type, data.to_vec()));
    }
    Err(SnpError::CertTable(format!(
        "more than {MAX_CERT_ENTRIES} entries"
    )))
}

/// The evidence for a raw report and certificate table.
pub(crate) fn evidence_from_parts(
    report: &[u8],
    certs: Option<&[u8]>,
) -> Result<SnpEvidence, SnpError> {
    let attestation_report = parse_report(report)?;
    let cert_chain = certs
        .map(parse_cert_table)
        .transpose()?
        .filter(|entries| !entries.is_empty());
    Ok(SnpEvidence {
        attestation_report,
        cert_chain,
    })
}

/// The SNP attester.
#[derive(Debug, Clone)]
pub(crate) struct SnpAttester {
    platform: Platform,
    device: Arc<dyn SevGuestDevice>,
}

impl SnpAttester {
    /// The attester of this platform, using the kernel's `/dev/sev-guest`.
    pub(crate) fn new(platform: Platform) -> Self {
        let device = Arc::new(SevGuestIoctl::new(platform.path(DEVICE_PATH)));
        Self::with_device(platform, device)
    }

    /// The attester with another report source (recorded replies in tests).
    pub(crate) fn with_device(platform: Platform, device: Arc<dyn SevGuestDevice>) -> Self {
        Self { platform, device }
    }

    /// The raw report and certificate table for `report_data`.
    fn report(
        &self,
        report_data: &[u8; REPORT_DATA_SIZE],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), AttesterError> {
        let (report, certs) = match TsmEntry::open(&self.platform, TEE, TSM_PROVIDER)? {
            TsmEntry::Ready(entry) => entry.generate_with_auxblob(report_data)?,
            other => {
                if let TsmEntry::OtherProvider(provider) = other {
                    debug!(%provider, "configfs-tsm belongs to another provider; using the ioctl");
                }
                let path = self.platform.path(DEVICE_PATH);
                self.device
                    .get_ext_report(report_data, VMPL)
                    .map_err(|e| io_error(TEE, "get an extended report from", &path, e))?
            }
        };
        if report.len() != REPORT_SIZE {
            return Err(AttesterError::Platform {
                tee: TEE,
                message: format!(
                    "the attestation report is {} bytes, not {REPORT_SIZE}",
                    report.len()
                ),
            });
        }
        if report[0x50..0x90] != report_data[..] {
            return Err(AttesterError::Platform {
                tee: TEE,
                message: "the attestation report binds other report data than requested"
                    .to_string(),
            });
        }
        Ok((report, certs))
    }

    fn evidence(&self, report_data: &[u8; REPORT_DATA_SIZE]) -> Result<SnpEvidence, AttesterError> {
        let (report, certs) = self.report(report_data)?;
        evidence_from_parts(&report, certs.as_deref()).map_err(|e| AttesterError::Platform {
            tee: TEE,
            message: e.to_string(),
        })
    }
}

/// Looks for SEV-SNP: the sev-guest platform device or its device node.
pub(crate) fn probe(
    platform: &Platform,
    _env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    let found = platform.path(SYSFS_PATH).exists()
        || platform.path(DEVICE_PATH).exists()
        || tsm::provider_present(platform, TEE, TSM_PROVIDER);
    Ok(found.then(|| Box::new(SnpAttester::new(platform.clone())) as Box<dyn Attester>))
}

#[async_trait]
impl Attester for SnpAttester {
    fn tee(&self) -> Tee {
        TEE
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let report_data = pad_report_data::<REPORT_DATA_SIZE>(TEE, report_data)?;
        let this = self.clone();
        let evidence = blocking(TEE, move || this.evidence(&report_data)).await?;
        serde_json::to_value(&evidence).map_err(|e| AttesterError::Platform {
            tee: TEE,
            message: format!("cannot encode the evidence: {e}"),
        })
    }

    async fn bind_init_data(&self, digest: &[u8]) -> Result<InitDataResult, AttesterError> {
        let expected = pad_digest::<32>(TEE, "HOSTDATA", "at most 32 bytes (sha256)", digest)?;
        let this = self.clone();
        let (report, _) = blocking(TEE, move || this.report(&[0; REPORT_DATA_SIZE])).await?;
        let host_data = &report[HOST_DATA];
        if host_data != expected {
            return Err(AttesterError::InitDataMismatch {
                tee: TEE,
                platform_hex: hex::encode(host_data),
                expected_hex: hex::encode(expected),
            });
        }
        Ok(InitDataResult::Bound)
    }
}

#[cfg(test)]
mod tests;
