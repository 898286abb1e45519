//! The KBS side of the cryptography, written independently of the client: the report data
//! check, the JWE wrapping of replies, and the ES256 tokens the KBS issues and verifies.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use rsa::traits::PublicKeyParts;
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
        key: Box<rsa::RsaPublicKey>,
        pkcs1v15: bool,
    },
}

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
                let key = rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(&decode_b64url(n, "n")?),
                    rsa::BigUint::from_bytes_be(&decode_b64url(e, "e")?),
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
            other => Err(format!("tee-pubkey kty {other:?} is not supported")),
        }
    }

    pub(crate) fn jwk(&self) -> &Value {
        match self {
            Self::P256 { jwk, .. } | Self::P521 { jwk, .. } | Self::Rsa { jwk, .. } => jwk,
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

/// Concat KDF with SHA-256 for ECDH-ES+A256KW: empty apu/apv, 256-bit output (one round).
fn concat_kdf_a256kw(shared: &[u8]) -> [u8; 32] {
    let alg = b"ECDH-ES+A256KW";
    let mut hasher = Sha256::new();
    hasher.update(1u32.to_be_bytes());
    hasher.update(shared);
    hasher.update((alg.len() as u32).to_be_bytes());
    hasher.update(alg);
    hasher.update(0u32.to_be_bytes());
    hasher.update(0u32.to_be_bytes());
    hasher.update(256u32.to_be_bytes());
    hasher.finalize().into()
}

fn aes_kw_wrap(kek: &[u8; 32], cek: &[u8; 32]) -> Result<Vec<u8>, String> {
    let mut wrapped = vec![0u8; 40];
    aes_kw::KekAes256::from(*kek)
        .wrap(cek, &mut wrapped)
        .map_err(|e| format!("AES key wrap: {e}"))?;
    Ok(wrapped)
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

fn ec_epk(crv: &str, uncompressed: &[u8]) -> Value {
    let coordinates = uncompressed.get(1..).unwrap_or_default();
    let (x, y) = coordinates.split_at(coordinates.len() / 2);
    json!({"crv": crv, "kty": "EC", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
}

/// Wraps `plaintext` for the TEE key as a flattened JWE, choosing the key management from
/// the key's `alg` (trustee's rule); `force_pkcs1v15` makes RSA keys get `RSA1_5`.
pub(crate) fn jwe_for_key(
    key: &TeeKey,
    plaintext: &[u8],
    force_pkcs1v15: bool,
) -> Result<Value, String> {
    let cek: [u8; 32] = random();
    let (header, encrypted_key) = match key {
        TeeKey::P256 { key, .. } => {
            let ephemeral = p256::ecdh::EphemeralSecret::random(&mut OsRng);
            let shared = ephemeral.diffie_hellman(key);
            let kek = concat_kdf_a256kw(shared.raw_secret_bytes());
            let epk = ephemeral.public_key().to_encoded_point(false);
            (
                json!({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "epk": ec_epk("P-256", epk.as_bytes())}),
                aes_kw_wrap(&kek, &cek)?,
            )
        }
        TeeKey::P521 { key, .. } => {
            let ephemeral = p521::ecdh::EphemeralSecret::random(&mut OsRng);
            let shared = ephemeral.diffie_hellman(key);
            let kek = concat_kdf_a256kw(shared.raw_secret_bytes());
            let epk = ephemeral.public_key().to_encoded_point(false);
            (
                json!({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "epk": ec_epk("P-521", epk.as_bytes())}),
                aes_kw_wrap(&kek, &cek)?,
            )
        }
        TeeKey::Rsa { key, pkcs1v15, .. } => {
            if *pkcs1v15 || force_pkcs1v15 {
                (
                    json!({"alg": "RSA1_5", "enc": "A256GCM"}),
                    key.encrypt(&mut OsRng, rsa::Pkcs1v15Encrypt, &cek)
                        .map_err(|e| format!("RSA1_5: {e}"))?,
                )
            } else {
                (
                    json!({"alg": "RSA-OAEP-256", "enc": "A256GCM"}),
                    key.encrypt(&mut OsRng, rsa::Oaep::new::<Sha256>(), &cek)
                        .map_err(|e| format!("RSA-OAEP-256: {e}"))?,
                )
            }
        }
    };
    let protected = URL_SAFE_NO_PAD.encode(header.to_string());
    let iv: [u8; 12] = random();
    let sealed = Aes256Gcm::new(&cek.into())
        .encrypt(
            &iv.into(),
            Payload {
                msg: plaintext,
                aad: protected.as_bytes(),
            },
        )
        .map_err(|_| "AES-GCM encryption failed".to_string())?;
    let (ciphertext, tag) = sealed.split_at(sealed.len() - 16);
    Ok(json!({
        "protected": protected,
        "encrypted_key": URL_SAFE_NO_PAD.encode(encrypted_key),
        "iv": URL_SAFE_NO_PAD.encode(iv),
        "ciphertext": URL_SAFE_NO_PAD.encode(ciphertext),
        "tag": URL_SAFE_NO_PAD.encode(tag),
    }))
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
        JweCorruption::Ciphertext => "ciphertext",
        JweCorruption::EncryptedKey => "encrypted_key",
        JweCorruption::Protected => "protected",
    };
    let Some(current) = jwe.get(field).and_then(Value::as_str).map(str::to_string) else {
        return;
    };
    let damaged = if corruption == JweCorruption::Protected {
        let mut header: Value = URL_SAFE_NO_PAD
            .decode(&current)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null);
        if let Some(map) = header.as_object_mut() {
            map.insert("kid".to_string(), json!("tampered"));
        }
        URL_SAFE_NO_PAD.encode(header.to_string())
    } else {
        flip_last_bit(&current)
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
        let header = URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": "ES256"}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let signature: p256::ecdsa::Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// Verifies signature and `exp`; returns the claims.
    pub(crate) fn verify(&self, token: &str, now_secs: u64) -> Result<Value, String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("token is not a JWS compact serialization".into());
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("token header is not base64url JSON")?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err("token alg is not ES256".into());
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|b| p256::ecdsa::Signature::from_slice(&b).ok())
            .ok_or("token signature is malformed")?;
        let signing_input = format!("{}.{}", token.split('.').next().unwrap_or(""), payload);
        self.key
            .verifying_key()
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| "token signature does not verify".to_string())?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(payload)
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
    fn concat_kdf_is_one_sha256_round() {
        // Independent restatement: SHA-256(00000001 || Z || otherinfo).
        let z = [7u8; 32];
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(&z);
        expected.extend_from_slice(&[0, 0, 0, 14]);
        expected.extend_from_slice(b"ECDH-ES+A256KW");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let digest: [u8; 32] = Sha256::digest(&expected).into();
        assert_eq!(concat_kdf_a256kw(&z), digest);
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
