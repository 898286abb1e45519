//! The KBS resource reply: a flattened JWE, decrypted with the four TEE key types (the
//! keys of kbs_protocol's independent test vectors, so their JWEs are valid seeds).
#![no_main]

use std::sync::OnceLock;

use kbs_protocol::wire::JweResponse;
use kbs_protocol::{JweOptions, TeeKeyPair};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static [TeeKeyPair] {
    static KEYS: OnceLock<Vec<TeeKeyPair>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let classic: serde_json::Value =
            serde_json::from_str(include_str!("../data/kbs-jwe-keys.json")).expect("key file");
        let ml_kem: serde_json::Value =
            serde_json::from_str(include_str!("../data/kbs-ml-kem-keys.json")).expect("key file");
        let mut pems: Vec<&str> = ["P-256", "P-521", "RSA"]
            .iter()
            .filter_map(|k| classic[k]["pem"].as_str())
            .collect();
        pems.extend(ml_kem["pem"].as_str());
        let keys: Vec<TeeKeyPair> = pems
            .into_iter()
            .map(|pem| TeeKeyPair::from_pem(pem).expect("a test key"))
            .collect();
        assert_eq!(keys.len(), 4);
        keys
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(jwe) = serde_json::from_slice::<JweResponse>(data) else {
        return;
    };
    for key in keys() {
        for allow_rsa1_5 in [false, true] {
            let _ = key.decrypt_jwe(&jwe, JweOptions { allow_rsa1_5 });
        }
    }
});
