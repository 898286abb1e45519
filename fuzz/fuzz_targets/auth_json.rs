//! Registry credentials: auth.json (a KBS resource) and `user:password` strings.
#![no_main]

use image_rs::Reference;
use image_rs::{AuthFile, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = AuthFile::parse(data) {
        for name in [
            "docker.io/library/busybox",
            "quay.io/a/b/c:1",
            "localhost:5000/x",
        ] {
            if let Ok(reference) = Reference::parse(name) {
                let _ = file.lookup(&reference);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Credentials::from_user_pass(text);
    }
});
