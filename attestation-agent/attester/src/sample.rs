//! The sample attesters: evidence without hardware, understood by trustee's sample
//! verifiers. They prove nothing and are only used when explicitly allowed.

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::json;

use crate::{Attester, AttesterError, Tee};

/// Primary sample attester: `{"svn":"1","report_data":"<std base64>"}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleAttester;

/// Sample device attester: `{"svn":"2","report_data":"<std base64>"}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleDeviceAttester;

/// The report data is encoded exactly as given: trustee's sample verifier compares it
/// with the exact digest, and a zero-padded value is refused.
fn sample_evidence(svn: &str, report_data: &[u8]) -> serde_json::Value {
    json!({ "svn": svn, "report_data": STANDARD.encode(report_data) })
}

#[async_trait]
impl Attester for SampleAttester {
    fn tee(&self) -> Tee {
        Tee::Sample
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        Ok(sample_evidence("1", report_data))
    }
}

#[async_trait]
impl Attester for SampleDeviceAttester {
    fn tee(&self) -> Tee {
        Tee::SampleDevice
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        Ok(sample_evidence("2", report_data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InitDataResult, RuntimeMeasurement};

    #[tokio::test]
    async fn sample_evidence_is_exact_and_unpadded() {
        let digest: Vec<u8> = (0u8..48).collect();
        let evidence = SampleAttester.get_evidence(&digest).await.unwrap();
        // compared as JSON values: key order depends on serde_json's `preserve_order`
        assert_eq!(
            evidence,
            json!({
                "svn": "1",
                "report_data": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"
            })
        );
        assert_eq!(SampleAttester.tee(), Tee::Sample);

        let empty = SampleAttester.get_evidence(b"").await.unwrap();
        assert_eq!(empty, json!({"svn": "1", "report_data": ""}));
        // longer than any platform field: still as-is, never truncated
        let long = SampleAttester.get_evidence(&[0xff; 100]).await.unwrap();
        assert_eq!(long["report_data"], STANDARD.encode([0xff; 100]));
    }

    #[tokio::test]
    async fn sample_device_evidence_is_exact() {
        let evidence = SampleDeviceAttester.get_evidence(b"abc").await.unwrap();
        assert_eq!(evidence, json!({"svn": "2", "report_data": "YWJj"}));
        assert_eq!(SampleDeviceAttester.tee(), Tee::SampleDevice);
    }

    #[tokio::test]
    async fn sample_cannot_bind_initdata_or_measure() {
        assert_eq!(
            SampleAttester.bind_init_data(&[1; 32]).await.unwrap(),
            InitDataResult::Unsupported
        );
        assert_eq!(
            SampleAttester
                .extend_runtime_measurement(b"d o c", 17)
                .await
                .unwrap(),
            RuntimeMeasurement::NotSupported
        );
    }
}
