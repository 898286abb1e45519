//! The layer options JSON (public and private) and the cipher set-up from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_rs::blockcipher::{
    DecryptingReader, LayerBlockCipherOptions, PrivateLayerBlockCipherOptions, PublicLayerBlockCipherOptions,
};

fuzz_target!(|data: &[u8]| {
    // Split the input: the first part is public options, the rest private options.
    let cut = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (public, private) = data.split_at(cut);
    let public = PublicLayerBlockCipherOptions::from_json(public);
    let private = PrivateLayerBlockCipherOptions::from_json(private.get(1..).unwrap_or_default());
    if let Ok(p) = &public {
        let _ = p.to_annotation();
    }
    if let Ok(p) = &private {
        let _ = p.to_json();
        let _ = p.nonce();
    }
    if let (Ok(public), Ok(private)) = (public, private) {
        let opts = LayerBlockCipherOptions { public, private };
        if let Ok(reader) = DecryptingReader::new(&b"0123456789"[..], &opts) {
            let _ = reader.finish();
        }
    }
});
