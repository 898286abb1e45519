//! Where the client's evidence comes from: AA plugs its attesters in through
//! [`EvidenceProvider`]; the sample provider exists for tests, demos and `kbs-client`.

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;

use crate::token::ProviderError;

/// Environment variable that must be `1` before the sample attester may be used.
pub const SAMPLE_ATTESTER_ENV: &str = "AA_SAMPLE_ATTESTER";

/// TEE evidence for the RCAR handshake.
#[async_trait]
pub trait EvidenceProvider: Send + Sync {
    /// The TEE name as the KBS knows it (`tdx`, `snp`, `sample`, ...).
    async fn tee(&self) -> Result<String, ProviderError>;

    /// Primary evidence bound to `report_data` (the unpadded digest; hardware attesters pad
    /// it to their field size, the sample attester must not).
    async fn primary_evidence(
        &self,
        report_data: &[u8],
    ) -> Result<serde_json::Value, ProviderError>;

    /// Device evidence as JSON text `{"<tee>": <evidence>, ...}` bound to `report_data`,
    /// or `""` when there are no devices.
    async fn additional_evidence(&self, _report_data: &[u8]) -> Result<String, ProviderError> {
        Ok(String::new())
    }
}

/// The sample attester was not enabled.
#[derive(Debug, thiserror::Error)]
#[error("the sample attester is disabled: set {SAMPLE_ATTESTER_ENV}=1 to send sample (untrusted) evidence")]
pub struct SampleAttesterDisabled;

/// The `sample` TEE: `{"svn":"1","report_data":"<base64 of the report data>"}`, as trustee's
/// sample verifier expects (no padding).
#[derive(Debug, Clone, Default)]
pub struct SampleEvidenceProvider {
    _private: (),
}

impl SampleEvidenceProvider {
    /// The sample provider, only when `AA_SAMPLE_ATTESTER=1`: a misconfigured guest must not
    /// silently send fake evidence.
    pub fn from_env() -> Result<Self, SampleAttesterDisabled> {
        match std::env::var(SAMPLE_ATTESTER_ENV).as_deref() {
            Ok("1") => Ok(Self { _private: () }),
            _ => Err(SampleAttesterDisabled),
        }
    }

    /// The sample provider without the environment check, for callers that already decided
    /// (AA's `[attester] allow_sample = true`, tests).
    pub fn new_explicitly_allowed() -> Self {
        Self { _private: () }
    }
}

#[async_trait]
impl EvidenceProvider for SampleEvidenceProvider {
    async fn tee(&self) -> Result<String, ProviderError> {
        Ok("sample".to_string())
    }

    async fn primary_evidence(
        &self,
        report_data: &[u8],
    ) -> Result<serde_json::Value, ProviderError> {
        Ok(json!({
            "svn": "1",
            "report_data": STANDARD.encode(report_data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sample_evidence_has_the_captured_shape() {
        let provider = SampleEvidenceProvider::new_explicitly_allowed();
        assert_eq!(provider.tee().await.unwrap(), "sample");
        let evidence = provider.primary_evidence(&[0xAB; 48]).await.unwrap();
        let mut keys: Vec<_> = evidence.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["report_data", "svn"]);
        assert_eq!(
            STANDARD
                .decode(evidence["report_data"].as_str().unwrap())
                .unwrap(),
            vec![0xAB; 48]
        );
        assert_eq!(provider.additional_evidence(&[]).await.unwrap(), "");
    }
}
