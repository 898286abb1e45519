//! The JWS side of sealed secrets: splitting `sealed.<header>.<payload>.<signature>`,
//! ES256 signing and verification, and the P-256 JWKs that carry the keys.
//!
//! A JWK is read field by field (`kty` `EC`, `crv` `P-256`, `x`, `y`, and `d` for a
//! private key); other members (`kid`, `use`, `alg`, `key_ops`) are allowed, but an `alg`
//! other than `ES256` is refused.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use p256::{
    ecdsa::{
        signature::{Signer as _, Verifier as _},
        Signature, SigningKey, VerifyingKey,
    },
    EncodedPoint,
};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::UnsealError;

/// Every sealed secret starts with this.
pub const SEALED_PREFIX: &str = "sealed.";
/// The only signature algorithm accepted.
pub const ES256: &str = "ES256";
/// Largest sealed secret accepted, in bytes.
pub const MAX_SEALED_SECRET_LEN: usize = 1024 * 1024;
/// Largest JWK accepted, in bytes.
pub const MAX_JWK_LEN: usize = 64 * 1024;

/// A part of the compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsPart {
    /// the protected header
    Header,
    /// the payload (the secret description)
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
    #[error("JWK alg is `{0}`; sealed secrets use ES256")]
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
    let mut bytes = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| JwkError::BadNumber(name))?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        bytes.zeroize();
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
    match members.kty.as_deref() {
        Some("EC") => {}
        Some(other) => return Err(JwkError::NotEc(other.chars().take(32).collect())),
        None => return Err(JwkError::Missing("kty")),
    }
    match members.crv.as_deref() {
        Some("P-256") => {}
        Some(other) => return Err(JwkError::WrongCurve(other.chars().take(32).collect())),
        None => return Err(JwkError::Missing("crv")),
    }
    if let Some(alg) = members.alg.as_deref().filter(|alg| *alg != ES256) {
        return Err(JwkError::WrongAlg(alg.chars().take(32).collect()));
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

/// A new random P-256 key pair for signing sealed secrets, labelled `kid`.
pub fn generate_key_pair(kid: &str) -> Result<GeneratedKeyPair, serde_json::Error> {
    let key = SigningKey::random(&mut OsRng);
    let point = key.verifying_key().to_encoded_point(false);
    // uncompressed SEC1: 0x04 ‖ x (32 bytes) ‖ y (32 bytes)
    let (x, y) = point.as_bytes()[1..].split_at(32);
    let d = Zeroizing::new(URL_SAFE_NO_PAD.encode(key.to_bytes()));
    let mut jwk = JwkOut {
        kty: "EC",
        crv: "P-256",
        alg: ES256,
        key_use: "sig",
        kid,
        x: URL_SAFE_NO_PAD.encode(x),
        y: URL_SAFE_NO_PAD.encode(y),
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

/// The protected header of a sealed secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwsHeader {
    /// the signature algorithm, `ES256`
    pub alg: Option<String>,
    /// the id of the verification key: a resource URI or a file name
    pub kid: Option<String>,
}

/// A sealed secret split into its parts (not yet verified).
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
        let parts: Vec<&str> = body.split('.').collect();
        match parts.as_slice() {
            [header, payload, signature] => Ok(Self {
                header,
                payload,
                signature,
            }),
            _ => Err(UnsealError::PartCount {
                found: parts.len() + 1,
            }),
        }
    }

    /// What the signature covers: `<header>.<payload>` as written.
    pub fn signing_input(&self) -> String {
        format!("{}.{}", self.header, self.payload)
    }

    /// The bytes of one part.
    pub fn decode(&self, part: JwsPart) -> Result<Vec<u8>, UnsealError> {
        let text = match part {
            JwsPart::Header => self.header,
            JwsPart::Payload => self.payload,
            JwsPart::Signature => self.signature,
        };
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| UnsealError::BadBase64 {
                part,
                reason: e.to_string(),
            })
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
        let raw = self.decode(JwsPart::Signature)?;
        let signature = Signature::from_slice(&raw)
            .map_err(|_| UnsealError::SignatureEncoding { len: raw.len() })?;
        key.verify(self.signing_input().as_bytes(), &signature)
            .map_err(|_| UnsealError::BadSignature)
    }
}

/// Signs `payload` as a sealed secret: `sealed.<header>.<payload>.<signature>` with
/// header `{"alg":"ES256","kid":<kid>}`.
pub fn sign(payload: &[u8], key: &SigningKey, kid: &str) -> Result<String, serde_json::Error> {
    let header = serde_json::to_vec(&JwsHeader {
        alg: Some(ES256.into()),
        kid: Some(kid.into()),
    })?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature: Signature = key.sign(signing_input.as_bytes());
    Ok(format!(
        "{SEALED_PREFIX}{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
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
        assert!(matches!(
            signing_key_from_jwk(pair.public_jwk.as_bytes()),
            Err(JwkError::Missing("d"))
        ));
        assert!(!format!("{pair:?}").contains(pair.private_jwk.as_str()));
    }

    #[test]
    fn bad_jwks_have_distinct_errors() {
        let good: serde_json::Value = serde_json::from_slice(TEST_KEY).unwrap();
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
        let other_x = serde_json::from_slice::<serde_json::Value>(TEST_KEY_2).unwrap()["x"].clone();
        let cases: Vec<(Vec<u8>, JwkError)> = vec![
            (b"".to_vec(), JwkError::NotJson(String::new())),
            (b"[1]".to_vec(), JwkError::NotJson(String::new())),
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
            (with("x", 5.into()), JwkError::NotJson(String::new())),
            (with("x", other_x), JwkError::NotOnCurve),
        ];
        for (jwk, expected) in cases {
            let err = verifying_key_from_jwk(&jwk).unwrap_err();
            match (&err, &expected) {
                (JwkError::NotJson(_), JwkError::NotJson(_)) => {}
                _ => assert_eq!(err, expected, "{}", String::from_utf8_lossy(&jwk)),
            }
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
        let key2: serde_json::Value = serde_json::from_slice(TEST_KEY_2).unwrap();
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
            verifying_key_from_jwk(TEST_KEY_2).unwrap()
        );
    }
}
