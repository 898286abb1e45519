//! JWS (RFC 7515) compact serialization with ES256, and the P-256 JWKs that carry its keys:
//! what sealed secrets are made of.
//!
//! A JWK is read field by field (`kty` `EC`, `crv` `P-256`, `x`, `y`, and `d` for a
//! private key); other members (`kid`, `use`, `key_ops`) are allowed, but an `alg` other
//! than `ES256` is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::EncodedPoint;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The only signature algorithm.
pub const ES256: &str = "ES256";
/// Largest JWK accepted, in bytes.
pub const MAX_JWK_LEN: usize = 64 * 1024;

/// A part of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsPart {
    /// the protected header
    Header,
    /// the payload
    Payload,
    /// the signature
    Signature,
}

impl std::fmt::Display for JwsPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwsPart::Header => "header",
            JwsPart::Payload => "payload",
            JwsPart::Signature => "signature",
        })
    }
}

/// Why a compact JWS is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not three dot-separated parts.
    #[error("a compact JWS has 3 dot-separated parts, this one has {found}")]
    PartCount {
        /// the parts found
        found: usize,
    },
    /// A part is not unpadded base64url.
    #[error("the JWS {part} is not base64url: {reason}")]
    BadBase64 {
        /// which part
        part: JwsPart,
        /// the decoder's complaint
        reason: String,
    },
    /// The signature is not the 64 bytes `r ‖ s` of ES256.
    #[error("the ES256 signature has {len} bytes, not 64")]
    SignatureEncoding {
        /// its length
        len: usize,
    },
    /// The signature does not verify.
    #[error("the JWS signature does not verify with the key")]
    BadSignature,
}

/// A compact JWS split into its parts (not yet verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactJws<'a> {
    /// base64url of the protected header
    pub header: &'a str,
    /// base64url of the payload
    pub payload: &'a str,
    /// base64url of the signature
    pub signature: &'a str,
}

impl<'a> CompactJws<'a> {
    /// Splits `<header>.<payload>.<signature>`.
    pub fn split(text: &'a str) -> Result<Self, JwsError> {
        let mut parts = text.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(header), Some(payload), Some(signature), None) => Ok(Self {
                header,
                payload,
                signature,
            }),
            _ => Err(JwsError::PartCount {
                found: text.split('.').count(),
            }),
        }
    }

    /// What the signature covers: `<header>.<payload>` as written.
    pub fn signing_input(&self) -> String {
        format!("{}.{}", self.header, self.payload)
    }

    /// The bytes of one part.
    pub fn decode(&self, part: JwsPart) -> Result<Vec<u8>, JwsError> {
        let text = match part {
            JwsPart::Header => self.header,
            JwsPart::Payload => self.payload,
            JwsPart::Signature => self.signature,
        };
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| JwsError::BadBase64 {
                part,
                reason: e.to_string(),
            })
    }

    /// Checks the ES256 signature with `key` (the caller checks the header's `alg`).
    pub fn verify_es256(&self, key: &VerifyingKey) -> Result<(), JwsError> {
        let raw = self.decode(JwsPart::Signature)?;
        let signature = Signature::from_slice(&raw)
            .map_err(|_| JwsError::SignatureEncoding { len: raw.len() })?;
        key.verify(self.signing_input().as_bytes(), &signature)
            .map_err(|_| JwsError::BadSignature)
    }
}

/// Signs `payload` under the protected `header` (JSON bytes) with ES256: the compact JWS.
pub fn sign_es256(header: &[u8], payload: &[u8], key: &SigningKey) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature: Signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// Why a JWK is not a usable P-256 key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// Not a JSON object with string members.
    #[error("not a JWK (a JSON object): {0}")]
    NotJson(String),
    /// Larger than [`MAX_JWK_LEN`].
    #[error("JWK of {0} bytes is larger than {MAX_JWK_LEN}")]
    TooLarge(usize),
    /// `kty` is not `EC`.
    #[error("JWK kty is `{0}`; an EC key is needed")]
    NotEc(String),
    /// `crv` is not `P-256`.
    #[error("JWK crv is `{0}`; ES256 needs P-256")]
    WrongCurve(String),
    /// `alg` names another algorithm.
    #[error("JWK alg is `{0}`; ES256 is needed")]
    WrongAlg(String),
    /// A member is missing.
    #[error("JWK has no `{0}`")]
    Missing(&'static str),
    /// A coordinate or the private scalar is not 32 bytes of base64url.
    #[error("JWK `{0}` is not 32 bytes of unpadded base64url")]
    BadNumber(&'static str),
    /// `x`, `y` is not a point of P-256.
    #[error("JWK x, y is not a point on P-256")]
    NotOnCurve,
    /// `d` is not a valid P-256 private scalar.
    #[error("JWK d is not a valid P-256 private key")]
    BadPrivateKey,
    /// `d` does not belong to `x`, `y`.
    #[error("JWK d does not match its x, y")]
    KeyMismatch,
}

/// The members of an EC JWK that matter here.
#[derive(Deserialize)]
struct JwkMembers {
    kty: Option<String>,
    crv: Option<String>,
    alg: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<String>,
}

impl Drop for JwkMembers {
    fn drop(&mut self) {
        if let Some(d) = &mut self.d {
            d.zeroize();
        }
    }
}

fn decode_number(value: Option<&str>, name: &'static str) -> Result<Zeroizing<[u8; 32]>, JwkError> {
    let text = value.ok_or(JwkError::Missing(name))?;
    let bytes = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| JwkError::BadNumber(name))?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(JwkError::BadNumber(name));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

fn parse_members(jwk: &[u8]) -> Result<JwkMembers, JwkError> {
    if jwk.len() > MAX_JWK_LEN {
        return Err(JwkError::TooLarge(jwk.len()));
    }
    let members: JwkMembers =
        serde_json::from_slice(jwk).map_err(|e| JwkError::NotJson(e.to_string()))?;
    let short = |s: &str| s.chars().take(32).collect::<String>();
    match members.kty.as_deref() {
        Some("EC") => {}
        Some(other) => return Err(JwkError::NotEc(short(other))),
        None => return Err(JwkError::Missing("kty")),
    }
    match members.crv.as_deref() {
        Some("P-256") => {}
        Some(other) => return Err(JwkError::WrongCurve(short(other))),
        None => return Err(JwkError::Missing("crv")),
    }
    if let Some(alg) = members.alg.as_deref().filter(|alg| *alg != ES256) {
        return Err(JwkError::WrongAlg(short(alg)));
    }
    Ok(members)
}

fn public_key(members: &JwkMembers) -> Result<VerifyingKey, JwkError> {
    let x = decode_number(members.x.as_deref(), "x")?;
    let y = decode_number(members.y.as_deref(), "y")?;
    let point = EncodedPoint::from_affine_coordinates(x.as_ref().into(), y.as_ref().into(), false);
    VerifyingKey::from_encoded_point(&point).map_err(|_| JwkError::NotOnCurve)
}

/// The public key of a P-256 JWK (public or private).
pub fn verifying_key_from_jwk(jwk: &[u8]) -> Result<VerifyingKey, JwkError> {
    public_key(&parse_members(jwk)?)
}

/// The private key of a P-256 JWK; `x`, `y` must match `d` when present.
pub fn signing_key_from_jwk(jwk: &[u8]) -> Result<SigningKey, JwkError> {
    let members = parse_members(jwk)?;
    let d = decode_number(members.d.as_deref(), "d")?;
    let key = SigningKey::from_slice(d.as_ref()).map_err(|_| JwkError::BadPrivateKey)?;
    if (members.x.is_some() || members.y.is_some()) && public_key(&members)? != *key.verifying_key()
    {
        return Err(JwkError::KeyMismatch);
    }
    Ok(key)
}

/// A P-256 JWK as written by [`generate_key_pair`].
#[derive(Serialize)]
struct JwkOut<'a> {
    kty: &'static str,
    crv: &'static str,
    alg: &'static str,
    #[serde(rename = "use")]
    key_use: &'static str,
    kid: &'a str,
    x: String,
    y: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    d: Option<&'a str>,
}

/// A freshly generated signing key as JWKs.
pub struct GeneratedKeyPair {
    /// the private JWK (with `d`); wiped from memory when dropped
    pub private_jwk: Zeroizing<String>,
    /// the public JWK, what the verifying side needs
    pub public_jwk: String,
}

impl std::fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKeyPair")
            .field("public_jwk", &self.public_jwk)
            .finish_non_exhaustive()
    }
}

/// A new random P-256 ES256 key pair labelled `kid`.
pub fn generate_key_pair(kid: &str) -> Result<GeneratedKeyPair, serde_json::Error> {
    let key = SigningKey::random(&mut OsRng);
    let point = key.verifying_key().to_encoded_point(false);
    let x = point
        .x()
        .map(|x| URL_SAFE_NO_PAD.encode(x))
        .unwrap_or_default();
    let y = point
        .y()
        .map(|y| URL_SAFE_NO_PAD.encode(y))
        .unwrap_or_default();
    let d = Zeroizing::new(URL_SAFE_NO_PAD.encode(key.to_bytes()));
    let mut jwk = JwkOut {
        kty: "EC",
        crv: "P-256",
        alg: ES256,
        key_use: "sig",
        kid,
        x,
        y,
        d: Some(&d),
    };
    let private_jwk = Zeroizing::new(serde_json::to_string_pretty(&jwk)?);
    jwk.d = None;
    let public_jwk = serde_json::to_string_pretty(&jwk)?;
    Ok(GeneratedKeyPair {
        private_jwk,
        public_jwk,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signs_verifies_and_splits() {
        let pair = generate_key_pair("k").unwrap();
        let key = signing_key_from_jwk(pair.private_jwk.as_bytes()).unwrap();
        let public = verifying_key_from_jwk(pair.public_jwk.as_bytes()).unwrap();
        let jws = sign_es256(br#"{"alg":"ES256"}"#, b"payload", &key);
        let parts = CompactJws::split(&jws).unwrap();
        assert_eq!(
            parts.decode(JwsPart::Header).unwrap(),
            br#"{"alg":"ES256"}"#
        );
        assert_eq!(parts.decode(JwsPart::Payload).unwrap(), b"payload");
        parts.verify_es256(&public).unwrap();
        let other = generate_key_pair("o").unwrap();
        let other = verifying_key_from_jwk(other.public_jwk.as_bytes()).unwrap();
        assert_eq!(parts.verify_es256(&other), Err(JwsError::BadSignature));
        // a payload changed after signing
        let changed = URL_SAFE_NO_PAD.encode(b"payloaD");
        let tampered = format!("{}.{changed}.{}", parts.header, parts.signature);
        let tampered = CompactJws::split(&tampered).unwrap();
        assert_eq!(tampered.verify_es256(&public), Err(JwsError::BadSignature));

        for (bad, found) in [("", 1), ("a.b", 2), ("a.b.c.d", 4), ("....", 5)] {
            assert_eq!(CompactJws::split(bad), Err(JwsError::PartCount { found }));
        }
        let short = CompactJws::split("e30.e30.AAAA").unwrap();
        assert_eq!(
            short.verify_es256(&public),
            Err(JwsError::SignatureEncoding { len: 3 })
        );
        let padded = CompactJws::split("e30=.e30.AAAA").unwrap();
        assert!(matches!(
            padded.decode(JwsPart::Header),
            Err(JwsError::BadBase64 {
                part: JwsPart::Header,
                ..
            })
        ));
    }

    #[test]
    fn generated_pairs_round_trip() {
        let pair = generate_key_pair("kbs:///default/signing/1").unwrap();
        let private = signing_key_from_jwk(pair.private_jwk.as_bytes()).unwrap();
        let public = verifying_key_from_jwk(pair.public_jwk.as_bytes()).unwrap();
        assert_eq!(*private.verifying_key(), public);
        assert!(!pair.public_jwk.contains("\"d\""));
        assert!(pair.private_jwk.contains("\"d\""));
        let value: serde_json::Value = serde_json::from_str(&pair.public_jwk).unwrap();
        assert_eq!(value["kid"], "kbs:///default/signing/1");
        assert_eq!(value["alg"], "ES256");
        assert_eq!(value["use"], "sig");
        assert_eq!(
            signing_key_from_jwk(pair.public_jwk.as_bytes()).unwrap_err(),
            JwkError::Missing("d")
        );
        assert!(!format!("{pair:?}").contains(pair.private_jwk.as_str()));
    }

    #[test]
    fn bad_jwks_have_distinct_errors() {
        let pair = generate_key_pair("a").unwrap();
        let pair2 = generate_key_pair("b").unwrap();
        let good: serde_json::Value = serde_json::from_str(&pair.private_jwk).unwrap();
        let key2: serde_json::Value = serde_json::from_str(&pair2.private_jwk).unwrap();
        let with = |member: &str, value: serde_json::Value| {
            let mut jwk = good.clone();
            jwk[member] = value;
            serde_json::to_vec(&jwk).unwrap()
        };
        let without = |member: &str| {
            let mut jwk = good.clone();
            jwk.as_object_mut().unwrap().remove(member);
            serde_json::to_vec(&jwk).unwrap()
        };
        let cases: Vec<(Vec<u8>, JwkError)> = vec![
            (with("kty", "RSA".into()), JwkError::NotEc("RSA".into())),
            (without("kty"), JwkError::Missing("kty")),
            (
                with("crv", "P-384".into()),
                JwkError::WrongCurve("P-384".into()),
            ),
            (without("crv"), JwkError::Missing("crv")),
            (
                with("alg", "RS256".into()),
                JwkError::WrongAlg("RS256".into()),
            ),
            (without("x"), JwkError::Missing("x")),
            (with("y", "AAAA".into()), JwkError::BadNumber("y")),
            (with("x", "not base64!".into()), JwkError::BadNumber("x")),
            (with("x", key2["x"].clone()), JwkError::NotOnCurve),
        ];
        for (jwk, expected) in cases {
            assert_eq!(
                verifying_key_from_jwk(&jwk).unwrap_err(),
                expected,
                "{}",
                String::from_utf8_lossy(&jwk)
            );
        }
        for not_json in [&b""[..], b"[1]", &with("x", 5.into())] {
            assert!(matches!(
                verifying_key_from_jwk(not_json),
                Err(JwkError::NotJson(_))
            ));
        }
        assert_eq!(
            verifying_key_from_jwk(&vec![b' '; MAX_JWK_LEN + 1]),
            Err(JwkError::TooLarge(MAX_JWK_LEN + 1))
        );
        let zero_d = with("d", URL_SAFE_NO_PAD.encode([0u8; 32]).into());
        assert_eq!(
            signing_key_from_jwk(&zero_d).unwrap_err(),
            JwkError::BadPrivateKey
        );
        let mismatched = with("d", key2["d"].clone());
        assert_eq!(
            signing_key_from_jwk(&mismatched).unwrap_err(),
            JwkError::KeyMismatch
        );
        // a private key alone (no x, y) is accepted for signing
        let mut d_only = key2.clone();
        d_only.as_object_mut().unwrap().remove("x");
        d_only.as_object_mut().unwrap().remove("y");
        let key = signing_key_from_jwk(&serde_json::to_vec(&d_only).unwrap()).unwrap();
        assert_eq!(
            *key.verifying_key(),
            verifying_key_from_jwk(pair2.public_jwk.as_bytes()).unwrap()
        );
    }
}
