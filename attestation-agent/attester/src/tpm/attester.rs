//! The `tpm` attester: a quote over SHA-256 PCRs 0-23 signed by an attestation key.
//!
//! Evidence: `{"tpm_quote": {"signature": b64(TPMT_SIGNATURE), "message": b64(TPMS_ATTEST),
//! "pcrs": [hex × 24]}, "ak_public": b64(DER SubjectPublicKeyInfo)}`. The report data,
//! zero-padded to 64 bytes, is the quote's qualifying data: trustee's TPM verifier pads the
//! expected report data to 64 bytes and compares it with the whole nonce (upstream once
//! truncated it to 32 bytes, which also dropped part of a SHA-384 binding).

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};

use super::{
    ak_handle, bind_init_data_pcr, extend_event, read_pcr, AkSource, QuoteParts, Tpm, TpmLocation,
};
use crate::{
    support::{blocking, pad_report_data},
    Attester, AttesterError, Env, InitDataResult, Platform, RegisterValue, RuntimeMeasurement, Tee,
};

/// Bytes of qualifying data (report data) a quote carries.
pub(crate) const REPORT_DATA_SIZE: usize = 64;

const TEE: Tee = Tee::Tpm;

/// The quote part of the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmQuote {
    /// base64 of the marshalled TPMT_SIGNATURE.
    pub signature: String,
    /// base64 of the marshalled TPMS_ATTEST.
    pub message: String,
    /// hex of SHA-256 PCRs 0-23.
    pub pcrs: Vec<String>,
}

/// TPM evidence as trustee's TPM verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmEvidence {
    /// The quote.
    pub tpm_quote: TpmQuote,
    /// base64 of the AK's DER SubjectPublicKeyInfo.
    pub ak_public: String,
}

impl From<QuoteParts> for TpmEvidence {
    fn from(parts: QuoteParts) -> Self {
        Self {
            tpm_quote: TpmQuote {
                signature: STANDARD.encode(&parts.signature),
                message: STANDARD.encode(&parts.message),
                pcrs: parts.pcrs.iter().map(hex::encode).collect(),
            },
            ak_public: STANDARD.encode(&parts.ak_public_der),
        }
    }
}

/// The TPM attester.
#[derive(Debug, Clone)]
pub(crate) struct TpmAttester {
    tpm: Tpm,
    ak_handle: u32,
}

impl TpmAttester {
    /// The attester of the TPM at `location`, quoting with the AK at persistent handle
    /// `ak_handle` (or a created primary AK when there is none).
    pub(crate) fn new(location: TpmLocation, ak_handle: u32) -> Self {
        Self {
            tpm: Tpm::new(location, TEE),
            ak_handle,
        }
    }
}

/// Looks for a TPM: `AA_TPM_TCTI`, `AA_TPM_DEVICE` or a `/dev/tpm*` node.
pub fn probe(platform: &Platform, env: &Env) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    let Some(location) = TpmLocation::from_env(platform, env)? else {
        return Ok(None);
    };
    let handle = ak_handle(env)?;
    Ok(Some(Box::new(TpmAttester::new(location, handle))))
}

#[async_trait]
impl Attester for TpmAttester {
    fn tee(&self) -> Tee {
        TEE
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let qualifying = pad_report_data::<REPORT_DATA_SIZE>(TEE, report_data)?;
        let tpm = self.tpm.clone();
        let ak = AkSource::PersistentOrCreated(self.ak_handle);
        let parts = blocking(TEE, move || tpm.quote(ak, &qualifying)).await?;
        Ok(serde_json::json!(TpmEvidence::from(parts)))
    }

    async fn bind_init_data(&self, digest: &[u8]) -> Result<InitDataResult, AttesterError> {
        bind_init_data_pcr(&self.tpm, TEE, digest).await
    }

    fn default_runtime_pcr(&self) -> u64 {
        crate::TPM_RUNTIME_PCR
    }

    async fn extend_runtime_measurement(
        &self,
        event: &[u8],
        pcr: u64,
    ) -> Result<RuntimeMeasurement, AttesterError> {
        extend_event(&self.tpm, TEE, event, pcr).await
    }

    async fn read_register(&self, pcr: u64) -> Result<Option<RegisterValue>, AttesterError> {
        read_pcr(&self.tpm, TEE, pcr).await
    }
}
