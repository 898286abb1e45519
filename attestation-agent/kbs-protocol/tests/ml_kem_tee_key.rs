//! The ML-KEM-768 TEE key (`ML-KEM-768+A192KW`, trustee's experimental post-quantum key):
//! a resource fetched with it from the test KBS in both modes, the key the KBS saw pinned
//! to an `AKP` JWK (so a silent fall back to EC fails), and replies made by an independent
//! implementation (Python `cryptography` + OpenSSL's KMAC256, see tests/data).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use kbs_protocol::wire::{JweResponse, TeePubKey};
use kbs_protocol::{JweError, JweOptions};
use kbs_protocol::{KbsClient, TeeKeyAlgorithm, TeeKeyPair, Token};
use testkit::kbs::KbsConfig;

/// The `tee-pubkey` the KBS put into its token: what it attested and wraps replies for.
fn attested_tee_pubkey(token: &Token) -> serde_json::Value {
    let payload = token.as_str().split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"]
        ["tee-pubkey"]
        .clone()
}

fn assert_ml_kem(token: &Token, keypair: &TeeKeyPair) {
    assert_eq!(keypair.algorithm(), TeeKeyAlgorithm::MlKem768);
    let jwk = attested_tee_pubkey(token);
    assert_eq!(jwk["kty"], "AKP", "the KBS saw {jwk}");
    assert_eq!(jwk["alg"], "ML-KEM-768+A192KW");
    assert!(jwk.get("crv").is_none() && jwk.get("x").is_none(), "{jwk}");
    let public = URL_SAFE_NO_PAD
        .decode(jwk["pub"].as_str().unwrap())
        .unwrap();
    assert_eq!(public.len(), 1184);
    assert_eq!(jwk, serde_json::to_value(keypair.public_jwk()).unwrap());
}

#[tokio::test]
async fn a_resource_is_fetched_with_the_ml_kem_tee_key_and_never_an_ec_one() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = sample_client(config(&kbs, TeeKeyAlgorithm::MlKem768));
    let secret = client
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap();
    assert_eq!(secret.as_slice(), SECRET);
    let (token, keypair) = client.get_token().await.unwrap();
    assert_ml_kem(&token, &keypair);
    assert_eq!(kbs.counters().attest_ok, 1);
}

/// Passport mode as the data hub runs it: AA's `{"token","tee_keypair"}` reply with the
/// ML-KEM key as PKCS#8 PEM, decoded again, decrypts the KBS's reply.
#[tokio::test]
async fn the_ml_kem_key_travels_from_the_agent_to_the_data_hub_as_pem() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let provider = Arc::new(AaLikeTokenProvider {
        aa: sample_client(config(&kbs, TeeKeyAlgorithm::MlKem768)),
        calls: AtomicUsize::new(0),
    });
    let cdh = KbsClient::passport(config(&kbs, TeeKeyAlgorithm::EcP256), provider).unwrap();
    let secret = cdh
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap();
    assert_eq!(secret.as_slice(), SECRET);
    let (token, keypair) = cdh.get_token().await.unwrap();
    assert_ml_kem(&token, &keypair);
    let pem = keypair.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\nMFQCAQAwCwYJYIZIAWUDBAQCBEKAQ"));
}

fn vector() -> serde_json::Value {
    serde_json::from_str(include_str!("data/python-cryptography-ml-kem-jwe.json")).unwrap()
}

fn vector_jwe() -> JweResponse {
    serde_json::from_value(vector()["jwe"].clone()).unwrap()
}

fn with_header(jwe: &JweResponse, edit: impl FnOnce(&mut serde_json::Value)) -> JweResponse {
    let mut header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&jwe.protected).unwrap()).unwrap();
    edit(&mut header);
    JweResponse {
        protected: URL_SAFE_NO_PAD.encode(header.to_string()),
        ..jwe.clone()
    }
}

#[test]
fn decrypts_an_ml_kem_reply_from_an_independent_implementation() {
    let vector = vector();
    let key = TeeKeyPair::from_pem(vector["pem"].as_str().unwrap()).unwrap();
    assert_eq!(key.algorithm(), TeeKeyAlgorithm::MlKem768);
    assert_eq!(
        key.public_jwk(),
        TeePubKey::Akp {
            alg: "ML-KEM-768+A192KW".into(),
            public: vector["pub"].as_str().unwrap().into(),
        }
    );
    // our PEM export is byte for byte what Python's cryptography wrote
    assert_eq!(
        key.to_pem().unwrap().as_str(),
        vector["pem"].as_str().unwrap()
    );
    let clear = key
        .decrypt_jwe(&vector_jwe(), JweOptions::default())
        .unwrap();
    assert_eq!(
        clear.as_slice(),
        b"python-cryptography vector ML-KEM-768".as_slice()
    );
}

#[test]
fn damaged_or_mismatched_ml_kem_replies_give_typed_errors() {
    let key = TeeKeyPair::from_pem(vector()["pem"].as_str().unwrap()).unwrap();
    let jwe = vector_jwe();
    let opts = JweOptions::default();

    // another ciphertext of the right size: implicit rejection gives another secret
    let flipped = with_header(&jwe, |h| {
        let mut ct = URL_SAFE_NO_PAD.decode(h["ek"].as_str().unwrap()).unwrap();
        ct[100] ^= 1;
        h["ek"] = URL_SAFE_NO_PAD.encode(ct).into();
    });
    assert_eq!(key.decrypt_jwe(&flipped, opts), Err(JweError::KeyUnwrap));

    let no_ek = with_header(&jwe, |h| {
        h.as_object_mut().unwrap().remove("ek");
    });
    assert_eq!(
        key.decrypt_jwe(&no_ek, opts),
        Err(JweError::MissingKemCiphertext)
    );
    let short_ek = with_header(&jwe, |h| h["ek"] = "AAAA".into());
    assert_eq!(
        key.decrypt_jwe(&short_ek, opts),
        Err(JweError::BadLength {
            member: "ek",
            expected: 1088,
            found: 3
        })
    );
    let bad_ek = with_header(&jwe, |h| h["ek"] = "!!".into());
    assert_eq!(
        key.decrypt_jwe(&bad_ek, opts),
        Err(JweError::Base64 { member: "ek" })
    );
    let mut short_key = jwe.clone();
    short_key.encrypted_key = URL_SAFE_NO_PAD.encode([0u8; 32]);
    assert_eq!(
        key.decrypt_jwe(&short_key, opts),
        Err(JweError::BadLength {
            member: "encrypted_key",
            expected: 40,
            found: 32
        })
    );

    // the wrong key family either way
    let ec = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    assert_eq!(
        ec.decrypt_jwe(&jwe, opts),
        Err(JweError::KeyMismatch {
            alg: "ML-KEM-768+A192KW".into(),
            key: "EC"
        })
    );
    let ec_reply =
        testkit::kbs::encrypt_for_jwk(&serde_json::to_value(ec.public_jwk()).unwrap(), b"x", false)
            .unwrap();
    let ec_reply: JweResponse = serde_json::from_value(ec_reply).unwrap();
    assert_eq!(
        key.decrypt_jwe(&ec_reply, opts),
        Err(JweError::KeyMismatch {
            alg: "ECDH-ES+A256KW".into(),
            key: "ML-KEM-768"
        })
    );
    // another ML-KEM key
    let other = TeeKeyPair::generate(TeeKeyAlgorithm::MlKem768).unwrap();
    assert_eq!(other.decrypt_jwe(&jwe, opts), Err(JweError::KeyUnwrap));
}
