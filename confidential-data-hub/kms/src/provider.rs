//! KMS and secret-store plugins ("providers"): the [`Getter`], [`Decrypter`] and
//! [`Encrypter`] traits, their errors, and [`KmsProviders`], the registry that builds a
//! provider's client by name.
//!
//! A provider is named by a sealed secret (`provider`) or an annotation packet; its public
//! settings come with it (`provider_settings`, e.g. an AWS region) and its credentials come
//! from files under the credential directory ([`DEFAULT_KMS_CREDENTIAL_DIR`], in the guest's
//! encrypted memory), never from the secret itself.
//!
//! | provider | Getter | Decrypter | Encrypter | built |
//! |---|---|---|---|---|
//! | `kbs` | KBS resource (name = resource URI) through the process's KBC | – | – | always |
//! | `offline_fs` | local store file | local AES-256-GCM keys | same keys | always |
//! | `aws` | Secrets Manager `GetSecretValue` | KMS `Decrypt` | KMS `Encrypt` | feature `aws` |
//! | `aliyun` | KMS instance or Secrets Manager `GetSecretValue` | KMS instance `Decrypt` | KMS instance `Encrypt` | feature `aliyun` |
//! | `ehsm` | eHSM `GetSecretValue` | eHSM `Decrypt` | eHSM `Encrypt` | feature `ehsm` |
//!
//! A provider left out of the build answers [`KmsError::NotCompiled`]; a name no build knows
//! answers [`KmsError::UnknownProvider`].

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::{offline_fs::OfflineFsError, wrap::WrapError, Kbc, KbcError};

/// Public settings a provider needs to build its client (`provider_settings`).
pub type ProviderSettings = Map<String, Value>;
/// Per-operation parameters of a provider (`annotations`), e.g. an encryption context.
pub type Annotations = Map<String, Value>;

/// Where provider credentials live: `<dir>/<provider>/…`. Upstream's location, inside the
/// credentials directory (`/run/confidential-containers/cdh/kbs`), so `[[credentials]]` and
/// `cdh.kbs_resources` can provision them from the KBS.
pub const DEFAULT_KMS_CREDENTIAL_DIR: &str = "/run/confidential-containers/cdh/kbs/kms-credential";

/// Provider name: KBS resources through the process's KBC.
pub const KBS_PROVIDER: &str = "kbs";
/// Provider name: local files (tests, offline guests).
pub const OFFLINE_FS_PROVIDER: &str = "offline_fs";
/// Provider name: AWS KMS and Secrets Manager.
pub const AWS_PROVIDER: &str = "aws";
/// Provider name: Alibaba Cloud KMS.
pub const ALIYUN_PROVIDER: &str = "aliyun";
/// Provider name: Intel eHSM-KMS.
pub const EHSM_PROVIDER: &str = "ehsm";

/// The providers this build serves.
pub const COMPILED_PROVIDERS: &[&str] = &[
    KBS_PROVIDER,
    OFFLINE_FS_PROVIDER,
    #[cfg(feature = "aws")]
    AWS_PROVIDER,
    #[cfg(feature = "aliyun")]
    ALIYUN_PROVIDER,
    #[cfg(feature = "ehsm")]
    EHSM_PROVIDER,
];

/// A provider operation, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// [`Getter::get_secret`]
    GetSecret,
    /// [`Decrypter::decrypt`]
    Decrypt,
    /// [`Encrypter::encrypt`]
    Encrypt,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::GetSecret => "get secrets",
            Operation::Decrypt => "decrypt",
            Operation::Encrypt => "encrypt",
        })
    }
}

/// Why a provider could not be built or could not serve a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// No provider has this name.
    #[error("unknown KMS provider `{}`; this build serves: {}", .0, COMPILED_PROVIDERS.join(", "))]
    UnknownProvider(String),
    /// The provider exists but this binary was built without it.
    #[error(
        "KMS provider `{provider}` is not compiled into this build (cargo feature `{feature}`)"
    )]
    NotCompiled {
        /// the provider
        provider: String,
        /// the feature that builds it
        feature: &'static str,
    },
    /// The provider cannot do this operation (e.g. `kbs` cannot decrypt).
    #[error("KMS provider `{provider}` cannot {operation}")]
    Unsupported {
        /// the provider
        provider: String,
        /// the operation asked for
        operation: Operation,
    },
    /// The provider needs a KBC and none was given.
    #[error("KMS provider `kbs` needs a KBC, and none is configured")]
    NoKbc,
    /// The provider does not hold this secret or key.
    #[error("KMS provider `{provider}` has no {what} `{name}`")]
    NotFound {
        /// the provider
        provider: String,
        /// `secret` or `key`
        what: &'static str,
        /// the secret name or key id
        name: String,
    },
    /// `provider_settings`, `annotations` or a name/key id is not what the provider takes.
    #[error("KMS provider `{provider}`: {reason}")]
    InvalidRequest {
        /// the provider
        provider: String,
        /// what is wrong
        reason: String,
    },
    /// The provider's credential file is missing or unusable.
    #[error("KMS provider `{provider}`: credential {path}: {reason}")]
    Credential {
        /// the provider
        provider: String,
        /// the credential file
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
    /// The KBC failed (provider `kbs`).
    #[error("KMS provider `kbs`: {0}")]
    Kbc(#[from] KbcError),
    /// The local store could not be loaded (provider `offline_fs`).
    #[error("KMS provider `offline_fs`: {0}")]
    Store(#[from] OfflineFsError),
    /// Local decryption failed (provider `offline_fs`).
    #[error("KMS provider `{provider}`: key `{key_id}`: {source}")]
    Crypto {
        /// the provider
        provider: String,
        /// the key
        key_id: String,
        /// what failed
        source: WrapError,
    },
    /// The remote KMS refused or failed the request.
    #[error("KMS provider `{provider}`: {operation} failed: {reason}")]
    Service {
        /// the provider
        provider: String,
        /// the operation
        operation: Operation,
        /// the service's answer, or the transport error
        reason: String,
    },
    /// The remote KMS denied access (credentials, key policy).
    #[error("KMS provider `{provider}`: access denied: {reason}")]
    AccessDenied {
        /// the provider
        provider: String,
        /// the service's answer
        reason: String,
    },
}

impl KmsError {
    /// Whether the error means "no such secret or key" (a missing KBS resource included).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            KmsError::NotFound { .. } | KmsError::Kbc(KbcError::NotFound(_))
        )
    }

    /// Whether the error means the caller may not have it (KBS policy, KMS access denied).
    pub fn is_denied(&self) -> bool {
        match self {
            KmsError::AccessDenied { .. } => true,
            #[cfg(feature = "kbs")]
            KmsError::Kbc(KbcError::Denied { .. }) => true,
            _ => false,
        }
    }

    /// Whether the error lies in the request (provider name, settings, annotations, name)
    /// rather than in the provider or the service.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            KmsError::UnknownProvider(_)
                | KmsError::Unsupported { .. }
                | KmsError::InvalidRequest { .. }
        )
    }
}

/// Reads secrets from a secret store (vault sealed secrets).
#[async_trait]
pub trait Getter: Send + Sync + fmt::Debug {
    /// The secret called `name`; the bytes are wiped from memory when dropped.
    async fn get_secret(
        &self,
        name: &str,
        annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError>;
}

/// Decrypts with a key held by a KMS (envelope sealed secrets, layer-key packets).
#[async_trait]
pub trait Decrypter: Send + Sync + fmt::Debug {
    /// `ciphertext` decrypted with the key `key_id`.
    async fn decrypt(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError>;
}

/// Encrypts with a key held by a KMS (the sealing side, e.g. the `secret` tool).
#[async_trait]
pub trait Encrypter: Send + Sync + fmt::Debug {
    /// `plaintext` encrypted with the key `key_id`, and the annotations the decrypting side
    /// must pass back to [`Decrypter::decrypt`].
    async fn encrypt(
        &self,
        plaintext: &[u8],
        key_id: &str,
    ) -> Result<(Vec<u8>, Annotations), KmsError>;
}

/// Builds provider clients by name: the one place that knows which providers exist.
#[derive(Clone)]
pub struct KmsProviders {
    kbc: Option<Arc<dyn Kbc>>,
    credential_dir: PathBuf,
    #[cfg(feature = "aws")]
    aws_endpoint_url: Option<String>,
    #[cfg(feature = "aws")]
    aws_credential_dir: Option<PathBuf>,
    #[cfg(feature = "aliyun")]
    aliyun_credential_dir: Option<PathBuf>,
    #[cfg(feature = "aliyun")]
    aliyun_network: crate::plugins::aliyun::AliyunNetwork,
    #[cfg(feature = "ehsm")]
    ehsm_credential_dir: Option<PathBuf>,
}

impl fmt::Debug for KmsProviders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("KmsProviders");
        s.field("kbc", &self.kbc.is_some())
            .field("credential_dir", &self.credential_dir);
        #[cfg(feature = "aws")]
        s.field("aws_endpoint_url", &self.aws_endpoint_url)
            .field("aws_credential_dir", &self.aws_credential_dir);
        #[cfg(feature = "aliyun")]
        s.field("aliyun_credential_dir", &self.aliyun_credential_dir)
            .field("aliyun_network", &self.aliyun_network);
        #[cfg(feature = "ehsm")]
        s.field("ehsm_credential_dir", &self.ehsm_credential_dir);
        s.finish()
    }
}

impl Default for KmsProviders {
    fn default() -> Self {
        Self::new(DEFAULT_KMS_CREDENTIAL_DIR)
    }
}

impl KmsProviders {
    /// Providers reading their credentials under `credential_dir`; no KBC yet.
    pub fn new(credential_dir: impl Into<PathBuf>) -> Self {
        Self {
            kbc: None,
            credential_dir: credential_dir.into(),
            #[cfg(feature = "aws")]
            aws_endpoint_url: None,
            #[cfg(feature = "aws")]
            aws_credential_dir: None,
            #[cfg(feature = "aliyun")]
            aliyun_credential_dir: None,
            #[cfg(feature = "aliyun")]
            aliyun_network: Default::default(),
            #[cfg(feature = "ehsm")]
            ehsm_credential_dir: None,
        }
    }

    /// The `kbs` provider fetches through `kbc` (the process's one KBC, so its token is
    /// reused).
    pub fn with_kbc(mut self, kbc: Arc<dyn Kbc>) -> Self {
        self.kbc = Some(kbc);
        self
    }

    /// Sends every AWS request to `url` instead of the regional endpoints (a local AWS
    /// emulator, a VPC endpoint). Set by the program, never by a sealed secret.
    #[cfg(feature = "aws")]
    pub fn with_aws_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.aws_endpoint_url = Some(url.into());
        self
    }

    /// Reads the AWS credential file from `dir` instead of `<credential dir>/aws`
    /// (upstream's `AWS_IN_GUEST_KEY_PATH`).
    #[cfg(feature = "aws")]
    pub fn with_aws_credential_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.aws_credential_dir = Some(dir.into());
        self
    }

    /// Reads the aliyun credential files from `dir` instead of `<credential dir>/aliyun`
    /// (upstream's `ALIYUN_IN_GUEST_KEY_PATH`).
    #[cfg(feature = "aliyun")]
    pub fn with_aliyun_credential_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.aliyun_credential_dir = Some(dir.into());
        self
    }

    /// Where the aliyun provider connects (tests, private networks). Set by the program,
    /// never by a sealed secret.
    #[cfg(feature = "aliyun")]
    pub fn with_aliyun_network(mut self, network: crate::plugins::aliyun::AliyunNetwork) -> Self {
        self.aliyun_network = network;
        self
    }

    /// The directory of the aliyun credential files.
    #[cfg(feature = "aliyun")]
    pub fn aliyun_credential_dir(&self) -> PathBuf {
        self.aliyun_credential_dir
            .clone()
            .unwrap_or_else(|| self.provider_dir(ALIYUN_PROVIDER))
    }

    /// Reads the eHSM credential files from `dir` instead of `<credential dir>/ehsm`
    /// (upstream's `EHSM_IN_GUEST_KEY_PATH`).
    #[cfg(feature = "ehsm")]
    pub fn with_ehsm_credential_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.ehsm_credential_dir = Some(dir.into());
        self
    }

    /// The directory of the eHSM credential files.
    #[cfg(feature = "ehsm")]
    pub fn ehsm_credential_dir(&self) -> PathBuf {
        self.ehsm_credential_dir
            .clone()
            .unwrap_or_else(|| self.provider_dir(EHSM_PROVIDER))
    }

    /// The credential directory.
    pub fn credential_dir(&self) -> &Path {
        &self.credential_dir
    }

    /// The AWS credential file: `credential.json` in `AWS_IN_GUEST_KEY_PATH` when set,
    /// else in `<credential dir>/aws`.
    #[cfg(feature = "aws")]
    pub fn aws_credential_file(&self) -> PathBuf {
        self.aws_credential_dir
            .clone()
            .unwrap_or_else(|| self.provider_dir(AWS_PROVIDER))
            .join(crate::plugins::aws::CREDENTIAL_FILE)
    }

    /// The directory of one provider's credentials.
    fn provider_dir(&self, provider: &str) -> PathBuf {
        self.credential_dir.join(provider)
    }

    /// The secret store of `provider`.
    #[cfg_attr(
        not(any(feature = "aws", feature = "aliyun", feature = "ehsm")),
        allow(unused_variables)
    )]
    pub async fn getter(
        &self,
        provider: &str,
        settings: &ProviderSettings,
    ) -> Result<Box<dyn Getter>, KmsError> {
        match provider {
            KBS_PROVIDER => {
                let kbc = self.kbc.clone().ok_or(KmsError::NoKbc)?;
                Ok(Box::new(crate::plugins::kbs::KbsGetter::new(kbc)))
            }
            OFFLINE_FS_PROVIDER => Ok(Box::new(crate::plugins::offline_fs::OfflineFsKms::new(
                self.provider_dir(OFFLINE_FS_PROVIDER),
            ))),
            #[cfg(feature = "aws")]
            AWS_PROVIDER => Ok(Box::new(self.aws(settings).await?)),
            #[cfg(feature = "aliyun")]
            ALIYUN_PROVIDER => Ok(Box::new(self.aliyun(settings).await?)),
            #[cfg(feature = "ehsm")]
            EHSM_PROVIDER => Ok(Box::new(self.ehsm(settings).await?)),
            other => Err(unknown_or_not_compiled(other)),
        }
    }

    /// The KMS decrypter of `provider`.
    #[cfg_attr(
        not(any(feature = "aws", feature = "aliyun", feature = "ehsm")),
        allow(unused_variables)
    )]
    pub async fn decrypter(
        &self,
        provider: &str,
        settings: &ProviderSettings,
    ) -> Result<Box<dyn Decrypter>, KmsError> {
        match provider {
            KBS_PROVIDER => Err(unsupported(provider, Operation::Decrypt)),
            OFFLINE_FS_PROVIDER => Ok(Box::new(crate::plugins::offline_fs::OfflineFsKms::new(
                self.provider_dir(OFFLINE_FS_PROVIDER),
            ))),
            #[cfg(feature = "aws")]
            AWS_PROVIDER => Ok(Box::new(self.aws(settings).await?)),
            #[cfg(feature = "aliyun")]
            ALIYUN_PROVIDER => Ok(Box::new(self.aliyun(settings).await?)),
            #[cfg(feature = "ehsm")]
            EHSM_PROVIDER => Ok(Box::new(self.ehsm(settings).await?)),
            other => Err(unknown_or_not_compiled(other)),
        }
    }

    /// The KMS encrypter of `provider` (sealing side).
    #[cfg_attr(
        not(any(feature = "aws", feature = "aliyun", feature = "ehsm")),
        allow(unused_variables)
    )]
    pub async fn encrypter(
        &self,
        provider: &str,
        settings: &ProviderSettings,
    ) -> Result<Box<dyn Encrypter>, KmsError> {
        match provider {
            KBS_PROVIDER => Err(unsupported(provider, Operation::Encrypt)),
            OFFLINE_FS_PROVIDER => Ok(Box::new(crate::plugins::offline_fs::OfflineFsKms::new(
                self.provider_dir(OFFLINE_FS_PROVIDER),
            ))),
            #[cfg(feature = "aws")]
            AWS_PROVIDER => Ok(Box::new(self.aws(settings).await?)),
            #[cfg(feature = "aliyun")]
            ALIYUN_PROVIDER => Ok(Box::new(self.aliyun(settings).await?)),
            #[cfg(feature = "ehsm")]
            EHSM_PROVIDER => Ok(Box::new(self.ehsm(settings).await?)),
            other => Err(unknown_or_not_compiled(other)),
        }
    }

    #[cfg(feature = "aws")]
    async fn aws(
        &self,
        settings: &ProviderSettings,
    ) -> Result<crate::plugins::aws::AwsKms, KmsError> {
        crate::plugins::aws::AwsKms::from_settings(
            settings,
            &self.aws_credential_file(),
            self.aws_endpoint_url.as_deref(),
        )
        .await
    }

    #[cfg(feature = "aliyun")]
    async fn aliyun(
        &self,
        settings: &ProviderSettings,
    ) -> Result<crate::plugins::aliyun::AliyunKms, KmsError> {
        crate::plugins::aliyun::AliyunKms::from_settings(
            settings,
            &self.aliyun_credential_dir(),
            &self.aliyun_network,
        )
        .await
    }

    #[cfg(feature = "ehsm")]
    async fn ehsm(
        &self,
        settings: &ProviderSettings,
    ) -> Result<crate::plugins::ehsm::EhsmKms, KmsError> {
        crate::plugins::ehsm::EhsmKms::from_settings(settings, &self.ehsm_credential_dir()).await
    }
}

/// The error for a provider name no arm matched: known but left out of this build, or
/// unknown.
fn unknown_or_not_compiled(provider: &str) -> KmsError {
    match provider {
        AWS_PROVIDER => KmsError::NotCompiled {
            provider: provider.into(),
            feature: "aws",
        },
        ALIYUN_PROVIDER => KmsError::NotCompiled {
            provider: provider.into(),
            feature: "aliyun",
        },
        EHSM_PROVIDER => KmsError::NotCompiled {
            provider: provider.into(),
            feature: "ehsm",
        },
        _ => KmsError::UnknownProvider(provider.chars().take(64).collect()),
    }
}

fn unsupported(provider: &str, operation: Operation) -> KmsError {
    KmsError::Unsupported {
        provider: provider.into(),
        operation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbs_protocol::ResourceUri;

    #[derive(Debug)]
    struct OneResourceKbc;

    #[async_trait]
    impl Kbc for OneResourceKbc {
        async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
            match uri.repo_type_tag() {
                Some(("default", "key", "1")) => Ok(Zeroizing::new(b"from the kbc".to_vec())),
                _ => Err(KbcError::NotFound(uri.to_string())),
            }
        }
    }

    #[tokio::test]
    async fn kbs_gets_through_the_kbc_and_cannot_decrypt() {
        let kms = KmsProviders::new("/nonexistent").with_kbc(Arc::new(OneResourceKbc));
        let getter = kms.getter("kbs", &Map::new()).await.unwrap();
        let secret = getter
            .get_secret("kbs:///default/key/1", &Map::new())
            .await
            .unwrap();
        assert_eq!(secret.as_slice(), b"from the kbc");
        let err = getter
            .get_secret("kbs:///default/key/2", &Map::new())
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");

        for err in [
            kms.decrypter("kbs", &Map::new()).await.unwrap_err(),
            kms.encrypter("kbs", &Map::new()).await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, KmsError::Unsupported { provider, .. } if provider == "kbs"),
                "{err}"
            );
            assert!(err.is_invalid_request());
        }
        assert_eq!(
            kms.decrypter("kbs", &Map::new())
                .await
                .unwrap_err()
                .to_string(),
            "KMS provider `kbs` cannot decrypt"
        );
    }

    #[tokio::test]
    async fn kbs_without_a_kbc_says_so() {
        let err = KmsProviders::new("/x")
            .getter("kbs", &Map::new())
            .await
            .unwrap_err();
        assert!(matches!(err, KmsError::NoKbc), "{err}");
    }

    #[tokio::test]
    async fn unknown_providers_are_refused_by_name() {
        let kms = KmsProviders::default();
        assert_eq!(
            kms.credential_dir(),
            Path::new("/run/confidential-containers/cdh/kbs/kms-credential")
        );
        for name in ["", "KBS", "vault", "EHSM", "kbs ", "../kbs", "aliyun/.."] {
            let err = kms.getter(name, &Map::new()).await.unwrap_err();
            assert!(
                matches!(&err, KmsError::UnknownProvider(n) if n == name),
                "{name}: {err}"
            );
            assert!(err.is_invalid_request());
            assert!(kms.decrypter(name, &Map::new()).await.is_err());
        }
        let long = "p".repeat(10_000);
        match kms.getter(&long, &Map::new()).await.unwrap_err() {
            KmsError::UnknownProvider(shown) => assert_eq!(shown.len(), 64),
            other => panic!("{other}"),
        }
    }

    /// Upstream's location inside the credentials directory, or `AWS_IN_GUEST_KEY_PATH`.
    #[cfg(feature = "aws")]
    #[test]
    fn the_aws_credential_file_is_upstreams() {
        let kms = KmsProviders::default();
        assert_eq!(
            kms.aws_credential_file(),
            Path::new("/run/confidential-containers/cdh/kbs/kms-credential/aws/credential.json")
        );
        assert!(kms
            .aws_credential_file()
            .starts_with("/run/confidential-containers/cdh/kbs"));
        let kms = kms.with_aws_credential_dir("/run/other/aws-keys");
        assert_eq!(
            kms.aws_credential_file(),
            Path::new("/run/other/aws-keys/credential.json")
        );
    }

    /// Upstream's locations, or `ALIYUN_IN_GUEST_KEY_PATH` / `EHSM_IN_GUEST_KEY_PATH`.
    #[cfg(all(feature = "aliyun", feature = "ehsm"))]
    #[test]
    fn the_aliyun_and_ehsm_credential_dirs_are_upstreams() {
        let kms = KmsProviders::default();
        assert_eq!(
            kms.aliyun_credential_dir(),
            Path::new("/run/confidential-containers/cdh/kbs/kms-credential/aliyun")
        );
        assert_eq!(
            kms.ehsm_credential_dir(),
            Path::new("/run/confidential-containers/cdh/kbs/kms-credential/ehsm")
        );
        let kms = kms
            .with_aliyun_credential_dir("/run/a")
            .with_ehsm_credential_dir("/run/e");
        assert_eq!(kms.aliyun_credential_dir(), Path::new("/run/a"));
        assert_eq!(kms.ehsm_credential_dir(), Path::new("/run/e"));
        assert_eq!(
            crate::plugins::aliyun::KEY_PATH_ENV,
            "ALIYUN_IN_GUEST_KEY_PATH"
        );
        assert_eq!(crate::plugins::ehsm::KEY_PATH_ENV, "EHSM_IN_GUEST_KEY_PATH");
    }

    #[cfg(not(any(feature = "aliyun", feature = "ehsm")))]
    #[tokio::test]
    async fn aliyun_and_ehsm_are_not_compiled_in() {
        for (name, feature) in [("aliyun", "aliyun"), ("ehsm", "ehsm")] {
            let err = KmsProviders::default()
                .getter(name, &Map::new())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, KmsError::NotCompiled { feature: f, .. } if *f == feature),
                "{err}"
            );
        }
    }

    #[cfg(not(feature = "aws"))]
    #[tokio::test]
    async fn aws_is_not_compiled_in() {
        let err = KmsProviders::default()
            .decrypter("aws", &Map::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, KmsError::NotCompiled { feature: "aws", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("cargo feature `aws`"), "{err}");
    }
}
