//! The layer cipher options, byte-for-byte as containers/ocicrypt writes them.
//!
//! Public options go, base64-encoded, into the `org.opencontainers.image.enc.pubopts`
//! annotation; private options are the plaintext every key wrapper wraps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::bytes::{b64, b64_map, b64_secret};
use crate::error::{Error, Result};

/// The only layer cipher of the OCI encryption spec.
pub(crate) const AES_256_CTR_HMAC_SHA256: &str = "AES_256_CTR_HMAC_SHA256";

/// Size of the layer key in bytes.
pub(crate) const KEY_LEN: usize = 32;
/// Size of the CTR nonce (initial counter block) in bytes.
pub(crate) const NONCE_LEN: usize = 16;
/// Size of the HMAC-SHA256 tag in bytes.
pub(crate) const HMAC_LEN: usize = 32;

/// Upper bound for an options JSON document; real ones are about 200 bytes.
pub(crate) const MAX_OPTIONS_JSON: usize = 64 * 1024;

/// `org.opencontainers.image.enc.pubopts`: `{"cipher","hmac","cipheroptions"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicLayerBlockCipherOptions {
    /// cipher name, `AES_256_CTR_HMAC_SHA256`
    #[serde(rename = "cipher", default)]
    pub cipher_type: String,
    /// HMAC-SHA256 over the whole ciphertext
    #[serde(with = "b64", default)]
    pub hmac: Vec<u8>,
    /// public cipher options (none are defined; kept for round trips)
    #[serde(rename = "cipheroptions", with = "b64_map", default)]
    pub cipher_options: BTreeMap<String, Vec<u8>>,
}

/// The wrapped plaintext: `{"symkey","digest","cipheroptions":{"nonce"}}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateLayerBlockCipherOptions {
    /// the 32-byte layer key
    #[serde(rename = "symkey", with = "b64_secret")]
    pub symmetric_key: Zeroizing<Vec<u8>>,
    /// digest of the plaintext layer blob (`sha256:<hex>`); empty when unknown
    #[serde(default)]
    pub digest: String,
    /// private cipher options: `nonce` (16 bytes)
    #[serde(rename = "cipheroptions", with = "b64_map", default)]
    pub cipher_options: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for PrivateLayerBlockCipherOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateLayerBlockCipherOptions")
            .field("symmetric_key", &"<redacted>")
            .field("digest", &self.digest)
            .field("cipher_options", &self.cipher_options)
            .finish()
    }
}

/// Both halves of a layer's cipher options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlockCipherOptions {
    /// what goes into `pubopts`
    pub public: PublicLayerBlockCipherOptions,
    /// what the key wrappers wrap
    pub private: PrivateLayerBlockCipherOptions,
}

impl PublicLayerBlockCipherOptions {
    /// Parses the JSON inside the `pubopts` annotation.
    pub fn from_json(data: &[u8]) -> Result<Self> {
        if data.len() > MAX_OPTIONS_JSON {
            return Err(Error::TooLarge {
                what: "public layer options",
                size: data.len(),
                limit: MAX_OPTIONS_JSON,
            });
        }
        crate::bytes::from_json_object(data).map_err(Error::json("public layer options"))
    }

    /// Parses the base64 value of the `pubopts` annotation.
    pub fn from_annotation(value: &str) -> Result<Self> {
        let json = crate::bytes::decode_b64(value.trim()).ok_or(Error::Base64 {
            what: "the pubopts annotation",
        })?;
        Self::from_json(&json)
    }

    /// The JSON containers/ocicrypt writes, e.g.
    /// `{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"…","cipheroptions":{}}`.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(Error::json("public layer options"))
    }

    /// The base64 value of the `pubopts` annotation.
    pub fn to_annotation(&self) -> Result<String> {
        use base64::Engine;
        Ok(crate::bytes::STD.encode(self.to_json()?))
    }
}

impl PrivateLayerBlockCipherOptions {
    /// Parses unwrapped private options; the JSON is wiped by the caller.
    pub fn from_json(data: &[u8]) -> Result<Self> {
        if data.len() > MAX_OPTIONS_JSON {
            return Err(Error::TooLarge {
                what: "private layer options",
                size: data.len(),
                limit: MAX_OPTIONS_JSON,
            });
        }
        crate::bytes::from_json_object(data).map_err(Error::json("private layer options"))
    }

    /// The JSON every key wrapper wraps, in a buffer wiped on drop.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>> {
        // Sized up front so the key is not left behind in a reallocated buffer.
        let mut out = Zeroizing::new(Vec::with_capacity(512));
        serde_json::to_writer(&mut *out, self).map_err(Error::json("private layer options"))?;
        Ok(out)
    }

    /// The nonce from `cipheroptions`, checked for size.
    pub fn nonce(&self) -> Result<[u8; NONCE_LEN]> {
        let nonce = self
            .cipher_options
            .get("nonce")
            .ok_or(Error::NonceLength(0))?;
        <[u8; NONCE_LEN]>::try_from(nonce.as_slice()).map_err(|_| Error::NonceLength(nonce.len()))
    }

    /// The key, checked for size.
    pub fn key(&self) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if self.symmetric_key.len() != KEY_LEN {
            return Err(Error::KeyLength(self.symmetric_key.len()));
        }
        key.copy_from_slice(&self.symmetric_key);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn public_options_json_is_what_ocicrypt_writes() {
        let opts = PublicLayerBlockCipherOptions {
            cipher_type: AES_256_CTR_HMAC_SHA256.into(),
            hmac: vec![1, 2, 3],
            cipher_options: BTreeMap::new(),
        };
        assert_eq!(
            String::from_utf8(opts.to_json().unwrap()).unwrap(),
            r#"{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"AQID","cipheroptions":{}}"#
        );
    }

    #[test]
    fn private_options_json_is_what_ocicrypt_writes() {
        let mut cipher_options = BTreeMap::new();
        cipher_options.insert("nonce".to_string(), vec![0u8; 16]);
        let opts = PrivateLayerBlockCipherOptions {
            symmetric_key: Zeroizing::new(vec![0xffu8; 32]),
            digest: "sha256:00".into(),
            cipher_options,
        };
        assert_eq!(
            String::from_utf8(opts.to_json().unwrap().to_vec()).unwrap(),
            r#"{"symkey":"//////////////////////////////////////////8=","digest":"sha256:00","cipheroptions":{"nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}}"#
        );
        let back = PrivateLayerBlockCipherOptions::from_json(&opts.to_json().unwrap()).unwrap();
        assert_eq!(back, opts);
        assert_eq!(back.nonce().unwrap(), [0u8; 16]);
    }

    #[test]
    fn options_accept_integer_arrays_and_missing_optionals() {
        let p = PrivateLayerBlockCipherOptions::from_json(
            br#"{"symkey":[1,2],"cipheroptions":{"nonce":[3]}}"#,
        )
        .unwrap();
        assert_eq!(p.symmetric_key.as_slice(), &[1, 2]);
        assert_eq!(p.digest, "");
        assert!(matches!(p.key(), Err(Error::KeyLength(2))));
        assert!(matches!(p.nonce(), Err(Error::NonceLength(1))));
        assert!(PublicLayerBlockCipherOptions::from_json(br#"["X"]"#).is_err());
        let q = PublicLayerBlockCipherOptions::from_json(br#"{"cipher":"X","hmac":null}"#).unwrap();
        assert!(q.hmac.is_empty() && q.cipher_options.is_empty());
    }

    #[test]
    fn options_reject_bad_input() {
        for bad in [
            &br#"{"symkey":"%%%"}"#[..],
            br#"{"symkey":"AAAA","digest":5}"#,
            br#"{"symkey":"AAAA","cipheroptions":{"nonce":"**"}}"#,
            br#"{"digest":"sha256:00"}"#,
            br#"{"symkey":"AAAA""#,
            br#"[]"#,
            b"",
        ] {
            assert!(
                matches!(
                    PrivateLayerBlockCipherOptions::from_json(bad),
                    Err(Error::Json { .. })
                ),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b' '; MAX_OPTIONS_JSON + 1];
        assert!(PublicLayerBlockCipherOptions::from_json(&huge).is_err());
        assert!(PrivateLayerBlockCipherOptions::from_json(&huge).is_err());
        assert!(matches!(
            PublicLayerBlockCipherOptions::from_annotation("!!"),
            Err(Error::Base64 { .. })
        ));
    }
}
