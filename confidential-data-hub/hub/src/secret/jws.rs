//! The JWS side of sealed secrets: `sealed.<header>.<payload>.<signature>`, a compact JWS
//! with ES256 (the workspace's `jose` crate) behind a prefix, and a header that must name
//! the verification key.

use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::UnsealError;

use jose::jws::ES256;
pub(super) use jose::jws::MAX_JWK_LEN;
pub use jose::jws::{
    generate_key_pair, signing_key_from_jwk, verifying_key_from_jwk, GeneratedKeyPair, JwkError,
    JwsPart,
};

/// Every sealed secret starts with this.
pub(super) const SEALED_PREFIX: &str = "sealed.";
/// Largest sealed secret accepted, in bytes.
pub(super) const MAX_SEALED_SECRET_LEN: usize = 1024 * 1024;

impl From<jose::jws::JwsError> for UnsealError {
    fn from(e: jose::jws::JwsError) -> Self {
        use jose::jws::JwsError;
        match e {
            // the prefix counts as a part, as in the sealed form
            JwsError::PartCount { found } => UnsealError::PartCount { found: found + 1 },
            JwsError::BadBase64 { part, reason } => UnsealError::BadBase64 { part, reason },
            JwsError::SignatureEncoding { len } => UnsealError::SignatureEncoding { len },
            JwsError::BadSignature => UnsealError::BadSignature,
        }
    }
}

/// The protected header of a sealed secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct JwsHeader {
    /// the signature algorithm, `ES256`
    pub alg: Option<String>,
    /// the id of the verification key: a resource URI or a file name
    pub kid: Option<String>,
}

/// A sealed secret split into its parts (not yet verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactJws<'a>(jose::jws::CompactJws<'a>);

impl<'a> CompactJws<'a> {
    /// Splits `sealed.<header>.<payload>.<signature>`.
    pub fn split(text: &'a str) -> Result<Self, UnsealError> {
        if text.len() > MAX_SEALED_SECRET_LEN {
            return Err(UnsealError::TooLarge {
                len: text.len(),
                max: MAX_SEALED_SECRET_LEN,
            });
        }
        let body = text
            .strip_prefix(SEALED_PREFIX)
            .ok_or(UnsealError::MissingPrefix)?;
        Ok(Self(jose::jws::CompactJws::split(body)?))
    }

    /// What the signature covers: `<header>.<payload>` as written.
    pub fn signing_input(&self) -> String {
        self.0.signing_input()
    }

    /// The bytes of one part.
    pub fn decode(&self, part: JwsPart) -> Result<Vec<u8>, UnsealError> {
        Ok(self.0.decode(part)?)
    }

    /// The protected header, with `alg` ES256 and a `kid` checked; returns the kid.
    pub fn header_kid(&self) -> Result<String, UnsealError> {
        let bytes = self.decode(JwsPart::Header)?;
        let header: JwsHeader = serde_json::from_slice(&bytes)
            .map_err(|e| UnsealError::InvalidHeader(e.to_string()))?;
        match header.alg.as_deref() {
            None => return Err(UnsealError::MissingAlg),
            Some(ES256) => {}
            Some(other) => {
                return Err(UnsealError::UnsupportedAlg(
                    other.chars().take(32).collect(),
                ))
            }
        }
        match header.kid {
            Some(kid) if !kid.is_empty() => Ok(kid),
            _ => Err(UnsealError::MissingKid),
        }
    }

    /// Checks the ES256 signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), UnsealError> {
        Ok(self.0.verify_es256(key)?)
    }
}

/// Signs `payload` as a sealed secret: `sealed.<header>.<payload>.<signature>` with
/// header `{"alg":"ES256","kid":<kid>}`.
pub fn sign(payload: &[u8], key: &SigningKey, kid: &str) -> Result<String, serde_json::Error> {
    let header = serde_json::to_vec(&JwsHeader {
        alg: Some(ES256.into()),
        kid: Some(kid.into()),
    })?;
    Ok(format!(
        "{SEALED_PREFIX}{}",
        jose::jws::sign_es256(&header, payload, key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &[u8] = include_bytes!("../../tests/data/test-key.json");
    const TEST_KEY_2: &[u8] = include_bytes!("../../tests/data/test-key-2.json");

    #[test]
    fn the_sample_keys_parse_and_sign() {
        let key = signing_key_from_jwk(TEST_KEY).unwrap();
        let public = verifying_key_from_jwk(TEST_KEY).unwrap();
        assert_eq!(*key.verifying_key(), public);
        let key2 = signing_key_from_jwk(TEST_KEY_2).unwrap();
        assert_ne!(*key2.verifying_key(), public);

        let sealed = sign(br#"{"a":1}"#, &key, "test-key").unwrap();
        let jws = CompactJws::split(&sealed).unwrap();
        assert_eq!(jws.header_kid().unwrap(), "test-key");
        assert_eq!(jws.decode(JwsPart::Payload).unwrap(), br#"{"a":1}"#);
        jws.verify(&public).unwrap();
        assert!(matches!(
            jws.verify(key2.verifying_key()),
            Err(UnsealError::BadSignature)
        ));
        // the header is exactly what upstream writes
        assert_eq!(
            jws.decode(JwsPart::Header).unwrap(),
            br#"{"alg":"ES256","kid":"test-key"}"#
        );
        // the prefix counts as a part; the jose errors keep their meaning
        assert!(matches!(
            CompactJws::split("sealed.a.b"),
            Err(UnsealError::PartCount { found: 3 })
        ));
        assert!(matches!(
            CompactJws::split("a.b.c.d"),
            Err(UnsealError::MissingPrefix)
        ));
        let short = CompactJws::split("sealed.e30.e30.AAAA").unwrap();
        assert!(matches!(
            short.verify(&public),
            Err(UnsealError::SignatureEncoding { len: 3 })
        ));
    }
}
