//! The AA's event log encodings: CC event logs (Spec ID header and crypto-agile entries),
//! bare entry lists, one tagged AAEL event, and the text form an event arrives in. What
//! parses must encode back to the bytes it came from.
#![no_main]

use attestation_agent::fuzzing::tcg2_round_trips;
use attestation_agent::AaelEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tcg2_round_trips(data);
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
