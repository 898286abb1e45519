//! registries.conf (TOML, from the CDH configuration or a KBS resource) and the pull
//! sources it yields for a few references.
#![no_main]

use image_rs::resolve;
use image_rs::{Reference, RegistryConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = RegistryConfig::from_toml(text) else {
        return;
    };
    for name in ["busybox", "docker.io/library/busybox:1", "example.com/ns/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "localhost:5000/x/y:z"] {
        if let Ok(reference) = Reference::parse(name) {
            let _ = resolve(&reference, &config);
        }
    }
});
