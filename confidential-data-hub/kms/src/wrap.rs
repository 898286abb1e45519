//! The symmetric wraps of CoCo (spec 4.1): what envelope sealed secrets and layer-key
//! annotation packets use between a 32-byte key and the protected bytes.
//!
//! - `A256GCM`: AES-256-GCM, 12-byte IV, the output is ciphertext ‖ 16-byte tag, no AAD.
//! - `A256CTR`: AES-256-CTR, 16-byte IV used as a 128-bit big-endian counter, no integrity
//!   (accepted for compatibility; prefer A256GCM).

use std::{fmt, str::FromStr};

use aes_gcm::{
    aead::{Aead, KeyInit},
    Aes256Gcm,
};
use ctr::cipher::{KeyIvInit, StreamCipher};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// Length of the key of both wraps.
pub const WRAP_KEY_LEN: usize = 32;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Why a wrap could not be opened or made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// `wrap_type` names no known wrap.
    #[error("wrap type `{0}` is not supported; use A256GCM or A256CTR")]
    UnsupportedWrapType(String),
    /// The key is not 32 bytes.
    #[error("the wrapping key has {0} bytes; AES-256 needs 32")]
    KeyLength(usize),
    /// The IV does not fit the wrap.
    #[error("{wrap_type} needs a {expected}-byte IV; this one has {found} bytes")]
    IvLength {
        /// the wrap
        wrap_type: WrapType,
        /// what it needs
        expected: usize,
        /// what was given
        found: usize,
    },
    /// AES-GCM refused the ciphertext: it was altered, or the key is not the one it was
    /// sealed with.
    #[error("A256GCM authentication failed: the data was altered or the key is wrong")]
    Authentication,
}

/// A symmetric wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrapType {
    /// AES-256-GCM
    A256Gcm,
    /// AES-256-CTR
    A256Ctr,
}

impl WrapType {
    /// The wire name, `A256GCM` or `A256CTR`.
    pub fn name(self) -> &'static str {
        match self {
            WrapType::A256Gcm => "A256GCM",
            WrapType::A256Ctr => "A256CTR",
        }
    }

    /// The IV length the wrap needs.
    pub fn iv_len(self) -> usize {
        match self {
            WrapType::A256Gcm => 12,
            WrapType::A256Ctr => 16,
        }
    }

    fn check_iv(self, iv: &[u8]) -> Result<(), WrapError> {
        if iv.len() == self.iv_len() {
            Ok(())
        } else {
            Err(WrapError::IvLength {
                wrap_type: self,
                expected: self.iv_len(),
                found: iv.len(),
            })
        }
    }
}

impl fmt::Display for WrapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WrapType {
    type Err = WrapError;

    /// Exactly `A256GCM` or `A256CTR` (the names are case-sensitive on the wire).
    fn from_str(name: &str) -> Result<Self, WrapError> {
        match name {
            "A256GCM" => Ok(WrapType::A256Gcm),
            "A256CTR" => Ok(WrapType::A256Ctr),
            other => Err(WrapError::UnsupportedWrapType(
                other.chars().take(64).collect(),
            )),
        }
    }
}

fn check_key(key: &[u8]) -> Result<(), WrapError> {
    if key.len() == WRAP_KEY_LEN {
        Ok(())
    } else {
        Err(WrapError::KeyLength(key.len()))
    }
}

/// Opens `data` wrapped with `key` and `iv`.
pub fn unwrap(
    wrap_type: WrapType,
    key: &[u8],
    iv: &[u8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, WrapError> {
    check_key(key)?;
    wrap_type.check_iv(iv)?;
    match wrap_type {
        WrapType::A256Gcm => Aes256Gcm::new(key.into())
            .decrypt(iv.into(), data)
            .map(Zeroizing::new)
            .map_err(|_| WrapError::Authentication),
        WrapType::A256Ctr => {
            let mut out = Zeroizing::new(data.to_vec());
            Aes256Ctr::new(key.into(), iv.into()).apply_keystream(&mut out);
            Ok(out)
        }
    }
}

/// Wraps `plaintext` with `key` and a fresh random IV; returns `(iv, wrapped)`.
pub fn wrap(
    wrap_type: WrapType,
    key: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), WrapError> {
    let mut iv = vec![0u8; wrap_type.iv_len()];
    OsRng.fill_bytes(&mut iv);
    let wrapped = wrap_with_iv(wrap_type, key, &iv, plaintext)?;
    Ok((iv, wrapped))
}

/// Wraps `plaintext` with `key` and the caller's `iv` (which must never repeat for a key).
pub fn wrap_with_iv(
    wrap_type: WrapType,
    key: &[u8],
    iv: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, WrapError> {
    check_key(key)?;
    wrap_type.check_iv(iv)?;
    match wrap_type {
        WrapType::A256Gcm => Aes256Gcm::new(key.into())
            .encrypt(iv.into(), plaintext)
            // only fails for plaintexts beyond GCM's 64 GiB limit
            .map_err(|_| WrapError::Authentication),
        WrapType::A256Ctr => {
            let mut out = plaintext.to_vec();
            Aes256Ctr::new(key.into(), iv.into()).apply_keystream(&mut out);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_exact() {
        for wrap_type in [WrapType::A256Gcm, WrapType::A256Ctr] {
            assert_eq!(wrap_type.name().parse::<WrapType>().unwrap(), wrap_type);
            assert_eq!(wrap_type.to_string(), wrap_type.name());
        }
        for bad in ["a256gcm", "A256GCM ", "", "A128GCM", "RSA-OAEP"] {
            assert_eq!(
                bad.parse::<WrapType>(),
                Err(WrapError::UnsupportedWrapType(bad.to_string()))
            );
        }
        let long = "X".repeat(1000);
        match long.parse::<WrapType>() {
            Err(WrapError::UnsupportedWrapType(shown)) => assert_eq!(shown.len(), 64),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gcm_matches_the_nist_test_vector() {
        // NIST GCM test case 14 (AES-256, 96-bit IV, 16 zero bytes of plaintext)
        let key = [0u8; 32];
        let iv = [0u8; 12];
        let wrapped = wrap_with_iv(WrapType::A256Gcm, &key, &iv, &[0u8; 16]).unwrap();
        assert_eq!(
            hex::encode(&wrapped),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
        assert_eq!(
            unwrap(WrapType::A256Gcm, &key, &iv, &wrapped)
                .unwrap()
                .as_slice(),
            [0u8; 16]
        );
    }

    #[test]
    fn ctr_matches_the_nist_test_vector() {
        // NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt), first block
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap();
        let iv = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").unwrap();
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let wrapped = wrap_with_iv(WrapType::A256Ctr, &key, &iv, &plain).unwrap();
        assert_eq!(hex::encode(&wrapped), "601ec313775789a5b7a7f504bbf3d228");
        assert_eq!(
            unwrap(WrapType::A256Ctr, &key, &iv, &wrapped)
                .unwrap()
                .as_slice(),
            plain
        );
    }

    #[test]
    fn round_trips_with_fresh_ivs() {
        let key = [9u8; 32];
        for wrap_type in [WrapType::A256Gcm, WrapType::A256Ctr] {
            let (iv1, wrapped1) = wrap(wrap_type, &key, b"secret").unwrap();
            let (iv2, _) = wrap(wrap_type, &key, b"secret").unwrap();
            assert_eq!(iv1.len(), wrap_type.iv_len());
            assert_ne!(iv1, iv2);
            assert_eq!(
                unwrap(wrap_type, &key, &iv1, &wrapped1).unwrap().as_slice(),
                b"secret"
            );
        }
    }

    #[test]
    fn bad_inputs_have_their_own_errors() {
        let key = [1u8; 32];
        let (iv, mut wrapped) = wrap(WrapType::A256Gcm, &key, b"data").unwrap();
        assert_eq!(
            unwrap(WrapType::A256Gcm, &[1u8; 16], &iv, &wrapped),
            Err(WrapError::KeyLength(16))
        );
        assert_eq!(
            unwrap(WrapType::A256Gcm, &key, &iv[..11], &wrapped),
            Err(WrapError::IvLength {
                wrap_type: WrapType::A256Gcm,
                expected: 12,
                found: 11
            })
        );
        assert_eq!(
            unwrap(WrapType::A256Ctr, &key, &iv, &wrapped),
            Err(WrapError::IvLength {
                wrap_type: WrapType::A256Ctr,
                expected: 16,
                found: 12
            })
        );
        assert_eq!(
            unwrap(WrapType::A256Gcm, &[2u8; 32], &iv, &wrapped),
            Err(WrapError::Authentication)
        );
        // truncated below the tag, and a flipped bit
        assert_eq!(
            unwrap(WrapType::A256Gcm, &key, &iv, &wrapped[..10]),
            Err(WrapError::Authentication)
        );
        wrapped[0] ^= 1;
        assert_eq!(
            unwrap(WrapType::A256Gcm, &key, &iv, &wrapped),
            Err(WrapError::Authentication)
        );
        assert_eq!(
            wrap(WrapType::A256Ctr, &[0u8; 31], b"x"),
            Err(WrapError::KeyLength(31))
        );
    }
}
