//! The `jwe` key wrapper's packets (compact, flattened and general JSON), decrypted with a
//! fixed P-256 key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ocicrypt_rs::keywrap::jwe::{decrypt, Jwe};
use ocicrypt_rs::{parse_private_key, PrivateKey};

const P256_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;

fn keys() -> &'static [PrivateKey] {
    static KEYS: OnceLock<Vec<PrivateKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        parse_private_key(P256_JWK.as_bytes(), None)
            .into_iter()
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(jwe) = Jwe::parse(data) {
        for i in 0..jwe.recipient_count() {
            let _ = jwe.joint_header(i);
        }
        let _ = decrypt(&jwe, keys());
    }
    let _ = parse_private_key(data, None);
    let _ = ocicrypt_rs::parse_public_key(data);
});
