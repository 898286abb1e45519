//! Content digests (`<algorithm>:<hex>`) and the streaming hasher that produces them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// How much of a refused value an error repeats (peer input can be megabytes).
const SHOWN: usize = 160;

/// A digest algorithm: the OCI image spec's sha256 and sha512, and the sha384 that
/// containers/ocicrypt also writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
    /// SHA-512
    Sha512,
}

impl Algorithm {
    /// `sha256`, `sha384` or `sha512`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex part.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a digest. `value` is the offending text, shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// no `:` between algorithm and hex
    #[error("invalid digest {value:?}: no `:` between algorithm and hex")]
    MissingSeparator {
        /// the offending text
        value: String,
    },
    /// an algorithm other than sha256, sha384 and sha512
    #[error("invalid digest {value:?}: unsupported algorithm (sha256, sha384 and sha512 are)")]
    UnsupportedAlgorithm {
        /// the offending text
        value: String,
    },
    /// the hex part has the wrong length for the algorithm
    #[error("invalid digest {value:?}: {algorithm} needs {expected} hex digits, not {actual}")]
    WrongLength {
        /// the offending text
        value: String,
        /// the algorithm named
        algorithm: Algorithm,
        /// the length it needs
        expected: usize,
        /// the length given
        actual: usize,
    },
    /// the hex part is not lowercase hex
    #[error("invalid digest {value:?}: not lowercase hex")]
    NotLowercaseHex {
        /// the offending text
        value: String,
    },
}

/// A validated content digest: a known algorithm and lowercase hex of its length. It
/// dereferences to its `<algorithm>:<hex>` text, so it goes wherever a digest string does
/// (URLs, messages) without a copy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    text: String,
}

impl Digest {
    /// Parses `<algorithm>:<hex>`.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let shown = || value.chars().take(SHOWN).collect::<String>();
        let (name, hex) = value
            .split_once(':')
            .ok_or_else(|| DigestError::MissingSeparator { value: shown() })?;
        let algorithm = Algorithm::from_name(name)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm { value: shown() })?;
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                value: shown(),
                algorithm,
                expected: algorithm.hex_len(),
                actual: hex.len(),
            });
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::NotLowercaseHex { value: shown() });
        }
        Ok(Self {
            algorithm,
            text: value.to_string(),
        })
    }

    /// The SHA-256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        let mut hasher = Hasher::new(Algorithm::Sha256);
        hasher.update(data);
        hasher.finish()
    }

    fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Self {
        Self {
            algorithm,
            text: format!("{}:{}", algorithm.name(), hex::encode(hash)),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.name().len() + 1..]
    }

    /// `<algorithm>:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `<algorithm>-<hex>`: safe as a file name.
    pub fn file_name(&self) -> String {
        format!("{}-{}", self.algorithm.name(), self.hex())
    }

    /// Parses a [`Digest::file_name`].
    pub fn from_file_name(name: &str) -> Option<Self> {
        let (algorithm, hex) = name.split_once('-')?;
        Self::parse(&format!("{algorithm}:{hex}")).ok()
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl PartialEq<String> for Digest {
    fn eq(&self, other: &String) -> bool {
        self.text == *other
    }
}

impl PartialEq<Digest> for String {
    fn eq(&self, other: &Digest) -> bool {
        *self == other.text
    }
}

impl PartialEq<Digest> for str {
    fn eq(&self, other: &Digest) -> bool {
        *self == other.text
    }
}

impl PartialEq<Digest> for &str {
    fn eq(&self, other: &Digest) -> bool {
        **self == other.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A running hash for one algorithm.
#[derive(Debug, Clone)]
pub enum Hasher {
    /// SHA-256
    Sha256(Sha256),
    /// SHA-384
    Sha384(Sha384),
    /// SHA-512
    Sha512(Sha512),
}

impl Hasher {
    /// A hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_hash(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha384(h) => Digest::from_hash(Algorithm::Sha384, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_hash(Algorithm::Sha512, &h.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_digests() {
        let d = Digest::parse(&format!("sha256:{EMPTY_SHA256}")).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), EMPTY_SHA256);
        assert_eq!(d.to_string(), format!("sha256:{EMPTY_SHA256}"));
        assert_eq!(d.as_str(), format!("sha256:{EMPTY_SHA256}"));
        assert_eq!(d, Digest::sha256_of(b""));
        assert_eq!(d.file_name(), format!("sha256-{EMPTY_SHA256}"));
        assert_eq!(Digest::from_file_name(&d.file_name()), Some(d.clone()));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{EMPTY_SHA256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn every_algorithm_hashes_to_the_fips_vectors() {
        // sha256/384/512("abc"), FIPS 180-2 appendix vectors
        for (algorithm, prefix) in [
            (Algorithm::Sha256, "sha256:ba7816bf8f01cfea414140de5dae2223"),
            (Algorithm::Sha384, "sha384:cb00753f45a35e8bb5a03d699ac65007"),
            (Algorithm::Sha512, "sha512:ddaf35a193617abacc417349ae204131"),
        ] {
            let mut h = Hasher::new(algorithm);
            h.update(b"a");
            h.update(b"bc");
            let d = h.finish();
            assert!(d.as_str().starts_with(prefix), "{d}");
            assert_eq!(d.hex().len(), algorithm.hex_len());
            assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        }
    }

    #[test]
    fn rejects_malformed_digests_with_the_reason() {
        let kind = |text: &str| match Digest::parse(text) {
            Ok(d) => panic!("{text:?} accepted as {d}"),
            Err(DigestError::MissingSeparator { .. }) => "separator",
            Err(DigestError::UnsupportedAlgorithm { .. }) => "algorithm",
            Err(DigestError::WrongLength { .. }) => "length",
            Err(DigestError::NotLowercaseHex { .. }) => "hex",
        };
        let upper = EMPTY_SHA256.to_ascii_uppercase();
        for (bad, why) in [
            ("", "separator"),
            ("sha256", "separator"),
            ("sha256:", "length"),
            ("md5:d41d8cd98f00b204e9800998ecf8427e", "algorithm"),
            ("SHA256:e3b0", "algorithm"),
            (&format!("sha1:{}", "a".repeat(40)), "algorithm"),
            (&format!(":{EMPTY_SHA256}"), "algorithm"),
            (&format!("sha256:{upper}"), "hex"),
            ("sha256:../../../../etc/passwd", "length"),
            (&format!("sha256:{}", "/".repeat(64)), "hex"),
            (&format!("sha256:{}", "g".repeat(64)), "hex"),
            (&format!("sha256:{}", "a".repeat(63)), "length"),
            (&format!("sha256:{EMPTY_SHA256}\n"), "length"),
            (&format!("sha512:{}", "a".repeat(64)), "length"),
            (&format!("sha384:{}", "a".repeat(64)), "length"),
            (&format!("sha256:{}", "a".repeat(10_000)), "length"),
            (&format!("sha256:{}é", "a".repeat(62)), "hex"),
        ] {
            assert_eq!(kind(bad), why, "{bad:?}");
        }
        // errors repeat a bounded prefix of hostile input
        let long = format!("x{}", "a".repeat(1 << 20));
        assert!(Digest::parse(&long).unwrap_err().to_string().len() < 400);
        assert!(serde_json::from_str::<Digest>("\"sha1:abc\"").is_err());
        assert!(serde_json::from_str::<Digest>("42").is_err());
        assert!(serde_json::from_str::<Digest>("\"sha256:e3b0").is_err());
        assert!(Digest::from_file_name("sha256-xyz").is_none());
        assert!(Digest::from_file_name(&format!("sha256:{EMPTY_SHA256}")).is_none());
    }
}
