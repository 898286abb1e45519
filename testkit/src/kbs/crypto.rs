//! The KBS side of the cryptography, written independently of the client: the report data
//! check, the JWE wrapping of replies (ML-KEM-768+A192KW included, with its own KMAC256),
//! the ES256 tokens the KBS issues and verifies, and the EdDSA admin tokens it accepts.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ml_kem::Encapsulate;
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

/// `left_encode(n)` of NIST SP 800-185 §2.3.1.
fn left_encode(n: u64) -> Vec<u8> {
    let be = n.to_be_bytes();
    let first = be.iter().position(|b| *b != 0).unwrap_or(7);
    let mut out = vec![(8 - first) as u8];
    out.extend_from_slice(&be[first..]);
    out
}

/// `right_encode(n)` of NIST SP 800-185 §2.3.1.
fn right_encode(n: u64) -> Vec<u8> {
    let mut out = left_encode(n);
    let count = out.remove(0);
    out.push(count);
    out
}

/// KMAC256(K, X, L, S) of NIST SP 800-185 §4.3, spelled out step by step:
/// newX = bytepad(encode_string(K), 136) || X || right_encode(L), then
/// cSHAKE256(newX, L, N = "KMAC", S).
pub(crate) fn kmac256(key: &[u8], x: &[u8], s: &[u8], out_len: usize) -> Vec<u8> {
    use sha3::digest::{ExtendableOutput, Update, XofReader};
    let encode_string = [left_encode(8 * key.len() as u64), key.to_vec()].concat();
    let mut bytepad = [left_encode(136), encode_string].concat();
    while bytepad.len() % 136 != 0 {
        bytepad.push(0);
    }
    let new_x = [bytepad, x.to_vec(), right_encode(8 * out_len as u64)].concat();
    let mut cshake = sha3::digest::core_api::CoreWrapper::from_core(
        sha3::CShake256Core::new_with_function_name(b"KMAC", s),
    );
    cshake.update(&new_x);
    let mut out = vec![0u8; out_len];
    cshake.finalize_xof().read(&mut out);
    out
}

/// The AES-192 wrapping key of `ML-KEM-768+A192KW` (trustee's `kmac256_kdf`):
/// KMAC256(shared secret, len(alg) ‖ alg ‖ 192 as 32-bit big-endian numbers, 192 bits).
fn ml_kem_kek(shared_secret: &[u8]) -> [u8; 24] {
    let alg = ML_KEM_768_A192KW.as_bytes();
    let mut fixed_info = (alg.len() as u32).to_be_bytes().to_vec();
    fixed_info.extend_from_slice(alg);
    fixed_info.extend_from_slice(&192u32.to_be_bytes());
    let mut kek = [0u8; 24];
    kek.copy_from_slice(&kmac256(shared_secret, &fixed_info, b"", 24));
    kek
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
        TeeKey::MlKem768 { key, .. } => {
            let (ciphertext, shared) = key.encapsulate();
            let kek = ml_kem_kek(shared.as_slice());
            let mut wrapped = vec![0u8; 40];
            aes_kw::KekAes192::from(kek)
                .wrap(&cek, &mut wrapped)
                .map_err(|e| format!("AES-192 key wrap: {e}"))?;
            (
                json!({"alg": ML_KEM_768_A192KW, "enc": "A256GCM", "ek": URL_SAFE_NO_PAD.encode(ciphertext.as_slice())}),
                wrapped,
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
    fn kmac256_matches_nist_sample_4_and_openssl() {
        let key: Vec<u8> = (0x40..=0x5f).collect();
        assert_eq!(
            hex::encode(kmac256(&key, &[0, 1, 2, 3], b"My Tagged Application", 64)),
            "20c570c31346f703c9ac36c61c03cb64c3970d0cfc787e9b79599d273a68d2f7f69d4cc3de9d104a351689f27cf6f5951f0103f33f4f24871024d9c27773a8dd"
        );
        // `openssl mac -macopt hexkey:4041…5f -macopt size:24 KMAC256` of 00010203
        assert_eq!(
            hex::encode(kmac256(&key, &[0, 1, 2, 3], b"", 24)),
            "e2f127733e21716ac9a2464342d37078a5356034bafa4951"
        );
        assert_eq!(
            hex::encode(ml_kem_kek(&[0u8; 32])),
            "5a532aa1c71c5bfe8ef4f3c32d4e6146992d6bd53fd0ccca"
        );
        assert_eq!(left_encode(0), [1, 0]);
        assert_eq!(left_encode(136), [1, 136]);
        assert_eq!(right_encode(192), [192, 1]);
        assert_eq!(left_encode(256), [2, 1, 0]);
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
