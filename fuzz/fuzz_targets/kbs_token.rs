//! The other KBS replies: the `/auth` challenge, the `/attest` token (a JWT whose claims
//! are read for expiry and the TEE key), and error bodies.
#![no_main]

use kbs_protocol::wire::{Challenge, ErrorInformation, TokenResponse};
use kbs_protocol::Token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(challenge) = serde_json::from_slice::<Challenge>(data) {
        let _ = challenge.hash_algorithm();
    }
    if let Ok(reply) = serde_json::from_slice::<TokenResponse>(data) {
        if let Ok(token) = Token::parse(&reply.token) {
            let _ = token.expires_at();
            let _ = token.is_fresh(std::time::Duration::from_secs(60));
        }
    }
    if let Ok(error) = serde_json::from_slice::<ErrorInformation>(data) {
        let _ = error.to_string();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(token) = Token::parse(text) {
            let _ = token.expires_at();
        }
    }
});
