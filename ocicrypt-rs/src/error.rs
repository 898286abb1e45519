//! The crate's error type.

use std::io;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while encrypting, decrypting, wrapping or unwrapping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JSON document (options, JWE, keyprovider message, config) does not parse.
    #[error("{what} is not valid JSON of the expected shape: {source}")]
    Json {
        /// what was being parsed
        what: &'static str,
        /// the parser's complaint
        source: serde_json::Error,
    },
    /// An input is larger than this crate accepts for its kind.
    #[error("{what} has {size} bytes, more than the {limit} accepted")]
    TooLarge {
        /// what was being read
        what: &'static str,
        /// its size
        size: usize,
        /// the limit
        limit: usize,
    },
    /// A base64 field does not decode.
    #[error("{what} is not valid base64")]
    Base64 {
        /// what was being decoded
        what: &'static str,
    },
    /// The public options name a cipher this crate does not implement.
    #[error("layer cipher `{0}` is not supported; only AES_256_CTR_HMAC_SHA256 is")]
    UnsupportedCipher(String),
    /// The symmetric layer key has the wrong size.
    #[error("layer key has {0} bytes; AES_256_CTR_HMAC_SHA256 needs 32")]
    KeyLength(usize),
    /// The CTR nonce has the wrong size.
    #[error("layer nonce has {0} bytes; AES-CTR needs 16")]
    NonceLength(usize),
    /// The public options carry no HMAC, so the layer cannot be authenticated.
    #[error("the layer's public options carry no HMAC; refusing an unauthenticated layer")]
    MissingHmac,
    /// The HMAC in the public options has the wrong size.
    #[error("the layer HMAC has {0} bytes; HMAC-SHA256 has 32")]
    HmacLength(usize),
    /// The HMAC over the ciphertext does not match: ciphertext, key or annotation altered.
    #[error("HMAC of the encrypted layer does not match: the blob or its annotations were altered; discard everything read from it")]
    HmacMismatch,
    /// The decrypted (or encrypted) plaintext has another digest than the options say.
    #[error(
        "layer plaintext digest is {actual}, expected {expected}; discard everything read from it"
    )]
    DigestMismatch {
        /// digest recorded in the options or descriptor
        expected: String,
        /// digest of the bytes that went through
        actual: String,
    },
    /// A digest string is not `<sha256|sha384|sha512>:<lowercase hex of the right length>`.
    #[error(transparent)]
    InvalidDigest(#[from] oci_model::DigestError),
    /// The cipher's result was asked for before its input was read to the end.
    #[error("the layer stream was not read to its end; read it to EOF before finishing")]
    NotAtEof,
    /// A stream read or write failed.
    #[error("layer stream I/O: {0}")]
    Io(#[from] io::Error),
    /// The media type cannot be encrypted or decrypted.
    #[error("media type `{0}` is not a layer type ocicrypt can encrypt or decrypt")]
    UnsupportedMediaType(String),
    /// The layer is already encrypted.
    #[error("layer with media type `{0}` is already encrypted")]
    AlreadyEncrypted(String),
    /// The layer is not encrypted.
    #[error("layer with media type `{0}` is not encrypted")]
    NotEncrypted(String),
    /// An `org.opencontainers.image.enc.keys.*` annotation value is malformed.
    #[error("annotation {annotation}: {reason}")]
    InvalidAnnotation {
        /// annotation name
        annotation: String,
        /// what is wrong
        reason: String,
    },
    /// The encryption had no recipient in any key wrapper.
    #[error("no recipient: give at least one key wrapper a public key, certificate or provider")]
    NoRecipients,
    /// The layer has no wrapped-key annotation that a configured key wrapper reads.
    #[error("the layer has no wrapped key for any configured key wrapper (layer annotations: {present:?})")]
    NoMatchingKeyWrapper {
        /// the `org.opencontainers.image.enc.keys.*` annotations present on the layer
        present: Vec<String>,
    },
    /// Every wrapped key was tried and none could be unwrapped.
    #[error("no wrapped key could be unwrapped: {}", format_attempts(.attempts))]
    KeyUnwrap {
        /// each attempt, in the order tried
        attempts: Vec<UnwrapAttempt>,
    },
    /// A key could not be parsed.
    #[cfg(feature = "asymmetric-keys")]
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// JWE wrapping or unwrapping failed.
    #[cfg(feature = "keywrap-jwe")]
    #[error(transparent)]
    Jwe(#[from] crate::keywrap::jwe::JweError),
    /// PKCS#7 wrapping or unwrapping failed.
    #[cfg(feature = "keywrap-pkcs7")]
    #[error(transparent)]
    Pkcs7(#[from] crate::keywrap::pkcs7::Pkcs7Error),
    /// The keyprovider protocol or one of its transports failed.
    #[cfg(feature = "keywrap-keyprovider")]
    #[error(transparent)]
    KeyProvider(#[from] crate::keywrap::keyprovider::KeyProviderError),
    /// A key argument (`jwe:<file>`, `provider:<name>`, …) is malformed.
    #[error("key argument `{spec}`: {reason}")]
    InvalidKeySpec {
        /// the argument
        spec: String,
        /// what is wrong
        reason: String,
    },
    /// A key or certificate file named on a command line cannot be read.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// the file
        path: String,
        /// what went wrong
        reason: String,
    },
    /// An OCI image layout on disk is malformed.
    #[error("OCI layout {path}: {reason}")]
    Layout {
        /// the layout or file concerned
        path: String,
        /// what is wrong
        reason: String,
    },
}

/// One failed unwrap of one wrapped key.
#[derive(Debug)]
pub struct UnwrapAttempt {
    /// the annotation the wrapped key came from
    pub annotation: String,
    /// index of the wrapped key among the comma-separated values
    pub index: usize,
    /// why it failed
    pub error: Box<Error>,
}

fn format_attempts(attempts: &[UnwrapAttempt]) -> String {
    if attempts.is_empty() {
        return "nothing was tried".to_string();
    }
    attempts
        .iter()
        .map(|a| format!("{}[{}]: {}", a.annotation, a.index, a.error))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The crate error carried inside an [`io::Error`] returned by the streaming
    /// readers (HMAC or digest mismatch at end of stream), if there is one.
    pub fn from_io(err: &io::Error) -> Option<&Error> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
    }

    /// Turns an [`io::Error`] from the streaming readers back into the crate error it
    /// carries, or wraps it as [`Error::Io`].
    pub fn from_io_error(err: io::Error) -> Error {
        if !err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::Io(err);
        }
        let kind = err.kind();
        match err.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            _ => Error::Io(io::Error::from(kind)),
        }
    }

    pub(crate) fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> Error {
        move |source| Error::Json { what, source }
    }

    pub(crate) fn into_io(self) -> io::Error {
        match self {
            Error::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
