//! The KBS side of the cryptography: the report data check, the JWE wrapping of replies
//! (with the workspace's `jose` crate, whose known-answer tests pin it to RFC 7518, NIST
//! SP 800-185 and independent implementations), the ES256 tokens the KBS issues and
//! verifies, and the EdDSA admin tokens it accepts.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use jose::jws::{CompactJws, JwsPart};
use jose::{KeyAlgorithm, RecipientKey};
use rand_core::OsRng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// How a resource reply may be damaged on purpose (fault injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JweCorruption {
    /// Flip a bit of the GCM tag.
    Tag,
    /// Flip a bit of the ciphertext.
    Ciphertext,
    /// Re-encode the protected header with an extra member (AAD no longer matches).
    Protected,
    /// Flip a bit of the wrapped content key.
    EncryptedKey,
    /// Announce another content encryption (`A128CBC-HS256`) in the protected header.
    WrongEnc,
    /// Cut the ciphertext to half its length.
    TruncatedCiphertext,
    /// Encrypt to a freshly generated key instead of the TEE key of the token (applied by
    /// the KBS when it encrypts; [`corrupt_jwe`] leaves the value alone).
    ForeignKey,
}

/// The hash a session binds its report data with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindingHash {
    Sha256,
    Sha384,
    Sha512,
}

impl BindingHash {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// A validated `tee-pubkey`, kept as the fields trustee's JWK type keeps (unknown members
/// are dropped before canonicalization, as trustee's deserializer does).
#[derive(Debug, Clone)]
pub(crate) enum TeeKey {
    P256 {
        jwk: Value,
        key: p256::PublicKey,
    },
    P521 {
        jwk: Value,
        key: p521::PublicKey,
    },
    Rsa {
        jwk: Value,
        key: Box<jose::RsaPublicKey>,
        pkcs1v15: bool,
    },
    /// trustee's experimental `{"kty":"AKP","alg":"ML-KEM-768+A192KW","pub"}`
    MlKem768 {
        jwk: Value,
        key: Box<ml_kem::EncapsulationKey768>,
    },
}

/// `alg` of the ML-KEM TEE key and of the replies wrapped for it.
pub(crate) const ML_KEM_768_A192KW: &str = "ML-KEM-768+A192KW";
const ML_KEM_768_PUBLIC_KEY_LEN: usize = 1184;

fn member<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("tee-pubkey has no string member {name:?}"))
}

fn decode_b64url(value: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("tee-pubkey {what} is not base64url"))
}

fn sec1(x: &[u8], y: &[u8]) -> Vec<u8> {
    [&[0x04u8][..], x, y].concat()
}

impl TeeKey {
    pub(crate) fn from_jwk(jwk: &Value) -> Result<Self, String> {
        match member(jwk, "kty")? {
            "EC" => {
                let (crv, alg, x, y) = (
                    member(jwk, "crv")?,
                    member(jwk, "alg")?,
                    member(jwk, "x")?,
                    member(jwk, "y")?,
                );
                if alg != "ECDH-ES+A256KW" {
                    return Err(format!("EC tee-pubkey alg {alg:?} is not ECDH-ES+A256KW"));
                }
                let canonical = json!({"kty": "EC", "crv": crv, "alg": alg, "x": x, "y": y});
                let (xb, yb) = (decode_b64url(x, "x")?, decode_b64url(y, "y")?);
                match crv {
                    "P-256" if xb.len() == 32 && yb.len() == 32 => {
                        let key = p256::PublicKey::from_sec1_bytes(&sec1(&xb, &yb))
                            .map_err(|_| "tee-pubkey is not a P-256 point".to_string())?;
                        Ok(Self::P256 {
                            jwk: canonical,
                            key,
                        })
                    }
                    "P-521" if xb.len() == 66 && yb.len() == 66 => {
                        let key = p521::PublicKey::from_sec1_bytes(&sec1(&xb, &yb))
                            .map_err(|_| "tee-pubkey is not a P-521 point".to_string())?;
                        Ok(Self::P521 {
                            jwk: canonical,
                            key,
                        })
                    }
                    other => Err(format!(
                        "EC tee-pubkey curve {other:?} with {}/{}-byte coordinates is not supported",
                        xb.len(),
                        yb.len()
                    )),
                }
            }
            "RSA" => {
                let (alg, n, e) = (member(jwk, "alg")?, member(jwk, "n")?, member(jwk, "e")?);
                let pkcs1v15 = match alg {
                    "RSA-OAEP-256" => false,
                    "RSA1_5" => true,
                    other => return Err(format!("RSA tee-pubkey alg {other:?} is not supported")),
                };
                let key = jose::RsaPublicKey::from_components(
                    &decode_b64url(n, "n")?,
                    &decode_b64url(e, "e")?,
                )
                .map_err(|err| format!("tee-pubkey is not a usable RSA key: {err}"))?;
                if key.size() < 256 {
                    return Err("RSA tee-pubkey is shorter than 2048 bits".to_string());
                }
                Ok(Self::Rsa {
                    jwk: json!({"kty": "RSA", "alg": alg, "n": n, "e": e}),
                    key: Box::new(key),
                    pkcs1v15,
                })
            }
            "AKP" => {
                let (alg, public) = (member(jwk, "alg")?, member(jwk, "pub")?);
                if alg != ML_KEM_768_A192KW {
                    return Err(format!(
                        "AKP tee-pubkey alg {alg:?} is not {ML_KEM_768_A192KW}"
                    ));
                }
                let bytes = decode_b64url(public, "pub")?;
                if bytes.len() != ML_KEM_768_PUBLIC_KEY_LEN {
                    return Err(format!(
                        "ML-KEM-768 encapsulation key has {} bytes, expected {ML_KEM_768_PUBLIC_KEY_LEN}",
                        bytes.len()
                    ));
                }
                let array = ml_kem::Key::<ml_kem::EncapsulationKey768>::try_from(bytes.as_slice())
                    .map_err(|_| "ML-KEM-768 encapsulation key has the wrong size".to_string())?;
                let key = ml_kem::EncapsulationKey768::new(&array).map_err(|_| {
                    "tee-pubkey is not a valid ML-KEM-768 encapsulation key".to_string()
                })?;
                Ok(Self::MlKem768 {
                    jwk: json!({"kty": "AKP", "alg": alg, "pub": public}),
                    key: Box::new(key),
                })
            }
            other => Err(format!("tee-pubkey kty {other:?} is not supported")),
        }
    }

    /// A fresh key of the same curve (P-256 for RSA and ML-KEM keys): what a KBS that
    /// encrypts to someone else's key uses.
    pub(crate) fn foreign(&self) -> Self {
        match self {
            Self::P521 { jwk, .. } => Self::P521 {
                jwk: jwk.clone(),
                key: p521::SecretKey::random(&mut OsRng).public_key(),
            },
            other => Self::P256 {
                jwk: other.jwk().clone(),
                key: p256::SecretKey::random(&mut OsRng).public_key(),
            },
        }
    }

    pub(crate) fn jwk(&self) -> &Value {
        match self {
            Self::P256 { jwk, .. }
            | Self::P521 { jwk, .. }
            | Self::Rsa { jwk, .. }
            | Self::MlKem768 { jwk, .. } => jwk,
        }
    }
}

/// H(JCS(value)).
pub(crate) fn binding(hash: BindingHash, value: &Value) -> Result<Vec<u8>, String> {
    let canonical =
        serde_json_canonicalizer::to_vec(value).map_err(|e| format!("canonical JSON: {e}"))?;
    Ok(hash.digest(&canonical))
}

/// Checks a sample-TEE evidence `{"svn": "...", "report_data": "<base64>"}` against the
/// expected binding: exact digest, no padding (trustee's sample verifier).
pub(crate) fn verify_sample_evidence(evidence: &Value, expected: &[u8]) -> Result<(), String> {
    let report_data = evidence
        .get("report_data")
        .and_then(Value::as_str)
        .ok_or("sample evidence has no string report_data")?;
    evidence
        .get("svn")
        .and_then(Value::as_str)
        .ok_or("sample evidence has no string svn")?;
    let report_data = STANDARD
        .decode(report_data)
        .map_err(|_| "sample evidence report_data is not base64")?;
    if report_data != expected {
        return Err(format!(
            "report data mismatch: evidence binds {} but the KBS computed {}",
            hex::encode(&report_data),
            hex::encode(expected)
        ));
    }
    Ok(())
}

/// Wraps `plaintext` for the TEE key as a flattened JWE, choosing the key management from
/// the key's `alg` (trustee's rule); `force_pkcs1v15` makes RSA keys get `RSA1_5`.
pub(crate) fn jwe_for_key(
    key: &TeeKey,
    plaintext: &[u8],
    force_pkcs1v15: bool,
) -> Result<Value, String> {
    let recipient = match key {
        TeeKey::P256 { key, .. } => (RecipientKey::P256(key), KeyAlgorithm::EcdhEsA256kw),
        TeeKey::P521 { key, .. } => (RecipientKey::P521(key), KeyAlgorithm::EcdhEsA256kw),
        TeeKey::MlKem768 { key, .. } => (RecipientKey::MlKem768(key), KeyAlgorithm::MlKem768A192kw),
        TeeKey::Rsa { key, pkcs1v15, .. } => (
            RecipientKey::Rsa(key),
            if *pkcs1v15 || force_pkcs1v15 {
                KeyAlgorithm::Rsa1_5
            } else {
                KeyAlgorithm::RsaOaep256
            },
        ),
    };
    jose::encrypt(plaintext, &[recipient]).map_err(|e| e.to_string())
}

/// Wraps `plaintext` for a `tee-pubkey` JWK exactly as the test KBS does (for tests of the
/// client's decryption).
pub fn encrypt_for_jwk(
    jwk: &Value,
    plaintext: &[u8],
    force_pkcs1v15: bool,
) -> Result<Value, String> {
    jwe_for_key(&TeeKey::from_jwk(jwk)?, plaintext, force_pkcs1v15)
}

fn flip_last_bit(b64: &str) -> String {
    let mut bytes = URL_SAFE_NO_PAD.decode(b64).unwrap_or_default();
    if let Some(last) = bytes.last_mut() {
        *last ^= 1;
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Damages a JWE reply as the fault asks.
pub fn corrupt_jwe(jwe: &mut Value, corruption: JweCorruption) {
    let field = match corruption {
        JweCorruption::Tag => "tag",
        JweCorruption::Ciphertext | JweCorruption::TruncatedCiphertext => "ciphertext",
        JweCorruption::EncryptedKey => "encrypted_key",
        JweCorruption::Protected | JweCorruption::WrongEnc => "protected",
        JweCorruption::ForeignKey => return,
    };
    let Some(current) = jwe.get(field).and_then(Value::as_str).map(str::to_string) else {
        return;
    };
    let damaged = match corruption {
        JweCorruption::Protected | JweCorruption::WrongEnc => {
            let mut header: Value = URL_SAFE_NO_PAD
                .decode(&current)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or(Value::Null);
            if let Some(map) = header.as_object_mut() {
                if corruption == JweCorruption::WrongEnc {
                    map.insert("enc".to_string(), json!("A128CBC-HS256"));
                } else {
                    map.insert("kid".to_string(), json!("tampered"));
                }
            }
            URL_SAFE_NO_PAD.encode(header.to_string())
        }
        JweCorruption::TruncatedCiphertext => {
            let bytes = URL_SAFE_NO_PAD.decode(&current).unwrap_or_default();
            URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
        }
        _ => flip_last_bit(&current),
    };
    jwe[field] = Value::String(damaged);
}

/// The KBS's token signing key (ES256).
pub(crate) struct TokenSigner {
    key: p256::ecdsa::SigningKey,
}

impl TokenSigner {
    pub(crate) fn generate() -> Self {
        Self {
            key: p256::ecdsa::SigningKey::random(&mut OsRng),
        }
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": "ES256"}).to_string();
        jose::jws::sign_es256(header.as_bytes(), claims.to_string().as_bytes(), &self.key)
    }

    /// Verifies signature and `exp`; returns the claims.
    pub(crate) fn verify(&self, token: &str, now_secs: u64) -> Result<Value, String> {
        let jws = CompactJws::split(token).map_err(|e| format!("token: {e}"))?;
        let header: Value = jws
            .decode(JwsPart::Header)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("token header is not base64url JSON")?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err("token alg is not ES256".into());
        }
        jws.verify_es256(self.key.verifying_key())
            .map_err(|e| format!("token: {e}"))?;
        let claims: Value = jws
            .decode(JwsPart::Payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("token payload is not base64url JSON")?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("token has no exp")?;
        if exp <= now_secs {
            return Err("token expired".into());
        }
        Ok(claims)
    }
}

/// The admin key of the KBS: trustee's `auth_public_key` / simple-persona
/// `public_key_path`, an Ed25519 `PUBLIC KEY` PEM. Tokens are JWS compact with
/// `{"alg":"EdDSA"}` as jwt-simple (trustee's verifier) demands; signature, `exp` (required
/// here: stricter than trustee, which accepts a token without one), `nbf` and `iat` are
/// checked without trustee's 15-minute clock tolerance.
pub(crate) struct AdminVerifier {
    key: ed25519_dalek::VerifyingKey,
}

impl AdminVerifier {
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| format!("the admin public key is not an Ed25519 PUBLIC KEY PEM: {e}"))
    }

    /// Verifies an admin token; returns its claims.
    pub(crate) fn verify(&self, token: &str, now_secs: u64) -> Result<Value, String> {
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts.as_slice() else {
            return Err("admin token is not a JWS compact serialization".into());
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("admin token header is not base64url JSON")?;
        if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
            return Err(format!(
                "admin token alg is {} and not EdDSA",
                header["alg"]
            ));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
            .ok_or("admin token signature is malformed")?;
        self.key
            .verify_strict(format!("{}.{payload}", parts[0]).as_bytes(), &signature)
            .map_err(|_| "admin token signature does not verify with the admin key".to_string())?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(Value::is_object)
            .ok_or("admin token payload is not a base64url JSON object")?;
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("admin token claim {name} is not a number")),
        };
        let exp = time("exp")?.ok_or("admin token has no exp")?;
        if exp <= now_secs {
            return Err("admin token expired".into());
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now_secs) {
            return Err("admin token is not valid yet (nbf)".into());
        }
        if time("iat")?.is_some_and(|iat| iat > now_secs) {
            return Err("admin token was issued in the future (iat)".into());
        }
        Ok(claims)
    }
}

/// Where the KBS puts (and reads back) the TEE public key in its tokens: trustee's EAR path.
pub(crate) fn tee_pubkey_from_claims(claims: &Value) -> Option<&Value> {
    claims
        .get("submods")?
        .get("cpu0")?
        .get("ear.veraison.annotated-evidence")?
        .get("runtime_data_claims")?
        .get("tee-pubkey")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_expiry_and_not_with_another_key() {
        let signer = TokenSigner::generate();
        let token = signer.sign(&json!({"exp": 1000, "x": 1}));
        assert_eq!(signer.verify(&token, 999).unwrap()["x"], 1);
        assert!(signer.verify(&token, 1000).is_err());
        assert!(TokenSigner::generate().verify(&token, 0).is_err());
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 2, 'A');
        assert!(signer.verify(&tampered, 0).is_err());
    }

    #[test]
    fn ml_kem_jwks_are_checked() {
        let (_, ek) = <ml_kem::MlKem768 as ml_kem::Kem>::generate_keypair();
        let public = URL_SAFE_NO_PAD.encode(ml_kem::KeyExport::to_bytes(&ek));
        let ok = json!({"kty": "AKP", "alg": "ML-KEM-768+A192KW", "pub": public, "extra": 1});
        let key = TeeKey::from_jwk(&ok).unwrap();
        assert_eq!(
            key.jwk(),
            &json!({"kty": "AKP", "alg": "ML-KEM-768+A192KW", "pub": public})
        );
        let jwe = jwe_for_key(&key, b"x", false).unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwe["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "ML-KEM-768+A192KW");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(header["ek"].as_str().unwrap())
                .unwrap()
                .len(),
            1088
        );
        for bad in [
            json!({"kty": "AKP", "alg": "ML-KEM-1024+A256KW", "pub": public}),
            json!({"kty": "AKP", "alg": "ML-KEM-768+A192KW", "pub": "AAAA"}),
            json!({"kty": "AKP", "alg": "ML-KEM-768+A192KW"}),
            json!({"kty": "AKP", "alg": "ML-KEM-768+A192KW", "pub": URL_SAFE_NO_PAD.encode([0xffu8; 1184])}),
        ] {
            assert!(TeeKey::from_jwk(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_tokens_need_the_admin_key_eddsa_and_a_live_exp() {
        use ed25519_dalek::Signer as _;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pem = ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(
            &signing.verifying_key(),
            ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF,
        )
        .unwrap();
        let verifier = AdminVerifier::from_pem(&pem).unwrap();
        let sign = |key: &ed25519_dalek::SigningKey, header: Value, claims: Value| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = key.sign(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
        };
        let eddsa = json!({"alg": "EdDSA", "typ": "JWT"});
        let good = sign(
            &signing,
            eddsa.clone(),
            json!({"iat": 100, "nbf": 100, "exp": 200}),
        );
        assert_eq!(verifier.verify(&good, 150).unwrap()["exp"], 200);
        assert!(verifier.verify(&good, 200).unwrap_err().contains("expired"));
        assert!(verifier.verify(&good, 99).unwrap_err().contains("nbf"));
        let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let foreign = sign(&other, eddsa.clone(), json!({"exp": 200}));
        assert!(verifier
            .verify(&foreign, 150)
            .unwrap_err()
            .contains("does not verify"));
        let wrong_alg = sign(&signing, json!({"alg": "ES256"}), json!({"exp": 200}));
        assert!(verifier
            .verify(&wrong_alg, 150)
            .unwrap_err()
            .contains("not EdDSA"));
        let no_exp = sign(&signing, eddsa.clone(), json!({"iat": 100}));
        assert!(verifier
            .verify(&no_exp, 150)
            .unwrap_err()
            .contains("no exp"));
        let text_exp = sign(&signing, eddsa, json!({"exp": "200"}));
        assert!(verifier.verify(&text_exp, 150).is_err());
        for bad in ["", "a.b", "a.b.c.d", &good[..good.len() - 2]] {
            assert!(verifier.verify(bad, 150).is_err(), "{bad}");
        }
        assert!(AdminVerifier::from_pem("not a key").is_err());
    }

    #[test]
    fn bad_jwks_are_refused() {
        for bad in [
            json!({"kty": "OKP"}),
            json!({"kty": "EC", "crv": "P-384", "alg": "ECDH-ES+A256KW", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "crv": "P-256", "alg": "ECDH-ES", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
                   "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])}),
            json!({"kty": "RSA", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "RSA", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"}),
        ] {
            assert!(TeeKey::from_jwk(&bad).is_err(), "{bad}");
        }
    }
}
