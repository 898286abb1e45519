//! The layer cipher options (public from the annotation, private from the unwrapped key)
//! and the cipher set up from them. Input: public JSON, a NUL byte, private JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_rs::{
    DecryptingReader, LayerBlockCipherOptions, PrivateLayerBlockCipherOptions,
    PublicLayerBlockCipherOptions,
};

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (public, private) = data.split_at(cut);
    let _ = PublicLayerBlockCipherOptions::from_annotation(&String::from_utf8_lossy(public));
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
        if let Ok(reader) = DecryptingReader::new(&b"0123456789abcdef0123456789abcdef"[..], &opts) {
            let _ = reader.finish();
        }
    }
});
