//! What `POST /aa/aael` takes: a JSON runtime event for the attestation agent's
//! `ExtendRuntimeMeasurement`, and the checks made on the request before the agent is called.
//!
//! The body is `{"domain":"...","operation":"...","content":"..."}` with an optional
//! `"register_index": <u64>` (absent: the agent's configured register). Upstream answered
//! 500 for any body it could not parse; here a missing or non-JSON content type, a body
//! that is not exactly that object (missing, unknown, repeated or mistyped members,
//! trailing data) or one larger than [`MAX_AAEL_BODY`] is refused before the agent is
//! asked. What makes an event valid (single-word domain and operation, no newline in the
//! content) is the agent's rule; it refuses a bad event with `INVALID_ARGUMENT`.

use std::{fmt, marker::PhantomData};

use hyper::header::HeaderValue;
use serde::{
    de::{value::MapAccessDeserializer, MapAccess, Visitor},
    Deserialize, Deserializer,
};

/// Largest request body read for `/aa/aael` (the agent's own limit for an event text is
/// also 64 KiB).
pub const MAX_AAEL_BODY: usize = 64 * 1024;

/// One runtime event as the workload sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AaelEvent {
    /// who defines the event, e.g. `github.com/confidential-containers`
    pub(crate) domain: String,
    /// what happened, e.g. `PullImage`
    pub(crate) operation: String,
    /// the event's detail
    pub(crate) content: String,
    /// PCR whose register is extended; `None` lets the agent use its default
    #[serde(default, deserialize_with = "present_u64")]
    pub(crate) register_index: Option<u64>,
}

/// A present `register_index` must be a number: `null` is refused like any other wrong
/// type instead of being read as "absent".
fn present_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(deserializer).map(Some)
}

/// Reads `T` from a JSON object only: a derived struct would also take an array of its
/// members in declaration order, which no client of this endpoint means to send.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(ObjectOnly)
    }
}

/// Why a `/aa/aael` request is refused before the agent is called.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AaelRequestError {
    /// No `Content-Type`, or one other than `application/json`.
    #[error("the request body must be JSON: send Content-Type: application/json")]
    ContentType,
    /// The body is larger than [`MAX_AAEL_BODY`].
    #[error("the request body is larger than {MAX_AAEL_BODY} bytes")]
    TooLarge,
    /// The body could not be received (malformed chunked encoding, connection lost).
    #[error("the request body could not be read")]
    Unreadable,
    /// The body is not the event object.
    #[error(
        "the request body is not an event {{\"domain\",\"operation\",\"content\"[,\"register_index\"]}}: {0}"
    )]
    Json(#[from] serde_json::Error),
}

/// Whether `content_type` is `application/json`, optionally with `charset=utf-8` (JSON
/// is UTF-8 only). Media type and parameter names are case-insensitive.
pub(crate) fn is_json_content_type(content_type: Option<&HeaderValue>) -> bool {
    let Some(Ok(value)) = content_type.map(HeaderValue::to_str) else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|parameter| {
        let Some((name, value)) = parameter.split_once('=') else {
            return false;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")
    })
}

/// The event in a complete request body.
pub(crate) fn parse_event(body: &[u8]) -> Result<AaelEvent, AaelRequestError> {
    let ObjectOnly(event) = serde_json::from_slice(body)?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(domain: &str, operation: &str, content: &str, index: Option<u64>) -> AaelEvent {
        AaelEvent {
            domain: domain.into(),
            operation: operation.into(),
            content: content.into(),
            register_index: index,
        }
    }

    #[test]
    fn events_parse() {
        assert_eq!(
            parse_event(br#"{"domain":"d","operation":"o","content":"c"}"#).unwrap(),
            event("d", "o", "c", None)
        );
        // member order, whitespace and escapes do not matter; content may hold spaces
        assert_eq!(
            parse_event(
                b" {\n \"content\" : \"{\\\"a\\\": 1} \\u00e9\", \"register_index\": 17,\
                  \"operation\":\"PullImage\",\"domain\":\"github.com/x\"}\n"
            )
            .unwrap(),
            event("github.com/x", "PullImage", "{\"a\": 1} é", Some(17))
        );
        assert_eq!(
            parse_event(
                br#"{"domain":"d","operation":"o","content":"","register_index":18446744073709551615}"#
            )
            .unwrap(),
            event("d", "o", "", Some(u64::MAX))
        );
        // what the agent refuses (spaces, empty words) is its call, not the parser's
        assert_eq!(
            parse_event(br#"{"domain":"a b","operation":"","content":"x\ny"}"#).unwrap(),
            event("a b", "", "x\ny", None)
        );
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for (body, says) in [
            (&b""[..], "EOF"),
            (b"   ", "EOF"),
            (b"null", "invalid type"),
            (b"[]", "expected a JSON object"),
            (br#"["d","o","c"]"#, "expected a JSON object"),
            (br#"["d","o","c",17]"#, "expected a JSON object"),
            (b"\"domain\"", "invalid type"),
            (br#"{"domain":"d","operation":"o"}"#, "missing field `content`"),
            (br#"{"operation":"o","content":"c"}"#, "missing field `domain`"),
            (br#"{"domain":"d","operation":"o","content":"c""#, "EOF"),
            (br#"{"domain":"d","operation":"o","content":"c"}x"#, "trailing"),
            (br#"{"domain":"d","operation":"o","content":"c"}{}"#, "trailing"),
            (
                br#"{"domain":"d","operation":"o","content":"c","extra":1}"#,
                "unknown field `extra`",
            ),
            (
                br#"{"domain":"d","operation":"o","content":"c","registerIndex":1}"#,
                "unknown field `registerIndex`",
            ),
            (
                br#"{"domain":"d","domain":"e","operation":"o","content":"c"}"#,
                "duplicate field `domain`",
            ),
            (br#"{"domain":1,"operation":"o","content":"c"}"#, "invalid type"),
            (br#"{"domain":"d","operation":null,"content":"c"}"#, "invalid type"),
            (br#"{"domain":"d","operation":"o","content":["c"]}"#, "invalid type"),
            (
                br#"{"domain":"d","operation":"o","content":"c","register_index":null}"#,
                "invalid type",
            ),
            (
                br#"{"domain":"d","operation":"o","content":"c","register_index":"17"}"#,
                "invalid type",
            ),
            (
                br#"{"domain":"d","operation":"o","content":"c","register_index":-1}"#,
                "invalid value",
            ),
            (
                br#"{"domain":"d","operation":"o","content":"c","register_index":1.5}"#,
                "invalid type",
            ),
            (
                br#"{"domain":"d","operation":"o","content":"c","register_index":18446744073709551616}"#,
                "invalid",
            ),
            (b"{\"domain\":\"\xff\",\"operation\":\"o\",\"content\":\"c\"}", "invalid unicode"),
            (br#"{"domain":"\ud800","operation":"o","content":"c"}"#, "hex escape"),
        ] {
            let err = parse_event(body).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, AaelRequestError::Json(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(text.starts_with("the request body is not an event"), "{text}");
            assert!(
                text.contains(says),
                "{}: {text}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn only_json_content_types_are_accepted() {
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            " application/json ",
        ] {
            assert!(
                is_json_content_type(Some(&HeaderValue::from_static(good))),
                "{good}"
            );
        }
        assert!(!is_json_content_type(None));
        for bad in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/json-patch+json",
            "application/json; charset=latin1",
            "application/json; charset",
            "application/json; boundary=x",
            "application/json;",
            "json",
        ] {
            assert!(
                !is_json_content_type(Some(&HeaderValue::from_static(bad))),
                "{bad}"
            );
        }
        let opaque = HeaderValue::from_bytes(b"application/json; charset=\xe9").unwrap();
        assert!(!is_json_content_type(Some(&opaque)));
    }
}
