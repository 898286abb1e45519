//! The CoCo keyprovider annotation packet: parsed and opened by ocicrypt-rs with a fixed
//! KEK, and unwrapped end to end by the CDH's layer key unwrapper over an offline_fs KBC
//! that holds the KEK as `default/key/1`.
#![no_main]

use std::sync::{Arc, OnceLock};

use base64::Engine;
use coco_fuzz::{runtime, scratch, scratch_files};
use confidential_data_hub::LayerKeyUnwrapper;
use kms::{KmsProviders, OfflineFsKbc, OfflineFsSources};
use libfuzzer_sys::fuzz_target;
use ocicrypt_rs::keywrap::keyprovider::AnnotationPacket;

const KEK: [u8; 32] = [7u8; 32];

fn unwrapper() -> &'static LayerKeyUnwrapper {
    static U: OnceLock<LayerKeyUnwrapper> = OnceLock::new();
    U.get_or_init(|| {
        let b64 = base64::engine::general_purpose::STANDARD;
        let store = format!(
            r#"{{"default/key/1":"{}","default/key/short":"{}"}}"#,
            b64.encode(KEK),
            b64.encode([1u8; 16])
        );
        let dir = scratch_files("annotation_packet", &[("resources.json", store.as_bytes())]);
        let kbc = OfflineFsKbc::load(&OfflineFsSources {
            keys_file: dir.join("absent.json"),
            resources_file: dir.join("resources.json"),
            extra_files: Vec::new(),
        })
        .expect("the offline_fs store");
        let kbc = Arc::new(kbc);
        let kms = KmsProviders::new(scratch().join("kms")).with_kbc(kbc.clone());
        LayerKeyUnwrapper::new(kbc, kms)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = AnnotationPacket::parse(data) {
        let _ = packet.wrap_type();
        let _ = packet.to_json();
        let _ = packet.open(&KEK);
    }
    let _ = runtime().block_on(unwrapper().unwrap_packet(data));
});
