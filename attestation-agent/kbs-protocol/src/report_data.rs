//! The binding between the TEE evidence, the KBS nonce and the TEE public key.
//!
//! Primary report data = H(RFC 8785 canonical JSON of
//! `{"tee-pubkey", "nonce", "additional-evidence"}`); device evidence is bound to
//! H(JCS of `{"tee-pubkey", "nonce"}`). The KBS recomputes exactly these bytes.

use serde_json::json;

use crate::hash::HashAlgorithm;
use crate::wire::TeePubKey;

/// The canonical JSON (RFC 8785) of the object bound into the primary evidence.
pub(crate) fn primary_runtime_data_canonical(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<Vec<u8>, serde_json::Error> {
    let value = json!({
        "tee-pubkey": tee_pubkey,
        "nonce": nonce,
        "additional-evidence": additional_evidence,
    });
    serde_json_canonicalizer::to_vec(&value)
}

/// The canonical JSON of the object bound into device (additional) evidence.
pub(crate) fn device_runtime_data_canonical(
    nonce: &str,
    tee_pubkey: &TeePubKey,
) -> Result<Vec<u8>, serde_json::Error> {
    let value = json!({
        "tee-pubkey": tee_pubkey,
        "nonce": nonce,
    });
    serde_json_canonicalizer::to_vec(&value)
}

/// The report data of the primary evidence: the digest, unpadded (hardware attesters pad to
/// their field size; the sample attester must not).
pub fn primary_report_data(
    hash: HashAlgorithm,
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<Vec<u8>, serde_json::Error> {
    Ok(hash.digest(&primary_runtime_data_canonical(
        nonce,
        tee_pubkey,
        additional_evidence,
    )?))
}

/// The report data handed to device attesters.
pub(crate) fn device_report_data(
    hash: HashAlgorithm,
    nonce: &str,
    tee_pubkey: &TeePubKey,
) -> Result<Vec<u8>, serde_json::Error> {
    Ok(hash.digest(&device_runtime_data_canonical(nonce, tee_pubkey)?))
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn captured_pubkey() -> TeePubKey {
        TeePubKey::Ec {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "6IeVR2YCqT-A5klJOsXP-ImCpku0IKuhiZzjXCdkJ6w".into(),
            y: "DBc1Ld9kL5fl9O9f8mfazPowk9FF50aQC2B_QIx-wlc".into(),
        }
    }

    const CAPTURED_NONCE: &str = "U2On241pWsR3LHIR/LG6hjEkdF+40HwP8Gp0Qh+/L4c=";

    /// The vector from the trustee capture (testdata/wire/, see testdata/README.md).
    #[test]
    fn reproduces_the_captured_trustee_binding() {
        let canonical =
            primary_runtime_data_canonical(CAPTURED_NONCE, &captured_pubkey(), "").unwrap();
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            r#"{"additional-evidence":"","nonce":"U2On241pWsR3LHIR/LG6hjEkdF+40HwP8Gp0Qh+/L4c=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"6IeVR2YCqT-A5klJOsXP-ImCpku0IKuhiZzjXCdkJ6w","y":"DBc1Ld9kL5fl9O9f8mfazPowk9FF50aQC2B_QIx-wlc"}}"#
        );
        let digest = primary_report_data(
            HashAlgorithm::Sha384,
            CAPTURED_NONCE,
            &captured_pubkey(),
            "",
        )
        .unwrap();
        assert_eq!(digest.len(), 48);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&digest),
            "6J9EL1X2OQo5vfv0j8ywhhd80wYiwz9awlKRiSuDq45qf1CXjgkR8dOOwkaDQu85"
        );
    }

    #[test]
    fn every_input_changes_the_binding() {
        let base = primary_report_data(
            HashAlgorithm::Sha384,
            CAPTURED_NONCE,
            &captured_pubkey(),
            "",
        )
        .unwrap();
        let other_nonce =
            primary_report_data(HashAlgorithm::Sha384, "AAAA", &captured_pubkey(), "").unwrap();
        let other_evidence = primary_report_data(
            HashAlgorithm::Sha384,
            CAPTURED_NONCE,
            &captured_pubkey(),
            "{\"sampledevice\":{}}",
        )
        .unwrap();
        let device =
            device_report_data(HashAlgorithm::Sha384, CAPTURED_NONCE, &captured_pubkey()).unwrap();
        let sha512 = primary_report_data(
            HashAlgorithm::Sha512,
            CAPTURED_NONCE,
            &captured_pubkey(),
            "",
        )
        .unwrap();
        assert_ne!(base, other_nonce);
        assert_ne!(base, other_evidence);
        assert_ne!(base, device);
        assert_eq!(sha512.len(), 64);
    }

    /// Trustee's own JCS vector (attestation-service): key order and nesting.
    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let value = json!({"b": 1, "a": "test", "c": {"d": "e"}});
        let canonical = serde_json_canonicalizer::to_string(&value).unwrap();
        assert_eq!(canonical, r#"{"a":"test","b":1,"c":{"d":"e"}}"#);
        assert!(
            hex::encode(HashAlgorithm::Sha384.digest(canonical.as_bytes()))
                .starts_with("e71ce8e70d814ba6")
        );
    }
}
