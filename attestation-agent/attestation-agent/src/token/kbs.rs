//! `GetToken("kbs")`: one [`KbsClient`] per agent, created on the first request (a KBS that
//! is down never delays the socket), attesting with the agent's own attesters in-process.
//! Its token cache makes concurrent requests share one attestation and reuses a token
//! until shortly before it expires (upstream ran a full RCAR with a new key on every call).
//!
//! The reply is upstream's `{"token":"<JWT>","tee_keypair":"<PEM private key>"}`.

use std::sync::Arc;

use attester::Detected;
use kbs_protocol::{encode_aa_token_reply, AttesterEvidenceProvider, KbsClient, KbsClientConfig};
use tokio::sync::OnceCell;
use tracing::{debug, info};
use zeroize::Zeroizing;

use super::TokenRefresh;
use crate::{
    config::{KbsConfig, TeeKeyAlgorithm},
    initdata::InitData,
    AaError,
};

/// The kbs_protocol key type for a configured `tee_key_algorithm`.
pub(crate) fn tee_key_algorithm(algorithm: TeeKeyAlgorithm) -> kbs_protocol::TeeKeyAlgorithm {
    match algorithm {
        TeeKeyAlgorithm::EcdhEsA256KwP256 => kbs_protocol::TeeKeyAlgorithm::EcP256,
        TeeKeyAlgorithm::EcdhEsA256KwP521 => kbs_protocol::TeeKeyAlgorithm::EcP521,
        TeeKeyAlgorithm::RsaOaep256 => kbs_protocol::TeeKeyAlgorithm::Rsa2048,
        TeeKeyAlgorithm::MlKem768A192Kw => kbs_protocol::TeeKeyAlgorithm::MlKem768,
    }
}

/// The KBS client configuration for `[token_configs.kbs]`, sending `initdata` (the TOML
/// the agent was started with) as `init-data`.
pub(crate) fn client_config(
    config: &KbsConfig,
    initdata: Option<&InitData>,
) -> Result<KbsClientConfig, kbs_protocol::Error> {
    let mut client = KbsClientConfig::new(config.url.as_str())?;
    client.extra_root_certs_pem = config.cert.iter().cloned().collect();
    client.tee_key_algorithm = tee_key_algorithm(config.tee_key_algorithm);
    client.initdata_toml = initdata.map(|i| i.toml().to_string());
    Ok(client)
}

/// The agent's KBS token source.
#[derive(Debug, Default)]
pub(crate) struct KbsTokens {
    client: OnceCell<KbsClient>,
}

impl KbsTokens {
    /// A token and its TEE key as upstream's JSON reply: the cached one, or (first call,
    /// expiry, forced refresh) one from a new attestation.
    pub(crate) async fn token(
        &self,
        config: &KbsConfig,
        initdata: Option<&InitData>,
        attesters: &Arc<Detected>,
        refresh: TokenRefresh,
    ) -> Result<Zeroizing<Vec<u8>>, AaError> {
        let kbs_error = |source| AaError::KbsToken {
            url: config.url.to_string(),
            source,
        };
        let client = self
            .client
            .get_or_try_init(|| async {
                let client_config = client_config(config, initdata)?;
                info!(
                    url = %client_config.url,
                    tee_key = %client_config.tee_key_algorithm,
                    initdata = client_config.initdata_toml.is_some(),
                    "KBS client created"
                );
                let evidence = AttesterEvidenceProvider::new(attesters.clone());
                KbsClient::background_check(client_config, Arc::new(evidence))
            })
            .await
            .map_err(kbs_error)?;
        let (token, keypair) = match refresh {
            TokenRefresh::UseCached => client.get_token().await,
            TokenRefresh::Force => {
                debug!("forced token refresh: attesting again unless a newer token exists");
                client.refresh_token().await
            }
        }
        .map_err(kbs_error)?;
        encode_aa_token_reply(&token, &keypair).map_err(AaError::KbsTokenReply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigFormat};

    #[test]
    fn every_configured_algorithm_maps_onto_a_key_type() {
        for (name, expected) in [
            ("ECDH-ES+A256KW-P256", kbs_protocol::TeeKeyAlgorithm::EcP256),
            ("ECDH-ES+A256KW-P521", kbs_protocol::TeeKeyAlgorithm::EcP521),
            ("RSA-OAEP-256", kbs_protocol::TeeKeyAlgorithm::Rsa2048),
            ("ML-KEM-768+A192KW", kbs_protocol::TeeKeyAlgorithm::MlKem768),
        ] {
            let text = format!(
                "[token_configs.kbs]\nurl = \"http://127.0.0.1:8080\"\ntee_key_algorithm = \"{name}\"\n"
            );
            let config = Config::parse(text.as_bytes(), ConfigFormat::Toml)
                .unwrap()
                .config;
            let kbs = config.token_configs.kbs.unwrap();
            let client = client_config(&kbs, None).unwrap();
            assert_eq!(client.tee_key_algorithm, expected, "{name}");
            assert_eq!(client.url.as_str(), "http://127.0.0.1:8080/");
            assert!(client.extra_root_certs_pem.is_empty());
            assert_eq!(client.initdata_toml, None);
        }
    }

    /// The agent in-process against the test KBS: cached, refreshed, and the reply format.
    #[tokio::test]
    async fn tokens_are_cached_and_refreshed_against_the_test_kbs() {
        use kbs_protocol::decode_aa_token_reply;
        use testkit::kbs::{KbsConfig as TestKbsConfig, TestKbs};

        let kbs = TestKbs::start(TestKbsConfig::default()).await.unwrap();
        let mut config = Config::default();
        config.token_configs.kbs = Some(KbsConfig {
            url: kbs.url().parse().unwrap(),
            cert: None,
            tee_key_algorithm: TeeKeyAlgorithm::EcdhEsA256KwP521,
        });
        let aa = crate::AttestationAgent::new(
            config,
            Detected {
                primary: Box::new(attester::SampleAttester),
                additional: vec![],
            },
        );
        let first = aa.get_token("kbs", TokenRefresh::UseCached).await.unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&first).unwrap();
        let mut keys: Vec<&str> = reply
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(keys, ["tee_keypair", "token"]);
        let (token, key) = decode_aa_token_reply(&first).unwrap();
        assert_eq!(key.algorithm(), kbs_protocol::TeeKeyAlgorithm::EcP521);

        let again = aa.get_token("kbs", TokenRefresh::UseCached).await.unwrap();
        assert_eq!(first.as_slice(), again.as_slice());
        assert_eq!(kbs.counters().attest_ok, 1);

        let refreshed = aa.get_token("kbs", TokenRefresh::Force).await.unwrap();
        let (new_token, _) = decode_aa_token_reply(&refreshed).unwrap();
        assert_ne!(token.as_str(), new_token.as_str());
        assert_eq!(kbs.counters().attest_ok, 2);
        // no initdata given, none sent
        assert_eq!(kbs.last_init_data(), None);
    }

    #[test]
    fn cert_and_initdata_are_passed_on() {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let kbs = KbsConfig {
            url: "https://kbs.example:8080".parse().unwrap(),
            cert: Some(cert.to_string()),
            tee_key_algorithm: TeeKeyAlgorithm::default(),
        };
        let doc = "algorithm = \"sha256\"\nversion = \"0.1.0\"\n";
        let initdata = InitData::parse(doc.as_bytes().to_vec()).unwrap();
        let client = client_config(&kbs, Some(&initdata)).unwrap();
        assert_eq!(client.extra_root_certs_pem, vec![cert.to_string()]);
        assert_eq!(client.initdata_toml.as_deref(), Some(doc));
        assert_eq!(
            client.tee_key_algorithm,
            kbs_protocol::TeeKeyAlgorithm::EcP256
        );
    }
}
