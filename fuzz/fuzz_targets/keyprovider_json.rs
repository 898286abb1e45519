//! keyprovider protocol JSON (requests and answers), ocicrypt's keyprovider config, and the
//! CDH's `UnWrapKey` handler on the request.
#![no_main]

use std::sync::{Arc, OnceLock};

use coco_fuzz::{runtime, scratch, scratch_files};
use confidential_data_hub::LayerKeyUnwrapper;
use kms::{KmsProviders, OfflineFsKbc, OfflineFsSources};
use libfuzzer_sys::fuzz_target;
use ocicrypt_rs::keywrap::keyprovider::{
    KeyProviderKeyWrapProtocolInput, KeyProviderKeyWrapProtocolOutput, OcicryptConfig,
};

fn unwrapper() -> &'static LayerKeyUnwrapper {
    static U: OnceLock<LayerKeyUnwrapper> = OnceLock::new();
    U.get_or_init(|| {
        let store = br#"{"default/key/1":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}"#;
        let dir = scratch_files("keyprovider_json", &[("resources.json", store)]);
        let kbc = Arc::new(
            OfflineFsKbc::load(&OfflineFsSources {
                keys_file: dir.join("absent.json"),
                resources_file: dir.join("resources.json"),
                extra_files: Vec::new(),
            })
            .expect("the offline_fs store"),
        );
        let kms = KmsProviders::new(scratch().join("kms")).with_kbc(kbc.clone());
        LayerKeyUnwrapper::new(kbc, kms)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = KeyProviderKeyWrapProtocolInput::from_json(data) {
        let _ = input.to_json();
    }
    if let Ok(output) = KeyProviderKeyWrapProtocolOutput::from_json(data) {
        let _ = output.to_json();
    }
    let _ = OcicryptConfig::parse(data, "fuzz");
    let _ = runtime().block_on(unwrapper().handle_unwrap_request(data));
});
