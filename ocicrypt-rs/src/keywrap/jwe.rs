//! The `jwe` key wrapper: the private layer options encrypted as a JWE (RFC 7516) for one
//! or more recipients, content encryption `A256GCM`.
//!
//! Reads compact, flattened and general JSON serializations with key management
//! `RSA-OAEP` (SHA-1, what skopeo writes), `RSA-OAEP-256`, `ECDH-ES` and
//! `ECDH-ES+A128KW/A192KW/A256KW` on P-256/384/521. Writes what go-jose writes for
//! containers/ocicrypt: flattened JSON with everything in the protected header for one
//! recipient, general JSON with per-recipient headers for several.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use rand_core::{OsRng, RngCore};
use rsa::Oaep;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::{PrivateKey, PublicKey};

/// Upper bound for a JWE; a wrapped options packet is well under 10 KiB per recipient.
pub const MAX_JWE_LEN: usize = 1024 * 1024;
/// Upper bound for the number of recipients of one JWE.
pub const MAX_RECIPIENTS: usize = 256;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const ENC_A256GCM: &str = "A256GCM";

/// Why a JWE could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JweError {
    /// The JWE is not a well-formed serialization.
    #[error("malformed JWE: {0}")]
    Malformed(String),
    /// The JWE is larger than [`MAX_JWE_LEN`] or has too many recipients.
    #[error("JWE too large: {0}")]
    TooLarge(String),
    /// The key management algorithm is none of those this wrapper speaks.
    #[error("JWE key algorithm `{0}` is not supported (RSA-OAEP, RSA-OAEP-256, ECDH-ES, ECDH-ES+A128KW/A192KW/A256KW are)")]
    UnsupportedAlgorithm(String),
    /// The content encryption is not A256GCM.
    #[error("JWE content encryption `{0}` is not supported (A256GCM is)")]
    UnsupportedEncryption(String),
    /// A header parameter this implementation must not ignore (`crit`, `zip`).
    #[error("JWE header parameter `{0}` is not supported")]
    UnsupportedHeader(String),
    /// The key for a recipient is of the wrong type for its algorithm.
    #[error("the key does not fit algorithm {0}")]
    KeyMismatch(String),
    /// The content key could not be unwrapped (wrong key, or the wrapped key was altered).
    #[error("JWE content key could not be unwrapped with this key ({0})")]
    KeyUnwrap(String),
    /// The AES-GCM tag did not verify: ciphertext, tag, IV, header or key altered.
    #[error("JWE content failed authentication (A256GCM tag mismatch): the JWE was altered or the key is wrong")]
    ContentAuthentication,
    /// No configured private key opened any recipient.
    #[error("no private key opened the JWE ({0})")]
    NoMatchingKey(String),
    /// Decryption was asked for but no private key was configured.
    #[error("no JWE private key is configured")]
    NoPrivateKeys,
    /// Encryption failed.
    #[error("JWE encryption failed: {0}")]
    Encrypt(String),
}

/// The JWE key management algorithms this crate writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// `RSA-OAEP` (SHA-1), what containers/ocicrypt writes for RSA keys
    RsaOaep,
    /// `RSA-OAEP-256`
    RsaOaep256,
    /// `ECDH-ES+A256KW`, what containers/ocicrypt writes for EC keys
    EcdhEsA256kw,
}

impl KeyAlgorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::RsaOaep => "RSA-OAEP",
            KeyAlgorithm::RsaOaep256 => "RSA-OAEP-256",
            KeyAlgorithm::EcdhEsA256kw => "ECDH-ES+A256KW",
        }
    }

    /// Parses a JOSE name this crate can write.
    pub fn from_name(name: &str) -> Result<Self, JweError> {
        match name {
            "RSA-OAEP" => Ok(KeyAlgorithm::RsaOaep),
            "RSA-OAEP-256" => Ok(KeyAlgorithm::RsaOaep256),
            "ECDH-ES+A256KW" => Ok(KeyAlgorithm::EcdhEsA256kw),
            other => Err(JweError::UnsupportedAlgorithm(
                other.chars().take(64).collect(),
            )),
        }
    }

    /// containers/ocicrypt's choice for a key: RSA-OAEP for RSA, ECDH-ES+A256KW for EC.
    pub fn default_for(key: &PublicKey) -> Self {
        match key {
            PublicKey::Rsa(_) => KeyAlgorithm::RsaOaep,
            _ => KeyAlgorithm::EcdhEsA256kw,
        }
    }
}

/// A parsed JWE in any serialization.
#[derive(Debug, Clone)]
pub struct Jwe {
    /// the protected header exactly as received (base64url), the GCM AAD
    protected_b64: String,
    protected: Map<String, Value>,
    unprotected: Map<String, Value>,
    recipients: Vec<JweRecipient>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
    aad_b64: Option<String>,
}

#[derive(Debug, Clone)]
struct JweRecipient {
    header: Map<String, Value>,
    encrypted_key: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JweJson {
    protected: Option<String>,
    unprotected: Option<Map<String, Value>>,
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
    recipients: Option<Vec<RecipientJson>>,
    iv: Option<String>,
    ciphertext: String,
    tag: Option<String>,
    aad: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientJson {
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
}

fn b64url(field: &str, text: &str) -> Result<Vec<u8>, JweError> {
    B64URL
        .decode(text.trim_end_matches('='))
        .map_err(|_| JweError::Malformed(format!("`{field}` is not base64url")))
}

fn header_object(field: &str, b64: &str) -> Result<Map<String, Value>, JweError> {
    let json = b64url(field, b64)?;
    serde_json::from_slice(&json)
        .map_err(|e| JweError::Malformed(format!("`{field}` is not a JSON object: {e}")))
}

impl Jwe {
    /// Parses compact (`a.b.c.d.e`), flattened or general JSON serialization.
    pub fn parse(data: &[u8]) -> Result<Self, JweError> {
        if data.len() > MAX_JWE_LEN {
            return Err(JweError::TooLarge(format!("{} bytes", data.len())));
        }
        let text = std::str::from_utf8(data)
            .map_err(|_| JweError::Malformed("not UTF-8".into()))?
            .trim();
        if text.starts_with('{') {
            Self::parse_json(text)
        } else {
            Self::parse_compact(text)
        }
    }

    fn parse_compact(text: &str) -> Result<Self, JweError> {
        let parts: Vec<&str> = text.split('.').collect();
        let [protected_b64, encrypted_key, iv, ciphertext, tag] = parts[..] else {
            return Err(JweError::Malformed(format!(
                "compact serialization has {} parts, not 5",
                parts.len()
            )));
        };
        Ok(Jwe {
            protected: header_object("protected", protected_b64)?,
            protected_b64: protected_b64.to_string(),
            unprotected: Map::new(),
            recipients: vec![JweRecipient {
                header: Map::new(),
                encrypted_key: b64url("encrypted_key", encrypted_key)?,
            }],
            iv: b64url("iv", iv)?,
            ciphertext: b64url("ciphertext", ciphertext)?,
            tag: b64url("tag", tag)?,
            aad_b64: None,
        })
    }

    fn parse_json(text: &str) -> Result<Self, JweError> {
        let json: JweJson = serde_json::from_str(text)
            .map_err(|e| JweError::Malformed(format!("JSON serialization: {e}")))?;
        let recipients = match json.recipients {
            Some(list) => {
                if json.header.is_some() {
                    return Err(JweError::Malformed(
                        "both `recipients` and a flattened `header`".into(),
                    ));
                }
                if list.is_empty() {
                    return Err(JweError::Malformed("empty `recipients`".into()));
                }
                // go-jose also writes the first recipient's key at the top level of a
                // general serialization; tolerate exactly that.
                if let Some(top) = &json.encrypted_key {
                    if list[0].encrypted_key.as_deref() != Some(top.as_str()) {
                        return Err(JweError::Malformed(
                            "top-level `encrypted_key` differs from the first recipient's".into(),
                        ));
                    }
                }
                if list.len() > MAX_RECIPIENTS {
                    return Err(JweError::TooLarge(format!("{} recipients", list.len())));
                }
                list.into_iter()
                    .map(|r| {
                        Ok(JweRecipient {
                            header: r.header.unwrap_or_default(),
                            encrypted_key: b64url(
                                "encrypted_key",
                                r.encrypted_key.as_deref().unwrap_or(""),
                            )?,
                        })
                    })
                    .collect::<Result<Vec<_>, JweError>>()?
            }
            None => vec![JweRecipient {
                header: json.header.unwrap_or_default(),
                encrypted_key: b64url(
                    "encrypted_key",
                    json.encrypted_key.as_deref().unwrap_or(""),
                )?,
            }],
        };
        let protected_b64 = json.protected.unwrap_or_default();
        let protected = if protected_b64.is_empty() {
            Map::new()
        } else {
            header_object("protected", &protected_b64)?
        };
        let aad_b64 = json.aad;
        if let Some(aad) = &aad_b64 {
            b64url("aad", aad)?;
        }
        Ok(Jwe {
            protected_b64,
            protected,
            unprotected: json.unprotected.unwrap_or_default(),
            recipients,
            iv: b64url("iv", json.iv.as_deref().unwrap_or(""))?,
            ciphertext: b64url("ciphertext", &json.ciphertext)?,
            tag: b64url("tag", json.tag.as_deref().unwrap_or(""))?,
            aad_b64,
        })
    }

    /// Number of recipients.
    pub fn recipient_count(&self) -> usize {
        self.recipients.len()
    }

    /// The JOSE header of recipient `index`: protected ∪ shared unprotected ∪ per-recipient,
    /// which RFC 7516 requires to be disjoint.
    pub fn joint_header(&self, index: usize) -> Result<Map<String, Value>, JweError> {
        let recipient = self
            .recipients
            .get(index)
            .ok_or_else(|| JweError::Malformed(format!("no recipient {index}")))?;
        let mut joint = self.protected.clone();
        for source in [&self.unprotected, &recipient.header] {
            for (k, v) in source {
                if joint.insert(k.clone(), v.clone()).is_some() {
                    return Err(JweError::Malformed(format!(
                        "header parameter `{k}` appears in more than one header"
                    )));
                }
            }
        }
        for forbidden in ["crit", "zip"] {
            if joint.contains_key(forbidden) {
                return Err(JweError::UnsupportedHeader(forbidden.into()));
            }
        }
        Ok(joint)
    }

    /// Decrypts with the first private key that opens any recipient.
    pub fn decrypt(&self, keys: &[PrivateKey]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        if keys.is_empty() {
            return Err(JweError::NoPrivateKeys);
        }
        let mut reasons = Vec::new();
        let mut content_rejected = false;
        for index in 0..self.recipients.len() {
            let header = self.joint_header(index)?;
            for key in keys {
                match self.decrypt_recipient(index, &header, key) {
                    Ok(plain) => return Ok(plain),
                    Err(JweError::ContentAuthentication) => content_rejected = true,
                    Err(e) => reasons.push(format!("recipient {index}: {e}")),
                }
            }
        }
        // A content key was recovered but the content did not authenticate: the JWE was
        // altered (or, with direct ECDH-ES, the key was wrong). Say so rather than "no key".
        if content_rejected {
            return Err(JweError::ContentAuthentication);
        }
        Err(JweError::NoMatchingKey(reasons.join("; ")))
    }

    fn decrypt_recipient(
        &self,
        index: usize,
        header: &Map<String, Value>,
        key: &PrivateKey,
    ) -> Result<Zeroizing<Vec<u8>>, JweError> {
        let enc = header.get("enc").and_then(Value::as_str).unwrap_or("");
        if enc != ENC_A256GCM {
            return Err(JweError::UnsupportedEncryption(
                enc.chars().take(64).collect(),
            ));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| JweError::Malformed("no `alg` header".into()))?;
        let encrypted_key = &self.recipients[index].encrypted_key;
        let cek = unwrap_cek(alg, header, encrypted_key, key)?;
        self.decrypt_content(&cek)
    }

    fn decrypt_content(&self, cek: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        if cek.len() != 32 {
            return Err(JweError::KeyUnwrap(format!(
                "content key has {} bytes, A256GCM needs 32",
                cek.len()
            )));
        }
        if self.iv.len() != 12 {
            return Err(JweError::Malformed(format!(
                "A256GCM IV has {} bytes, not 12",
                self.iv.len()
            )));
        }
        if self.tag.len() != 16 {
            return Err(JweError::Malformed(format!(
                "A256GCM tag has {} bytes, not 16",
                self.tag.len()
            )));
        }
        let cipher = Aes256Gcm::new_from_slice(cek)
            .map_err(|_| JweError::KeyUnwrap("bad content key".into()))?;
        let mut aad = self.protected_b64.clone().into_bytes();
        if let Some(extra) = &self.aad_b64 {
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        let nonce: [u8; 12] = self
            .iv
            .as_slice()
            .try_into()
            .map_err(|_| JweError::Malformed("A256GCM IV is not 12 bytes".into()))?;
        let mut sealed = Vec::with_capacity(self.ciphertext.len() + 16);
        sealed.extend_from_slice(&self.ciphertext);
        sealed.extend_from_slice(&self.tag);
        cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| JweError::ContentAuthentication)
    }
}

/// Recovers the content key of one recipient.
fn unwrap_cek(
    alg: &str,
    header: &Map<String, Value>,
    encrypted_key: &[u8],
    key: &PrivateKey,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    match alg {
        "RSA-OAEP" | "RSA-OAEP-256" => {
            let PrivateKey::Rsa(rsa_key) = key else {
                return Err(JweError::KeyMismatch(alg.into()));
            };
            let padding = if alg == "RSA-OAEP" {
                Oaep::new::<sha1::Sha1>()
            } else {
                Oaep::new::<Sha256>()
            };
            rsa_key
                .decrypt(padding, encrypted_key)
                .map(Zeroizing::new)
                .map_err(|e| JweError::KeyUnwrap(e.to_string()))
        }
        "ECDH-ES" | "ECDH-ES+A128KW" | "ECDH-ES+A192KW" | "ECDH-ES+A256KW" => {
            let epk = header
                .get("epk")
                .ok_or_else(|| JweError::Malformed("ECDH-ES without `epk`".into()))?;
            let epk =
                serde_json::to_string(epk).map_err(|e| JweError::Malformed(format!("epk: {e}")))?;
            let z = ecdh_agree(key, &epk, alg)?;
            let apu = optional_b64url(header, "apu")?;
            let apv = optional_b64url(header, "apv")?;
            if alg == "ECDH-ES" {
                if !encrypted_key.is_empty() {
                    return Err(JweError::Malformed(
                        "ECDH-ES with a non-empty encrypted_key".into(),
                    ));
                }
                return concat_kdf(&z, ENC_A256GCM, &apu, &apv, 32);
            }
            let kek_len = match alg {
                "ECDH-ES+A128KW" => 16,
                "ECDH-ES+A192KW" => 24,
                _ => 32,
            };
            let kek = concat_kdf(&z, alg, &apu, &apv, kek_len)?;
            aes_key_unwrap(&kek, encrypted_key)
        }
        other => Err(JweError::UnsupportedAlgorithm(
            other.chars().take(64).collect(),
        )),
    }
}

fn optional_b64url(header: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JweError> {
    match header.get(name) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => b64url(name, s),
        Some(_) => Err(JweError::Malformed(format!("`{name}` is not a string"))),
    }
}

/// ECDH between our private key and the sender's ephemeral public key (a JWK).
fn ecdh_agree(key: &PrivateKey, epk_jwk: &str, alg: &str) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let bad_epk = |e: elliptic_curve::Error| JweError::Malformed(format!("epk: {e}"));
    let z = match key {
        PrivateKey::P256(sk) => {
            let epk = p256::PublicKey::from_jwk_str(epk_jwk).map_err(bad_epk)?;
            elliptic_curve::ecdh::diffie_hellman(sk.to_nonzero_scalar(), epk.as_affine())
                .raw_secret_bytes()
                .to_vec()
        }
        PrivateKey::P384(sk) => {
            let epk = p384::PublicKey::from_jwk_str(epk_jwk).map_err(bad_epk)?;
            elliptic_curve::ecdh::diffie_hellman(sk.to_nonzero_scalar(), epk.as_affine())
                .raw_secret_bytes()
                .to_vec()
        }
        PrivateKey::P521(sk) => {
            let epk = p521::PublicKey::from_jwk_str(epk_jwk).map_err(bad_epk)?;
            elliptic_curve::ecdh::diffie_hellman(sk.to_nonzero_scalar(), epk.as_affine())
                .raw_secret_bytes()
                .to_vec()
        }
        PrivateKey::Rsa(_) => return Err(JweError::KeyMismatch(alg.into())),
    };
    Ok(Zeroizing::new(z))
}

/// Concat KDF (NIST SP 800-56A) with SHA-256, as RFC 7518 section 4.6.2 uses it.
fn concat_kdf(
    z: &[u8],
    algorithm_id: &str,
    apu: &[u8],
    apv: &[u8],
    key_len: usize,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let mut other_info = Vec::with_capacity(16 + algorithm_id.len() + apu.len() + apv.len());
    for part in [algorithm_id.as_bytes(), apu, apv] {
        let len = u32::try_from(part.len())
            .map_err(|_| JweError::Malformed("KDF input too long".into()))?;
        other_info.extend_from_slice(&len.to_be_bytes());
        other_info.extend_from_slice(part);
    }
    other_info.extend_from_slice(&((key_len as u32) * 8).to_be_bytes());
    let mut out = Zeroizing::new(vec![0u8; key_len]);
    concat_kdf::derive_key_into::<Sha256>(z, &other_info, &mut out)
        .map_err(|e| JweError::KeyUnwrap(format!("concat KDF: {e:?}")))?;
    Ok(out)
}

fn aes_key_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return Err(JweError::KeyUnwrap(format!(
            "wrapped key of {} bytes",
            wrapped.len()
        )));
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len() - 8]);
    let result = match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek).map(|k| k.unwrap(wrapped, &mut out)),
        24 => aes_kw::KekAes192::try_from(kek).map(|k| k.unwrap(wrapped, &mut out)),
        _ => aes_kw::KekAes256::try_from(kek).map(|k| k.unwrap(wrapped, &mut out)),
    };
    match result {
        Ok(Ok(())) => Ok(out),
        _ => Err(JweError::KeyUnwrap(
            "AES key unwrap integrity check failed".into(),
        )),
    }
}

fn aes_key_wrap(kek: &[u8], cek: &[u8]) -> Result<Vec<u8>, JweError> {
    let mut out = vec![0u8; cek.len() + 8];
    aes_kw::KekAes256::try_from(kek)
        .map_err(|e| JweError::Encrypt(format!("{e:?}")))?
        .wrap(cek, &mut out)
        .map_err(|e| JweError::Encrypt(format!("{e:?}")))?;
    Ok(out)
}

/// One recipient's wrapped content key and the header parameters that go with it.
fn wrap_cek(
    cek: &[u8],
    key: &PublicKey,
    alg: KeyAlgorithm,
) -> Result<(Vec<u8>, Map<String, Value>), JweError> {
    let mut header = Map::new();
    header.insert("alg".into(), Value::String(alg.name().into()));
    let encrypted_key = match (alg, key) {
        (KeyAlgorithm::RsaOaep | KeyAlgorithm::RsaOaep256, PublicKey::Rsa(rsa_key)) => {
            let padding = if alg == KeyAlgorithm::RsaOaep {
                Oaep::new::<sha1::Sha1>()
            } else {
                Oaep::new::<Sha256>()
            };
            rsa_key
                .encrypt(&mut OsRng, padding, cek)
                .map_err(|e| JweError::Encrypt(e.to_string()))?
        }
        (KeyAlgorithm::EcdhEsA256kw, key) => {
            let (z, epk) = ecdh_ephemeral(key)?;
            header.insert("epk".into(), epk);
            let kek = concat_kdf(&z, alg.name(), &[], &[], 32)?;
            aes_key_wrap(&kek, cek)?
        }
        (alg, _) => return Err(JweError::KeyMismatch(alg.name().into())),
    };
    Ok((encrypted_key, header))
}

/// A fresh ephemeral key on the recipient's curve: the shared secret and the `epk` JWK.
fn ecdh_ephemeral(key: &PublicKey) -> Result<(Zeroizing<Vec<u8>>, Value), JweError> {
    macro_rules! agree {
        ($curve:ty, $pk:expr) => {{
            let eph = elliptic_curve::ecdh::EphemeralSecret::<$curve>::random(&mut OsRng);
            let z = eph.diffie_hellman($pk).raw_secret_bytes().to_vec();
            let epk = serde_json::to_value(eph.public_key().to_jwk())
                .map_err(|e| JweError::Encrypt(e.to_string()))?;
            (Zeroizing::new(z), epk)
        }};
    }
    Ok(match key {
        PublicKey::P256(pk) => agree!(p256::NistP256, pk),
        PublicKey::P384(pk) => agree!(p384::NistP384, pk),
        PublicKey::P521(pk) => agree!(p521::NistP521, pk),
        PublicKey::Rsa(_) => return Err(JweError::KeyMismatch("ECDH-ES+A256KW".into())),
    })
}

/// Encrypts `plaintext` for `recipients` the way go-jose does for containers/ocicrypt.
pub fn encrypt(
    plaintext: &[u8],
    recipients: &[(PublicKey, KeyAlgorithm)],
) -> Result<Vec<u8>, JweError> {
    if recipients.is_empty() {
        return Err(JweError::Encrypt("no recipient".into()));
    }
    let mut cek = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(cek.as_mut_slice());
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let mut wrapped = Vec::with_capacity(recipients.len());
    for (key, alg) in recipients {
        wrapped.push(wrap_cek(cek.as_slice(), key, *alg)?);
    }
    let mut protected = Map::new();
    protected.insert("enc".into(), Value::String(ENC_A256GCM.into()));
    if wrapped.len() == 1 {
        // go-jose moves a single recipient's header into the protected header.
        for (k, v) in std::mem::take(&mut wrapped[0].1) {
            protected.insert(k, v);
        }
    }
    let protected_json =
        serde_json::to_vec(&protected).map_err(|e| JweError::Encrypt(e.to_string()))?;
    let protected_b64 = B64URL.encode(protected_json);
    let cipher = Aes256Gcm::new_from_slice(cek.as_slice())
        .map_err(|_| JweError::Encrypt("content key".into()))?;
    let mut sealed = cipher
        .encrypt(
            &iv.into(),
            Payload {
                msg: plaintext,
                aad: protected_b64.as_bytes(),
            },
        )
        .map_err(|_| JweError::Encrypt("A256GCM".into()))?;
    let tag = sealed.split_off(sealed.len() - 16);
    let mut out = BTreeMap::<&str, Value>::new();
    out.insert("protected", Value::String(protected_b64));
    out.insert("iv", Value::String(B64URL.encode(iv)));
    out.insert("ciphertext", Value::String(B64URL.encode(&sealed)));
    out.insert("tag", Value::String(B64URL.encode(&tag)));
    if wrapped.len() == 1 {
        out.insert("encrypted_key", Value::String(B64URL.encode(&wrapped[0].0)));
    } else {
        let list = wrapped
            .into_iter()
            .map(|(ek, header)| {
                let mut r = Map::new();
                r.insert("header".into(), Value::Object(header));
                r.insert("encrypted_key".into(), Value::String(B64URL.encode(ek)));
                Value::Object(r)
            })
            .collect();
        out.insert("recipients", Value::Array(list));
    }
    serde_json::to_vec(&out).map_err(|e| JweError::Encrypt(e.to_string()))
}

/// The JWE key wrapper: annotation `org.opencontainers.image.enc.keys.jwe`.
#[derive(Debug, Default, Clone)]
pub struct JweKeyWrapper {
    recipients: Vec<(PublicKey, KeyAlgorithm)>,
    private_keys: Vec<PrivateKey>,
}

impl JweKeyWrapper {
    /// A wrapper with no keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a recipient with containers/ocicrypt's default algorithm for its key type.
    pub fn add_recipient(&mut self, key: PublicKey) {
        let alg = KeyAlgorithm::default_for(&key);
        self.recipients.push((key, alg));
    }

    /// Adds a recipient with an explicit algorithm (RSA-OAEP-256 for instance).
    pub fn add_recipient_with_algorithm(
        &mut self,
        key: PublicKey,
        alg: KeyAlgorithm,
    ) -> Result<(), JweError> {
        let fits = matches!(
            (&key, alg),
            (
                PublicKey::Rsa(_),
                KeyAlgorithm::RsaOaep | KeyAlgorithm::RsaOaep256
            ) | (
                PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_),
                KeyAlgorithm::EcdhEsA256kw
            )
        );
        if !fits {
            return Err(JweError::KeyMismatch(alg.name().into()));
        }
        self.recipients.push((key, alg));
        Ok(())
    }

    /// Adds a recipient from a key file (PEM, DER or JWK); a JWK's `alg` is honoured.
    pub fn add_recipient_from_bytes(&mut self, data: &[u8]) -> Result<(), crate::Error> {
        let key = crate::keys::parse_public_key(data)?;
        match crate::keys::jwk_algorithm(data) {
            Some(alg) => self.add_recipient_with_algorithm(key, KeyAlgorithm::from_name(&alg)?)?,
            None => self.add_recipient(key),
        }
        Ok(())
    }

    /// Adds a private key used to unwrap.
    pub fn add_private_key(&mut self, key: PrivateKey) {
        self.private_keys.push(key);
    }

    /// Whether the wrapper has recipients to wrap for.
    pub fn has_recipients(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// Whether the wrapper has private keys to unwrap with.
    pub fn has_private_keys(&self) -> bool {
        !self.private_keys.is_empty()
    }

    /// Encrypts `opts_data` for every recipient in one JWE.
    pub fn wrap(&self, opts_data: &[u8]) -> Result<Vec<u8>, JweError> {
        encrypt(opts_data, &self.recipients)
    }

    /// Decrypts a JWE with the configured private keys.
    pub fn unwrap(&self, jwe: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        Jwe::parse(jwe)?.decrypt(&self.private_keys)
    }
}

#[async_trait::async_trait]
impl super::KeyWrapper for JweKeyWrapper {
    fn scheme(&self) -> &str {
        "jwe"
    }

    fn can_wrap(&self) -> bool {
        self.has_recipients()
    }

    fn can_unwrap(&self) -> bool {
        self.has_private_keys()
    }

    async fn wrap_keys(&self, opts_data: &[u8]) -> crate::Result<Vec<u8>> {
        Ok(self.wrap(opts_data)?)
    }

    async fn unwrap_key(&self, packet: &[u8]) -> crate::Result<Zeroizing<Vec<u8>>> {
        Ok(self.unwrap(packet)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rsa_key() -> PrivateKey {
        PrivateKey::Rsa(Box::new(rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap()))
    }

    #[test]
    fn round_trips_for_every_algorithm_and_serialization() {
        let rsa = rsa_key();
        let keys = [
            rsa.clone(),
            PrivateKey::P256(p256::SecretKey::random(&mut OsRng)),
            PrivateKey::P384(p384::SecretKey::random(&mut OsRng)),
            PrivateKey::P521(p521::SecretKey::random(&mut OsRng)),
        ];
        for key in &keys {
            let public = key.public_key();
            let alg = KeyAlgorithm::default_for(&public);
            let jwe = encrypt(b"secret opts", &[(public, alg)]).unwrap();
            let parsed: Value = serde_json::from_slice(&jwe).unwrap();
            assert!(
                parsed.get("recipients").is_none(),
                "one recipient is flattened"
            );
            let header = header_object("protected", parsed["protected"].as_str().unwrap()).unwrap();
            assert_eq!(header["alg"], alg.name());
            assert_eq!(header["enc"], "A256GCM");
            let plain = Jwe::parse(&jwe)
                .unwrap()
                .decrypt(std::slice::from_ref(key))
                .unwrap();
            assert_eq!(plain.as_slice(), b"secret opts");
        }
        // several recipients: general serialization, each key opens it
        let recipients: Vec<_> = keys
            .iter()
            .map(|k| (k.public_key(), KeyAlgorithm::default_for(&k.public_key())))
            .chain([(rsa.public_key(), KeyAlgorithm::RsaOaep256)])
            .collect();
        let jwe = encrypt(b"multi", &recipients).unwrap();
        let parsed = Jwe::parse(&jwe).unwrap();
        assert_eq!(parsed.recipient_count(), 5);
        for key in &keys {
            assert_eq!(
                parsed
                    .decrypt(std::slice::from_ref(key))
                    .unwrap()
                    .as_slice(),
                b"multi"
            );
        }
        // a key that is no recipient
        let stranger = PrivateKey::P256(p256::SecretKey::random(&mut OsRng));
        assert!(matches!(
            parsed.decrypt(&[stranger]),
            Err(JweError::NoMatchingKey(_))
        ));
        assert!(matches!(parsed.decrypt(&[]), Err(JweError::NoPrivateKeys)));
    }

    #[test]
    fn tampering_is_detected() {
        let key = PrivateKey::P256(p256::SecretKey::random(&mut OsRng));
        let jwe = encrypt(b"opts", &[(key.public_key(), KeyAlgorithm::EcdhEsA256kw)]).unwrap();
        let value: Map<String, Value> = serde_json::from_slice(&jwe).unwrap();
        let flip = |field: &str| {
            let mut v = value.clone();
            let mut bytes = b64url(field, v[field].as_str().unwrap()).unwrap();
            bytes[0] ^= 1;
            v.insert(field.into(), Value::String(B64URL.encode(bytes)));
            Jwe::parse(&serde_json::to_vec(&v).unwrap())
                .unwrap()
                .decrypt(std::slice::from_ref(&key))
        };
        assert!(matches!(flip("tag"), Err(JweError::ContentAuthentication)));
        assert!(matches!(
            flip("ciphertext"),
            Err(JweError::ContentAuthentication)
        ));
        assert!(matches!(flip("iv"), Err(JweError::ContentAuthentication)));
        assert!(
            matches!(flip("encrypted_key"), Err(JweError::NoMatchingKey(m)) if m.contains("integrity"))
        );
    }

    #[test]
    fn parser_rejects_malformed_input() {
        for bad in [
            &b""[..],
            b"{",
            b"a.b.c",
            b"a.b.c.d.e.f",
            br#"{"ciphertext":"AA","protected":"!!"}"#,
            br#"{"ciphertext":"AA","recipients":[]}"#,
            br#"{"ciphertext":"AA","recipients":[{}],"encrypted_key":"AA"}"#,
            br#"{"ciphertext":"AA","recipients":[{}],"header":{}}"#,
            br#"{"ciphertext":5}"#,
            br#"{"ciphertext":"AA","extra":1}"#,
            br#"{"ciphertext":"AA","protected":"WzFd"}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(Jwe::parse(bad), Err(JweError::Malformed(_))),
                "accepted {}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            Jwe::parse(&vec![b' '; MAX_JWE_LEN + 1]),
            Err(JweError::TooLarge(_))
        ));
        let many = format!(
            r#"{{"ciphertext":"AA","recipients":[{}]}}"#,
            vec!["{}"; MAX_RECIPIENTS + 1].join(",")
        );
        assert!(matches!(
            Jwe::parse(many.as_bytes()),
            Err(JweError::TooLarge(_))
        ));
        // duplicate header parameter, crit, unknown alg/enc
        let key = rsa_key();
        let dup = format!(
            r#"{{"protected":"{}","header":{{"alg":"RSA-OAEP"}},"encrypted_key":"AA","iv":"AA","ciphertext":"AA","tag":"AA"}}"#,
            B64URL.encode(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
        );
        assert!(matches!(
            Jwe::parse(dup.as_bytes())
                .unwrap()
                .decrypt(std::slice::from_ref(&key)),
            Err(JweError::Malformed(_))
        ));
        let crit = format!(
            "{}.AA.AA.AA.AA",
            B64URL.encode(br#"{"alg":"RSA-OAEP","enc":"A256GCM","crit":["x"]}"#)
        );
        assert!(matches!(
            Jwe::parse(crit.as_bytes())
                .unwrap()
                .decrypt(std::slice::from_ref(&key)),
            Err(JweError::UnsupportedHeader(_))
        ));
        let cbc = format!(
            "{}.AA.AA.AA.AA",
            B64URL.encode(br#"{"alg":"RSA-OAEP","enc":"A128CBC-HS256"}"#)
        );
        assert!(matches!(
            Jwe::parse(cbc.as_bytes()).unwrap().decrypt(std::slice::from_ref(&key)),
            Err(JweError::NoMatchingKey(m)) if m.contains("A128CBC-HS256")
        ));
    }
}
