//! Sealed secrets (spec 5.3): `sealed.<header>.<payload>.<signature>`, a compact JWS whose
//! payload says where the secret is.
//!
//! Unsealing ([`Unsealer::unseal`]):
//! 1. the text must start with `sealed.` and have exactly three more dot-separated parts,
//!    each unpadded base64url;
//! 2. unless verification is switched off by configuration, the header must say
//!    `"alg":"ES256"` and carry a `kid`, and the ES256 signature over `<header>.<payload>`
//!    must verify with the P-256 JWK named by `kid`: a resource URI (`kbs:///…`, fetched
//!    through the process's KBC) or a file name inside the sealed-secret directory
//!    ([`DEFAULT_SEALED_SECRET_DIR`]; no absolute paths, no `..`, no symlink out of it);
//! 3. the payload must have version `0.1.0` and type `vault` (the secret is fetched from
//!    the provider's secret store) or `envelope` (the data key is decrypted by the
//!    provider's KMS, then the data with A256GCM or A256CTR).
//!
//! Without verification the header and signature are not read at all (upstream's
//! `sealed.fakejwsheader.<payload>.fakesignature` secrets unseal), so anyone who can hand
//! the hub a secret chooses where it is fetched from: use it only for tests.
//!
//! Every malformed part has its own [`UnsealError`] variant; the plaintext is wiped from
//! memory when dropped.

mod jws;
mod payload;

use std::{
    io::{self, Read as _},
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use kbs_protocol::{ResourceUri, ResourceUriError};
use kms::{Kbc, KbcError, KmsError, KmsProviders, WrapError, WrapType, WRAP_KEY_LEN};
use tracing::debug;
use zeroize::Zeroizing;

use jws::MAX_SEALED_SECRET_LEN;
pub use jws::{
    generate_key_pair, sign, signing_key_from_jwk, verifying_key_from_jwk, CompactJws,
    GeneratedKeyPair, JwkError, JwsPart,
};
pub use payload::{EnvelopeSecret, SecretContent, SecretPayload, VaultSecret};

/// Where the verification keys named by a file-name `kid` live.
pub const DEFAULT_SEALED_SECRET_DIR: &str = "/run/confidential-containers/cdh/sealed-secret";

/// Why a sealed secret was not unsealed.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// The input is not UTF-8 text.
    #[error("the sealed secret is not UTF-8 text")]
    NotUtf8,
    /// The input is larger than [`MAX_SEALED_SECRET_LEN`].
    #[error("the sealed secret has {len} bytes; at most {max} are accepted")]
    TooLarge {
        /// its size
        len: usize,
        /// the limit
        max: usize,
    },
    /// The `sealed.` prefix is missing.
    #[error(
        "the secret does not start with `sealed.`; expected sealed.<header>.<payload>.<signature>"
    )]
    MissingPrefix,
    /// Not four dot-separated parts.
    #[error("the sealed secret has {found} dot-separated parts; expected 4: sealed.<header>.<payload>.<signature>")]
    PartCount {
        /// how many there are
        found: usize,
    },
    /// A part is not unpadded base64url.
    #[error("the sealed secret's {part} is not unpadded base64url: {reason}")]
    BadBase64 {
        /// the part
        part: JwsPart,
        /// the decoder's complaint
        reason: String,
    },
    /// The header is not a JSON object of strings.
    #[error("the sealed secret's header is not a JWS header: {0}")]
    InvalidHeader(String),
    /// The header has no `alg`.
    #[error("the sealed secret's header has no `alg`; it must be ES256")]
    MissingAlg,
    /// The header names another algorithm.
    #[error("the sealed secret is signed with `{0}`; only ES256 is accepted")]
    UnsupportedAlg(String),
    /// The header has no `kid`.
    #[error("the sealed secret's header has no `kid` naming its verification key")]
    MissingKid,
    /// `kid` looks like a resource URI but is not a valid one.
    #[error("the sealed secret's kid `{kid}` is not a valid resource URI: {source}")]
    InvalidKidUri {
        /// the kid
        kid: String,
        /// the parser's complaint
        source: ResourceUriError,
    },
    /// `kid` is a file name that would leave the sealed-secret directory.
    #[error("the sealed secret's kid `{kid}` is not a file name inside the sealed-secret directory: {reason}")]
    InvalidKidPath {
        /// the kid
        kid: String,
        /// what is wrong
        reason: &'static str,
    },
    /// No verification key exists under `kid`.
    #[error("no verification key `{kid}` (neither a KBS resource nor a file in the sealed-secret directory)")]
    VerificationKeyNotFound {
        /// the kid
        kid: String,
    },
    /// The KBC failed to deliver the verification key.
    #[error("fetching the verification key `{kid}` failed: {source}")]
    VerificationKeyFetch {
        /// the kid
        kid: String,
        /// the KBC's error
        source: KbcError,
    },
    /// The verification key file could not be read.
    #[error("reading the verification key {path}: {source}")]
    VerificationKeyRead {
        /// the file
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// The verification key is not a P-256 JWK.
    #[error("the verification key `{kid}` is unusable: {source}")]
    InvalidVerificationKey {
        /// the kid
        kid: String,
        /// what is wrong
        source: JwkError,
    },
    /// The signature is not 64 bytes r ‖ s.
    #[error("the sealed secret's signature has {len} bytes; ES256 needs 64 (r ‖ s)")]
    SignatureEncoding {
        /// its length
        len: usize,
    },
    /// The signature does not verify.
    #[error("the sealed secret's signature does not verify: the secret was altered or signed with another key")]
    BadSignature,
    /// The payload is not a JSON object.
    #[error("the sealed secret's payload is not a JSON object: {0}")]
    PayloadNotJson(String),
    /// The payload has no `version`.
    #[error("the sealed secret's payload has no `version`; expected 0.1.0")]
    MissingVersion,
    /// The payload has another version.
    #[error("the sealed secret's payload version is {0}; only 0.1.0 is supported")]
    UnsupportedVersion(String),
    /// The payload has no `type`.
    #[error("the sealed secret's payload has no `type`; expected vault or envelope")]
    MissingType,
    /// The payload has another type.
    #[error("the sealed secret's payload type is `{0}`; expected vault or envelope")]
    UnknownType(String),
    /// The payload's fields do not fit its type.
    #[error("the sealed secret's {kind} payload is malformed: {reason}")]
    InvalidPayload {
        /// `vault` or `envelope`
        kind: String,
        /// the parser's complaint
        reason: String,
    },
    /// An envelope field is not standard base64.
    #[error("the envelope's `{field}` is not standard base64: {reason}")]
    InvalidEnvelopeField {
        /// the field
        field: &'static str,
        /// the decoder's complaint
        reason: String,
    },
    /// The envelope's `wrap_type` is unknown.
    #[error("the envelope's wrap_type: {0}")]
    UnsupportedWrapType(WrapError),
    /// The provider could not be built or failed.
    #[error("{0}")]
    Provider(#[from] KmsError),
    /// The data key does not open the envelope's data.
    #[error("decrypting the envelope's data with its data key failed: {0}")]
    EnvelopeDecrypt(WrapError),
    /// A blocking task died.
    #[error("unseal task failed: {0}")]
    Task(String),
}

/// What the unsealer does with the header and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// ES256 signature checked with the key named by `kid` (the default).
    Required,
    /// Header and signature ignored (configuration `skip_sealed_secret_verification`).
    Skipped,
}

/// Unseals sealed secrets with the process's KBC and KMS providers.
#[derive(Clone)]
pub struct Unsealer {
    kbc: Arc<dyn Kbc>,
    kms: KmsProviders,
    sealed_secret_dir: PathBuf,
    verification: Verification,
}

impl std::fmt::Debug for Unsealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealer")
            .field("kms", &self.kms)
            .field("sealed_secret_dir", &self.sealed_secret_dir)
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

impl Unsealer {
    /// An unsealer fetching verification keys through `kbc` and secrets through `kms`,
    /// verifying signatures, with keys files in [`DEFAULT_SEALED_SECRET_DIR`].
    pub fn new(kbc: Arc<dyn Kbc>, kms: KmsProviders) -> Self {
        Self {
            kbc,
            kms,
            sealed_secret_dir: PathBuf::from(DEFAULT_SEALED_SECRET_DIR),
            verification: Verification::Required,
        }
    }

    /// Reads file-name `kid`s from `dir` instead.
    pub fn with_sealed_secret_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sealed_secret_dir = dir.into();
        self
    }

    /// Sets whether signatures are verified.
    pub fn with_verification(mut self, verification: Verification) -> Self {
        self.verification = verification;
        self
    }

    /// Whether signatures are verified.
    pub fn verification(&self) -> Verification {
        self.verification
    }

    /// Checks a sealed secret and returns its payload.
    pub async fn open(&self, sealed: &[u8]) -> Result<SecretPayload, UnsealError> {
        if sealed.len() > MAX_SEALED_SECRET_LEN {
            return Err(UnsealError::TooLarge {
                len: sealed.len(),
                max: MAX_SEALED_SECRET_LEN,
            });
        }
        let text = std::str::from_utf8(sealed).map_err(|_| UnsealError::NotUtf8)?;
        // trailing whitespace (a file's newline) is not part of the secret
        let jws = CompactJws::split(text.trim_end())?;
        if self.verification == Verification::Required {
            let kid = jws.header_kid()?;
            // decode every part before fetching the key: malformed input costs nothing
            jws.decode(JwsPart::Signature)?;
            jws.decode(JwsPart::Payload)?;
            let key = self.verification_key(&kid).await?;
            jws.verify(&key)?;
            debug!(kid = %kid, "sealed secret signature verified");
        }
        SecretPayload::parse(&jws.decode(JwsPart::Payload)?)
    }

    /// Unseals a sealed secret: the secret's plaintext.
    pub async fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
        match self.open(sealed).await?.content {
            SecretContent::Vault(vault) => {
                let getter = self
                    .kms
                    .getter(&vault.provider, &vault.provider_settings)
                    .await?;
                Ok(getter.get_secret(&vault.name, &vault.annotations).await?)
            }
            SecretContent::Envelope(envelope) => self.open_envelope(&envelope).await,
        }
    }

    async fn open_envelope(
        &self,
        envelope: &EnvelopeSecret,
    ) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
        let wrap_type: WrapType = envelope
            .wrap_type
            .parse()
            .map_err(UnsealError::UnsupportedWrapType)?;
        let decode = |field: &'static str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|e| UnsealError::InvalidEnvelopeField {
                    field,
                    reason: e.to_string(),
                })
        };
        let encrypted_key = decode("encrypted_key", &envelope.encrypted_key)?;
        let encrypted_data = decode("encrypted_data", &envelope.encrypted_data)?;
        let iv = decode("iv", &envelope.iv)?;
        let decrypter = self
            .kms
            .decrypter(&envelope.provider, &envelope.provider_settings)
            .await?;
        let data_key = decrypter
            .decrypt(&encrypted_key, &envelope.key_id, &envelope.annotations)
            .await?;
        kms::unwrap(wrap_type, &data_key, &iv, &encrypted_data)
            .map_err(UnsealError::EnvelopeDecrypt)
    }

    /// The verification key named by `kid`.
    async fn verification_key(&self, kid: &str) -> Result<p256::ecdsa::VerifyingKey, UnsealError> {
        let jwk = if looks_like_resource_uri(kid) {
            let uri = ResourceUri::parse(kid).map_err(|source| UnsealError::InvalidKidUri {
                kid: shown(kid),
                source,
            })?;
            self.kbc
                .get_resource(&uri)
                .await
                .map_err(|source| match source {
                    KbcError::NotFound(_) => {
                        UnsealError::VerificationKeyNotFound { kid: shown(kid) }
                    }
                    source => UnsealError::VerificationKeyFetch {
                        kid: shown(kid),
                        source,
                    },
                })?
        } else {
            let dir = self.sealed_secret_dir.clone();
            let kid_owned = kid.to_string();
            tokio::task::spawn_blocking(move || read_key_file(&dir, &kid_owned))
                .await
                .map_err(|e| UnsealError::Task(e.to_string()))??
        };
        verifying_key_from_jwk(&jwk).map_err(|source| UnsealError::InvalidVerificationKey {
            kid: shown(kid),
            source,
        })
    }
}

/// `kbs://…` or `kbs+<plugin>://…`: a `kid` meant as a resource URI.
fn looks_like_resource_uri(kid: &str) -> bool {
    kid.starts_with("kbs://") || kid.starts_with("kbs+")
}

/// A peer-supplied string, cut for messages.
fn shown(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Reads `<dir>/<kid>` if `kid` is a relative path of plain components that stays inside
/// `dir` after resolving symlinks. Blocking.
fn read_key_file(dir: &Path, kid: &str) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
    let invalid = |reason| UnsealError::InvalidKidPath {
        kid: shown(kid),
        reason,
    };
    let relative = Path::new(kid);
    if kid.len() > 255 {
        return Err(invalid("longer than 255 bytes"));
    }
    if kid.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if relative.is_absolute() {
        return Err(invalid("absolute paths are not accepted"));
    }
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(invalid("`.` and `..` are not accepted"));
    }
    let not_found = || UnsealError::VerificationKeyNotFound { kid: shown(kid) };
    let read_err = |path: &Path, source| UnsealError::VerificationKeyRead {
        path: path.to_path_buf(),
        source,
    };
    let base = match std::fs::canonicalize(dir) {
        Ok(base) => base,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(read_err(dir, e)),
    };
    let path = base.join(relative);
    let resolved = match std::fs::canonicalize(&path) {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(read_err(&path, e)),
    };
    if !resolved.starts_with(&base) {
        return Err(invalid("it resolves outside the sealed-secret directory"));
    }
    let file = std::fs::File::open(&resolved).map_err(|e| read_err(&resolved, e))?;
    let metadata = file.metadata().map_err(|e| read_err(&resolved, e))?;
    if !metadata.is_file() {
        return Err(invalid("it is not a regular file"));
    }
    let mut contents = Zeroizing::new(Vec::new());
    file.take(jws::MAX_JWK_LEN as u64 + 1)
        .read_to_end(&mut contents)
        .map_err(|e| read_err(&resolved, e))?;
    Ok(contents)
}

/// Why a secret could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The signing JWK is unusable.
    #[error("signing key: {0}")]
    SigningKey(#[from] JwkError),
    /// The KMS could not wrap the data key.
    #[error("{0}")]
    Kms(#[from] KmsError),
    /// Encrypting the data failed.
    #[error("encrypting the secret: {0}")]
    Wrap(#[from] WrapError),
    /// Serializing failed.
    #[error("serializing the secret: {0}")]
    Json(#[from] serde_json::Error),
}

/// Signs `payload` with the private P-256 JWK `signing_jwk` as a sealed secret whose
/// header names `kid`.
pub fn seal(payload: &SecretPayload, signing_jwk: &[u8], kid: &str) -> Result<String, SealError> {
    let key = signing_key_from_jwk(signing_jwk)?;
    Ok(jws::sign(&payload.to_json()?, &key, kid)?)
}

/// Encrypts `plaintext` under a fresh data key, and the data key with `key_id` of
/// `provider`'s KMS: the envelope to seal.
pub async fn envelope(
    kms: &KmsProviders,
    provider: &str,
    provider_settings: kms::ProviderSettings,
    key_id: &str,
    plaintext: &[u8],
    wrap_type: WrapType,
) -> Result<EnvelopeSecret, SealError> {
    let encrypter = kms.encrypter(provider, &provider_settings).await?;
    let mut data_key = Zeroizing::new([0u8; WRAP_KEY_LEN]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, data_key.as_mut());
    let (iv, encrypted_data) = kms::wrap(wrap_type, data_key.as_ref(), plaintext)?;
    let (encrypted_key, annotations) = encrypter.encrypt(data_key.as_ref(), key_id).await?;
    Ok(EnvelopeSecret {
        key_id: key_id.into(),
        encrypted_key: STANDARD.encode(encrypted_key),
        encrypted_data: STANDARD.encode(encrypted_data),
        wrap_type: wrap_type.name().into(),
        iv: STANDARD.encode(iv),
        provider: provider.into(),
        provider_settings,
        annotations,
    })
}

#[cfg(test)]
mod tests;
