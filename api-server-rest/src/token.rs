//! What `/aa/token` hands out.
//!
//! AA's `GetToken("kbs")` answers `{"token":"<JWT>","tee_keypair":"<PEM private key>"}`,
//! and the shim passes that on as upstream does: a pod owner enables the `attestation`
//! features so that the workload can use the passport token with its key. With the key,
//! any process in the pod network namespace can decrypt KBS replies meant for this guest,
//! so `--withhold-tee-key` keeps only the token.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The token type whose reply carries the TEE private key.
pub(crate) const KBS_TOKEN_TYPE: &str = "kbs";

/// AA's `kbs` token reply could not be reduced to its token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the attestation agent's kbs token reply is not a JSON object with a string `token`")]
pub(crate) struct MalformedKbsTokenReply;

/// Reads only `token`; the other members (the private key) are skipped, not copied.
#[derive(Deserialize)]
struct KbsTokenReply {
    token: String,
}

#[derive(Serialize)]
struct TokenOnly<'a> {
    token: &'a str,
}

/// `{"token":"<JWT>"}` from AA's `{"token":...,"tee_keypair":...}` reply.
pub(crate) fn without_tee_key(reply: &[u8]) -> Result<Vec<u8>, MalformedKbsTokenReply> {
    let parsed: KbsTokenReply =
        serde_json::from_slice(reply).map_err(|_| MalformedKbsTokenReply)?;
    let token = Zeroizing::new(parsed.token);
    serde_json::to_vec(&TokenOnly { token: &token }).map_err(|_| MalformedKbsTokenReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

    #[test]
    fn keeps_only_the_token() {
        let reply = serde_json::json!({"token": "aGVhZGVy.cGF5bG9hZA.c2ln", "tee_keypair": PEM});
        let out = without_tee_key(reply.to_string().as_bytes()).unwrap();
        assert_eq!(out, br#"{"token":"aGVhZGVy.cGF5bG9hZA.c2ln"}"#);
        // member order and extra members do not matter
        let reply = format!(
            r#"{{"tee_keypair":{},"extra":[1,{{"a":null}}],"token":"t"}}"#,
            serde_json::to_string(PEM).unwrap()
        );
        assert_eq!(
            without_tee_key(reply.as_bytes()).unwrap(),
            br#"{"token":"t"}"#
        );
        // escapes in the token survive
        assert_eq!(
            without_tee_key(br#"{"token":"a\"b\u00e9"}"#).unwrap(),
            "{\"token\":\"a\\\"bé\"}".as_bytes()
        );
    }

    #[test]
    fn anything_else_is_refused_rather_than_passed_on() {
        for bad in [
            &b""[..],
            b"not json",
            b"[]",
            b"\"token\"",
            br#"{"tee_keypair":"-----BEGIN PRIVATE KEY-----"}"#,
            br#"{"token":5,"tee_keypair":"x"}"#,
            br#"{"token":null}"#,
            br#"{"token":"a","token":"b"}"#,
            br#"{"token":"a"}trailing"#,
            br#"{"token":"a""#,
            b"\xff\xfe",
        ] {
            assert_eq!(
                without_tee_key(bad),
                Err(MalformedKbsTokenReply),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
