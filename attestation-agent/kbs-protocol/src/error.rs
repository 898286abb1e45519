//! Errors of the KBS client. Every variant is cloneable so that callers waiting on one
//! shared attestation all receive its outcome.

use crate::jwe::JweError;
use crate::keypair::KeyError;
use crate::token::TokenError;
use crate::wire::{ChallengeError, ErrorInformation};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the KBS said when it refused a request: its ErrorInformation if the body was one,
/// else (a prefix of) the body text.
pub(crate) fn describe(info: &Option<ErrorInformation>, body: &str) -> String {
    match info {
        Some(info) => info.to_string(),
        None if body.is_empty() => "(empty body)".to_string(),
        None => body.to_string(),
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("invalid KBS URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("invalid KBS root certificate (kbs_cert): {0}")]
    InvalidCertificate(String),

    #[error("building the HTTP client failed: {0}")]
    HttpClient(String),

    #[error("invalid KBS resource path {path:?}: {reason}")]
    InvalidResourcePath { path: String, reason: String },

    #[error("cannot reach the KBS at {url}: {message}")]
    Transport { url: String, message: String },

    #[error("TLS with the KBS at {url} failed: {message} (is the KBS certificate signed by the configured kbs_cert?)")]
    Tls { url: String, message: String },

    #[error("request to the KBS at {url} timed out after {timeout_ms} ms")]
    Timeout { url: String, timeout_ms: u128 },

    #[error("the KBS answered {status} at {url}: {}", describe(info, body))]
    ServerError {
        url: String,
        status: u16,
        info: Option<ErrorInformation>,
        body: String,
    },

    #[error(
        "the KBS refused the attestation request (/auth) with {status}: {}",
        describe(info, body)
    )]
    AuthRejected {
        status: u16,
        info: Option<ErrorInformation>,
        body: String,
    },

    #[error(
        "the KBS refused the evidence (/attest) with {status}: {}",
        describe(info, body)
    )]
    AttestationRejected {
        status: u16,
        info: Option<ErrorInformation>,
        body: String,
    },

    #[error("the KBS denied {path} with a freshly attested token (policy denial or missing resource; trustee answers 401 for both): {}", describe(info, body))]
    Unauthorized {
        path: String,
        info: Option<ErrorInformation>,
        body: String,
    },

    #[error("the KBS forbids {path} by policy: {}", describe(info, body))]
    Forbidden {
        path: String,
        info: Option<ErrorInformation>,
        body: String,
    },

    #[error("the KBS has no {path}: {}", describe(info, body))]
    NotFound {
        path: String,
        info: Option<ErrorInformation>,
        body: String,
    },

    #[error(
        "unexpected status {status} from the KBS at {url}: {}",
        describe(info, body)
    )]
    UnexpectedStatus {
        url: String,
        status: u16,
        info: Option<ErrorInformation>,
        body: String,
    },

    #[error(
        "the KBS refused to store {path} with {status}: {} (a 401 means the KBS does not accept the admin key that signed the token)",
        describe(info, body)
    )]
    AdminRejected {
        path: String,
        status: u16,
        info: Option<ErrorInformation>,
        body: String,
    },

    #[error("malformed reply from the KBS at {url}: {reason}")]
    Protocol { url: String, reason: String },

    #[error(transparent)]
    Challenge(#[from] ChallengeError),

    #[error("collecting TEE evidence failed: {0}")]
    Evidence(String),

    #[error("the token provider failed: {0}")]
    TokenProvider(String),

    #[error(transparent)]
    Token(#[from] TokenError),

    #[error("decrypting the KBS reply failed: {0}")]
    Jwe(#[from] JweError),

    #[error(transparent)]
    Key(#[from] KeyError),

    #[error("internal task failed: {0}")]
    Task(String),
}

impl Error {
    /// Transient failures worth another try: network errors, timeouts and 5xx answers.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Transport { .. } | Error::Timeout { .. } | Error::ServerError { .. }
        )
    }

    /// The KBS's ErrorInformation, when the error came with one.
    pub fn error_information(&self) -> Option<&ErrorInformation> {
        match self {
            Error::ServerError { info, .. }
            | Error::AuthRejected { info, .. }
            | Error::AttestationRejected { info, .. }
            | Error::Unauthorized { info, .. }
            | Error::Forbidden { info, .. }
            | Error::NotFound { info, .. }
            | Error::UnexpectedStatus { info, .. }
            | Error::AdminRejected { info, .. } => info.as_ref(),
            _ => None,
        }
    }
}
