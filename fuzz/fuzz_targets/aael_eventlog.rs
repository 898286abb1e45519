//! The AA's event log encodings: CC event logs (Spec ID header and crypto-agile entries),
//! bare entry lists, one tagged AAEL event, and the text form an event arrives in. What
//! parses must encode back to the bytes it came from.
#![no_main]

use attestation_agent::eventlog::tcg2::{parse_entries, parse_entry, parse_event_log, DigestSizes};
use attestation_agent::eventlog::AaelEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = parse_event_log(data) {
        let sizes = log.spec_id.digest_sizes();
        for event in &log.events {
            let encoded = event.encode();
            let (again, len) = parse_entry(&encoded, &sizes).expect("an encoded entry parses");
            assert_eq!(len, encoded.len());
            assert_eq!(again.encode(), encoded);
            let _ = event.aael_event();
        }
    }
    let sizes = DigestSizes::well_known();
    if let Ok(entries) = parse_entries(data, &sizes) {
        let encoded: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
        assert_eq!(encoded, data);
    }
    if let Ok((entry, len)) = parse_entry(data, &sizes) {
        assert_eq!(entry.encode(), &data[..len]);
    }
    if let Ok(event) = AaelEvent::decode(data) {
        assert_eq!(event.encode(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(event) = AaelEvent::parse_text(text) {
            let again = AaelEvent::parse_text(&event.text()).expect("an event's text parses");
            assert_eq!(again.encode(), event.encode());
        }
    }
});
