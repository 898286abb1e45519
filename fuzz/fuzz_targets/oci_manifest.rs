//! OCI/Docker manifests and indexes as a registry sends them (the first line of the input
//! is the `Content-Type`), the platform choice in an index, and the image config blob.
#![no_main]

use image_rs::{parse_manifest, ImageConfiguration, ManifestKind, PlatformSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|b| *b == b'\n').unwrap_or(0);
    let (content_type, body) = data.split_at(cut);
    let content_type = std::str::from_utf8(content_type)
        .ok()
        .filter(|c| !c.is_empty());
    for ct in [content_type, None] {
        if let Ok((_media_type, kind)) = parse_manifest(body, ct) {
            if let ManifestKind::Index(index) = &kind {
                for platform in ["linux/amd64", "linux/arm64/v8", "linux/s390x"] {
                    if let Ok(spec) = PlatformSpec::parse(platform) {
                        let _ = spec.select(index);
                    }
                }
            }
        }
    }
    let _ = serde_json::from_slice::<ImageConfiguration>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PlatformSpec::parse(text);
    }
});
