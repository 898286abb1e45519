//! Initdata: the TOML document a pod was launched with (`--initdata-toml`), or only its
//! digest (`--initdata-digest`). The digest is the document's `algorithm` over the exact
//! file bytes, as trustee computes it.

use std::{collections::BTreeMap, fmt, io::Read, path::Path};

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tracing::warn;

use config_document::DocumentError;

/// Initdata documents larger than this are refused.
pub(crate) const INITDATA_SIZE_LIMIT: u64 = 4 * 1024 * 1024;
/// The longest digest any initdata algorithm produces (sha512).
pub(crate) const MAX_DIGEST_LEN: usize = 64;

/// `algorithm` of an initdata document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitDataAlgorithm {
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
    /// SHA-512
    Sha512,
}

impl InitDataAlgorithm {
    /// The digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            InitDataAlgorithm::Sha256 => Sha256::digest(bytes).to_vec(),
            InitDataAlgorithm::Sha384 => Sha384::digest(bytes).to_vec(),
            InitDataAlgorithm::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

impl fmt::Display for InitDataAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InitDataAlgorithm::Sha256 => "sha256",
            InitDataAlgorithm::Sha384 => "sha384",
            InitDataAlgorithm::Sha512 => "sha512",
        })
    }
}

/// Why initdata could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InitDataError {
    /// The file could not be read.
    #[error("reading initdata {path}: {source}")]
    Read {
        /// the file
        path: std::path::PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// The file is implausibly large.
    #[error("initdata {path} is larger than {INITDATA_SIZE_LIMIT} bytes")]
    TooLarge {
        /// the file
        path: std::path::PathBuf,
    },
    /// Not UTF-8 / not TOML.
    #[error("initdata is not valid TOML: {0}")]
    Syntax(String),
    /// A key is missing or holds a wrong value (e.g. an unknown algorithm).
    #[error("initdata key `{key}`: {message}")]
    InvalidValue {
        /// dotted key path
        key: String,
        /// what is wrong
        message: String,
    },
    /// `--initdata-digest` is not usable.
    #[error("initdata digest {value:?} is not usable: {reason}; expected the standard base64 of a sha256/sha384/sha512 digest")]
    BadDigest {
        /// the argument
        value: String,
        /// what is wrong
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
struct Document {
    algorithm: InitDataAlgorithm,
    version: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// A parsed initdata document, kept verbatim (a later step sends it to the KBS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitData {
    toml: String,
    algorithm: InitDataAlgorithm,
    version: String,
    data: BTreeMap<String, String>,
}

impl InitData {
    /// Reads and parses an initdata file.
    pub fn load(path: &Path) -> Result<Self, InitDataError> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(INITDATA_SIZE_LIMIT + 1).read_to_end(&mut bytes))
            .map_err(|source| InitDataError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if bytes.len() as u64 > INITDATA_SIZE_LIMIT {
            return Err(InitDataError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::parse(bytes)
    }

    /// Parses an initdata document (`algorithm`, `version`, `[data]`).
    pub fn parse(bytes: Vec<u8>) -> Result<Self, InitDataError> {
        let toml = String::from_utf8(bytes)
            .map_err(|e| InitDataError::Syntax(format!("not UTF-8: {e}")))?;
        let parsed = config_document::from_toml::<Document>(&toml).map_err(|e| match e {
            DocumentError::Syntax(message) => InitDataError::Syntax(message),
            DocumentError::Value { key, message } => InitDataError::InvalidValue { key, message },
        })?;
        if !parsed.unknown_keys.is_empty() {
            warn!(keys = ?parsed.unknown_keys, "ignoring unknown initdata keys");
        }
        let Document {
            algorithm,
            version,
            data,
        } = parsed.value;
        Ok(Self {
            toml,
            algorithm,
            version,
            data,
        })
    }

    /// The document text, byte for byte as given.
    pub fn toml(&self) -> &str {
        &self.toml
    }

    /// `algorithm`
    pub fn algorithm(&self) -> InitDataAlgorithm {
        self.algorithm
    }

    /// `version`
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `[data]`: file name → content.
    pub fn data(&self) -> &BTreeMap<String, String> {
        &self.data
    }

    /// `algorithm` over the exact document bytes.
    pub fn digest(&self) -> Vec<u8> {
        self.algorithm.digest(self.toml.as_bytes())
    }
}

/// Decodes `--initdata-digest` (standard base64).
pub(crate) fn decode_digest(value: &str) -> Result<Vec<u8>, InitDataError> {
    let bad = |reason: String| InitDataError::BadDigest {
        value: value.to_string(),
        reason,
    };
    let digest = STANDARD
        .decode(value.trim())
        .map_err(|e| bad(e.to_string()))?;
    if digest.is_empty() {
        return Err(bad("it is empty".to_string()));
    }
    if digest.len() > MAX_DIGEST_LEN {
        return Err(bad(format!(
            "it is {} bytes, longer than any initdata digest ({MAX_DIGEST_LEN})",
            digest.len()
        )));
    }
    Ok(digest)
}

/// What the agent was asked to bind at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitDataRequest {
    /// `--initdata-toml`: the document (its digest is bound, its text kept).
    Toml(InitData),
    /// `--initdata-digest`: only a digest.
    Digest(Vec<u8>),
}

impl InitDataRequest {
    /// From the command line flags: `--initdata-toml` wins over `--initdata-digest`.
    pub fn from_flags(
        toml_path: Option<&Path>,
        digest_b64: Option<&str>,
    ) -> Result<Option<Self>, InitDataError> {
        if let Some(path) = toml_path {
            if digest_b64.is_some() {
                warn!("both --initdata-toml and --initdata-digest given: using --initdata-toml");
            }
            return InitData::load(path).map(|d| Some(InitDataRequest::Toml(d)));
        }
        digest_b64
            .map(|b64| decode_digest(b64).map(InitDataRequest::Digest))
            .transpose()
    }

    /// The digest to bind.
    pub fn digest(&self) -> Vec<u8> {
        match self {
            InitDataRequest::Toml(initdata) => initdata.digest(),
            InitDataRequest::Digest(digest) => digest.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "algorithm = \"sha384\"\nversion = \"0.1.0\"\n\n[data]\n\"aa.toml\" = '''\n[token_configs]\n'''\n\"policy.rego\" = \"package agent_policy\"\n";

    #[test]
    fn digest_is_over_the_exact_bytes() {
        let d = InitData::parse(DOC.as_bytes().to_vec()).unwrap();
        assert_eq!(d.algorithm(), InitDataAlgorithm::Sha384);
        assert_eq!(d.version(), "0.1.0");
        assert_eq!(d.data().len(), 2);
        assert_eq!(d.data()["policy.rego"], "package agent_policy");
        assert_eq!(d.toml(), DOC);
        assert_eq!(d.digest(), Sha384::digest(DOC.as_bytes()).to_vec());
        // the same document with other whitespace is another digest
        let spaced = format!("{DOC}\n");
        let d2 = InitData::parse(spaced.clone().into_bytes()).unwrap();
        assert_ne!(d2.digest(), d.digest());
        assert_eq!(d2.digest(), Sha384::digest(spaced.as_bytes()).to_vec());
    }

    #[test]
    fn every_algorithm() {
        // sha256("abc"), sha384("abc"), sha512("abc") prefixes (FIPS 180-2 test vectors)
        for (name, alg, prefix) in [
            ("sha256", InitDataAlgorithm::Sha256, "ba7816bf"),
            ("sha384", InitDataAlgorithm::Sha384, "cb00753f"),
            ("sha512", InitDataAlgorithm::Sha512, "ddaf35a1"),
        ] {
            assert!(hex::encode(alg.digest(b"abc")).starts_with(prefix));
            let doc = format!("algorithm = \"{name}\"\nversion = \"0.1.0\"\n[data]\n");
            let d = InitData::parse(doc.clone().into_bytes()).unwrap();
            assert_eq!(d.algorithm(), alg);
            assert_eq!(alg.to_string(), name);
            assert_eq!(d.digest(), alg.digest(doc.as_bytes()));
        }
    }

    #[test]
    fn bad_documents() {
        for (doc, key) in [
            (
                "algorithm = \"sha-384\"\nversion = \"0.1.0\"\n",
                "algorithm",
            ),
            ("algorithm = \"SHA384\"\nversion = \"0.1.0\"\n", "algorithm"),
            ("algorithm = \"md5\"\nversion = \"0.1.0\"\n", "algorithm"),
            ("algorithm = 384\nversion = \"0.1.0\"\n", "algorithm"),
            ("version = \"0.1.0\"\n", "<top level>"),
            ("algorithm = \"sha256\"\n", "<top level>"),
            ("algorithm = \"sha256\"\nversion = 1\n", "version"),
            (
                "algorithm = \"sha256\"\nversion = \"0.1.0\"\ndata = \"x\"\n",
                "data",
            ),
            (
                "algorithm = \"sha256\"\nversion = \"0.1.0\"\n[data]\n\"a\" = 1\n",
                "data.a",
            ),
        ] {
            match InitData::parse(doc.as_bytes().to_vec()) {
                Err(InitDataError::InvalidValue { key: k, .. }) => assert_eq!(k, key, "{doc}"),
                other => panic!("{doc}: {other:?}"),
            }
        }
        let err = InitData::parse(b"algorithm = \"sha-384\"\nversion = \"0.1.0\"\n".to_vec())
            .unwrap_err();
        assert!(
            err.to_string().contains("sha256, sha384, sha512")
                || err.to_string().contains("sha256`, `sha384"),
            "{err}"
        );
        for doc in [
            &b"algorithm = "[..],
            b"[data",
            b"\xff\xfe",
            b"algorithm = \"sha256\"\nalgorithm = \"sha384\"\n",
        ] {
            assert!(
                matches!(InitData::parse(doc.to_vec()), Err(InitDataError::Syntax(_))),
                "{doc:?}"
            );
        }
    }

    #[test]
    fn load_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initdata.toml");
        std::fs::write(&path, DOC).unwrap();
        assert_eq!(InitData::load(&path).unwrap().toml(), DOC);
        assert!(matches!(
            InitData::load(&dir.path().join("no")),
            Err(InitDataError::Read { .. })
        ));
        let big = dir.path().join("big.toml");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(INITDATA_SIZE_LIMIT + 1).unwrap();
        assert!(matches!(
            InitData::load(&big),
            Err(InitDataError::TooLarge { .. })
        ));
    }

    #[test]
    fn digest_flag() {
        let digest = vec![0xab; 48];
        assert_eq!(decode_digest(&STANDARD.encode(&digest)).unwrap(), digest);
        for bad in [
            "",
            "====",
            "not base64!",
            "q83vEjRWeJA",
            &STANDARD.encode([1u8; 65]),
        ] {
            let err = decode_digest(bad).unwrap_err();
            assert!(matches!(err, InitDataError::BadDigest { .. }), "{bad}");
        }
        // URL-safe alphabet is not standard base64
        assert!(decode_digest(&"_-".repeat(22)).is_err());
    }

    #[test]
    fn toml_flag_wins_over_digest_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initdata.toml");
        std::fs::write(&path, DOC).unwrap();
        let req = InitDataRequest::from_flags(Some(&path), Some("AAAA"))
            .unwrap()
            .unwrap();
        assert!(matches!(req, InitDataRequest::Toml(_)));
        assert_eq!(req.digest(), Sha384::digest(DOC.as_bytes()).to_vec());
        // -t wins even if -i is garbage; the digest flag is not parsed
        assert!(InitDataRequest::from_flags(Some(&path), Some("!!")).is_ok());
        let req = InitDataRequest::from_flags(None, Some("AAAA"))
            .unwrap()
            .unwrap();
        assert_eq!(req, InitDataRequest::Digest(vec![0, 0, 0]));
        assert_eq!(req.digest(), vec![0, 0, 0]);
        assert_eq!(InitDataRequest::from_flags(None, None).unwrap(), None);
        assert!(InitDataRequest::from_flags(None, Some("!")).is_err());
    }
}
