//! `WWW-Authenticate` challenges of a registry's 401 answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = image_rs::fuzzing::www_authenticate(&String::from_utf8_lossy(data));
});
