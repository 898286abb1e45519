//! containers-policy.json (a KBS resource), with inline GPG and cosign keys, and the scope
//! chosen for a few references.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = image_policy::fuzzing::policy_json(data);
});
