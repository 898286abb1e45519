//! `tee_key_algorithm = "ML-KEM-768+A192KW"` in aa.toml: the real agent attests with an
//! ML-KEM-768 TEE key (the KBS's token carries an `AKP` tee-pubkey, never an EC one), hands
//! it out as PKCS#8 PEM in `{"token","tee_keypair"}`, and that key decrypts a resource the
//! KBS wraps with `ML-KEM-768+A192KW`.
#![cfg(feature = "kbs")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use common::*;
use kbs_protocol::{
    decode_aa_token_reply, KbsClient, KbsClientConfig, ProviderError, ResourceUri, TeeKeyAlgorithm,
    TeeKeyPair, Token, TokenNeed, TokenProvider,
};
use testkit::kbs::{KbsConfig, TestKbs};

const SECRET: &[u8] = b"post-quantum wrapped \x00\xff";

struct ReplyTokens(Vec<u8>);

#[async_trait]
impl TokenProvider for ReplyTokens {
    async fn get_token(&self, _need: TokenNeed) -> Result<(Token, TeeKeyPair), ProviderError> {
        Ok(decode_aa_token_reply(&self.0)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_attests_with_an_ml_kem_key_when_aa_toml_says_so() {
    let kbs = TestKbs::start(KbsConfig::default()).await.unwrap();
    kbs.put_resource("default/key/pq", SECRET);
    for name in ["ML-KEM-768+A192KW", "ML-KEM-768"] {
        let agent = Agent::start(
            &format!(
                "[token_configs.kbs]\nurl = \"{}\"\ntee_key_algorithm = \"{name}\"\n",
                kbs.url()
            ),
            None,
        )
        .await;
        let c = agent.client().await;
        let reply = get_token(&c, "kbs", false).await.unwrap();

        let value: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert!(value["tee_keypair"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\nMFQCAQAwCwYJYIZIAWUDBAQC"));
        let (token, keypair) = decode_aa_token_reply(&reply).unwrap();
        assert_eq!(keypair.algorithm(), TeeKeyAlgorithm::MlKem768, "{name}");
        // what the KBS attested: an AKP key, the one in the reply
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.as_str().split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        let jwk = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
            ["runtime_data_claims"]["tee-pubkey"];
        assert_eq!(jwk["kty"], "AKP", "{name}: {jwk}");
        assert_eq!(jwk["alg"], "ML-KEM-768+A192KW");
        assert_eq!(jwk, &serde_json::to_value(keypair.public_jwk()).unwrap());

        // the data hub's passport fetch with that reply
        let config = KbsClientConfig::new(&kbs.url()).unwrap();
        let client = KbsClient::passport(config, Arc::new(ReplyTokens(reply))).unwrap();
        let secret = client
            .get_resource(&ResourceUri::parse("kbs:///default/key/pq").unwrap())
            .await
            .unwrap();
        assert_eq!(secret.as_slice(), SECRET, "{name}");

        drop(c);
        let stderr = agent.stop().await;
        assert!(stderr.contains("tee_key=ml-kem-768"), "{stderr}");
        assert!(!stderr.contains("BEGIN PRIVATE KEY"), "{stderr}");
    }
}
