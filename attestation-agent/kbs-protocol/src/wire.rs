//! The KBS protocol's JSON messages, field for field as trustee speaks them.
//!
//! Top-level members are kebab-case (`extra-params`, `runtime-data`, ...), the members of the
//! composite evidence are snake-case (`primary_evidence`, `additional_evidence`): that mix is
//! the wire contract, pinned by tests against bodies captured from a running trustee KBS.

use serde::{Deserialize, Serialize};

use crate::hash::HashAlgorithm;

/// Protocol version this client speaks; trustee requires exactly `=0.4.0`.
pub const KBS_PROTOCOL_VERSION: &str = "0.4.0";
/// Path prefix of every KBS endpoint.
pub const KBS_PATH_PREFIX: &str = "kbs/v0";
/// Name of the session cookie set by `/auth` and sent back on `/attest`.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// `POST /kbs/v0/auth` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: String,
    pub tee: String,
    #[serde(rename = "extra-params")]
    pub extra_params: RequestExtraParams,
}

/// `extra-params` of the `/auth` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestExtraParams {
    #[serde(rename = "supported-hash-algorithms")]
    pub supported_hash_algorithms: Vec<String>,
}

impl Request {
    /// The request this client sends for `tee`, advertising every hash it can compute.
    pub fn new(tee: &str) -> Self {
        Self {
            version: KBS_PROTOCOL_VERSION.to_string(),
            tee: tee.to_string(),
            extra_params: RequestExtraParams {
                supported_hash_algorithms: HashAlgorithm::SUPPORTED
                    .iter()
                    .map(|alg| alg.name().to_string())
                    .collect(),
            },
        }
    }
}

/// `/auth` reply: the nonce to bind, and `extra-params` that is either `""` or an object that
/// may carry `selected-hash-algorithm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: String,
    #[serde(rename = "extra-params")]
    pub extra_params: serde_json::Value,
}

/// A challenge whose `extra-params` this client cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the KBS selected hash algorithm {0:?}, which this client does not implement (sha256, sha384, sha512)")]
    UnsupportedHashAlgorithm(String),
    #[error("the KBS challenge has malformed extra-params: {0}")]
    MalformedExtraParams(String),
}

impl Challenge {
    /// The hash for the report data: the KBS's `selected-hash-algorithm` (case-insensitive)
    /// when given, else SHA-384.
    pub fn hash_algorithm(&self) -> Result<HashAlgorithm, ChallengeError> {
        match &self.extra_params {
            serde_json::Value::String(s) if s.is_empty() => Ok(HashAlgorithm::DEFAULT),
            serde_json::Value::Null => Ok(HashAlgorithm::DEFAULT),
            serde_json::Value::Object(map) => match map.get("selected-hash-algorithm") {
                None => Ok(HashAlgorithm::DEFAULT),
                Some(serde_json::Value::String(name)) => HashAlgorithm::from_name(name)
                    .ok_or_else(|| ChallengeError::UnsupportedHashAlgorithm(name.clone())),
                Some(other) => Err(ChallengeError::MalformedExtraParams(format!(
                    "selected-hash-algorithm is not a string: {other}"
                ))),
            },
            other => Err(ChallengeError::MalformedExtraParams(format!(
                "expected \"\" or an object, got {other}"
            ))),
        }
    }
}

/// The TEE public key as a JWK (`tee-pubkey`). Field order follows trustee's serializer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum TeePubKey {
    #[serde(rename = "EC")]
    Ec {
        crv: String,
        alg: String,
        x: String,
        y: String,
    },
    #[serde(rename = "RSA")]
    Rsa { alg: String, n: String, e: String },
    /// An "Algorithm Key Pair" key (draft-ietf-jose-pqc-kem): trustee's experimental
    /// post-quantum `tee-pubkey`, `{"kty":"AKP","alg":"ML-KEM-768+A192KW","pub":"<b64url>"}`
    /// with the 1184-byte ML-KEM-768 encapsulation key.
    #[serde(rename = "AKP")]
    Akp {
        alg: String,
        #[serde(rename = "pub")]
        public: String,
    },
}

/// `init-data` of the attestation: trustee accepts only `format = "toml"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitData {
    pub format: String,
    pub body: String,
}

impl InitData {
    /// The initdata TOML document exactly as AA received it.
    pub fn toml(body: &str) -> Self {
        Self {
            format: "toml".to_string(),
            body: body.to_string(),
        }
    }
}

/// `runtime-data` of the attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeData {
    pub nonce: String,
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: TeePubKey,
}

/// `tee-evidence` of the attestation (snake-case members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompositeEvidence {
    pub primary_evidence: serde_json::Value,
    /// JSON text `{"<tee>": <evidence>, ...}` of the device attesters, or `""`.
    pub additional_evidence: String,
}

/// `POST /kbs/v0/attest` body. `init-data` is `null` when AA has no initdata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    #[serde(rename = "init-data", default)]
    pub init_data: Option<InitData>,
    #[serde(rename = "runtime-data")]
    pub runtime_data: RuntimeData,
    #[serde(rename = "tee-evidence")]
    pub tee_evidence: CompositeEvidence,
}

/// `/attest` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
}

/// Error body of the KBS (RFC 7807 style): `type` ends in the error kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInformation {
    #[serde(rename = "type")]
    pub error_type: String,
    pub detail: String,
}

impl ErrorInformation {
    /// The kind after the last `/` of `type`, e.g. `PolicyDeny` or `PluginInternalError`.
    pub fn kind(&self) -> &str {
        self.error_type
            .rsplit('/')
            .next()
            .unwrap_or(self.error_type.as_str())
    }
}

impl std::fmt::Display for ErrorInformation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind(), self.detail)
    }
}

/// A resource reply: a JWE in flattened JSON serialization. Members stay as received, so the
/// AAD is computed over the exact `protected` string the KBS sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JweResponse {
    pub protected: String,
    pub encrypted_key: String,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad: Option<String>,
}
