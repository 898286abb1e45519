//! OCI content digests (`<algorithm>:<hex>`), computed while streaming.

use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::error::{Error, Result};

/// A parsed `<algorithm>:<hex>` digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciDigest {
    algorithm: DigestAlgorithm,
    hex: String,
}

/// Digest algorithms of the OCI image spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `sha256`
    Sha256,
    /// `sha384`
    Sha384,
    /// `sha512`
    Sha512,
}

impl DigestAlgorithm {
    fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha384 => "sha384",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha384 => 96,
            DigestAlgorithm::Sha512 => 128,
        }
    }
}

impl OciDigest {
    /// Parses and validates `sha256:<64 lowercase hex>` (or sha384/sha512).
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::InvalidDigest(text.chars().take(200).collect());
        let (alg, hex) = text.split_once(':').ok_or_else(invalid)?;
        let algorithm = match alg {
            "sha256" => DigestAlgorithm::Sha256,
            "sha384" => DigestAlgorithm::Sha384,
            "sha512" => DigestAlgorithm::Sha512,
            _ => return Err(invalid()),
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        Ok(OciDigest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// sha256 of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
        h.update(data);
        h.finish()
    }
}

impl std::fmt::Display for OciDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// A running digest of a stream.
#[derive(Clone, Debug)]
pub enum DigestHasher {
    /// sha256 state
    Sha256(Sha256),
    /// sha384 state
    Sha384(Sha384),
    /// sha512 state
    Sha512(Sha512),
}

impl DigestHasher {
    /// Starts a digest with `algorithm`.
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => DigestHasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha384 => DigestHasher::Sha384(Sha384::new()),
            DigestAlgorithm::Sha512 => DigestHasher::Sha512(Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            DigestHasher::Sha256(h) => h.update(data),
            DigestHasher::Sha384(h) => h.update(data),
            DigestHasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> OciDigest {
        let (algorithm, hex) = match self {
            DigestHasher::Sha256(h) => (DigestAlgorithm::Sha256, hex::encode(h.finalize())),
            DigestHasher::Sha384(h) => (DigestAlgorithm::Sha384, hex::encode(h.finalize())),
            DigestHasher::Sha512(h) => (DigestAlgorithm::Sha512, hex::encode(h.finalize())),
        };
        OciDigest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn digests_parse_and_compute() {
        let d = OciDigest::sha256_of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(OciDigest::parse(&d.to_string()).unwrap(), d);
        let mut h = DigestHasher::new(DigestAlgorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish().to_string().starts_with("sha512:ddaf35a1"));
    }

    #[test]
    fn digests_reject_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "md5:0123",
            "sha256:ABCDEF",
            "sha256:../../etc/passwd",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "a".repeat(63)),
            &format!("sha512:{}", "a".repeat(64)),
        ] {
            assert!(
                matches!(OciDigest::parse(bad), Err(Error::InvalidDigest(_))),
                "{bad}"
            );
        }
    }
}
