//! Hash algorithms for the report data binding.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// A hash the KBS may select in its challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    /// Used when the challenge selects none (trustee's AS hashes with SHA-384).
    pub const DEFAULT: HashAlgorithm = HashAlgorithm::Sha384;
    /// Every algorithm this client implements, as advertised in `/auth`.
    pub const SUPPORTED: [HashAlgorithm; 3] = [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ];

    /// The wire name (`sha256`, `sha384`, `sha512`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// Parses a wire name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::SUPPORTED
            .into_iter()
            .find(|alg| alg.name().eq_ignore_ascii_case(name))
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
            HashAlgorithm::Sha384 => Sha384::digest(data).to_vec(),
            HashAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

impl std::fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_unknown_names_fail() {
        assert_eq!(
            HashAlgorithm::from_name("SHA384"),
            Some(HashAlgorithm::Sha384)
        );
        assert_eq!(
            HashAlgorithm::from_name("Sha512"),
            Some(HashAlgorithm::Sha512)
        );
        assert_eq!(
            HashAlgorithm::from_name("sha256"),
            Some(HashAlgorithm::Sha256)
        );
        assert_eq!(HashAlgorithm::from_name("sha-384"), None);
        assert_eq!(HashAlgorithm::from_name("sm3"), None);
        assert_eq!(HashAlgorithm::from_name(""), None);
    }

    #[test]
    fn digests_have_the_declared_length() {
        for alg in HashAlgorithm::SUPPORTED {
            assert_eq!(alg.digest(b"abc").len(), alg.output_len());
        }
        assert_eq!(
            hex::encode(HashAlgorithm::Sha256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
