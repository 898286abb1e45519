//! Initdata (TOML from the pod's annotation, bound into the evidence) and its digest forms.
#![no_main]

use attestation_agent::fuzzing::initdata_digest;
use attestation_agent::InitData;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(initdata) = InitData::parse(data.to_vec()) {
        let _ = initdata.digest();
        let _ = initdata.data();
        assert_eq!(initdata.toml().as_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = initdata_digest(text);
    }
});
