//! Decryption of the KBS's resource reply: a JWE in flattened JSON serialization.
//!
//! Key management `ECDH-ES+A256KW` (P-256/P-521, Concat KDF with SHA-256, AES key unwrap),
//! `RSA-OAEP-256`, `ML-KEM-768+A192KW` (trustee's experimental post-quantum wrapping: the
//! ML-KEM ciphertext in the `ek` header, a KMAC256 KDF, AES-192 key unwrap), and `RSA1_5`
//! only when explicitly allowed; content encryption `A256GCM` only. The AAD is the
//! `protected` member exactly as received (RFC 7516 §5.2), never a re-serialization of the
//! parsed header.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ml_kem::Decapsulate;
use p256::elliptic_curve::sec1::FromEncodedPoint;
use serde::Deserialize;
use sha3::digest::core_api::CoreWrapper;
use sha3::digest::{ExtendableOutput, Update, XofReader};
use zeroize::{Zeroize, Zeroizing};

use crate::keypair::{
    KeyMaterial, TeeKeyPair, ALG_ECDH_ES_A256KW, ALG_ML_KEM_768_A192KW, ALG_RSA1_5,
    ALG_RSA_OAEP_256, ML_KEM_768_CIPHERTEXT_LEN,
};
use crate::wire::JweResponse;

/// The only content encryption the KBS uses.
pub const ENC_A256GCM: &str = "A256GCM";
const CEK_LEN: usize = 32;
const GCM_IV_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;
/// AES-192 key-wrapping key of `ML-KEM-768+A192KW`.
const A192KW_KEY_LEN: usize = 24;
/// Rate of cSHAKE256 (and so the `bytepad` width of KMAC256), in bytes.
const KMAC256_RATE: usize = 136;

/// How strict decryption is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JweOptions {
    /// Accept the deprecated `RSA1_5` key transport (off unless the config says so).
    pub allow_rsa1_5: bool,
}

/// Why a JWE reply could not be decrypted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JweError {
    #[error("JWE member {member} is not valid base64url")]
    Base64 { member: &'static str },
    #[error("JWE protected header is not a JSON object with string alg and enc: {0}")]
    Header(String),
    #[error("JWE content encryption {0:?} is not supported (only A256GCM)")]
    UnsupportedEnc(String),
    #[error("JWE key management algorithm {0:?} is not supported")]
    UnsupportedAlg(String),
    #[error("JWE uses RSA1_5, which is refused unless allowed in the configuration")]
    Rsa1_5NotAllowed,
    #[error("JWE critical header parameters {0:?} are not understood")]
    UnsupportedCritical(Vec<String>),
    #[error("JWE algorithm {alg} does not fit the {key} TEE key")]
    KeyMismatch { alg: String, key: &'static str },
    #[error("JWE ephemeral key is on curve {found:?} but the TEE key is {expected}")]
    WrongCurve {
        expected: &'static str,
        found: String,
    },
    #[error("JWE ephemeral public key is missing or not a valid point: {0}")]
    InvalidEphemeralKey(String),
    #[error(
        "JWE uses ML-KEM-768+A192KW but its protected header has no `ek` (the KEM ciphertext)"
    )]
    MissingKemCiphertext,
    #[error("JWE member {member} has {found} bytes, expected {expected}")]
    BadLength {
        member: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("unwrapping the JWE content key failed (wrong TEE key or tampered encrypted_key)")]
    KeyUnwrap,
    #[error("JWE authentication failed: tampered ciphertext, tag, iv or protected header, or the wrong key")]
    Decrypt,
}

#[derive(Deserialize)]
struct ProtectedHeader {
    alg: String,
    enc: String,
    #[serde(default)]
    epk: Option<EphemeralKey>,
    #[serde(default)]
    apu: Option<String>,
    #[serde(default)]
    apv: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
    /// ML-KEM ciphertext (base64url), `ML-KEM-768+A192KW` only
    #[serde(default)]
    ek: Option<String>,
}

#[derive(Deserialize)]
struct EphemeralKey {
    kty: String,
    crv: String,
    x: String,
    y: String,
}

fn b64(member: &'static str, value: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| JweError::Base64 { member })
}

fn exact_len(member: &'static str, bytes: &[u8], expected: usize) -> Result<(), JweError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(JweError::BadLength {
            member,
            expected,
            found: bytes.len(),
        })
    }
}

/// Concat KDF (NIST SP 800-56A, RFC 7518 §4.6.2) with SHA-256, one-pass key agreement:
/// OtherInfo = len‖AlgorithmID ‖ len‖PartyUInfo ‖ len‖PartyVInfo ‖ keydatalen in bits.
pub fn concat_kdf_sha256(
    shared_secret: &[u8],
    algorithm_id: &str,
    apu: &[u8],
    apv: &[u8],
    out: &mut [u8],
) -> Result<(), JweError> {
    let mut other_info = Vec::with_capacity(16 + algorithm_id.len() + apu.len() + apv.len());
    for field in [algorithm_id.as_bytes(), apu, apv] {
        let len = u32::try_from(field.len()).map_err(|_| JweError::KeyUnwrap)?;
        other_info.extend_from_slice(&len.to_be_bytes());
        other_info.extend_from_slice(field);
    }
    let bits = u32::try_from(out.len() * 8).map_err(|_| JweError::KeyUnwrap)?;
    other_info.extend_from_slice(&bits.to_be_bytes());
    concat_kdf::derive_key_into::<sha2::Sha256>(shared_secret, &other_info, out)
        .map_err(|_| JweError::KeyUnwrap)
}

/// NIST SP 800-185 `left_encode` / `right_encode` of `value`: the big-endian bytes without
/// leading zeros (at least one), preceded (left) or followed (right) by their count.
fn sp800_185_encode(value: u64, left: bool) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let digits = &bytes[skip..];
    let count = digits.len() as u8;
    let mut out = Vec::with_capacity(digits.len() + 1);
    if left {
        out.push(count);
    }
    out.extend_from_slice(digits);
    if !left {
        out.push(count);
    }
    out
}

/// KMAC256 (NIST SP 800-185 §4.3) with an output of `out.len()` bytes:
/// `cSHAKE256(bytepad(encode_string(key), 136) || data || right_encode(L), L, "KMAC", customization)`.
pub fn kmac256(key: &[u8], data: &[u8], customization: &[u8], out: &mut [u8]) {
    let mut prefix = Zeroizing::new(sp800_185_encode(KMAC256_RATE as u64, true));
    prefix.extend_from_slice(&sp800_185_encode(
        (key.len() as u64).saturating_mul(8),
        true,
    ));
    prefix.extend_from_slice(key);
    let padded = prefix.len().div_ceil(KMAC256_RATE) * KMAC256_RATE;
    prefix.resize(padded, 0);
    let mut cshake = CoreWrapper::from_core(sha3::CShake256Core::new_with_function_name(
        b"KMAC",
        customization,
    ));
    cshake.update(&prefix);
    cshake.update(data);
    cshake.update(&sp800_185_encode(
        (out.len() as u64).saturating_mul(8),
        false,
    ));
    cshake.finalize_xof().read(out);
}

/// The KDF of `ML-KEM-768+A192KW` as trustee and upstream compute it
/// (draft-ietf-jose-pqc-kem): `KMAC256(K = shared secret, X = AlgorithmID || SuppPubInfo,
/// L = 8·len(out), S = "")`, AlgorithmID = 32-bit big-endian length of `algorithm_id` then
/// its bytes, SuppPubInfo = the output length in bits, 32-bit big-endian.
pub fn kmac256_kdf(
    shared_secret: &[u8],
    algorithm_id: &str,
    out: &mut [u8],
) -> Result<(), JweError> {
    let id_len = u32::try_from(algorithm_id.len()).map_err(|_| JweError::KeyUnwrap)?;
    let bits = u32::try_from(out.len() * 8).map_err(|_| JweError::KeyUnwrap)?;
    let mut fixed_info = Vec::with_capacity(8 + algorithm_id.len());
    fixed_info.extend_from_slice(&id_len.to_be_bytes());
    fixed_info.extend_from_slice(algorithm_id.as_bytes());
    fixed_info.extend_from_slice(&bits.to_be_bytes());
    kmac256(shared_secret, &fixed_info, b"", out);
    Ok(())
}

/// SEC1 uncompressed encoding `04 || x || y`.
fn uncompressed_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

fn unwrap_with_kek(kek: &[u8; 32], encrypted_key: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
    exact_len("encrypted_key", encrypted_key, CEK_LEN + 8)?;
    let kek = aes_kw::KekAes256::from(*kek);
    let mut cek = Zeroizing::new(vec![0u8; CEK_LEN]);
    kek.unwrap(encrypted_key, &mut cek)
        .map_err(|_| JweError::KeyUnwrap)?;
    Ok(cek)
}

fn ecdh_es_cek(
    key: &KeyMaterial,
    header: &ProtectedHeader,
    encrypted_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let epk = header
        .epk
        .as_ref()
        .ok_or_else(|| JweError::InvalidEphemeralKey("no epk in the protected header".into()))?;
    if epk.kty != "EC" {
        return Err(JweError::InvalidEphemeralKey(format!(
            "epk kty {:?} is not EC",
            epk.kty
        )));
    }
    let x = b64("epk.x", &epk.x)?;
    let y = b64("epk.y", &epk.y)?;
    let shared: Zeroizing<Vec<u8>> = match key {
        KeyMaterial::P256(secret) => {
            if epk.crv != "P-256" {
                return Err(JweError::WrongCurve {
                    expected: "P-256",
                    found: epk.crv.clone(),
                });
            }
            exact_len("epk.x", &x, 32)?;
            exact_len("epk.y", &y, 32)?;
            let point = p256::EncodedPoint::from_bytes(uncompressed_point(&x, &y))
                .map_err(|e| JweError::InvalidEphemeralKey(e.to_string()))?;
            let public =
                Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
                    .ok_or_else(|| JweError::InvalidEphemeralKey("not a P-256 point".into()))?;
            let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
            Zeroizing::new(shared.raw_secret_bytes().to_vec())
        }
        KeyMaterial::P521(secret) => {
            if epk.crv != "P-521" {
                return Err(JweError::WrongCurve {
                    expected: "P-521",
                    found: epk.crv.clone(),
                });
            }
            exact_len("epk.x", &x, 66)?;
            exact_len("epk.y", &y, 66)?;
            let point = p521::EncodedPoint::from_bytes(uncompressed_point(&x, &y))
                .map_err(|e| JweError::InvalidEphemeralKey(e.to_string()))?;
            let public =
                Option::<p521::PublicKey>::from(p521::PublicKey::from_encoded_point(&point))
                    .ok_or_else(|| JweError::InvalidEphemeralKey("not a P-521 point".into()))?;
            let shared = p521::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
            Zeroizing::new(shared.raw_secret_bytes().to_vec())
        }
        other => {
            return Err(JweError::KeyMismatch {
                alg: header.alg.clone(),
                key: other.kind(),
            })
        }
    };
    let apu = header
        .apu
        .as_deref()
        .map(|v| b64("apu", v))
        .transpose()?
        .unwrap_or_default();
    let apv = header
        .apv
        .as_deref()
        .map(|v| b64("apv", v))
        .transpose()?
        .unwrap_or_default();
    let mut kek = Zeroizing::new([0u8; 32]);
    concat_kdf_sha256(&shared, ALG_ECDH_ES_A256KW, &apu, &apv, kek.as_mut())?;
    unwrap_with_kek(&kek, encrypted_key)
}

fn rsa_cek(
    key: &KeyMaterial,
    alg: &str,
    encrypted_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let KeyMaterial::Rsa(private) = key else {
        return Err(JweError::KeyMismatch {
            alg: alg.to_string(),
            key: key.kind(),
        });
    };
    let cek = if alg == ALG_RSA_OAEP_256 {
        private.decrypt(rsa::Oaep::new::<sha2::Sha256>(), encrypted_key)
    } else {
        private.decrypt(rsa::Pkcs1v15Encrypt, encrypted_key)
    }
    .map(Zeroizing::new)
    .map_err(|_| JweError::KeyUnwrap)?;
    exact_len("content key", &cek, CEK_LEN)?;
    Ok(cek)
}

/// `ML-KEM-768+A192KW`: decapsulate `ek`, derive the AES-192 key with the KMAC256 KDF,
/// unwrap the content key.
fn ml_kem_cek(
    key: &KeyMaterial,
    header: &ProtectedHeader,
    encrypted_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let KeyMaterial::MlKem768(private) = key else {
        return Err(JweError::KeyMismatch {
            alg: header.alg.clone(),
            key: key.kind(),
        });
    };
    let ciphertext = b64(
        "ek",
        header.ek.as_deref().ok_or(JweError::MissingKemCiphertext)?,
    )?;
    exact_len("ek", &ciphertext, ML_KEM_768_CIPHERTEXT_LEN)?;
    exact_len("encrypted_key", encrypted_key, CEK_LEN + 8)?;
    let mut shared = private
        .decapsulate_slice(&ciphertext)
        .map_err(|_| JweError::BadLength {
            member: "ek",
            expected: ML_KEM_768_CIPHERTEXT_LEN,
            found: ciphertext.len(),
        })?;
    let mut kek = Zeroizing::new([0u8; A192KW_KEY_LEN]);
    let derived = kmac256_kdf(shared.as_slice(), ALG_ML_KEM_768_A192KW, kek.as_mut());
    shared.as_mut_slice().zeroize();
    derived?;
    let mut cek = Zeroizing::new(vec![0u8; CEK_LEN]);
    aes_kw::KekAes192::from(*kek)
        .unwrap(encrypted_key, &mut cek)
        .map_err(|_| JweError::KeyUnwrap)?;
    Ok(cek)
}

impl TeeKeyPair {
    /// Decrypts a resource reply wrapped for this key.
    pub fn decrypt_jwe(
        &self,
        jwe: &JweResponse,
        options: JweOptions,
    ) -> Result<Zeroizing<Vec<u8>>, JweError> {
        let header_bytes = b64("protected", &jwe.protected)?;
        let header: ProtectedHeader =
            serde_json::from_slice(&header_bytes).map_err(|e| JweError::Header(e.to_string()))?;
        if let Some(crit) = &header.crit {
            return Err(JweError::UnsupportedCritical(crit.clone()));
        }
        if header.enc != ENC_A256GCM {
            return Err(JweError::UnsupportedEnc(header.enc));
        }
        let encrypted_key = b64("encrypted_key", &jwe.encrypted_key)?;
        let iv = b64("iv", &jwe.iv)?;
        let ciphertext = b64("ciphertext", &jwe.ciphertext)?;
        let tag = b64("tag", &jwe.tag)?;
        exact_len("iv", &iv, GCM_IV_LEN)?;
        exact_len("tag", &tag, GCM_TAG_LEN)?;

        let cek = match header.alg.as_str() {
            ALG_ECDH_ES_A256KW => ecdh_es_cek(&self.material, &header, &encrypted_key)?,
            ALG_RSA_OAEP_256 => rsa_cek(&self.material, ALG_RSA_OAEP_256, &encrypted_key)?,
            ALG_ML_KEM_768_A192KW => ml_kem_cek(&self.material, &header, &encrypted_key)?,
            ALG_RSA1_5 if options.allow_rsa1_5 => {
                rsa_cek(&self.material, ALG_RSA1_5, &encrypted_key)?
            }
            ALG_RSA1_5 => return Err(JweError::Rsa1_5NotAllowed),
            other => return Err(JweError::UnsupportedAlg(other.to_string())),
        };

        // RFC 7516 §5.2 step 14: AAD = ASCII(protected), plus '.' and the aad member if any.
        let mut aad = jwe.protected.as_bytes().to_vec();
        if let Some(extra) = &jwe.aad {
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        let mut sealed = ciphertext;
        sealed.extend_from_slice(&tag);
        let cipher = Aes256Gcm::new_from_slice(&cek).map_err(|_| JweError::KeyUnwrap)?;
        let iv_len = iv.len();
        let iv: [u8; GCM_IV_LEN] = iv.try_into().map_err(|_| JweError::BadLength {
            member: "iv",
            expected: GCM_IV_LEN,
            found: iv_len,
        })?;
        cipher
            .decrypt(
                &Nonce::from(iv),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| JweError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7518 Appendix C: Z from the example keys, A128GCM, apu "Alice", apv "Bob".
    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        let bob_d = URL_SAFE_NO_PAD
            .decode("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw")
            .unwrap();
        let bob = p256::SecretKey::from_slice(&bob_d).unwrap();
        let alice_x = URL_SAFE_NO_PAD
            .decode("gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0")
            .unwrap();
        let alice_y = URL_SAFE_NO_PAD
            .decode("SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps")
            .unwrap();
        let point = p256::EncodedPoint::from_bytes(uncompressed_point(&alice_x, &alice_y)).unwrap();
        let alice = p256::PublicKey::from_encoded_point(&point).unwrap();
        let z = p256::ecdh::diffie_hellman(bob.to_nonzero_scalar(), alice.as_affine());
        let mut derived = [0u8; 16];
        concat_kdf_sha256(
            z.raw_secret_bytes(),
            "A128GCM",
            b"Alice",
            b"Bob",
            &mut derived,
        )
        .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(derived), "VqqN6vgjbSBcIijNcacQGg");
    }

    /// NIST SP 800-185 KMAC samples #4 and #5 (KMAC256), as OpenSSL computes them too.
    #[test]
    fn kmac256_matches_the_nist_samples() {
        let key: Vec<u8> = (0x40..=0x5f).collect();
        let mut out = [0u8; 64];
        kmac256(&key, &[0, 1, 2, 3], b"My Tagged Application", &mut out);
        assert_eq!(
            hex(&out),
            "20c570c31346f703c9ac36c61c03cb64c3970d0cfc787e9b79599d273a68d2f7f69d4cc3de9d104a351689f27cf6f5951f0103f33f4f24871024d9c27773a8dd"
        );
        let data: Vec<u8> = (0x00..=0xc7).collect();
        kmac256(&key, &data, b"", &mut out);
        assert_eq!(
            hex(&out),
            "75358cf39e41494e949707927cee0af20a3ff553904c86b08f21cc414bcfd691589d27cf5e15369cbbff8b9a4c2eb17800855d0235ff635da82533ec6b759b69"
        );
        // the 24-byte KDF output of ML-KEM-768+A192KW for an all-zero secret (OpenSSL:
        // `openssl mac -macopt hexkey:00…00 -macopt size:24 KMAC256` over the fixed info)
        let mut kek = [0u8; 24];
        kmac256_kdf(&[0u8; 32], ALG_ML_KEM_768_A192KW, &mut kek).unwrap();
        assert_eq!(hex(&kek), ZERO_SECRET_KEK);
    }

    const ZERO_SECRET_KEK: &str = "5a532aa1c71c5bfe8ef4f3c32d4e6146992d6bd53fd0ccca";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn captured_jwe() -> JweResponse {
        serde_json::from_str(include_str!(
            "../../../testdata/wire/05-resource-response-jwe.json"
        ))
        .unwrap()
    }

    #[test]
    fn captured_trustee_reply_is_refused_cleanly_for_a_foreign_key() {
        // The capture's TEE private key was not recorded: a different P-256 key must fail
        // at the key unwrap (not panic, not decrypt), P-521 with WrongCurve, RSA with mismatch.
        let p256 = TeeKeyPair::generate(crate::TeeKeyAlgorithm::EcP256).unwrap();
        assert_eq!(
            p256.decrypt_jwe(&captured_jwe(), JweOptions::default()),
            Err(JweError::KeyUnwrap)
        );
        let p521 = TeeKeyPair::generate(crate::TeeKeyAlgorithm::EcP521).unwrap();
        assert!(matches!(
            p521.decrypt_jwe(&captured_jwe(), JweOptions::default()),
            Err(JweError::WrongCurve {
                expected: "P-521",
                ..
            })
        ));
    }

    #[test]
    fn malformed_members_give_typed_errors() {
        let key = TeeKeyPair::generate(crate::TeeKeyAlgorithm::EcP256).unwrap();
        let opts = JweOptions::default();

        let mut bad = captured_jwe();
        bad.protected.push('=');
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::Base64 {
                member: "protected"
            })
        );

        let mut bad = captured_jwe();
        bad.protected = URL_SAFE_NO_PAD.encode(br#"{"alg":"ECDH-ES+A256KW","enc":"A128GCM"}"#);
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::UnsupportedEnc("A128GCM".into()))
        );

        let mut bad = captured_jwe();
        bad.protected = URL_SAFE_NO_PAD.encode(br#"{"alg":"dir","enc":"A256GCM"}"#);
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::UnsupportedAlg("dir".into()))
        );

        let mut bad = captured_jwe();
        bad.protected = URL_SAFE_NO_PAD.encode(br#"{"alg":"RSA1_5","enc":"A256GCM"}"#);
        assert_eq!(key.decrypt_jwe(&bad, opts), Err(JweError::Rsa1_5NotAllowed));

        let mut bad = captured_jwe();
        bad.protected = URL_SAFE_NO_PAD.encode(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
        assert!(matches!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::KeyMismatch { key: "EC", .. })
        ));

        let mut bad = captured_jwe();
        bad.protected = URL_SAFE_NO_PAD.encode(br#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM"}"#);
        assert!(matches!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::InvalidEphemeralKey(_))
        ));

        let mut bad = captured_jwe();
        bad.protected = URL_SAFE_NO_PAD.encode(br#"["alg"]"#);
        assert!(matches!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::Header(_))
        ));

        let mut bad = captured_jwe();
        bad.protected =
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","crit":["exp"]}"#);
        assert!(matches!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::UnsupportedCritical(_))
        ));

        let mut bad = captured_jwe();
        bad.iv = URL_SAFE_NO_PAD.encode([0u8; 16]);
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::BadLength {
                member: "iv",
                expected: 12,
                found: 16
            })
        );

        let mut bad = captured_jwe();
        bad.tag = "!!".into();
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::Base64 { member: "tag" })
        );

        let mut bad = captured_jwe();
        bad.encrypted_key = URL_SAFE_NO_PAD.encode([0u8; 8]);
        assert_eq!(
            key.decrypt_jwe(&bad, opts),
            Err(JweError::BadLength {
                member: "encrypted_key",
                expected: 40,
                found: 8
            })
        );
    }

    #[test]
    fn ephemeral_key_off_the_curve_is_refused() {
        let key = TeeKeyPair::generate(crate::TeeKeyAlgorithm::EcP256).unwrap();
        let mut bad = captured_jwe();
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let y = URL_SAFE_NO_PAD.encode([2u8; 32]);
        bad.protected = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}}}"#
        ));
        assert!(matches!(
            key.decrypt_jwe(&bad, JweOptions::default()),
            Err(JweError::InvalidEphemeralKey(_))
        ));
    }
}
