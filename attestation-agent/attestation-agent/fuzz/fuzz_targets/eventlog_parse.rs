//! The eventlog parsers on arbitrary bytes: a CC event log (header + entries), an AAEL
//! file (entries only), and one tagged AAEL event. None may panic; whatever parses must
//! encode back to the bytes it came from.
#![no_main]

use attestation_agent::eventlog::{
    tcg2::{parse_entries, parse_entry, parse_event_log, DigestSizes},
    AaelEvent,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_event_log(data);
    let sizes = DigestSizes::well_known();
    if let Ok(entries) = parse_entries(data, &sizes) {
        let encoded: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
        assert_eq!(encoded, data);
        for entry in &entries {
            let _ = entry.aael_event();
        }
    }
    if let Ok((entry, len)) = parse_entry(data, &sizes) {
        assert_eq!(entry.encode(), &data[..len]);
    }
    if let Ok(event) = AaelEvent::decode(data) {
        assert_eq!(event.encode(), data);
    }
});
