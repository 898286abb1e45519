//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use attester::{Detected, SampleAttester};
use kbs_protocol::{decode_aa_token_reply, encode_aa_token_reply};
use kbs_protocol::{
    AttesterEvidenceProvider, EvidenceProvider, KbsClient, KbsClientConfig, ProviderError,
    ResourceUri, RetryPolicy, TeeKeyAlgorithm, TeeKeyPair, Token, TokenNeed, TokenProvider,
};
use testkit::kbs::{KbsConfig, TestKbs};

pub(crate) const SECRET: &[u8] = b"an attested secret \x00\x01\xff";

pub(crate) async fn start_kbs(config: KbsConfig) -> TestKbs {
    let kbs = TestKbs::start(config).await.unwrap();
    kbs.put_resource("default/key/1", SECRET);
    kbs
}

/// Fast retries and short timeouts so that failure tests take milliseconds.
pub(crate) fn config(kbs: &TestKbs, algorithm: TeeKeyAlgorithm) -> KbsClientConfig {
    let mut config = KbsClientConfig::new(&kbs.url()).unwrap();
    config.tee_key_algorithm = algorithm;
    config.request_timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    };
    if let Some(ca) = kbs.ca_pem() {
        config.extra_root_certs_pem.push(ca);
    }
    config
}

/// Evidence from the sample attester alone (what `attester::detect` gives when the sample
/// attester is allowed and no TEE or device is found).
pub(crate) fn sample_evidence() -> AttesterEvidenceProvider {
    AttesterEvidenceProvider::new(Arc::new(Detected {
        primary: Box::new(SampleAttester),
        additional: vec![],
    }))
}

pub(crate) fn sample_client(config: KbsClientConfig) -> KbsClient {
    KbsClient::background_check(config, Arc::new(sample_evidence())).unwrap()
}

pub(crate) fn client(kbs: &TestKbs) -> KbsClient {
    sample_client(config(kbs, TeeKeyAlgorithm::EcP256))
}

pub(crate) fn uri(text: &str) -> ResourceUri {
    ResourceUri::parse(text).unwrap()
}

/// A passport-mode token source the way CDH gets one: AA's reply bytes over the wire.
pub(crate) struct AaLikeTokenProvider {
    pub aa: KbsClient,
    pub calls: AtomicUsize,
}

#[async_trait]
impl TokenProvider for AaLikeTokenProvider {
    async fn get_token(&self, need: TokenNeed) -> Result<(Token, TeeKeyPair), ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // as AA: its cached token, or a new attestation on a forced refresh
        let (token, keypair) = match need {
            TokenNeed::Valid => self.aa.get_token().await?,
            TokenNeed::NewAttestation => self.aa.refresh_token().await?,
        };
        let reply = encode_aa_token_reply(&token, &keypair)?;
        Ok(decode_aa_token_reply(&reply)?)
    }
}

/// Evidence whose report data is damaged on the way out.
pub(crate) struct TamperingProvider {
    pub tamper: fn(&[u8]) -> Vec<u8>,
}

#[async_trait]
impl EvidenceProvider for TamperingProvider {
    async fn tee(&self) -> Result<String, ProviderError> {
        Ok("sample".into())
    }
    async fn primary_evidence(
        &self,
        report_data: &[u8],
    ) -> Result<serde_json::Value, ProviderError> {
        sample_evidence()
            .primary_evidence(&(self.tamper)(report_data))
            .await
    }
}

/// Sample primary evidence plus a `sampledevice` bound to the device report data (or to
/// garbage when `wrong_binding`).
pub(crate) struct WithDeviceProvider {
    pub wrong_binding: bool,
}

#[async_trait]
impl EvidenceProvider for WithDeviceProvider {
    async fn tee(&self) -> Result<String, ProviderError> {
        Ok("sample".into())
    }
    async fn primary_evidence(
        &self,
        report_data: &[u8],
    ) -> Result<serde_json::Value, ProviderError> {
        sample_evidence().primary_evidence(report_data).await
    }
    async fn additional_evidence(&self, report_data: &[u8]) -> Result<String, ProviderError> {
        use base64::Engine;
        let bound = if self.wrong_binding {
            vec![0u8; report_data.len()]
        } else {
            report_data.to_vec()
        };
        Ok(serde_json::json!({
            "sampledevice": {
                "svn": "2",
                "report_data": base64::engine::general_purpose::STANDARD.encode(bound),
            }
        })
        .to_string())
    }
}

/// A plain reqwest client for speaking raw HTTP to the test KBS.
pub(crate) fn raw_http() -> reqwest::Client {
    http_client::ClientBuilder::new().build().unwrap()
}
