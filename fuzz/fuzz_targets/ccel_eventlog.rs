//! The CCEL ACPI table's event log as firmware leaves it (trimmed at its end marker by the
//! attester), then parsed as the AA parses the evidence's `cc_eventlog`.
#![no_main]

use attestation_agent::fuzzing::ccel_event_log;
use attester::trim_ccel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(used) = trim_ccel(data) {
        assert!(used.len() <= data.len());
        assert_eq!(used, &data[..used.len()]);
        let _ = ccel_event_log(used);
    }
});
