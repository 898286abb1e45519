//! What a signature source sends: the first byte picks the parser, the rest is its input.
//! 0: a simple-signing or cosign payload; 1: a registries.d document; 2: a GPG keyring;
//! 3: a cosign public key (PEM); other: a signature blob checked against a fixed keyring.
#![no_main]

use std::sync::OnceLock;

use image_policy::fuzzing;
use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static fuzzing::Keyring {
    static K: OnceLock<fuzzing::Keyring> = OnceLock::new();
    K.get_or_init(|| {
        fuzzing::Keyring::parse(include_bytes!("../data/signer.gpg")).expect("the fuzz keyring")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    match selector {
        0 => {
            let _ = fuzzing::signature_payload(rest);
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = fuzzing::registries_d(text);
            }
        }
        2 => {
            let _ = fuzzing::gpg_keyring(rest);
        }
        3 => {
            let _ = fuzzing::cosign_key(rest);
        }
        _ => {
            let _ = keyring().verify(rest);
        }
    }
});
