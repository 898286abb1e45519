//! JWE (RFC 7516) with content encryption `A256GCM` only.
//!
//! Reads compact, flattened and general JSON serializations; key management `RSA-OAEP`,
//! `RSA-OAEP-256`, `ECDH-ES` and `ECDH-ES+A128KW/A192KW/A256KW` on P-256/384/521,
//! `ML-KEM-768+A192KW` (feature `ml-kem`), and `RSA1_5` only when the caller allows it.
//! The AAD is the `protected` member exactly as received (§5.2), never a re-serialization.
//! Writes flattened JSON with everything in the protected header for one recipient (what
//! trustee and go-jose write) and general JSON with per-recipient headers for several.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::kdf::concat_kdf_key;
use crate::rsa::{OaepHash, RsaPrivateKey, RsaPublicKey};

/// Upper bound for a JWE; KBS replies and wrapped layer options are far smaller.
pub const MAX_JWE_LEN: usize = 1024 * 1024;
/// Upper bound for the number of recipients of one JWE.
pub const MAX_RECIPIENTS: usize = 256;

/// The only content encryption.
pub const ENC_A256GCM: &str = "A256GCM";
/// `RSA-OAEP` (SHA-1), what containers/ocicrypt writes for RSA keys.
pub(crate) const ALG_RSA_OAEP: &str = "RSA-OAEP";
/// `RSA-OAEP-256`, what the TEE's RSA key announces.
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
/// Deprecated RSA PKCS#1 v1.5 key transport, refused unless allowed.
pub(crate) const ALG_RSA1_5: &str = "RSA1_5";
/// Direct key agreement.
pub(crate) const ALG_ECDH_ES: &str = "ECDH-ES";
/// Key agreement with AES-128 key wrap.
pub(crate) const ALG_ECDH_ES_A128KW: &str = "ECDH-ES+A128KW";
/// Key agreement with AES-192 key wrap.
pub(crate) const ALG_ECDH_ES_A192KW: &str = "ECDH-ES+A192KW";
/// Key agreement with AES-256 key wrap: the TEE's EC keys and containers/ocicrypt.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// trustee's experimental post-quantum key management (draft-ietf-jose-pqc-kem): the
/// ML-KEM ciphertext in the `ek` header, a KMAC256 KDF, AES-192 key wrap.
pub const ALG_ML_KEM_768_A192KW: &str = "ML-KEM-768+A192KW";
/// Bytes of an ML-KEM-768 ciphertext (FIPS 203), the `ek` header.
#[cfg(feature = "ml-kem")]
pub(crate) const ML_KEM_768_CIPHERTEXT_LEN: usize = 1088;

const CEK_LEN: usize = 32;
const GCM_IV_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;
/// An AES key-wrapped 256-bit content key.
const WRAPPED_CEK_LEN: usize = CEK_LEN + 8;

/// Why a JWE could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// The serialization is malformed (JSON shape, part count, duplicate header member).
    #[error("malformed JWE: {0}")]
    Malformed(String),
    /// Larger than [`MAX_JWE_LEN`] or more than [`MAX_RECIPIENTS`] recipients.
    #[error("JWE too large: {0}")]
    TooLarge(String),
    /// A member is not base64url (unpadded).
    #[error("JWE member {member} is not valid base64url")]
    Base64 {
        /// the member
        member: &'static str,
    },
    /// The protected header is not a JSON object with string `alg` and `enc`.
    #[error("JWE protected header is not a JSON object with string alg and enc: {0}")]
    Header(String),
    /// The content encryption is not A256GCM.
    #[error("JWE content encryption {0:?} is not supported (only A256GCM)")]
    UnsupportedEnc(String),
    /// The key management algorithm is none of those this crate speaks.
    #[error("JWE key management algorithm {0:?} is not supported")]
    UnsupportedAlg(String),
    /// `RSA1_5` without the caller allowing it.
    #[error("JWE uses RSA1_5, which is refused unless allowed in the configuration")]
    Rsa1_5NotAllowed,
    /// A `crit` header: no extension is understood.
    #[error("JWE critical header parameters {0:?} are not understood")]
    UnsupportedCritical(Vec<String>),
    /// A header parameter that must not be ignored (`zip`).
    #[error("JWE header parameter `{0}` is not supported")]
    UnsupportedHeader(String),
    /// The key is of the wrong type for the algorithm.
    #[error("JWE algorithm {alg} does not fit the {key} key")]
    KeyMismatch {
        /// the JWE `alg`
        alg: String,
        /// the key family
        key: &'static str,
    },
    /// The ephemeral key is on another curve than the private key.
    #[error("JWE ephemeral key is on curve {found:?} but the private key is {expected}")]
    WrongCurve {
        /// the private key's curve
        expected: &'static str,
        /// the `epk` curve
        found: String,
    },
    /// The `epk` is missing or not a point.
    #[error("JWE ephemeral public key is missing or not a valid point: {0}")]
    InvalidEphemeralKey(String),
    /// `ML-KEM-768+A192KW` without `ek`.
    #[error(
        "JWE uses ML-KEM-768+A192KW but its protected header has no `ek` (the KEM ciphertext)"
    )]
    MissingKemCiphertext,
    /// A member has the wrong length.
    #[error("JWE member {member} has {found} bytes, expected {expected}")]
    BadLength {
        /// the member
        member: &'static str,
        /// the length it must have
        expected: usize,
        /// the length it has
        found: usize,
    },
    /// The content key could not be recovered (wrong key or altered `encrypted_key`).
    #[error("unwrapping the JWE content key failed (wrong key or tampered encrypted_key)")]
    KeyUnwrap,
    /// The AES-GCM tag did not verify.
    #[error("JWE authentication failed: tampered ciphertext, tag, iv or protected header, or the wrong key")]
    Decrypt,
    /// None of the keys opened any recipient.
    #[error("no private key opened the JWE ({0})")]
    NoMatchingKey(String),
    /// Decryption was asked for without any key.
    #[error("no JWE private key is configured")]
    NoPrivateKeys,
    /// Encryption failed.
    #[error("JWE encryption failed: {0}")]
    Encrypt(String),
}

/// How strict decryption is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JweOptions {
    /// Accept the deprecated `RSA1_5` key transport (off unless configured).
    pub allow_rsa1_5: bool,
}

/// A private key that may open a JWE, borrowed from the caller's key type.
#[derive(Clone, Copy)]
pub enum DecryptionKey<'a> {
    /// EC P-256
    P256(&'a p256::SecretKey),
    /// EC P-384
    P384(&'a p384::SecretKey),
    /// EC P-521
    P521(&'a p521::SecretKey),
    /// RSA (AWS-LC)
    Rsa(&'a RsaPrivateKey),
    /// ML-KEM-768
    #[cfg(feature = "ml-kem")]
    MlKem768(&'a ml_kem::DecapsulationKey768),
}

impl std::fmt::Debug for DecryptionKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecryptionKey({}, <redacted>)", self.kind())
    }
}

impl DecryptionKey<'_> {
    /// The key family, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            DecryptionKey::P256(_) | DecryptionKey::P384(_) | DecryptionKey::P521(_) => "EC",
            DecryptionKey::Rsa(_) => "RSA",
            #[cfg(feature = "ml-kem")]
            DecryptionKey::MlKem768(_) => "ML-KEM-768",
        }
    }
}

/// A public key to encrypt for.
#[derive(Debug, Clone, Copy)]
pub enum RecipientKey<'a> {
    /// EC P-256
    P256(&'a p256::PublicKey),
    /// EC P-384
    P384(&'a p384::PublicKey),
    /// EC P-521
    P521(&'a p521::PublicKey),
    /// RSA
    Rsa(&'a RsaPublicKey),
    /// ML-KEM-768
    #[cfg(feature = "ml-kem")]
    MlKem768(&'a ml_kem::EncapsulationKey768),
}

/// The key management algorithms this crate writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// `RSA-OAEP` (SHA-1), what containers/ocicrypt writes for RSA keys
    RsaOaep,
    /// `RSA-OAEP-256`
    RsaOaep256,
    /// `RSA1_5`, written only by the test KBS to check that clients refuse it
    Rsa1_5,
    /// `ECDH-ES+A256KW`
    EcdhEsA256kw,
    /// `ML-KEM-768+A192KW`
    #[cfg(feature = "ml-kem")]
    MlKem768A192kw,
}

impl KeyAlgorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::RsaOaep => ALG_RSA_OAEP,
            KeyAlgorithm::RsaOaep256 => ALG_RSA_OAEP_256,
            KeyAlgorithm::Rsa1_5 => ALG_RSA1_5,
            KeyAlgorithm::EcdhEsA256kw => ALG_ECDH_ES_A256KW,
            #[cfg(feature = "ml-kem")]
            KeyAlgorithm::MlKem768A192kw => ALG_ML_KEM_768_A192KW,
        }
    }

    /// Parses a JOSE name this crate can write.
    pub fn from_name(name: &str) -> Result<Self, JweError> {
        match name {
            ALG_RSA_OAEP => Ok(KeyAlgorithm::RsaOaep),
            ALG_RSA_OAEP_256 => Ok(KeyAlgorithm::RsaOaep256),
            ALG_RSA1_5 => Ok(KeyAlgorithm::Rsa1_5),
            ALG_ECDH_ES_A256KW => Ok(KeyAlgorithm::EcdhEsA256kw),
            #[cfg(feature = "ml-kem")]
            ALG_ML_KEM_768_A192KW => Ok(KeyAlgorithm::MlKem768A192kw),
            other => Err(JweError::UnsupportedAlg(truncate(other))),
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
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

fn header_object(b64_text: &str) -> Result<Map<String, Value>, JweError> {
    let json = b64("protected", b64_text)?;
    serde_json::from_slice(&json).map_err(|e| JweError::Header(e.to_string()))
}

/// A parsed JWE in any serialization.
#[derive(Debug, Clone)]
pub struct Jwe {
    /// the protected header exactly as received (base64url), the GCM AAD
    protected_b64: String,
    protected: Map<String, Value>,
    unprotected: Map<String, Value>,
    recipients: Vec<Recipient>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
    aad_b64: Option<String>,
}

#[derive(Debug, Clone)]
struct Recipient {
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

/// The members of a flattened JSON serialization, as a caller's wire type holds them.
#[derive(Debug, Clone, Copy)]
pub struct Flattened<'a> {
    /// `protected`
    pub protected: &'a str,
    /// `encrypted_key`
    pub encrypted_key: &'a str,
    /// `iv`
    pub iv: &'a str,
    /// `ciphertext`
    pub ciphertext: &'a str,
    /// `tag`
    pub tag: &'a str,
    /// `aad`, if any
    pub aad: Option<&'a str>,
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

    /// A flattened JWE from its members.
    pub fn from_flattened(parts: Flattened<'_>) -> Result<Self, JweError> {
        let protected = header_object(parts.protected)?;
        let aad_b64 = parts.aad.map(str::to_string);
        if let Some(aad) = &aad_b64 {
            b64("aad", aad)?;
        }
        Ok(Jwe {
            protected,
            protected_b64: parts.protected.to_string(),
            unprotected: Map::new(),
            recipients: vec![Recipient {
                header: Map::new(),
                encrypted_key: b64("encrypted_key", parts.encrypted_key)?,
            }],
            iv: b64("iv", parts.iv)?,
            ciphertext: b64("ciphertext", parts.ciphertext)?,
            tag: b64("tag", parts.tag)?,
            aad_b64,
        })
    }

    fn parse_compact(text: &str) -> Result<Self, JweError> {
        let parts: Vec<&str> = text.split('.').collect();
        let [protected, encrypted_key, iv, ciphertext, tag] = parts[..] else {
            return Err(JweError::Malformed(format!(
                "compact serialization has {} parts, not 5",
                parts.len()
            )));
        };
        Self::from_flattened(Flattened {
            protected,
            encrypted_key,
            iv,
            ciphertext,
            tag,
            aad: None,
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
                let Some(first) = list.first() else {
                    return Err(JweError::Malformed("empty `recipients`".into()));
                };
                // go-jose also writes the first recipient's key at the top level of a
                // general serialization; tolerate exactly that.
                if let Some(top) = &json.encrypted_key {
                    if first.encrypted_key.as_deref() != Some(top.as_str()) {
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
                        Ok(Recipient {
                            header: r.header.unwrap_or_default(),
                            encrypted_key: b64(
                                "encrypted_key",
                                r.encrypted_key.as_deref().unwrap_or(""),
                            )?,
                        })
                    })
                    .collect::<Result<Vec<_>, JweError>>()?
            }
            None => vec![Recipient {
                header: json.header.unwrap_or_default(),
                encrypted_key: b64("encrypted_key", json.encrypted_key.as_deref().unwrap_or(""))?,
            }],
        };
        let protected_b64 = json.protected.unwrap_or_default();
        let protected = if protected_b64.is_empty() {
            Map::new()
        } else {
            header_object(&protected_b64)?
        };
        if let Some(aad) = &json.aad {
            b64("aad", aad)?;
        }
        Ok(Jwe {
            protected_b64,
            protected,
            unprotected: json.unprotected.unwrap_or_default(),
            recipients,
            iv: b64("iv", json.iv.as_deref().unwrap_or(""))?,
            ciphertext: b64("ciphertext", &json.ciphertext)?,
            tag: b64("tag", json.tag.as_deref().unwrap_or(""))?,
            aad_b64: json.aad,
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
                        "header parameter `{}` appears in more than one header",
                        truncate(k)
                    )));
                }
            }
        }
        if let Some(crit) = joint.get("crit") {
            let names = crit
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|v| truncate(v.as_str().unwrap_or("?")))
                        .take(16)
                        .collect()
                })
                .unwrap_or_default();
            return Err(JweError::UnsupportedCritical(names));
        }
        if joint.contains_key("zip") {
            return Err(JweError::UnsupportedHeader("zip".into()));
        }
        Ok(joint)
    }

    /// Opens recipient `index` with `key`; errors say exactly what failed.
    pub fn decrypt_recipient(
        &self,
        index: usize,
        key: DecryptionKey<'_>,
        options: JweOptions,
    ) -> Result<Zeroizing<Vec<u8>>, JweError> {
        let header = self.joint_header(index)?;
        self.open(index, &header, key, options)
    }

    /// Opens the JWE with the first key that opens any recipient.
    pub fn decrypt(
        &self,
        keys: &[DecryptionKey<'_>],
        options: JweOptions,
    ) -> Result<Zeroizing<Vec<u8>>, JweError> {
        if keys.is_empty() {
            return Err(JweError::NoPrivateKeys);
        }
        let headers = (0..self.recipients.len())
            .map(|index| self.joint_header(index))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reasons = Vec::new();
        let mut content_rejected = false;
        for (index, header) in headers.iter().enumerate() {
            for key in keys {
                match self.open(index, header, *key, options) {
                    Ok(plain) => return Ok(plain),
                    Err(JweError::Decrypt) => content_rejected = true,
                    Err(e) => reasons.push(format!("recipient {index}: {e}")),
                }
            }
        }
        // A content key was recovered but the content did not authenticate: the JWE was
        // altered (or the key was wrong where that cannot be told earlier). Say so.
        if content_rejected {
            return Err(JweError::Decrypt);
        }
        Err(JweError::NoMatchingKey(reasons.join("; ")))
    }

    fn open(
        &self,
        index: usize,
        header: &Map<String, Value>,
        key: DecryptionKey<'_>,
        options: JweOptions,
    ) -> Result<Zeroizing<Vec<u8>>, JweError> {
        let enc = header
            .get("enc")
            .and_then(Value::as_str)
            .ok_or_else(|| JweError::Header("no string `enc`".into()))?;
        if enc != ENC_A256GCM {
            return Err(JweError::UnsupportedEnc(truncate(enc)));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| JweError::Header("no string `alg`".into()))?;
        exact_len("iv", &self.iv, GCM_IV_LEN)?;
        exact_len("tag", &self.tag, GCM_TAG_LEN)?;
        let encrypted_key = self
            .recipients
            .get(index)
            .map(|r| r.encrypted_key.as_slice())
            .unwrap_or_default();
        let cek = unwrap_cek(alg, header, encrypted_key, key, options)?;
        self.decrypt_content(&cek)
    }

    fn decrypt_content(&self, cek: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        // RFC 7516 §5.2 step 14: AAD = ASCII(protected), plus '.' and the aad member if any.
        let mut aad = self.protected_b64.clone().into_bytes();
        if let Some(extra) = &self.aad_b64 {
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        let nonce: [u8; GCM_IV_LEN] =
            self.iv
                .as_slice()
                .try_into()
                .map_err(|_| JweError::BadLength {
                    member: "iv",
                    expected: GCM_IV_LEN,
                    found: self.iv.len(),
                })?;
        let mut sealed = Vec::with_capacity(self.ciphertext.len() + GCM_TAG_LEN);
        sealed.extend_from_slice(&self.ciphertext);
        sealed.extend_from_slice(&self.tag);
        let cipher = Aes256Gcm::new_from_slice(cek).map_err(|_| JweError::KeyUnwrap)?;
        cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| JweError::Decrypt)
    }
}

fn optional_b64(header: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JweError> {
    match header.get(name) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => b64(name, s),
        Some(_) => Err(JweError::Header(format!("`{name}` is not a string"))),
    }
}

/// Recovers the content key of one recipient.
fn unwrap_cek(
    alg: &str,
    header: &Map<String, Value>,
    encrypted_key: &[u8],
    key: DecryptionKey<'_>,
    options: JweOptions,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let mismatch = || JweError::KeyMismatch {
        alg: truncate(alg),
        key: key.kind(),
    };
    match alg {
        ALG_RSA1_5 => {
            if !options.allow_rsa1_5 {
                return Err(JweError::Rsa1_5NotAllowed);
            }
            let DecryptionKey::Rsa(rsa) = key else {
                return Err(mismatch());
            };
            // Implicit rejection: a bad padding gives a random key, and the failure shows
            // only as the tag mismatch (RFC 7516 §11.5).
            Ok(rsa.decrypt_pkcs1v15_key(encrypted_key, CEK_LEN))
        }
        ALG_RSA_OAEP | ALG_RSA_OAEP_256 => {
            let DecryptionKey::Rsa(rsa) = key else {
                return Err(mismatch());
            };
            let hash = if alg == ALG_RSA_OAEP {
                OaepHash::Sha1
            } else {
                OaepHash::Sha256
            };
            let cek = rsa
                .decrypt_oaep(hash, encrypted_key)
                .map_err(|_| JweError::KeyUnwrap)?;
            exact_len("content key", &cek, CEK_LEN)?;
            Ok(cek)
        }
        ALG_ECDH_ES | ALG_ECDH_ES_A128KW | ALG_ECDH_ES_A192KW | ALG_ECDH_ES_A256KW => {
            let shared = ecdh(key, header, alg)?;
            let apu = optional_b64(header, "apu")?;
            let apv = optional_b64(header, "apv")?;
            if alg == ALG_ECDH_ES {
                if !encrypted_key.is_empty() {
                    return Err(JweError::Malformed(
                        "ECDH-ES with a non-empty encrypted_key".into(),
                    ));
                }
                return concat_kdf_key(&shared, ENC_A256GCM, &apu, &apv, CEK_LEN);
            }
            let kek_len = match alg {
                ALG_ECDH_ES_A128KW => 16,
                ALG_ECDH_ES_A192KW => 24,
                _ => 32,
            };
            let kek = concat_kdf_key(&shared, alg, &apu, &apv, kek_len)?;
            aes_key_unwrap(&kek, encrypted_key)
        }
        #[cfg(feature = "ml-kem")]
        ALG_ML_KEM_768_A192KW => {
            use ml_kem::Decapsulate;
            use zeroize::Zeroize;
            let DecryptionKey::MlKem768(private) = key else {
                return Err(mismatch());
            };
            let ek = match header.get("ek") {
                None => return Err(JweError::MissingKemCiphertext),
                Some(Value::String(s)) => b64("ek", s)?,
                Some(_) => return Err(JweError::Header("`ek` is not a string".into())),
            };
            exact_len("ek", &ek, ML_KEM_768_CIPHERTEXT_LEN)?;
            exact_len("encrypted_key", encrypted_key, WRAPPED_CEK_LEN)?;
            let mut shared = private
                .decapsulate_slice(&ek)
                .map_err(|_| JweError::BadLength {
                    member: "ek",
                    expected: ML_KEM_768_CIPHERTEXT_LEN,
                    found: ek.len(),
                })?;
            let mut kek = Zeroizing::new(vec![0u8; 24]);
            let derived = crate::kdf::kmac256_kdf(shared.as_slice(), alg, &mut kek);
            shared.as_mut_slice().zeroize();
            derived?;
            aes_key_unwrap(&kek, encrypted_key)
        }
        other => Err(JweError::UnsupportedAlg(truncate(other))),
    }
}

/// The members of an `epk` JWK.
struct Epk {
    crv: String,
    x: Vec<u8>,
    y: Vec<u8>,
}

fn epk(header: &Map<String, Value>) -> Result<Epk, JweError> {
    let invalid = |what: &str| JweError::InvalidEphemeralKey(what.to_string());
    let epk = header
        .get("epk")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("no epk object in the header"))?;
    let member = |name: &str| {
        epk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("epk has no string {name}")))
    };
    let kty = member("kty")?;
    if kty != "EC" {
        return Err(invalid(&format!("epk kty {:?} is not EC", truncate(kty))));
    }
    Ok(Epk {
        crv: truncate(member("crv")?),
        x: b64("epk.x", member("x")?)?,
        y: b64("epk.y", member("y")?)?,
    })
}

/// ECDH between our private key and the sender's ephemeral public key.
fn ecdh(
    key: DecryptionKey<'_>,
    header: &Map<String, Value>,
    alg: &str,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    macro_rules! agree {
        ($curve:ident, $name:literal, $len:literal, $secret:expr, $epk:expr) => {{
            if $epk.crv != $name {
                return Err(JweError::WrongCurve {
                    expected: $name,
                    found: $epk.crv,
                });
            }
            exact_len("epk.x", &$epk.x, $len)?;
            exact_len("epk.y", &$epk.y, $len)?;
            let mut point = Vec::with_capacity(1 + 2 * $len);
            point.push(0x04);
            point.extend_from_slice(&$epk.x);
            point.extend_from_slice(&$epk.y);
            let point = $curve::EncodedPoint::from_bytes(point)
                .map_err(|e| JweError::InvalidEphemeralKey(e.to_string()))?;
            let public =
                Option::<$curve::PublicKey>::from($curve::PublicKey::from_encoded_point(&point))
                    .ok_or_else(|| {
                        JweError::InvalidEphemeralKey(concat!("not a ", $name, " point").into())
                    })?;
            let shared =
                $curve::ecdh::diffie_hellman($secret.to_nonzero_scalar(), public.as_affine());
            Zeroizing::new(shared.raw_secret_bytes().to_vec())
        }};
    }
    let shared = match key {
        DecryptionKey::P256(secret) => agree!(p256, "P-256", 32, secret, epk(header)?),
        DecryptionKey::P384(secret) => agree!(p384, "P-384", 48, secret, epk(header)?),
        DecryptionKey::P521(secret) => agree!(p521, "P-521", 66, secret, epk(header)?),
        _ => {
            return Err(JweError::KeyMismatch {
                alg: truncate(alg),
                key: key.kind(),
            })
        }
    };
    Ok(shared)
}

fn aes_key_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
    exact_len("encrypted_key", wrapped, WRAPPED_CEK_LEN)?;
    let mut cek = Zeroizing::new(vec![0u8; CEK_LEN]);
    let result = match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek).map(|k| k.unwrap(wrapped, &mut cek)),
        24 => aes_kw::KekAes192::try_from(kek).map(|k| k.unwrap(wrapped, &mut cek)),
        _ => aes_kw::KekAes256::try_from(kek).map(|k| k.unwrap(wrapped, &mut cek)),
    };
    match result {
        Ok(Ok(())) => Ok(cek),
        _ => Err(JweError::KeyUnwrap),
    }
}

fn aes_key_wrap(kek: &[u8], cek: &[u8]) -> Result<Vec<u8>, JweError> {
    let mut out = vec![0u8; cek.len() + 8];
    let result = match kek.len() {
        24 => aes_kw::KekAes192::try_from(kek).map(|k| k.wrap(cek, &mut out)),
        _ => aes_kw::KekAes256::try_from(kek).map(|k| k.wrap(cek, &mut out)),
    };
    match result {
        Ok(Ok(())) => Ok(out),
        _ => Err(JweError::Encrypt("AES key wrap".into())),
    }
}

/// A fresh ephemeral key on the recipient's curve: the shared secret and the `epk` JWK.
fn ecdh_ephemeral(key: RecipientKey<'_>) -> Result<(Zeroizing<Vec<u8>>, Value), JweError> {
    macro_rules! agree {
        ($curve:ident, $name:literal, $pk:expr) => {{
            let eph = $curve::ecdh::EphemeralSecret::random(&mut OsRng);
            let z = Zeroizing::new(eph.diffie_hellman($pk).raw_secret_bytes().to_vec());
            let point = eph.public_key().to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(JweError::Encrypt("ephemeral key at infinity".into()));
            };
            let mut epk = Map::new();
            epk.insert("crv".into(), $name.into());
            epk.insert("kty".into(), "EC".into());
            epk.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
            epk.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
            (z, Value::Object(epk))
        }};
    }
    Ok(match key {
        RecipientKey::P256(pk) => agree!(p256, "P-256", pk),
        RecipientKey::P384(pk) => agree!(p384, "P-384", pk),
        RecipientKey::P521(pk) => agree!(p521, "P-521", pk),
        _ => {
            return Err(JweError::KeyMismatch {
                alg: ALG_ECDH_ES_A256KW.into(),
                key: "non-EC",
            })
        }
    })
}

/// One recipient's wrapped content key and the header parameters that go with it.
fn wrap_cek(
    cek: &[u8],
    key: RecipientKey<'_>,
    alg: KeyAlgorithm,
) -> Result<(Vec<u8>, Map<String, Value>), JweError> {
    let mut header = Map::new();
    header.insert("alg".into(), alg.name().into());
    let mismatch = || JweError::KeyMismatch {
        alg: alg.name().into(),
        key: "given",
    };
    let encrypted_key = match (alg, key) {
        (KeyAlgorithm::RsaOaep, RecipientKey::Rsa(rsa)) => rsa
            .encrypt_oaep(OaepHash::Sha1, cek)
            .map_err(|e| JweError::Encrypt(e.to_string()))?,
        (KeyAlgorithm::RsaOaep256, RecipientKey::Rsa(rsa)) => rsa
            .encrypt_oaep(OaepHash::Sha256, cek)
            .map_err(|e| JweError::Encrypt(e.to_string()))?,
        (KeyAlgorithm::Rsa1_5, RecipientKey::Rsa(rsa)) => rsa
            .encrypt_pkcs1v15(cek)
            .map_err(|e| JweError::Encrypt(e.to_string()))?,
        (KeyAlgorithm::EcdhEsA256kw, key) => {
            let (z, epk) = ecdh_ephemeral(key)?;
            header.insert("epk".into(), epk);
            let kek = concat_kdf_key(&z, alg.name(), &[], &[], 32)?;
            aes_key_wrap(&kek, cek)?
        }
        #[cfg(feature = "ml-kem")]
        (KeyAlgorithm::MlKem768A192kw, RecipientKey::MlKem768(ek)) => {
            use ml_kem::Encapsulate;
            let (ciphertext, shared) = ek.encapsulate();
            let mut kek = Zeroizing::new(vec![0u8; 24]);
            crate::kdf::kmac256_kdf(shared.as_slice(), alg.name(), &mut kek)?;
            header.insert(
                "ek".into(),
                URL_SAFE_NO_PAD.encode(ciphertext.as_slice()).into(),
            );
            aes_key_wrap(&kek, cek)?
        }
        _ => return Err(mismatch()),
    };
    Ok((encrypted_key, header))
}

/// Encrypts `plaintext` for `recipients` with A256GCM: flattened JSON with everything in
/// the protected header for one recipient, general JSON with per-recipient headers for
/// several (as go-jose writes for containers/ocicrypt).
pub fn encrypt(
    plaintext: &[u8],
    recipients: &[(RecipientKey<'_>, KeyAlgorithm)],
) -> Result<Value, JweError> {
    if recipients.is_empty() {
        return Err(JweError::Encrypt("no recipient".into()));
    }
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    OsRng.fill_bytes(cek.as_mut_slice());
    let mut iv = [0u8; GCM_IV_LEN];
    OsRng.fill_bytes(&mut iv);
    let mut wrapped = Vec::with_capacity(recipients.len());
    for (key, alg) in recipients {
        wrapped.push(wrap_cek(cek.as_slice(), *key, *alg)?);
    }
    let mut protected = Map::new();
    protected.insert("enc".into(), ENC_A256GCM.into());
    if let [(_, header)] = wrapped.as_mut_slice() {
        protected.append(header);
    }
    let protected_b64 = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&protected).map_err(|e| JweError::Encrypt(e.to_string()))?);
    let mut sealed = Aes256Gcm::new_from_slice(cek.as_slice())
        .map_err(|_| JweError::Encrypt("content key".into()))?
        .encrypt(
            &iv.into(),
            Payload {
                msg: plaintext,
                aad: protected_b64.as_bytes(),
            },
        )
        .map_err(|_| JweError::Encrypt("A256GCM".into()))?;
    let tag = sealed.split_off(sealed.len() - GCM_TAG_LEN);
    let mut out = Map::new();
    out.insert("ciphertext".into(), URL_SAFE_NO_PAD.encode(&sealed).into());
    if let [(encrypted_key, _)] = wrapped.as_slice() {
        out.insert(
            "encrypted_key".into(),
            URL_SAFE_NO_PAD.encode(encrypted_key).into(),
        );
    }
    out.insert("iv".into(), URL_SAFE_NO_PAD.encode(iv).into());
    out.insert("protected".into(), protected_b64.into());
    if wrapped.len() > 1 {
        let list = wrapped
            .into_iter()
            .map(|(encrypted_key, header)| {
                let mut r = Map::new();
                r.insert(
                    "encrypted_key".into(),
                    URL_SAFE_NO_PAD.encode(encrypted_key).into(),
                );
                r.insert("header".into(), Value::Object(header));
                Value::Object(r)
            })
            .collect();
        out.insert("recipients".into(), Value::Array(list));
    }
    out.insert("tag".into(), URL_SAFE_NO_PAD.encode(&tag).into());
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    enum Owned {
        P256(p256::SecretKey),
        P384(p384::SecretKey),
        P521(p521::SecretKey),
        Rsa(RsaPrivateKey),
        #[cfg(feature = "ml-kem")]
        MlKem(
            Box<ml_kem::DecapsulationKey768>,
            Box<ml_kem::EncapsulationKey768>,
        ),
    }

    impl Owned {
        fn key(&self) -> DecryptionKey<'_> {
            match self {
                Owned::P256(k) => DecryptionKey::P256(k),
                Owned::P384(k) => DecryptionKey::P384(k),
                Owned::P521(k) => DecryptionKey::P521(k),
                Owned::Rsa(k) => DecryptionKey::Rsa(k),
                #[cfg(feature = "ml-kem")]
                Owned::MlKem(k, _) => DecryptionKey::MlKem768(k),
            }
        }

        /// Encrypts for this key with `alg` and hands the recipient to `f`.
        fn seal(&self, plaintext: &[u8], alg: KeyAlgorithm) -> Value {
            match self {
                Owned::P256(k) => encrypt(plaintext, &[(RecipientKey::P256(&k.public_key()), alg)]),
                Owned::P384(k) => encrypt(plaintext, &[(RecipientKey::P384(&k.public_key()), alg)]),
                Owned::P521(k) => encrypt(plaintext, &[(RecipientKey::P521(&k.public_key()), alg)]),
                Owned::Rsa(k) => encrypt(plaintext, &[(RecipientKey::Rsa(&k.public_key()), alg)]),
                #[cfg(feature = "ml-kem")]
                Owned::MlKem(_, ek) => encrypt(plaintext, &[(RecipientKey::MlKem768(ek), alg)]),
            }
            .unwrap()
        }
    }

    fn keys() -> Vec<(Owned, KeyAlgorithm)> {
        let rsa = RsaPrivateKey::generate_2048().unwrap();
        #[cfg_attr(not(feature = "ml-kem"), allow(unused_mut))]
        let mut keys = vec![
            (
                Owned::P256(p256::SecretKey::random(&mut OsRng)),
                KeyAlgorithm::EcdhEsA256kw,
            ),
            (
                Owned::P384(p384::SecretKey::random(&mut OsRng)),
                KeyAlgorithm::EcdhEsA256kw,
            ),
            (
                Owned::P521(p521::SecretKey::random(&mut OsRng)),
                KeyAlgorithm::EcdhEsA256kw,
            ),
            (Owned::Rsa(rsa.clone()), KeyAlgorithm::RsaOaep),
            (Owned::Rsa(rsa), KeyAlgorithm::RsaOaep256),
        ];
        #[cfg(feature = "ml-kem")]
        {
            let (dk, ek) = <ml_kem::MlKem768 as ml_kem::Kem>::generate_keypair();
            keys.push((
                Owned::MlKem(Box::new(dk), Box::new(ek)),
                KeyAlgorithm::MlKem768A192kw,
            ));
        }
        keys
    }

    fn parse(value: &Value) -> Jwe {
        Jwe::parse(&serde_json::to_vec(value).unwrap()).unwrap()
    }

    fn flip(value: &Value, member: &str) -> Value {
        let mut value = value.clone();
        let mut bytes = URL_SAFE_NO_PAD
            .decode(value[member].as_str().unwrap())
            .unwrap();
        bytes[0] ^= 1;
        value[member] = URL_SAFE_NO_PAD.encode(bytes).into();
        value
    }

    #[test]
    fn round_trips_for_every_algorithm_and_detects_tampering() {
        let opts = JweOptions::default();
        for (key, alg) in keys() {
            for plaintext in [&b""[..], b"x", &[0x5a; 4096][..]] {
                let jwe = key.seal(plaintext, alg);
                assert!(
                    jwe.get("recipients").is_none(),
                    "one recipient is flattened"
                );
                let header = header_object(jwe["protected"].as_str().unwrap()).unwrap();
                assert_eq!(header["alg"], alg.name());
                assert_eq!(header["enc"], "A256GCM");
                let parsed = parse(&jwe);
                let plain = parsed.decrypt_recipient(0, key.key(), opts).unwrap();
                assert_eq!(plain.as_slice(), plaintext);
                assert_eq!(
                    parsed.decrypt(&[key.key()], opts).unwrap().as_slice(),
                    plaintext
                );
            }
            let jwe = key.seal(b"secret", alg);
            for member in ["tag", "ciphertext", "iv"] {
                assert_eq!(
                    parse(&flip(&jwe, member)).decrypt_recipient(0, key.key(), opts),
                    Err(JweError::Decrypt),
                    "{alg:?} {member}"
                );
            }
            assert_eq!(
                parse(&flip(&jwe, "encrypted_key")).decrypt_recipient(0, key.key(), opts),
                Err(JweError::KeyUnwrap),
                "{alg:?}"
            );
            // the AAD is the protected member as received: the same header re-encoded
            // with its members in another order does not authenticate
            let mut reordered = jwe.clone();
            let header = header_object(jwe["protected"].as_str().unwrap()).unwrap();
            let mut members: Vec<String> = header
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect();
            members.reverse();
            reordered["protected"] = URL_SAFE_NO_PAD
                .encode(format!("{{{}}}", members.join(",")))
                .into();
            assert_ne!(reordered["protected"], jwe["protected"]);
            assert_eq!(
                parse(&reordered).decrypt_recipient(0, key.key(), opts),
                Err(JweError::Decrypt)
            );
        }
    }

    #[test]
    fn several_recipients_use_the_general_serialization() {
        let keys = keys();
        let publics: Vec<_> = keys.iter().map(|(k, alg)| (k, *alg)).collect();
        let p256 = match &publics[0].0 {
            Owned::P256(k) => k.public_key(),
            _ => unreachable!(),
        };
        let rsa = match &publics[3].0 {
            Owned::Rsa(k) => k.public_key(),
            _ => unreachable!(),
        };
        let jwe = encrypt(
            b"multi",
            &[
                (RecipientKey::P256(&p256), KeyAlgorithm::EcdhEsA256kw),
                (RecipientKey::Rsa(&rsa), KeyAlgorithm::RsaOaep),
            ],
        )
        .unwrap();
        assert!(jwe.get("encrypted_key").is_none());
        let parsed = parse(&jwe);
        assert_eq!(parsed.recipient_count(), 2);
        let opts = JweOptions::default();
        assert_eq!(
            parsed.decrypt(&[keys[0].0.key()], opts).unwrap().as_slice(),
            b"multi"
        );
        assert_eq!(
            parsed.decrypt(&[keys[3].0.key()], opts).unwrap().as_slice(),
            b"multi"
        );
        let stranger = p256::SecretKey::random(&mut OsRng);
        assert!(matches!(
            parsed.decrypt(&[DecryptionKey::P256(&stranger)], opts),
            Err(JweError::NoMatchingKey(_))
        ));
        assert_eq!(parsed.decrypt(&[], opts), Err(JweError::NoPrivateKeys));
    }

    #[test]
    fn rsa1_5_is_refused_unless_allowed_and_never_reports_padding() {
        let key = RsaPrivateKey::generate_2048().unwrap();
        let public = key.public_key();
        let jwe = encrypt(
            b"legacy",
            &[(RecipientKey::Rsa(&public), KeyAlgorithm::Rsa1_5)],
        )
        .unwrap();
        let parsed = parse(&jwe);
        let rsa = DecryptionKey::Rsa(&key);
        assert_eq!(
            parsed.decrypt_recipient(0, rsa, JweOptions::default()),
            Err(JweError::Rsa1_5NotAllowed)
        );
        let allow = JweOptions { allow_rsa1_5: true };
        assert_eq!(
            parsed.decrypt_recipient(0, rsa, allow).unwrap().as_slice(),
            b"legacy"
        );
        // a damaged key transport is not told apart from damaged content
        assert_eq!(
            parse(&flip(&jwe, "encrypted_key")).decrypt_recipient(0, rsa, allow),
            Err(JweError::Decrypt)
        );
        let ec = p256::SecretKey::random(&mut OsRng);
        assert_eq!(
            parsed.decrypt_recipient(0, DecryptionKey::P256(&ec), JweOptions::default()),
            Err(JweError::Rsa1_5NotAllowed)
        );
    }

    fn with_header(base: &Value, header: &str) -> Jwe {
        let mut value = base.clone();
        value["protected"] = URL_SAFE_NO_PAD.encode(header).into();
        parse(&value)
    }

    #[test]
    fn hostile_headers_give_typed_errors() {
        let key = p256::SecretKey::random(&mut OsRng);
        let base = encrypt(
            b"x",
            &[(
                RecipientKey::P256(&key.public_key()),
                KeyAlgorithm::EcdhEsA256kw,
            )],
        )
        .unwrap();
        let k = DecryptionKey::P256(&key);
        let opts = JweOptions::default();
        let err = |header: &str| {
            with_header(&base, header)
                .decrypt_recipient(0, k, opts)
                .unwrap_err()
        };
        assert_eq!(
            err(r#"{"alg":"ECDH-ES+A256KW","enc":"A128GCM"}"#),
            JweError::UnsupportedEnc("A128GCM".into())
        );
        assert_eq!(
            err(r#"{"alg":"dir","enc":"A256GCM"}"#),
            JweError::UnsupportedAlg("dir".into())
        );
        assert_eq!(
            err(r#"{"alg":"RSA1_5","enc":"A256GCM"}"#),
            JweError::Rsa1_5NotAllowed
        );
        assert_eq!(
            err(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#),
            JweError::KeyMismatch {
                alg: "RSA-OAEP-256".into(),
                key: "EC"
            }
        );
        assert!(matches!(
            err(r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM"}"#),
            JweError::InvalidEphemeralKey(_)
        ));
        assert!(matches!(err(r#"{"enc":"A256GCM"}"#), JweError::Header(_)));
        assert!(matches!(
            err(r#"{"alg":"ECDH-ES+A256KW"}"#),
            JweError::Header(_)
        ));
        assert_eq!(
            err(r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","crit":["exp"]}"#),
            JweError::UnsupportedCritical(vec!["exp".into()])
        );
        assert_eq!(
            err(r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","zip":"DEF"}"#),
            JweError::UnsupportedHeader("zip".into())
        );
        let epk = |crv: &str, x: &[u8], y: &[u8]| {
            format!(
                r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}"}}}}"#,
                URL_SAFE_NO_PAD.encode(x),
                URL_SAFE_NO_PAD.encode(y)
            )
        };
        assert!(matches!(
            err(&epk("P-256", &[1; 32], &[2; 32])),
            JweError::InvalidEphemeralKey(_)
        ));
        assert_eq!(
            err(&epk("P-521", &[1; 66], &[2; 66])),
            JweError::WrongCurve {
                expected: "P-256",
                found: "P-521".into()
            }
        );
        assert_eq!(
            err(&epk("P-256", &[1; 31], &[2; 32])),
            JweError::BadLength {
                member: "epk.x",
                expected: 32,
                found: 31
            }
        );
        assert!(matches!(
            err(r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"kty":"OKP"}}"#),
            JweError::InvalidEphemeralKey(_)
        ));
        // a header that is not an object
        let mut bad = base.clone();
        bad["protected"] = URL_SAFE_NO_PAD.encode(r#"["alg"]"#).into();
        assert!(matches!(
            Jwe::parse(&serde_json::to_vec(&bad).unwrap()),
            Err(JweError::Header(_))
        ));
        // lengths
        let mut bad = base.clone();
        bad["iv"] = URL_SAFE_NO_PAD.encode([0u8; 16]).into();
        assert_eq!(
            parse(&bad).decrypt_recipient(0, k, opts),
            Err(JweError::BadLength {
                member: "iv",
                expected: 12,
                found: 16
            })
        );
        let mut bad = base.clone();
        bad["encrypted_key"] = URL_SAFE_NO_PAD.encode([0u8; 8]).into();
        assert_eq!(
            parse(&bad).decrypt_recipient(0, k, opts),
            Err(JweError::BadLength {
                member: "encrypted_key",
                expected: 40,
                found: 8
            })
        );
        // duplicate header parameter
        let mut dup = base.clone();
        dup["header"] = serde_json::json!({"alg": "ECDH-ES+A256KW"});
        assert!(matches!(
            parse(&dup).decrypt(&[k], opts),
            Err(JweError::Malformed(_))
        ));
    }

    #[test]
    fn parser_rejects_malformed_input() {
        for bad in [
            &b""[..],
            b"{",
            b"a.b.c",
            b"a.b.c.d.e.f",
            br#"{"ciphertext":"AA","recipients":[]}"#,
            br#"{"ciphertext":"AA","recipients":[{}],"encrypted_key":"AA"}"#,
            br#"{"ciphertext":"AA","recipients":[{}],"header":{}}"#,
            br#"{"ciphertext":5}"#,
            br#"{"ciphertext":"AA","extra":1}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(Jwe::parse(bad), Err(JweError::Malformed(_))),
                "accepted {}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            Jwe::parse(br#"{"ciphertext":"AA","protected":"!!"}"#).unwrap_err(),
            JweError::Base64 {
                member: "protected"
            }
        );
        assert!(matches!(
            Jwe::parse(br#"{"ciphertext":"AA","protected":"WzFd"}"#),
            Err(JweError::Header(_))
        ));
        assert_eq!(
            Jwe::parse(br#"{"ciphertext":"AA","tag":"AA=="}"#).unwrap_err(),
            JweError::Base64 { member: "tag" }
        );
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
    }

    #[cfg(feature = "ml-kem")]
    #[test]
    fn ml_kem_headers_are_checked() {
        let keys = keys();
        let (key, alg) = keys.last().unwrap();
        let jwe = key.seal(b"pq", *alg);
        let header = header_object(jwe["protected"].as_str().unwrap()).unwrap();
        let opts = JweOptions::default();
        let rebuilt = |edit: &dyn Fn(&mut Map<String, Value>)| {
            let mut h = header.clone();
            edit(&mut h);
            with_header(&jwe, &Value::Object(h).to_string())
                .decrypt_recipient(0, key.key(), opts)
                .unwrap_err()
        };
        assert_eq!(
            rebuilt(&|h| {
                h.remove("ek");
            }),
            JweError::MissingKemCiphertext
        );
        assert_eq!(
            rebuilt(&|h| {
                h.insert("ek".into(), URL_SAFE_NO_PAD.encode([0u8; 1000]).into());
            }),
            JweError::BadLength {
                member: "ek",
                expected: 1088,
                found: 1000
            }
        );
        assert_eq!(
            rebuilt(&|h| {
                h.insert("ek".into(), "!!".into());
            }),
            JweError::Base64 { member: "ek" }
        );
        let ec = p256::SecretKey::random(&mut OsRng);
        assert_eq!(
            parse(&jwe).decrypt_recipient(0, DecryptionKey::P256(&ec), opts),
            Err(JweError::KeyMismatch {
                alg: "ML-KEM-768+A192KW".into(),
                key: "EC"
            })
        );
    }
}
