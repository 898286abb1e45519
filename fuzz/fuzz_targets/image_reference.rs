//! Image references (from the pod spec) and digests (in manifests and configs).
#![no_main]

use image_rs::{Digest, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = Reference::parse(text) {
        // what is printed (always qualified) names the same image
        let shown = reference.to_string();
        let again = Reference::parse(&shown).expect("a printed reference parses");
        assert_eq!(
            (
                again.registry(),
                again.repository(),
                again.tag(),
                again.digest()
            ),
            (
                reference.registry(),
                reference.repository(),
                reference.tag(),
                reference.digest()
            ),
            "{shown}"
        );
        let _ = reference.manifest_reference();
        let _ = reference.endpoint_host();
        let _ = reference.with_location("registry.example:5000", "a/b");
    }
    if let Ok(digest) = Digest::parse(text) {
        let name = digest.file_name();
        assert_eq!(Digest::from_file_name(&name).as_ref(), Some(&digest));
    }
    let _ = Digest::from_file_name(text);
});
