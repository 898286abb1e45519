//! The layer cipher `AES_256_CTR_HMAC_SHA256` as streaming adapters.
//!
//! AES-256 in CTR mode (16-byte nonce as the initial 128-bit big-endian counter block)
//! encrypts the layer blob; HMAC-SHA256, keyed with the same 32-byte key, authenticates the
//! ciphertext. The readers transform data in the caller's buffer, so memory stays bounded.
//!
//! Decryption is decrypt-then-verify by construction (the MAC covers the whole blob), so
//! the verdict can only come at the end: [`DecryptingReader`] returns an error from the
//! read that reaches end of stream when the HMAC (or, if asked, the plaintext digest) does
//! not match, and never reports a clean EOF for a forged layer. A consumer that stops
//! before EOF (a tar reader does) must call [`DecryptingReader::finish`], which drains the
//! rest and gives the verdict.

mod options;

#[cfg(feature = "async-io")]
mod async_io;

use std::io::{self, Read};

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use options::{
    LayerBlockCipherOptions, PrivateLayerBlockCipherOptions, PublicLayerBlockCipherOptions,
};
pub(crate) use options::{AES_256_CTR_HMAC_SHA256, HMAC_LEN, KEY_LEN, NONCE_LEN};

#[cfg(feature = "async-io")]
pub use async_io::{AsyncDecryptingReader, AsyncEncryptingReader};

use crate::error::{Error, Result};
use oci_model::{Algorithm, Digest, Hasher};

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Bytes hashed and decrypted per step (fits L1 data cache).
const PROCESS_CHUNK: usize = 16 * 1024;
type HmacSha256 = Hmac<Sha256>;

/// What a fully read and verified layer was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedLayer {
    /// digest of the plaintext blob, when it was computed
    pub plaintext_digest: Option<Digest>,
    /// number of plaintext bytes
    pub size: u64,
}

/// Encryption state shared by the sync and async readers.
pub(crate) struct EncryptState {
    cipher: Aes256Ctr,
    mac: HmacSha256,
    plain: Hasher,
    key: Zeroizing<[u8; KEY_LEN]>,
    nonce: [u8; NONCE_LEN],
    expected_digest: Option<Digest>,
    size: u64,
    outcome: Option<std::result::Result<LayerBlockCipherOptions, Error>>,
}

impl EncryptState {
    pub(crate) fn new(expected_digest: Option<&str>) -> Result<Self> {
        let expected_digest = expected_digest
            .filter(|d| !d.is_empty())
            .map(Digest::parse)
            .transpose()?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(key.as_mut_slice());
        OsRng.fill_bytes(&mut nonce);
        Self::with_key(key, nonce, expected_digest)
    }

    fn with_key(
        key: Zeroizing<[u8; KEY_LEN]>,
        nonce: [u8; NONCE_LEN],
        expected_digest: Option<Digest>,
    ) -> Result<Self> {
        let algorithm = expected_digest
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        Ok(EncryptState {
            cipher: Aes256Ctr::new(key.as_ref().into(), (&nonce).into()),
            mac: new_mac(key.as_ref())?,
            plain: Hasher::new(algorithm),
            key,
            nonce,
            expected_digest,
            size: 0,
            outcome: None,
        })
    }

    /// Encrypts `buf` in place.
    pub(crate) fn process(&mut self, buf: &mut [u8]) {
        self.plain.update(buf);
        self.cipher.apply_keystream(buf);
        self.mac.update(buf);
        self.size += buf.len() as u64;
    }

    /// Called once the input ended; errors if the plaintext digest differs from the
    /// expected one.
    pub(crate) fn at_eof(&mut self) -> io::Result<()> {
        if self.outcome.is_none() {
            let digest =
                std::mem::replace(&mut self.plain, Hasher::new(Algorithm::Sha256)).finish();
            let hmac = self.mac.clone().finalize().into_bytes().to_vec();
            let outcome = match &self.expected_digest {
                Some(expected) if *expected != digest => Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                }),
                _ => {
                    let mut cipher_options = std::collections::BTreeMap::new();
                    cipher_options.insert("nonce".to_string(), self.nonce.to_vec());
                    Ok(LayerBlockCipherOptions {
                        public: PublicLayerBlockCipherOptions {
                            cipher_type: AES_256_CTR_HMAC_SHA256.to_string(),
                            hmac,
                            cipher_options: Default::default(),
                        },
                        private: PrivateLayerBlockCipherOptions {
                            symmetric_key: Zeroizing::new(self.key.to_vec()),
                            digest: digest.to_string(),
                            cipher_options,
                        },
                    })
                }
            };
            self.outcome = Some(outcome);
        }
        match &self.outcome {
            Some(Err(Error::DigestMismatch { expected, actual })) => Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            }
            .into_io()),
            _ => Ok(()),
        }
    }

    pub(crate) fn finish(self) -> Result<LayerBlockCipherOptions> {
        self.outcome.ok_or(Error::NotAtEof)?
    }
}

fn new_mac(key: &[u8]) -> Result<HmacSha256> {
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| Error::KeyLength(key.len()))
}

/// Whether a decryption has been verified yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Streaming,
    Verified,
    HmacMismatch,
    DigestMismatch,
}

/// Decryption state shared by the sync and async readers.
pub(crate) struct DecryptState {
    cipher: Aes256Ctr,
    mac: HmacSha256,
    expected_hmac: [u8; HMAC_LEN],
    plain: Option<Hasher>,
    expected_digest: Option<Digest>,
    actual_digest: Option<Digest>,
    size: u64,
    verdict: Verdict,
}

impl DecryptState {
    pub(crate) fn new(opts: &LayerBlockCipherOptions) -> Result<Self> {
        if opts.public.cipher_type != AES_256_CTR_HMAC_SHA256 {
            return Err(Error::UnsupportedCipher(
                opts.public.cipher_type.chars().take(100).collect(),
            ));
        }
        if opts.public.hmac.is_empty() {
            return Err(Error::MissingHmac);
        }
        let expected_hmac = <[u8; HMAC_LEN]>::try_from(opts.public.hmac.as_slice())
            .map_err(|_| Error::HmacLength(opts.public.hmac.len()))?;
        let key = opts.private.key()?;
        let nonce = opts.private.nonce()?;
        let expected_digest = if opts.private.digest.is_empty() {
            None
        } else {
            Some(Digest::parse(&opts.private.digest)?)
        };
        Ok(DecryptState {
            cipher: Aes256Ctr::new(key.as_ref().into(), (&nonce).into()),
            mac: new_mac(key.as_ref())?,
            expected_hmac,
            plain: None,
            expected_digest,
            actual_digest: None,
            size: 0,
            verdict: Verdict::Streaming,
        })
    }

    /// Also checks the plaintext against the digest in the private options at EOF.
    pub(crate) fn verify_digest(&mut self) {
        if let Some(expected) = &self.expected_digest {
            self.plain = Some(Hasher::new(expected.algorithm()));
        }
    }

    /// Decrypts `buf` in place, in L1-sized chunks so the MAC and the cipher pass over
    /// data that is still in cache.
    pub(crate) fn process(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(PROCESS_CHUNK) {
            self.mac.update(chunk);
            self.cipher.apply_keystream(chunk);
            if let Some(plain) = &mut self.plain {
                plain.update(chunk);
            }
        }
        self.size += buf.len() as u64;
    }

    /// The error to hand out once the verdict is negative (every time it is asked).
    fn verdict_error(&self) -> Option<Error> {
        match self.verdict {
            Verdict::Streaming | Verdict::Verified => None,
            Verdict::HmacMismatch => Some(Error::HmacMismatch),
            Verdict::DigestMismatch => Some(Error::DigestMismatch {
                expected: self
                    .expected_digest
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                actual: self
                    .actual_digest
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            }),
        }
    }

    pub(crate) fn failed(&self) -> Option<io::Error> {
        self.verdict_error().map(Error::into_io)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.verdict != Verdict::Streaming
    }

    /// Gives the verdict once the ciphertext ended.
    pub(crate) fn at_eof(&mut self) -> io::Result<()> {
        if self.verdict == Verdict::Streaming {
            // Constant-time comparison of the tag.
            self.verdict = if self.mac.clone().verify_slice(&self.expected_hmac).is_err() {
                Verdict::HmacMismatch
            } else if let Some(plain) = self.plain.take() {
                let actual = plain.finish();
                let ok = self.expected_digest.as_ref() == Some(&actual);
                self.actual_digest = Some(actual);
                if ok {
                    Verdict::Verified
                } else {
                    Verdict::DigestMismatch
                }
            } else {
                Verdict::Verified
            };
            if self.verdict != Verdict::Verified {
                tracing::warn!(verdict = ?self.verdict, "encrypted layer failed verification");
            }
        }
        match self.failed() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    pub(crate) fn verified(&self) -> Result<VerifiedLayer> {
        match self.verdict {
            Verdict::Streaming => Err(Error::NotAtEof),
            Verdict::Verified => Ok(VerifiedLayer {
                plaintext_digest: self.actual_digest.clone(),
                size: self.size,
            }),
            _ => Err(self.verdict_error().unwrap_or(Error::HmacMismatch)),
        }
    }
}

/// Encrypts a plaintext layer blob while it is read.
///
/// Read it to the end, then call [`EncryptingReader::finish`] for the options to wrap
/// and publish.
pub struct EncryptingReader<R> {
    inner: R,
    state: EncryptState,
}

impl<R> std::fmt::Debug for EncryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptingReader")
            .field("size", &self.state.size)
            .finish_non_exhaustive()
    }
}

impl<R: Read> EncryptingReader<R> {
    /// Encrypts `inner` with a fresh random key and nonce. `expected_digest`, when given,
    /// is the descriptor digest of the plaintext: a different plaintext fails at EOF.
    pub fn new(inner: R, expected_digest: Option<&str>) -> Result<Self> {
        Ok(EncryptingReader {
            inner,
            state: EncryptState::new(expected_digest)?,
        })
    }

    /// The options (public with the HMAC, private with key, nonce and plaintext digest),
    /// available once the input was read to its end.
    pub fn finish(self) -> Result<LayerBlockCipherOptions> {
        self.state.finish()
    }
}

impl<R: Read> Read for EncryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.state.outcome.is_some() {
            return self.state.at_eof().map(|()| 0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.state.at_eof()?;
            return Ok(0);
        }
        self.state.process(&mut buf[..n]);
        Ok(n)
    }
}

/// Decrypts an encrypted layer blob while it is read, verifying it at the end.
pub struct DecryptingReader<R> {
    inner: R,
    state: DecryptState,
}

impl<R> std::fmt::Debug for DecryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptingReader")
            .field("size", &self.state.size)
            .field("verdict", &self.state.verdict)
            .finish_non_exhaustive()
    }
}

impl<R: Read> DecryptingReader<R> {
    /// Decrypts `inner` with the unwrapped options. Fails at once on an unknown cipher,
    /// a missing HMAC or a key or nonce of the wrong size.
    pub fn new(inner: R, opts: &LayerBlockCipherOptions) -> Result<Self> {
        Ok(DecryptingReader {
            inner,
            state: DecryptState::new(opts)?,
        })
    }

    /// Also checks, at EOF, that the plaintext has the digest recorded in the private
    /// options (costs one more hash pass over the data). Only for layers whose producer
    /// records the digest of the encrypted bytes: skopeo records the digest of the
    /// uncompressed layer when it compresses a `tar` layer while encrypting it.
    pub fn verify_digest(mut self) -> Self {
        self.state.verify_digest();
        self
    }

    /// Reads (and discards) whatever the consumer left unread, and gives the verdict.
    /// Every byte read before was unauthenticated until this returns `Ok`.
    pub fn finish(mut self) -> Result<VerifiedLayer> {
        let mut sink = vec![0u8; 64 * 1024];
        while !self.state.is_done() {
            match self.read(&mut sink) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(match self.state.verdict_error() {
                        Some(verdict) => verdict,
                        None => Error::Io(e),
                    })
                }
            }
        }
        self.state.verified()
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(err) = self.state.failed() {
            return Err(err);
        }
        if self.state.is_done() || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.state.at_eof()?;
            return Ok(0);
        }
        self.state.process(&mut buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn encrypt(plain: &[u8]) -> (Vec<u8>, LayerBlockCipherOptions) {
        let digest = Digest::sha256_of(plain).to_string();
        let mut r = EncryptingReader::new(plain, Some(&digest)).unwrap();
        let mut ct = Vec::new();
        r.read_to_end(&mut ct).unwrap();
        (ct, r.finish().unwrap())
    }

    #[test]
    fn matches_independent_aes_ctr_and_hmac() {
        // AES-256-CTR with the counter crossing a 64-bit boundary, as Go's cipher.NewCTR
        // (full 128-bit big-endian increment) does; HMAC-SHA256 over the ciphertext.
        let key = Zeroizing::new([7u8; 32]);
        let mut nonce = [0u8; 16];
        nonce[8..].copy_from_slice(&[0xff; 8]);
        let plain = vec![0u8; 48];
        let mut r = EncryptingReader {
            inner: plain.as_slice(),
            state: EncryptState::with_key(key, nonce, None).unwrap(),
        };
        let mut ct = Vec::new();
        r.read_to_end(&mut ct).unwrap();
        let opts = r.finish().unwrap();
        // keystream block 1 = AES(key, nonce + 1) = AES(key, 00..01 00..00)
        use aes::cipher::{BlockEncrypt, KeyInit};
        let aes = Aes256::new(&[7u8; 32].into());
        let mut block1 = [0u8; 16];
        block1[7] = 1;
        let mut b = block1.into();
        aes.encrypt_block(&mut b);
        assert_eq!(&ct[16..32], &b[..]);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(&ct);
        assert_eq!(opts.public.hmac, mac.finalize().into_bytes().to_vec());
        assert_eq!(opts.private.nonce().unwrap(), nonce);
    }

    #[test]
    fn round_trip_with_small_reads() {
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (ct, opts) = encrypt(&plain);
        assert_ne!(ct, plain);
        let mut r = DecryptingReader::new(ct.as_slice(), &opts)
            .unwrap()
            .verify_digest();
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, plain);
        let v = r.finish().unwrap();
        assert_eq!(v.size, plain.len() as u64);
        assert_eq!(v.plaintext_digest.unwrap(), Digest::sha256_of(&plain));
    }

    #[test]
    fn empty_layer_round_trips() {
        let (ct, opts) = encrypt(b"");
        assert!(ct.is_empty());
        let mut out = Vec::new();
        let mut r = DecryptingReader::new(ct.as_slice(), &opts).unwrap();
        r.read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(r.finish().unwrap().size, 0);
    }

    #[test]
    fn flipped_ciphertext_bit_fails_on_final_read() {
        let plain = vec![5u8; 10_000];
        let (mut ct, opts) = encrypt(&plain);
        ct[1234] ^= 0x10;
        let mut r = DecryptingReader::new(ct.as_slice(), &opts).unwrap();
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert!(matches!(Error::from_io(&err), Some(Error::HmacMismatch)));
        // The verdict is sticky: reading again does not turn into a clean EOF.
        let again = r.read(&mut [0u8; 10]).unwrap_err();
        assert!(matches!(Error::from_io(&again), Some(Error::HmacMismatch)));
        assert!(matches!(r.finish(), Err(Error::HmacMismatch)));
    }

    #[test]
    fn flipped_hmac_or_truncation_fails() {
        let plain = vec![9u8; 5000];
        let (ct, mut opts) = encrypt(&plain);
        let truncated = DecryptingReader::new(&ct[..4999], &opts).unwrap();
        assert!(matches!(truncated.finish(), Err(Error::HmacMismatch)));
        opts.public.hmac[0] ^= 1;
        let r = DecryptingReader::new(ct.as_slice(), &opts).unwrap();
        // A consumer that stops early still gets the verdict from finish().
        assert!(matches!(r.finish(), Err(Error::HmacMismatch)));
    }

    #[test]
    fn wrong_digest_fails_when_verified() {
        let plain = vec![1u8; 100];
        let (ct, mut opts) = encrypt(&plain);
        opts.private.digest = Digest::sha256_of(b"other").to_string();
        let r = DecryptingReader::new(ct.as_slice(), &opts)
            .unwrap()
            .verify_digest();
        assert!(matches!(r.finish(), Err(Error::DigestMismatch { .. })));
        // Without the digest check the HMAC alone decides.
        let r = DecryptingReader::new(ct.as_slice(), &opts).unwrap();
        assert!(r.finish().is_ok());
    }

    #[test]
    fn encrypt_checks_expected_digest() {
        let other = Digest::sha256_of(b"x").to_string();
        let mut r = EncryptingReader::new(&b"y"[..], Some(&other)).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(
            Error::from_io(&err),
            Some(Error::DigestMismatch { .. })
        ));
        assert!(matches!(r.finish(), Err(Error::DigestMismatch { .. })));
        assert!(matches!(
            EncryptingReader::new(&b""[..], Some("sha256:zz")),
            Err(Error::InvalidDigest(_))
        ));
        let unread = EncryptingReader::new(&b"abc"[..], None).unwrap();
        assert!(matches!(unread.finish(), Err(Error::NotAtEof)));
    }

    #[test]
    fn bad_options_are_rejected_up_front() {
        let (_, opts) = encrypt(b"abc");
        let mut o = opts.clone();
        o.public.cipher_type = "AES_128_GCM".into();
        assert!(matches!(
            DecryptingReader::new(&b""[..], &o),
            Err(Error::UnsupportedCipher(_))
        ));
        let mut o = opts.clone();
        o.public.hmac.clear();
        assert!(matches!(
            DecryptingReader::new(&b""[..], &o),
            Err(Error::MissingHmac)
        ));
        let mut o = opts.clone();
        o.public.hmac.pop();
        assert!(matches!(
            DecryptingReader::new(&b""[..], &o),
            Err(Error::HmacLength(31))
        ));
        let mut o = opts.clone();
        o.private.symmetric_key = Zeroizing::new(vec![0; 16]);
        assert!(matches!(
            DecryptingReader::new(&b""[..], &o),
            Err(Error::KeyLength(16))
        ));
        let mut o = opts.clone();
        o.private.cipher_options.clear();
        assert!(matches!(
            DecryptingReader::new(&b""[..], &o),
            Err(Error::NonceLength(0))
        ));
        let mut o = opts;
        o.private.digest = "sha1:abc".into();
        assert!(matches!(
            DecryptingReader::new(&b""[..], &o),
            Err(Error::InvalidDigest(_))
        ));
    }
}
