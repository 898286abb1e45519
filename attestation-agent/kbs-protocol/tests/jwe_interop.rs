//! Decryption of replies produced by the test KBS's independent JWE code, for every key
//! type, and the RSA1_5 switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kbs_protocol::wire::JweResponse;
use kbs_protocol::{JweError, JweOptions};
use kbs_protocol::{TeeKeyAlgorithm, TeeKeyPair};
use testkit::kbs::{corrupt_jwe, encrypt_for_jwk, JweCorruption};

fn wrap(key: &TeeKeyPair, plaintext: &[u8], force_rsa1_5: bool) -> serde_json::Value {
    let jwk = serde_json::to_value(key.public_jwk()).unwrap();
    encrypt_for_jwk(&jwk, plaintext, force_rsa1_5).unwrap()
}

fn parse(value: &serde_json::Value) -> JweResponse {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn every_key_type_decrypts_and_tampering_is_detected() {
    let rsa = TeeKeyPair::generate(TeeKeyAlgorithm::Rsa2048).unwrap();
    let keys = [
        TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap(),
        TeeKeyPair::generate(TeeKeyAlgorithm::EcP521).unwrap(),
        rsa,
        TeeKeyPair::generate(TeeKeyAlgorithm::MlKem768).unwrap(),
    ];
    for key in &keys {
        for plaintext in [&b""[..], b"x", &[0x5a; 4096][..]] {
            let jwe = wrap(key, plaintext, false);
            let clear = key
                .decrypt_jwe(&parse(&jwe), JweOptions::default())
                .unwrap();
            assert_eq!(clear.as_slice(), plaintext);
        }
        for (corruption, expected) in [
            (JweCorruption::Tag, JweError::Decrypt),
            (JweCorruption::Ciphertext, JweError::Decrypt),
            (JweCorruption::Protected, JweError::Decrypt),
            (JweCorruption::EncryptedKey, JweError::KeyUnwrap),
        ] {
            let mut jwe = wrap(key, b"secret", false);
            corrupt_jwe(&mut jwe, corruption);
            assert_eq!(
                key.decrypt_jwe(&parse(&jwe), JweOptions::default()),
                Err(expected),
                "{:?} {corruption:?}",
                key.algorithm()
            );
        }
    }
    // A reply for one key does not open with another key of the same type.
    let other = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let jwe = wrap(&keys[0], b"secret", false);
    assert_eq!(
        other.decrypt_jwe(&parse(&jwe), JweOptions::default()),
        Err(JweError::KeyUnwrap)
    );
    // P-256 reply to a P-521 key.
    assert!(matches!(
        keys[1].decrypt_jwe(&parse(&jwe), JweOptions::default()),
        Err(JweError::WrongCurve { .. })
    ));
    // RSA1_5 only when allowed.
    let legacy = wrap(&keys[2], b"legacy", true);
    assert_eq!(
        keys[2].decrypt_jwe(&parse(&legacy), JweOptions::default()),
        Err(JweError::Rsa1_5NotAllowed)
    );
    let clear = keys[2]
        .decrypt_jwe(&parse(&legacy), JweOptions { allow_rsa1_5: true })
        .unwrap();
    assert_eq!(clear.as_slice(), b"legacy");
}

#[test]
fn aad_is_the_received_protected_string() {
    // Re-encoding the same header with different member order must fail: the AAD binds the
    // exact bytes received, not a re-serialization.
    let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let mut jwe = parse(&wrap(&key, b"secret", false));
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&jwe.protected).unwrap()).unwrap();
    let reordered: String = {
        let mut members: Vec<_> = header.iter().collect();
        members.reverse();
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
            .collect();
        format!("{{{}}}", body.join(","))
    };
    assert_ne!(URL_SAFE_NO_PAD.encode(&reordered), jwe.protected);
    jwe.protected = URL_SAFE_NO_PAD.encode(reordered);
    assert_eq!(
        key.decrypt_jwe(&jwe, JweOptions::default()),
        Err(JweError::Decrypt)
    );
}

/// Replies made by Python's `cryptography` (an independent implementation of ECDH, the
/// Concat KDF, AES key wrap, RSA-OAEP-256 and AES-GCM), with the private keys as PEM
/// (EC as PKCS#8, RSA as PKCS#1, as AA hands them out). Generated once; see tests/data.
#[test]
fn decrypts_replies_from_an_independent_jose_implementation() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("data/python-cryptography-jwe.json")).unwrap();
    for (name, algorithm) in [
        ("P-256", TeeKeyAlgorithm::EcP256),
        ("P-521", TeeKeyAlgorithm::EcP521),
        ("RSA", TeeKeyAlgorithm::Rsa2048),
    ] {
        let key = TeeKeyPair::from_pem(vectors[name]["pem"].as_str().unwrap()).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        let clear = key
            .decrypt_jwe(&parse(&vectors[name]["jwe"]), JweOptions::default())
            .unwrap();
        assert_eq!(
            clear.as_slice(),
            format!("python-cryptography vector {name}").as_bytes()
        );
    }
}
