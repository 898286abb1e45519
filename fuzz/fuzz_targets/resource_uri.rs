//! KBS resource URIs (`kbs:///repo/type/tag`, from sealed secrets, packets and requests).
#![no_main]

use kbs_protocol::ResourceUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(uri) = ResourceUri::parse(text) {
        let _ = uri.plugin();
        let _ = uri.host();
        let _ = uri.port();
        let _ = uri.query();
        let _ = uri.repo_type_tag();
        let _ = uri.kbs_path();
        for segment in uri.segments() {
            assert!(
                segment != "." && segment != ".." && !segment.is_empty(),
                "{text:?}"
            );
        }
        // the printed form parses to the same resource
        let shown = uri.to_string();
        let again = ResourceUri::parse(&shown).expect("a printed resource URI parses");
        assert_eq!(again, uri, "{shown}");
    }
});
