//! The signed payload of simple signing (`atomic container signature`) and of cosign
//! (`cosign container image signature`), parsed as strictly as containers/image does:
//! `critical` and `optional` both present, exactly `type`, `image` and `identity` in
//! `critical`, no unknown or duplicate keys there.

use image_rs::Digest;
use serde_json::Value;

use crate::strict;

/// `critical.type` of GPG simple signing.
pub(crate) const SIMPLE_SIGNING_TYPE: &str = "atomic container signature";
/// `critical.type` of cosign.
pub(crate) const COSIGN_TYPE: &str = "cosign container image signature";

/// What a verified signature claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedClaims {
    /// the manifest (or index) digest signed
    pub(crate) digest: Digest,
    /// the identity signed (a docker reference, unparsed)
    pub(crate) reference: String,
}

/// Parses a payload whose `critical.type` must be `expected_type`.
pub(crate) fn parse(payload: &[u8], expected_type: &str) -> Result<SignedClaims, String> {
    let invalid = |e: String| format!("invalid signature payload: {e}");
    let document = strict::parse_json(payload).map_err(invalid)?;
    let top =
        strict::exact_object(&document, "payload", &["critical", "optional"]).map_err(invalid)?;
    let critical =
        strict::exact_object(&top["critical"], "critical", &["type", "image", "identity"])
            .map_err(invalid)?;
    let kind = strict::string(critical, "type", "critical").map_err(invalid)?;
    if kind != expected_type {
        return Err(format!(
            "signature payload type {kind:?}, expected {expected_type:?}"
        ));
    }
    let image = strict::exact_object(
        &critical["image"],
        "critical.image",
        &["docker-manifest-digest"],
    )
    .map_err(invalid)?;
    let digest =
        strict::string(image, "docker-manifest-digest", "critical.image").map_err(invalid)?;
    let identity = strict::exact_object(
        &critical["identity"],
        "critical.identity",
        &["docker-reference"],
    )
    .map_err(invalid)?;
    let reference =
        strict::string(identity, "docker-reference", "critical.identity").map_err(invalid)?;
    match &top["optional"] {
        // cosign writes `"optional": null` when there are no annotations
        Value::Null => {}
        Value::Object(fields) => {
            if fields.get("creator").is_some_and(|c| !c.is_string()) {
                return Err(invalid("optional.creator is not a string".into()));
            }
            if fields
                .get("timestamp")
                .is_some_and(|t| t.as_i64().is_none())
            {
                return Err(invalid("optional.timestamp is not an integer".into()));
            }
        }
        other => {
            return Err(invalid(format!(
                "optional must be an object, not {}",
                strict::kind(other)
            )))
        }
    }
    let digest = Digest::parse(digest)
        .map_err(|e| format!("signature payload docker-manifest-digest: {e}"))?;
    Ok(SignedClaims {
        digest,
        reference: reference.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(kind: &str, optional: &str) -> String {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"quay.io/a/b:v1"}},"image":{{"docker-manifest-digest":"sha256:{}"}},"type":"{kind}"}},"optional":{optional}}}"#,
            "c".repeat(64)
        )
    }

    #[test]
    fn payloads_of_skopeo_and_cosign_parse() {
        let claims = parse(
            doc(
                SIMPLE_SIGNING_TYPE,
                r#"{"creator":"skopeo 1.9.3","timestamp":1700000000}"#,
            )
            .as_bytes(),
            SIMPLE_SIGNING_TYPE,
        )
        .unwrap();
        assert_eq!(claims.reference, "quay.io/a/b:v1");
        assert_eq!(claims.digest.hex(), "c".repeat(64));
        assert!(parse(doc(COSIGN_TYPE, "null").as_bytes(), COSIGN_TYPE).is_ok());
        assert!(parse(
            doc(COSIGN_TYPE, r#"{"any":{"thing":[1]}}"#).as_bytes(),
            COSIGN_TYPE
        )
        .is_ok());
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let d = "c".repeat(64);
        let cases = [
            doc(COSIGN_TYPE, "null"),      // wrong type for simple signing
            doc(SIMPLE_SIGNING_TYPE, "3"), // optional not an object
            doc(SIMPLE_SIGNING_TYPE, r#"{"timestamp":1.5}"#), // fractional timestamp
            doc(SIMPLE_SIGNING_TYPE, r#"{"creator":7}"#), // creator not a string
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"sha256:{d}"}},"type":"{SIMPLE_SIGNING_TYPE}"}}}}"#
            ), // no optional
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"sha256:{d}"}},"type":"{SIMPLE_SIGNING_TYPE}","extra":1}},"optional":null}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"sha256:{d}","x":1}},"type":"{SIMPLE_SIGNING_TYPE}"}},"optional":null}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"md5:00"}},"type":"{SIMPLE_SIGNING_TYPE}"}},"optional":null}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"type":"{SIMPLE_SIGNING_TYPE}"}},"optional":null}}"#
            ),
            format!(
                r#"{{"critical":{{"type":"{SIMPLE_SIGNING_TYPE}","type":"{SIMPLE_SIGNING_TYPE}","identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"sha256:{d}"}}}},"optional":null}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":5}},"image":{{"docker-manifest-digest":"sha256:{d}"}},"type":"{SIMPLE_SIGNING_TYPE}"}},"optional":null}}"#
            ),
            "[]".into(),
            format!(
                r#"[{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"sha256:{d}"}},"type":"{SIMPLE_SIGNING_TYPE}"}},null]"#
            ),
            format!(
                r#"{{"critical":["{SIMPLE_SIGNING_TYPE}",["sha256:{d}"],["x"]],"optional":null}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"sha256:{d}"}},"type":"{SIMPLE_SIGNING_TYPE}"}},"optional":{{"a":1,"a":2}}}}"#
            ),
            "{".into(),
            String::new(),
        ];
        for case in cases {
            assert!(
                parse(case.as_bytes(), SIMPLE_SIGNING_TYPE).is_err(),
                "{case}"
            );
        }
    }
}
