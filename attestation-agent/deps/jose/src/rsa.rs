//! RSA for JWE key transport and PKCS#7 key transport, on AWS-LC.
//!
//! Every private-key operation here sees peer input (a KBS reply, an image's layer-key
//! packet), so it runs in AWS-LC, whose RSA decryption is constant-time: the `rsa` crate's
//! is not (RUSTSEC-2023-0071, the Marvin attack, no patched release). PKCS#1 v1.5
//! decryption additionally never reports a padding failure: it returns a random key of the
//! expected length instead (RFC 7516 §11.5, RFC 3218 §2.3.2), so the failure shows up
//! only later, as an authentication failure of the content, like any other wrong key.
//! AWS-LC wipes key memory when it frees it.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, Pkcs1PrivateDecryptingKey,
    Pkcs1PublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1,
    OAEP_SHA256_MGF1SHA256,
};
use pkcs8::der::asn1::{AnyRef, BitStringRef, UintRef};
use pkcs8::der::{Decode, Encode};
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use rand_core::{OsRng, RngCore};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// Why an RSA key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsaError {
    /// The DER is not an RSA key of a supported size (2048 to 8192 bits).
    #[error("not a usable RSA key (PKCS#1/PKCS#8/SPKI DER, 2048 to 8192 bits): {0}")]
    Rejected(String),
    /// Key generation or an encryption failed inside AWS-LC.
    #[error("RSA {0} failed")]
    Operation(&'static str),
}

/// The OAEP hash of a JWE `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OaepHash {
    /// `RSA-OAEP`: SHA-1 and MGF1-SHA-1
    Sha1,
    /// `RSA-OAEP-256`: SHA-256 and MGF1-SHA-256
    Sha256,
}

impl OaepHash {
    fn algorithm(self) -> &'static aws_lc_rs::rsa::OaepAlgorithm {
        match self {
            OaepHash::Sha1 => &OAEP_SHA1_MGF1SHA1,
            OaepHash::Sha256 => &OAEP_SHA256_MGF1SHA256,
        }
    }
}

fn rsa_algorithm_id() -> AlgorithmIdentifierRef<'static> {
    AlgorithmIdentifierRef {
        oid: pkcs1::ALGORITHM_OID,
        parameters: Some(AnyRef::NULL),
    }
}

/// An RSA private key (AWS-LC); its memory is wiped when dropped.
#[derive(Clone)]
pub struct RsaPrivateKey {
    key: PrivateDecryptingKey,
}

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPrivateKey(RSA-{}, <redacted>)", self.bits())
    }
}

impl RsaPrivateKey {
    /// A fresh 2048-bit key.
    pub fn generate_2048() -> Result<Self, RsaError> {
        PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map(|key| Self { key })
            .map_err(|_| RsaError::Operation("key generation"))
    }

    /// Reads a PKCS#8 `PrivateKeyInfo` DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, RsaError> {
        PrivateDecryptingKey::from_pkcs8(der)
            .map(|key| Self { key })
            .map_err(|e| RsaError::Rejected(e.to_string()))
    }

    /// Reads a PKCS#1 `RSAPrivateKey` DER.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, RsaError> {
        let info = pkcs8::PrivateKeyInfo::new(rsa_algorithm_id(), der);
        let pkcs8 = Zeroizing::new(
            info.to_der()
                .map_err(|e| RsaError::Rejected(e.to_string()))?,
        );
        Self::from_pkcs8_der(&pkcs8)
    }

    /// The key as PKCS#8 `PrivateKeyInfo` DER.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, RsaError> {
        let der: Pkcs8V1Der<'static> = AsDer::<Pkcs8V1Der<'static>>::as_der(&self.key)
            .map_err(|_| RsaError::Operation("export"))?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// The key as PKCS#1 `RSAPrivateKey` DER.
    pub fn to_pkcs1_der(&self) -> Result<Zeroizing<Vec<u8>>, RsaError> {
        let pkcs8 = self.to_pkcs8_der()?;
        let info =
            pkcs8::PrivateKeyInfo::from_der(&pkcs8).map_err(|_| RsaError::Operation("export"))?;
        Ok(Zeroizing::new(info.private_key.to_vec()))
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.key_size_bits()
    }

    /// The public half.
    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey {
            key: self.key.public_key(),
        }
    }

    /// RSAES-OAEP decryption. AWS-LC checks the padding in constant time and reports
    /// every failure the same way.
    pub(crate) fn decrypt_oaep(
        &self,
        hash: OaepHash,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, RsaError> {
        let key = OaepPrivateDecryptingKey::new(self.key.clone())
            .map_err(|_| RsaError::Operation("OAEP decryption"))?;
        let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let len = key
            .decrypt(hash.algorithm(), ciphertext, &mut out, None)
            .map_err(|_| RsaError::Operation("OAEP decryption"))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// RSAES-PKCS1-v1_5 decryption of a key of `expected_len` bytes with implicit
    /// rejection: when the padding or the length is wrong, a random key of the same length
    /// comes back, chosen without a branch on the outcome.
    pub fn decrypt_pkcs1v15_key(
        &self,
        ciphertext: &[u8],
        expected_len: usize,
    ) -> Zeroizing<Vec<u8>> {
        let mut substitute = Zeroizing::new(vec![0u8; expected_len]);
        OsRng.fill_bytes(&mut substitute);
        let mut buffer = Zeroizing::new(vec![0u8; self.key.key_size_bytes().max(expected_len)]);
        let decrypted_len = Pkcs1PrivateDecryptingKey::new(self.key.clone())
            .ok()
            .and_then(|key| key.decrypt(ciphertext, &mut buffer).ok().map(|p| p.len()))
            .unwrap_or(usize::MAX);
        let valid = (decrypted_len as u64).ct_eq(&(expected_len as u64));
        let mut out = Zeroizing::new(vec![0u8; expected_len]);
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::conditional_select(&substitute[i], &buffer[i], valid);
        }
        out
    }
}

/// An RSA public key (AWS-LC), for encryption.
#[derive(Clone)]
pub struct RsaPublicKey {
    key: PublicEncryptingKey,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey(RSA-{})", self.key.key_size_bits())
    }
}

impl PartialEq for RsaPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.to_spki_der().ok() == other.to_spki_der().ok()
    }
}

impl Eq for RsaPublicKey {}

impl RsaPublicKey {
    /// Reads an X.509 `SubjectPublicKeyInfo` DER.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, RsaError> {
        PublicEncryptingKey::from_der(der)
            .map(|key| Self { key })
            .map_err(|e| RsaError::Rejected(e.to_string()))
    }

    /// The key of a modulus and public exponent (big-endian, as in a JWK).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, RsaError> {
        let rejected = |e: pkcs8::der::Error| RsaError::Rejected(e.to_string());
        let pkcs1 = pkcs1::RsaPublicKey {
            modulus: UintRef::new(n).map_err(rejected)?,
            public_exponent: UintRef::new(e).map_err(rejected)?,
        }
        .to_der()
        .map_err(rejected)?;
        let spki = SubjectPublicKeyInfoRef {
            algorithm: rsa_algorithm_id(),
            subject_public_key: BitStringRef::from_bytes(&pkcs1).map_err(rejected)?,
        }
        .to_der()
        .map_err(rejected)?;
        Self::from_spki_der(&spki)
    }

    /// The key as X.509 `SubjectPublicKeyInfo` DER.
    pub(crate) fn to_spki_der(&self) -> Result<Vec<u8>, RsaError> {
        let der: PublicKeyX509Der<'static> = AsDer::<PublicKeyX509Der<'static>>::as_der(&self.key)
            .map_err(|_| RsaError::Operation("export"))?;
        Ok(der.as_ref().to_vec())
    }

    /// The modulus and public exponent, big-endian without leading zeros (as in a JWK).
    pub fn components(&self) -> Result<(Vec<u8>, Vec<u8>), RsaError> {
        let spki = self.to_spki_der()?;
        let info =
            SubjectPublicKeyInfoRef::from_der(&spki).map_err(|_| RsaError::Operation("export"))?;
        let key = pkcs1::RsaPublicKey::from_der(info.subject_public_key.raw_bytes())
            .map_err(|_| RsaError::Operation("export"))?;
        Ok((
            key.modulus.as_bytes().to_vec(),
            key.public_exponent.as_bytes().to_vec(),
        ))
    }

    /// The modulus size in bytes.
    pub fn size(&self) -> usize {
        self.key.key_size_bytes()
    }

    /// RSAES-OAEP encryption.
    pub(crate) fn encrypt_oaep(
        &self,
        hash: OaepHash,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, RsaError> {
        let key = OaepPublicEncryptingKey::new(self.key.clone())
            .map_err(|_| RsaError::Operation("OAEP encryption"))?;
        let mut out = vec![0u8; key.ciphertext_size()];
        let len = key
            .encrypt(hash.algorithm(), plaintext, &mut out, None)
            .map_err(|_| RsaError::Operation("OAEP encryption"))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// RSAES-PKCS1-v1_5 encryption (PKCS#7 key transport, and the test KBS's `RSA1_5`).
    pub fn encrypt_pkcs1v15(&self, plaintext: &[u8]) -> Result<Vec<u8>, RsaError> {
        let key = Pkcs1PublicEncryptingKey::new(self.key.clone())
            .map_err(|_| RsaError::Operation("PKCS#1 v1.5 encryption"))?;
        let mut out = vec![0u8; key.ciphertext_size()];
        let len = key
            .encrypt(plaintext, &mut out)
            .map_err(|_| RsaError::Operation("PKCS#1 v1.5 encryption"))?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_round_trip_and_decrypt_what_they_encrypt() {
        let key = RsaPrivateKey::generate_2048().unwrap();
        assert_eq!(key.bits(), 2048);
        let pkcs1 = key.to_pkcs1_der().unwrap();
        let back = RsaPrivateKey::from_pkcs1_der(&pkcs1).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let back = RsaPrivateKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
        assert_eq!(back.public_key(), key.public_key());

        let public = key.public_key();
        let (n, e) = public.components().unwrap();
        assert_eq!(n.len(), 256);
        assert_eq!(e, [1, 0, 1]);
        assert_eq!(RsaPublicKey::from_components(&n, &e).unwrap(), public);

        for hash in [OaepHash::Sha1, OaepHash::Sha256] {
            let ct = public.encrypt_oaep(hash, b"content key").unwrap();
            assert_eq!(
                key.decrypt_oaep(hash, &ct).unwrap().as_slice(),
                b"content key"
            );
            let other = if hash == OaepHash::Sha1 {
                OaepHash::Sha256
            } else {
                OaepHash::Sha1
            };
            assert!(key.decrypt_oaep(other, &ct).is_err());
        }
        let ct = public.encrypt_pkcs1v15(&[7u8; 32]).unwrap();
        assert_eq!(key.decrypt_pkcs1v15_key(&ct, 32).as_slice(), [7u8; 32]);
        assert!(!format!("{key:?}").contains(&hex::encode(&pkcs1[..16])));
    }

    #[test]
    fn pkcs1v15_failures_give_a_random_key_of_the_expected_length() {
        let key = RsaPrivateKey::generate_2048().unwrap();
        let public = key.public_key();
        // wrong length inside valid padding, garbage, truncated, empty
        let wrong_len = public.encrypt_pkcs1v15(&[7u8; 16]).unwrap();
        let mut flipped = public.encrypt_pkcs1v15(&[7u8; 32]).unwrap();
        flipped[10] ^= 1;
        for bad in [&wrong_len[..], &flipped[..], &flipped[..100], &[][..]] {
            let a = key.decrypt_pkcs1v15_key(bad, 32);
            let b = key.decrypt_pkcs1v15_key(bad, 32);
            assert_eq!(a.len(), 32);
            assert_ne!(a.as_slice(), b.as_slice(), "the substitute is random");
            assert_ne!(a.as_slice(), [7u8; 32]);
        }
    }

    #[test]
    fn bad_key_material_is_rejected() {
        for bad in [&b""[..], b"\x30\x03\x02\x01\x00", &[0x30; 64]] {
            assert!(matches!(
                RsaPrivateKey::from_pkcs1_der(bad),
                Err(RsaError::Rejected(_))
            ));
            assert!(matches!(
                RsaPrivateKey::from_pkcs8_der(bad),
                Err(RsaError::Rejected(_))
            ));
            assert!(matches!(
                RsaPublicKey::from_spki_der(bad),
                Err(RsaError::Rejected(_))
            ));
        }
        // 1024 bits is below what AWS-LC accepts for encryption keys
        assert!(RsaPublicKey::from_components(&[0xc5; 128], &[1, 0, 1]).is_err());
        assert!(RsaPublicKey::from_components(&[], &[1, 0, 1]).is_err());
    }
}
