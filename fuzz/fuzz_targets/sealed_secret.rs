//! Sealed secrets (`sealed.<header>.<payload>.<signature>`) through the CDH's unsealer:
//! with the signature required (the verification key comes from an offline_fs KBC or the
//! sealed-secret directory) and with verification skipped, where vault secrets are read
//! from the KBC and envelope secrets decrypted with the offline_fs KMS.
#![no_main]

use std::sync::{Arc, OnceLock};

use coco_fuzz::{runtime, scratch, scratch_files};
use confidential_data_hub::{CompactJws, JwsPart, SecretPayload, Unsealer, Verification};
use kms::{KmsProviders, OfflineFsKbc, OfflineFsSources};
use libfuzzer_sys::fuzz_target;

/// The public half of `data/sealed-secret-signer.jwk` (the seeds are signed with it).
const VERIFY_JWK: &str = r#"{"kty":"EC","crv":"P-256","alg":"ES256","x":"QT3_slJmispaOwnAo6hxebXGLRuiveFuRCLpS4j4S4k","y":"jcDn4N4nRBQ-a7_D3qjqtb6hwOAXh_ve1wvibPSi1G0"}"#;

fn unsealers() -> &'static (Unsealer, Unsealer) {
    static U: OnceLock<(Unsealer, Unsealer)> = OnceLock::new();
    U.get_or_init(|| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let store = format!(
            r#"{{"default/sealed-secret/test":"{}","default/secret/1":"{}"}}"#,
            b64.encode(VERIFY_JWK),
            b64.encode(b"the secret")
        );
        let kbc_dir = scratch_files("sealed_secret_kbc", &[("resources.json", store.as_bytes())]);
        let kbc = Arc::new(
            OfflineFsKbc::load(&OfflineFsSources {
                keys_file: kbc_dir.join("absent.json"),
                resources_file: kbc_dir.join("resources.json"),
                extra_files: Vec::new(),
            })
            .expect("the offline_fs store"),
        );
        let kms_keys = format!(r#"{{"kms-key":"{}"}}"#, b64.encode([5u8; 32]));
        scratch_files(
            "sealed_secret_kms/offline_fs",
            &[("keys.json", kms_keys.as_bytes())],
        );
        let sealed_dir = scratch_files("sealed_secret_dir", &[("test-key", VERIFY_JWK.as_bytes())]);
        let kms = KmsProviders::new(scratch().join("sealed_secret_kms")).with_kbc(kbc.clone());
        let required = Unsealer::new(kbc.clone(), kms.clone()).with_sealed_secret_dir(&sealed_dir);
        let skipped = Unsealer::new(kbc, kms)
            .with_sealed_secret_dir(&sealed_dir)
            .with_verification(Verification::Skipped);
        (required, skipped)
    })
}

fuzz_target!(|data: &[u8]| {
    let (required, skipped) = unsealers();
    runtime().block_on(async {
        let _ = required.open(data).await;
        let _ = skipped.unseal(data).await;
    });
    // the pieces on their own, where the unsealer stops at the first error
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(jws) = CompactJws::split(text) {
            let _ = jws.header_kid();
            let _ = jws.decode(JwsPart::Signature);
            let _ = jws.signing_input();
        }
    }
    if let Ok(payload) = SecretPayload::parse(data) {
        let json = payload.to_json().expect("a parsed payload serializes");
        SecretPayload::parse(&json).expect("a serialized payload parses");
    }
    let _ = confidential_data_hub::verifying_key_from_jwk(data);
});
