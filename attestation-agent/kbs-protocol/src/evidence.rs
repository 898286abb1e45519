//! Where the client's evidence comes from: [`EvidenceProvider`], implemented once for the
//! `attester` crate's detected attesters by `AttesterEvidenceProvider` (feature
//! `attester`). AA (in-process) and `kbs-client` both use it, so the sample attester is
//! only ever used when `attester::detect` allowed it (`AA_SAMPLE_ATTESTER=1` or an
//! explicit opt-in).
//!
//! The adapter stays beside the trait rather than in the agent or the attester crate:
//! `kbs-client` (in this crate) needs it too, and neither of those can be a dependency of
//! this crate without a cycle.

#[cfg(feature = "attester")]
use std::sync::Arc;

use async_trait::async_trait;
#[cfg(feature = "attester")]
use attester::Detected;

use crate::token::ProviderError;

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

/// Evidence from the attesters `attester::detect` found: the primary attester's TEE and
/// evidence, and every device attester's evidence as additional evidence.
#[cfg(feature = "attester")]
#[derive(Debug, Clone)]
pub struct AttesterEvidenceProvider {
    attesters: Arc<Detected>,
}

#[cfg(feature = "attester")]
impl AttesterEvidenceProvider {
    /// A provider over `attesters` (shared with whoever else serves evidence from them).
    pub fn new(attesters: Arc<Detected>) -> Self {
        Self { attesters }
    }

    /// The attesters this provider speaks for.
    pub fn attesters(&self) -> &Arc<Detected> {
        &self.attesters
    }
}

#[cfg(feature = "attester")]
#[async_trait]
impl EvidenceProvider for AttesterEvidenceProvider {
    async fn tee(&self) -> Result<String, ProviderError> {
        Ok(self.attesters.primary.tee().to_string())
    }

    async fn primary_evidence(
        &self,
        report_data: &[u8],
    ) -> Result<serde_json::Value, ProviderError> {
        Ok(self.attesters.primary.get_evidence(report_data).await?)
    }

    async fn additional_evidence(&self, report_data: &[u8]) -> Result<String, ProviderError> {
        Ok(self.attesters.additional_evidence(report_data).await?)
    }
}

#[cfg(all(test, feature = "attester"))]
mod tests {
    use super::*;
    use attester::{Attester, AttesterError, SampleAttester, SampleDeviceAttester, Tee};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde_json::json;

    fn provider(devices: Vec<Box<dyn Attester>>) -> AttesterEvidenceProvider {
        AttesterEvidenceProvider::new(Arc::new(Detected {
            primary: Box::new(SampleAttester),
            additional: devices,
        }))
    }

    #[tokio::test]
    async fn sample_evidence_has_the_captured_shape() {
        let provider = provider(vec![]);
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

    #[tokio::test]
    async fn devices_become_a_json_object_keyed_by_tee() {
        let provider = provider(vec![Box::new(SampleDeviceAttester)]);
        let text = provider.additional_evidence(b"nonce").await.unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({"sampledevice": {"svn": "2", "report_data": STANDARD.encode(b"nonce")}})
        );
        assert_eq!(provider.attesters().additional.len(), 1);
    }

    struct Failing;
    #[async_trait]
    impl Attester for Failing {
        fn tee(&self) -> Tee {
            Tee::Tdx
        }
        async fn get_evidence(&self, _: &[u8]) -> Result<serde_json::Value, AttesterError> {
            Err(AttesterError::NoTeeDetected {
                compiled: "tdx".into(),
                refused_by: "test".into(),
            })
        }
    }

    #[tokio::test]
    async fn attester_failures_are_passed_on() {
        let provider = AttesterEvidenceProvider::new(Arc::new(Detected {
            primary: Box::new(Failing),
            additional: vec![Box::new(Failing)],
        }));
        assert_eq!(provider.tee().await.unwrap(), "tdx");
        let err = provider.primary_evidence(b"x").await.unwrap_err();
        assert!(err.to_string().contains("no TEE found"), "{err}");
        let err = provider.additional_evidence(b"x").await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("getting additional tdx device evidence"),
            "{err}"
        );
    }
}
