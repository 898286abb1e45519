//! Azure confidential VMs attested through their vTPM (`az-snp-vtpm`, `az-tdx-vtpm`).
//!
//! The paravisor (HCL) keeps a hardware report in vTPM NV index 0x01400001 whose report
//! data is the SHA-256 of JSON "variable data" holding the vTPM attestation key (persistent
//! handle 0x81000003). Evidence is that HCL report (refreshed with our report data in NV
//! index 0x01400002), a TPM quote over PCRs 0-23 whose nonce is the report data, and the
//! VCEK (SNP) or a TD quote for the TDREPORT (TDX) from IMDS:
//!
//! - az-snp-vtpm: `{"version":2,"tpm_quote":{"signature":hex,"message":hex,"pcrs":[hex×24]},
//!   "hcl_report":b64url,"vcek":b64url(DER)}`
//! - az-tdx-vtpm: `{"version":2,"tpm_quote":{…},"hcl_report":b64url,"td_quote":b64url}`
//!
//! The TPM is reached through the same TCTI as the `tpm` attester, so tests use swtpm.
//! initdata is extended into PCR 8; runtime measurements into the PCR asked for (SHA-256).

mod hcl;
mod imds;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

pub use hcl::{HclError, HclReport, HclReportType};
pub(crate) use imds::AzureImds;
pub use imds::{Imds, ImdsError};

use crate::{
    support::{blocking, pad_report_data},
    tpm::{bind_init_data_pcr, extend_event, read_pcr, AkSource, QuoteParts, Tpm, TpmLocation},
    Attester, AttesterError, Env, InitDataResult, Platform, RegisterValue, RuntimeMeasurement, Tee,
};

/// NV index of the HCL report.
pub(crate) const HCL_REPORT_NV_INDEX: u32 = 0x0140_0001;
/// NV index the report data is written to before the HCL report is refreshed.
pub(crate) const REPORT_DATA_NV_INDEX: u32 = 0x0140_0002;
/// Persistent handle of the vTPM attestation key.
pub(crate) const AK_HANDLE: u32 = 0x8100_0003;
/// Evidence version: 2 = the HCL report's user data carries the report data.
pub(crate) const EVIDENCE_VERSION: u32 = 2;
/// Bytes of report data (HCL user data and TPM quote nonce), at most.
pub(crate) const REPORT_DATA_SIZE: usize = 64;
/// How long to wait for the paravisor to refresh the HCL report with our user data.
pub(crate) const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(5);
const REFRESH_POLL: Duration = Duration::from_millis(100);

/// Base64url, padded on output (as trustee's serde_with encodes), any padding on input.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

mod b64url {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::URL_SAFE.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::B64URL.decode(text).map_err(serde::de::Error::custom)
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod hex_list {
    use serde::{ser::SerializeSeq, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for item in list {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|text| hex::decode(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// The vTPM quote of Azure evidence (hex fields; the signature is the bare RSA signature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzTpmQuote {
    /// RSASSA signature over `message`.
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    /// Marshalled TPMS_ATTEST.
    #[serde(with = "hex_bytes")]
    pub message: Vec<u8>,
    /// SHA-256 PCRs 0-23.
    #[serde(with = "hex_list")]
    pub pcrs: Vec<Vec<u8>>,
}

impl From<QuoteParts> for AzTpmQuote {
    fn from(parts: QuoteParts) -> Self {
        Self {
            signature: parts.rsa_signature,
            message: parts.message,
            pcrs: parts.pcrs.iter().map(|p| p.to_vec()).collect(),
        }
    }
}

/// az-snp-vtpm evidence as trustee's verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzSnpVtpmEvidence {
    /// Evidence version.
    pub version: u32,
    /// The vTPM quote.
    pub tpm_quote: AzTpmQuote,
    /// The HCL report.
    #[serde(with = "b64url")]
    pub hcl_report: Vec<u8>,
    /// The VCEK certificate, DER.
    #[serde(with = "b64url")]
    pub vcek: Vec<u8>,
}

/// az-tdx-vtpm evidence as trustee's verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzTdxVtpmEvidence {
    /// Evidence version.
    pub version: u32,
    /// The vTPM quote.
    pub tpm_quote: AzTpmQuote,
    /// The HCL report.
    #[serde(with = "b64url")]
    pub hcl_report: Vec<u8>,
    /// The TD quote of the HCL report's TDREPORT.
    #[serde(with = "b64url")]
    pub td_quote: Vec<u8>,
}

/// What the two Azure attesters share: the vTPM and IMDS.
#[derive(Debug, Clone)]
struct AzureVtpm {
    tee: Tee,
    tpm: Tpm,
    imds: Arc<dyn Imds>,
    refresh_timeout: Duration,
}

impl AzureVtpm {
    fn new(tee: Tee, location: TpmLocation, imds: Arc<dyn Imds>) -> Self {
        Self {
            tee,
            tpm: Tpm::new(location, tee),
            imds,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
        }
    }

    fn hcl_report(&self, bytes: Option<Vec<u8>>) -> Result<HclReport, AttesterError> {
        let bytes = bytes.ok_or_else(|| AttesterError::Platform {
            tee: self.tee,
            message: format!("the vTPM has no HCL report (NV index {HCL_REPORT_NV_INDEX:#x})"),
        })?;
        HclReport::parse(bytes).map_err(|e| AttesterError::Platform {
            tee: self.tee,
            message: e.to_string(),
        })
    }

    /// Writes the report data as HCL user data and reads the HCL report once the
    /// paravisor has refreshed it (polling instead of upstream's fixed 3 s sleep).
    fn refreshed_hcl_report(&self, report_data: &[u8]) -> Result<HclReport, AttesterError> {
        let user_data = pad_report_data::<REPORT_DATA_SIZE>(self.tee, report_data)?;
        self.tpm.nv_write(REPORT_DATA_NV_INDEX, &user_data)?;
        let wanted = hex::encode(user_data);
        let deadline = Instant::now() + self.refresh_timeout;
        loop {
            let report = self.hcl_report(self.tpm.nv_read(HCL_REPORT_NV_INDEX)?)?;
            match report.user_data() {
                Some(found) if found.eq_ignore_ascii_case(&wanted) => return Ok(report),
                None => {
                    debug!("the HCL report has no user data: an older paravisor");
                    return Ok(report);
                }
                Some(_) if Instant::now() >= deadline => {
                    warn!(
                        timeout = ?self.refresh_timeout,
                        "the HCL report did not pick up the report data in time; using it as is"
                    );
                    return Ok(report);
                }
                Some(_) => std::thread::sleep(REFRESH_POLL),
            }
        }
    }

    /// The HCL report and the vTPM quote for `report_data`.
    async fn report_and_quote(
        &self,
        report_data: &[u8],
    ) -> Result<(HclReport, AzTpmQuote), AttesterError> {
        if report_data.len() > REPORT_DATA_SIZE {
            return Err(AttesterError::ReportDataTooLong {
                tee: self.tee,
                len: report_data.len(),
                max: REPORT_DATA_SIZE,
            });
        }
        let this = self.clone();
        let nonce = report_data.to_vec();
        blocking(self.tee, move || {
            let report = this.refreshed_hcl_report(&nonce)?;
            // the verifier compares the nonce with the report data as is, unpadded
            let quote = this.tpm.quote(AkSource::Persistent(AK_HANDLE), &nonce)?;
            Ok((report, AzTpmQuote::from(quote)))
        })
        .await
    }

    fn imds_failed(&self, operation: &str, e: ImdsError) -> AttesterError {
        AttesterError::Backend {
            tee: self.tee,
            operation: operation.to_string(),
            source: Box::new(e),
        }
    }
}

/// The HCL report type in the vTPM at `location`, `None` when there is no HCL report.
fn detect_hcl(location: &TpmLocation) -> Option<HclReportType> {
    let tpm = Tpm::new(location.clone(), Tee::AzSnpVtpm);
    match tpm.nv_read(HCL_REPORT_NV_INDEX) {
        Ok(Some(bytes)) => match HclReport::parse(bytes) {
            Ok(report) => Some(report.report_type()),
            Err(e) => {
                warn!(error = %e, "NV index 0x01400001 holds no usable HCL report");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            debug!(error = %e, "no Azure HCL report: the TPM cannot be read");
            None
        }
    }
}

/// The Azure SEV-SNP CVM attester.
#[derive(Debug, Clone)]
pub struct AzSnpVtpmAttester {
    core: AzureVtpm,
}

impl AzSnpVtpmAttester {
    /// The attester of the vTPM at `location`, fetching the VCEK from `imds`.
    pub fn new(location: TpmLocation, imds: Arc<dyn Imds>) -> Self {
        Self {
            core: AzureVtpm::new(Tee::AzSnpVtpm, location, imds),
        }
    }

    /// How long to wait for the HCL report to carry new report data.
    pub fn with_refresh_timeout(mut self, timeout: Duration) -> Self {
        self.core.refresh_timeout = timeout;
        self
    }
}

/// The Azure TDX CVM attester.
#[derive(Debug, Clone)]
pub struct AzTdxVtpmAttester {
    core: AzureVtpm,
}

impl AzTdxVtpmAttester {
    /// The attester of the vTPM at `location`, getting TD quotes from `imds`.
    pub fn new(location: TpmLocation, imds: Arc<dyn Imds>) -> Self {
        Self {
            core: AzureVtpm::new(Tee::AzTdxVtpm, location, imds),
        }
    }

    /// How long to wait for the HCL report to carry new report data.
    pub fn with_refresh_timeout(mut self, timeout: Duration) -> Self {
        self.core.refresh_timeout = timeout;
        self
    }
}

/// The attester `make` builds when the vTPM the platform names holds an HCL report of type
/// `wanted`.
fn probe(
    platform: &Platform,
    env: &Env,
    wanted: HclReportType,
    make: fn(TpmLocation, Arc<dyn Imds>) -> Box<dyn Attester>,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    let Some(location) = TpmLocation::from_env(platform, env)? else {
        return Ok(None);
    };
    Ok((detect_hcl(&location) == Some(wanted))
        .then(|| make(location, Arc::new(AzureImds::default()))))
}

/// Looks for an Azure SEV-SNP CVM: an SNP HCL report in the vTPM.
#[cfg(feature = "az-snp-vtpm-attester")]
pub fn probe_snp(
    platform: &Platform,
    env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    probe(platform, env, HclReportType::Snp, |location, imds| {
        Box::new(AzSnpVtpmAttester::new(location, imds))
    })
}

/// Looks for an Azure TDX CVM: a TDX HCL report in the vTPM.
#[cfg(feature = "az-tdx-vtpm-attester")]
pub fn probe_tdx(
    platform: &Platform,
    env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    probe(platform, env, HclReportType::Tdx, |location, imds| {
        Box::new(AzTdxVtpmAttester::new(location, imds))
    })
}

fn json<T: Serialize>(tee: Tee, evidence: &T) -> Result<serde_json::Value, AttesterError> {
    serde_json::to_value(evidence).map_err(|e| AttesterError::Platform {
        tee,
        message: format!("cannot encode the evidence: {e}"),
    })
}

/// The hardware half of an Azure CVM attester (what IMDS adds to the HCL report and the
/// vTPM quote); the vTPM half, and so the rest of [`Attester`], is [`AzureVtpm`].
#[async_trait]
trait AzureCvm: Send + Sync {
    /// The HCL report type of this CVM, and its name with an article for errors.
    const REPORT: (HclReportType, &'static str);

    fn core(&self) -> &AzureVtpm;

    /// The evidence for an HCL report of type [`AzureCvm::REPORT`] and its vTPM quote.
    async fn evidence(
        &self,
        report: HclReport,
        tpm_quote: AzTpmQuote,
    ) -> Result<serde_json::Value, AttesterError>;
}

#[async_trait]
impl AzureCvm for AzSnpVtpmAttester {
    const REPORT: (HclReportType, &'static str) = (HclReportType::Snp, "an SEV-SNP");

    fn core(&self) -> &AzureVtpm {
        &self.core
    }

    async fn evidence(
        &self,
        report: HclReport,
        tpm_quote: AzTpmQuote,
    ) -> Result<serde_json::Value, AttesterError> {
        let core = &self.core;
        let pem = core
            .imds
            .vcek_pem()
            .await
            .map_err(|e| core.imds_failed("fetching the VCEK from IMDS", e))?;
        let vcek = imds::pem_certificate_der(&pem).map_err(|reason| AttesterError::Platform {
            tee: core.tee,
            message: format!("IMDS returned an unusable VCEK: {reason}"),
        })?;
        json(
            core.tee,
            &AzSnpVtpmEvidence {
                version: EVIDENCE_VERSION,
                tpm_quote,
                hcl_report: report.as_bytes().to_vec(),
                vcek,
            },
        )
    }
}

#[async_trait]
impl AzureCvm for AzTdxVtpmAttester {
    const REPORT: (HclReportType, &'static str) = (HclReportType::Tdx, "a TDX");

    fn core(&self) -> &AzureVtpm {
        &self.core
    }

    async fn evidence(
        &self,
        report: HclReport,
        tpm_quote: AzTpmQuote,
    ) -> Result<serde_json::Value, AttesterError> {
        let core = &self.core;
        let td_quote = core
            .imds
            .td_quote(report.hw_report())
            .await
            .map_err(|e| core.imds_failed("getting a TD quote from IMDS", e))?;
        json(
            core.tee,
            &AzTdxVtpmEvidence {
                version: EVIDENCE_VERSION,
                tpm_quote,
                hcl_report: report.as_bytes().to_vec(),
                td_quote,
            },
        )
    }
}

#[async_trait]
impl<C: AzureCvm> Attester for C {
    fn tee(&self) -> Tee {
        self.core().tee
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let core = self.core();
        let (report, tpm_quote) = core.report_and_quote(report_data).await?;
        let (wanted, name) = C::REPORT;
        if report.report_type() != wanted {
            return Err(AttesterError::Platform {
                tee: core.tee,
                message: format!("the HCL report is not {name} report"),
            });
        }
        self.evidence(report, tpm_quote).await
    }

    async fn bind_init_data(&self, digest: &[u8]) -> Result<InitDataResult, AttesterError> {
        bind_init_data_pcr(&self.core().tpm, self.core().tee, digest).await
    }

    fn default_runtime_pcr(&self) -> u64 {
        crate::TPM_RUNTIME_PCR
    }

    async fn extend_runtime_measurement(
        &self,
        event: &[u8],
        pcr: u64,
    ) -> Result<RuntimeMeasurement, AttesterError> {
        extend_event(&self.core().tpm, self.core().tee, event, pcr).await
    }

    async fn read_register(&self, pcr: u64) -> Result<Option<RegisterValue>, AttesterError> {
        read_pcr(&self.core().tpm, self.core().tee, pcr).await
    }
}

/// The bincode `Quote` of the az-cvm-vtpm crate (`signature`, `message`, `pcrs` as
/// length-prefixed little-endian vectors), as in trustee's recorded `quote.bin`.
pub fn quote_from_bincode(bytes: &[u8]) -> Result<AzTpmQuote, String> {
    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl<'a> Cursor<'a> {
        fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
            let end = self.at.checked_add(len).ok_or("length overflow")?;
            let part = self.bytes.get(self.at..end).ok_or("truncated quote")?;
            self.at = end;
            Ok(part)
        }
        fn length(&mut self) -> Result<usize, String> {
            let mut word = [0u8; 8];
            word.copy_from_slice(self.take(8)?);
            usize::try_from(u64::from_le_bytes(word)).map_err(|_| "length too large".to_string())
        }
        fn vector(&mut self) -> Result<Vec<u8>, String> {
            let len = self.length()?;
            Ok(self.take(len)?.to_vec())
        }
    }
    let mut cursor = Cursor { bytes, at: 0 };
    let signature = cursor.vector()?;
    let message = cursor.vector()?;
    let count = cursor.length()?;
    if count > 64 {
        return Err(format!("{count} PCRs"));
    }
    let pcrs = (0..count)
        .map(|_| cursor.take(32).map(<[u8]>::to_vec))
        .collect::<Result<Vec<_>, _>>()?;
    if cursor.at != bytes.len() {
        return Err("trailing bytes after the quote".to_string());
    }
    Ok(AzTpmQuote {
        signature,
        message,
        pcrs,
    })
}

#[cfg(test)]
mod tests;
