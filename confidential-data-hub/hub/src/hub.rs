//! The hub: one configuration, one KBC and one set of KMS providers for the life of the
//! process, and the ttRPC services kata-agent and image-rs call.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use kbs_protocol::{ResourceUri, ResourceUriError};
use kms::{Kbc, KbcError, KmsError, KmsProviders, WrapError, DEFAULT_KMS_CREDENTIAL_DIR};
use protos::{api, api_ttrpc, keyprovider, keyprovider_ttrpc};
use tracing::{debug, error, info, warn};
use ttrpc::r#async::{Service, TtrpcContext};
use zeroize::Zeroizing;

use crate::{
    config::Config,
    credentials::{write_credential, WriteCredentialError},
    keyprovider::{LayerKeyUnwrapper, UnwrapKeyError, WRAP_REFUSED},
    pull::{pull_image_code, ImagePuller, PullImageError},
    secret::{UnsealError, Unsealer, Verification, DEFAULT_SEALED_SECRET_DIR},
    secure_mount::{
        random_key, BlockDeviceRequest, KeySpec, SecureMountError, SecureMountPaths, SecureMounter,
    },
};

/// Prefix of every error message the CDH returns over ttRPC (upstream's wording).
pub const ERROR_PREFIX: &str = "[CDH] [ERROR]: ";

/// Why a resource could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum GetResourceError {
    /// `ResourcePath` is not a resource URI.
    #[error("ResourcePath is not a valid resource URI: {0}")]
    InvalidUri(#[from] ResourceUriError),
    /// The KBC failed or does not hold the resource.
    #[error("getting resource failed: {0}")]
    Kbc(#[from] KbcError),
}

/// Why a credential file was not provisioned.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The resource could not be fetched.
    #[error("fetching {uri}: {source}")]
    Fetch {
        /// the resource
        uri: String,
        /// the cause
        source: KbcError,
    },
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] WriteCredentialError),
    /// The blocking writer task died.
    #[error("credential writer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Directories the hub reads secrets' keys and credentials from (injectable for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubDirs {
    /// Verification keys of sealed secrets named by a file-name `kid`.
    pub sealed_secret_dir: PathBuf,
    /// KMS provider credentials, `<dir>/<provider>/…`.
    pub kms_credential_dir: PathBuf,
}

impl Default for HubDirs {
    fn default() -> Self {
        Self {
            sealed_secret_dir: PathBuf::from(DEFAULT_SEALED_SECRET_DIR),
            kms_credential_dir: PathBuf::from(DEFAULT_KMS_CREDENTIAL_DIR),
        }
    }
}

/// The confidential data hub.
pub struct Hub {
    config: Config,
    kbc: Arc<dyn Kbc>,
    kms: KmsProviders,
    unsealer: Unsealer,
    key_unwrapper: Arc<LayerKeyUnwrapper>,
    puller: ImagePuller,
    mounter: Arc<SecureMounter>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .field("unsealer", &self.unsealer)
            .field("puller", &self.puller)
            .field("mounter", &self.mounter)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub serving `config` with `kbc` (built once, from `config.kbc`), reading keys and
    /// credentials from the default directories.
    pub fn new(config: Config, kbc: Box<dyn Kbc>) -> Self {
        Self::with_dirs(config, kbc, HubDirs::default())
    }

    /// A hub reading keys and credentials from `dirs`.
    pub fn with_dirs(config: Config, kbc: Box<dyn Kbc>, dirs: HubDirs) -> Self {
        Self::with_kms(
            config,
            kbc,
            KmsProviders::new(dirs.kms_credential_dir),
            dirs.sealed_secret_dir,
        )
    }

    /// A hub with KMS providers of the caller's making (e.g. an AWS endpoint override);
    /// the hub's KBC serves their `kbs` provider.
    pub fn with_kms(
        config: Config,
        kbc: Box<dyn Kbc>,
        kms: KmsProviders,
        sealed_secret_dir: PathBuf,
    ) -> Self {
        let kbc: Arc<dyn Kbc> = Arc::from(kbc);
        let kms = kms.with_kbc(kbc.clone());
        #[cfg(feature = "aws")]
        let kms = match &config.aws_credential_dir {
            Some(dir) => kms.with_aws_credential_dir(dir),
            None => kms,
        };
        let verification = if config.skip_sealed_secret_verification {
            warn!(
                "SEALED SECRET SIGNATURES ARE NOT VERIFIED (skip_sealed_secret_verification): \
                 whoever can pass a secret to this hub chooses what it unseals; never use this \
                 outside tests"
            );
            Verification::Skipped
        } else {
            Verification::Required
        };
        let unsealer = Unsealer::new(kbc.clone(), kms.clone())
            .with_sealed_secret_dir(sealed_secret_dir)
            .with_verification(verification);
        let key_unwrapper = Arc::new(LayerKeyUnwrapper::new(kbc.clone(), kms.clone()));
        let puller = ImagePuller::new(
            config.image.clone(),
            config.aa.aa_socket.clone(),
            kbc.clone(),
            key_unwrapper.clone(),
        )
        .with_keyproviders(config.ocicrypt_keyprovider_config.clone());
        Self {
            config,
            kbc,
            kms,
            unsealer,
            key_unwrapper,
            puller,
            mounter: Arc::default(),
        }
    }

    /// The hub with SecureMount on other host paths and tools (tests, unusual guests).
    pub fn with_secure_mount_paths(mut self, paths: SecureMountPaths) -> Self {
        self.mounter = Arc::new(SecureMounter::new(paths));
        self
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The process's one KBC (for in-process users such as the image puller).
    pub fn kbc(&self) -> Arc<dyn Kbc> {
        self.kbc.clone()
    }

    /// The KMS providers (their `kbs` provider uses [`Hub::kbc`]).
    pub fn kms(&self) -> &KmsProviders {
        &self.kms
    }

    /// The sealed-secret unsealer.
    pub fn unsealer(&self) -> &Unsealer {
        &self.unsealer
    }

    /// The layer-key unwrapper: also an ocicrypt-rs `KeyProviderHandler`, so an in-process
    /// image puller decrypts layers with the same KBC and KMS as `UnWrapKey`.
    pub fn key_unwrapper(&self) -> Arc<LayerKeyUnwrapper> {
        self.key_unwrapper.clone()
    }

    /// Unseals a sealed secret (`sealed.<header>.<payload>.<signature>`).
    pub async fn unseal_secret(&self, secret: &[u8]) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
        self.unsealer.unseal(secret).await
    }

    /// Pulls `image_url` into `bundle_path` through image-rs in this process (resources and
    /// layer keys from this hub's KBC and KMS), records the pull with the attestation
    /// agent, and returns the manifest digest.
    pub async fn pull_image(
        &self,
        image_url: &str,
        bundle_path: &str,
    ) -> Result<String, PullImageError> {
        self.puller.pull_image(image_url, bundle_path).await
    }

    /// Mounts a `block-device` volume (LUKS2) at `mount_point`, which it returns. `flags`
    /// are ignored, as upstream ignores them.
    pub async fn secure_mount(
        &self,
        volume_type: &str,
        options: &HashMap<String, String>,
        flags: &[String],
        mount_point: &str,
    ) -> Result<PathBuf, SecureMountError> {
        match volume_type {
            "block-device" => {}
            "alibaba-cloud-oss" => {
                return Err(SecureMountError::VolumeTypeNotBuilt(volume_type.into()))
            }
            other => return Err(SecureMountError::UnknownVolumeType(other.into())),
        }
        if !flags.is_empty() {
            debug!(?flags, "SecureMount flags are ignored");
        }
        let request = BlockDeviceRequest::parse(options, mount_point)?;
        // every local check passes before a key is fetched or unsealed
        let mounter = self.mounter.clone();
        let prepared = tokio::task::spawn_blocking(move || mounter.prepare(request)).await??;
        let key =
            match &prepared.request().key {
                KeySpec::Sealed(secret) => self
                    .unsealer
                    .unseal(secret.as_bytes())
                    .await
                    .map_err(|e| SecureMountError::KeyUnseal(Box::new(e)))?,
                KeySpec::Resource(uri) => self.kbc.get_resource(uri).await.map_err(|source| {
                    SecureMountError::KeyFetch {
                        uri: uri.to_string(),
                        source,
                    }
                })?,
                KeySpec::File(path) => self.mounter.read_key_file(path).await?,
                KeySpec::Random => random_key(),
            };
        prepared.mount(key).await
    }

    /// The resource named by `resource_path`, a `kbs://` URI.
    pub async fn get_resource(
        &self,
        resource_path: &str,
    ) -> Result<Zeroizing<Vec<u8>>, GetResourceError> {
        let uri = ResourceUri::parse(resource_path)?;
        Ok(self.kbc.get_resource(&uri).await?)
    }

    /// Fetches every configured credential and writes it to its file, in order. Failures
    /// are logged and skipped (a KBS that is down must not stop the hub); returns the
    /// failures.
    pub async fn provision_credentials(&self) -> Vec<CredentialError> {
        let mut failures = Vec::new();
        for credential in &self.config.credentials {
            match self
                .provision(&credential.resource_uri, &credential.path)
                .await
            {
                Ok(()) => info!(
                    resource = %credential.resource_uri,
                    path = %credential.path.display(),
                    "credential written"
                ),
                Err(e) => {
                    error!(
                        resource = %credential.resource_uri,
                        path = %credential.path.display(),
                        "credential not provisioned: {e}"
                    );
                    failures.push(e);
                }
            }
        }
        failures
    }

    async fn provision(
        &self,
        uri: &ResourceUri,
        path: &std::path::Path,
    ) -> Result<(), CredentialError> {
        let contents =
            self.kbc
                .get_resource(uri)
                .await
                .map_err(|source| CredentialError::Fetch {
                    uri: uri.to_string(),
                    source,
                })?;
        let base = self.config.credentials_dir.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || write_credential(&base, &path, &contents)).await??;
        Ok(())
    }

    /// The ttRPC services to serve: every method of the spec; `WrapKey` answers
    /// FAILED_PRECONDITION (the hub never wraps keys).
    pub fn ttrpc_services(self: &Arc<Self>) -> Vec<HashMap<String, Service>> {
        vec![
            api_ttrpc::create_get_resource_service(self.clone()),
            api_ttrpc::create_sealed_secret_service(self.clone()),
            api_ttrpc::create_secure_mount_service(self.clone()),
            api_ttrpc::create_image_pull_service(self.clone()),
            keyprovider_ttrpc::create_key_provider_service(self.clone()),
        ]
    }

    /// The services of the per-service sockets in `services_dir`, by socket file name
    /// (`imagepull.sock`, `sealedsecrets.sock`, `securemount.sock`, `getresource.sock`):
    /// one service each, as upstream serves them.
    pub fn per_service_ttrpc_services(
        self: &Arc<Self>,
    ) -> Vec<(&'static str, HashMap<String, Service>)> {
        vec![
            (
                "imagepull.sock",
                api_ttrpc::create_image_pull_service(self.clone()),
            ),
            (
                "sealedsecrets.sock",
                api_ttrpc::create_sealed_secret_service(self.clone()),
            ),
            (
                "securemount.sock",
                api_ttrpc::create_secure_mount_service(self.clone()),
            ),
            (
                "getresource.sock",
                api_ttrpc::create_get_resource_service(self.clone()),
            ),
        ]
    }
}

fn status(code: ttrpc::Code, e: &dyn std::fmt::Display) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, format!("{ERROR_PREFIX}{e}")))
}

/// NOT_FOUND when the KBC has no such resource (KBS 404), PERMISSION_DENIED when the KBS
/// refuses it to a freshly attested guest (policy denial, or trustee's 401 for a missing
/// resource), UNAVAILABLE when too many KBS requests are in flight, INTERNAL otherwise.
fn kbc_code(e: &KbcError) -> ttrpc::Code {
    match e {
        KbcError::NotFound(_) => ttrpc::Code::NOT_FOUND,
        #[cfg(feature = "kbs")]
        KbcError::Denied { .. } => ttrpc::Code::PERMISSION_DENIED,
        #[cfg(feature = "kbs")]
        KbcError::Busy { .. } => ttrpc::Code::UNAVAILABLE,
        _ => ttrpc::Code::INTERNAL,
    }
}

/// NOT_FOUND for a missing secret or key, PERMISSION_DENIED for a refusal, INVALID_ARGUMENT
/// when the request names an unknown provider or passes settings it does not take,
/// UNIMPLEMENTED for a provider left out of the build, INTERNAL otherwise.
fn kms_code(e: &KmsError) -> ttrpc::Code {
    if e.is_not_found() {
        ttrpc::Code::NOT_FOUND
    } else if e.is_denied() {
        ttrpc::Code::PERMISSION_DENIED
    } else if e.is_invalid_request() {
        ttrpc::Code::INVALID_ARGUMENT
    } else if matches!(e, KmsError::NotCompiled { .. }) {
        ttrpc::Code::UNIMPLEMENTED
    } else {
        ttrpc::Code::INTERNAL
    }
}

/// The ttRPC status for a failed GetResource: INVALID_ARGUMENT for a bad URI, else as
/// [`kbc_code`]. The message says what failed, never what the resource holds.
fn get_resource_status(e: &GetResourceError) -> ttrpc::Error {
    let code = match e {
        GetResourceError::InvalidUri(_) => ttrpc::Code::INVALID_ARGUMENT,
        GetResourceError::Kbc(e) => kbc_code(e),
    };
    status(code, e)
}

/// The ttRPC code of a failed UnsealSecret: INVALID_ARGUMENT for malformed input,
/// PERMISSION_DENIED for a signature that does not verify (or a refused secret), NOT_FOUND
/// for a missing secret or verification key, INTERNAL otherwise.
pub fn unseal_code(e: &UnsealError) -> ttrpc::Code {
    use UnsealError as E;
    match e {
        E::NotUtf8
        | E::TooLarge { .. }
        | E::MissingPrefix
        | E::PartCount { .. }
        | E::BadBase64 { .. }
        | E::InvalidHeader(_)
        | E::MissingAlg
        | E::UnsupportedAlg(_)
        | E::MissingKid
        | E::InvalidKidUri { .. }
        | E::InvalidKidPath { .. }
        | E::SignatureEncoding { .. }
        | E::PayloadNotJson(_)
        | E::MissingVersion
        | E::UnsupportedVersion(_)
        | E::MissingType
        | E::UnknownType(_)
        | E::InvalidPayload { .. }
        | E::InvalidEnvelopeField { .. }
        | E::UnsupportedWrapType(_)
        | E::EnvelopeDecrypt(WrapError::IvLength { .. }) => ttrpc::Code::INVALID_ARGUMENT,
        E::BadSignature => ttrpc::Code::PERMISSION_DENIED,
        E::VerificationKeyNotFound { .. } => ttrpc::Code::NOT_FOUND,
        E::VerificationKeyFetch { source, .. } => kbc_code(source),
        E::Provider(e) => kms_code(e),
        E::VerificationKeyRead { .. }
        | E::InvalidVerificationKey { .. }
        | E::EnvelopeDecrypt(_)
        | E::Task(_) => ttrpc::Code::INTERNAL,
    }
}

/// The ttRPC code of a failed SecureMount: INVALID_ARGUMENT for a malformed request,
/// UNIMPLEMENTED for a volume or encryption type left out of the build, NOT_FOUND for a
/// missing device or key, ALREADY_EXISTS for a device, name or mount point in use,
/// FAILED_PRECONDITION when the guest cannot do it (no device-mapper, no LUKS volume),
/// PERMISSION_DENIED for a key that does not open the volume, INTERNAL otherwise.
pub fn secure_mount_code(e: &SecureMountError) -> ttrpc::Code {
    use SecureMountError as E;
    match e {
        E::UnknownVolumeType(_)
        | E::UnknownOption { .. }
        | E::MissingOption(_)
        | E::InvalidOption { .. }
        | E::InvalidMountPoint { .. }
        | E::NotABlockDevice { .. }
        | E::KeyFileOutside { .. }
        | E::KeyLength { .. } => ttrpc::Code::INVALID_ARGUMENT,
        E::VolumeTypeNotBuilt(_) | E::EncryptionTypeNotBuilt(_) => ttrpc::Code::UNIMPLEMENTED,
        E::NoSuchDeviceId { .. } => ttrpc::Code::NOT_FOUND,
        E::KeyFile { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ttrpc::Code::NOT_FOUND
        }
        E::MountPointExists(_) | E::AlreadyFormatted { .. } | E::MapperNameInUse(_) => {
            ttrpc::Code::ALREADY_EXISTS
        }
        E::Busy(_) => ttrpc::Code::UNAVAILABLE,
        E::DeviceMapperUnavailable { .. } | E::NotLuks(_) | E::DeviceInUse { .. } => {
            ttrpc::Code::FAILED_PRECONDITION
        }
        E::WrongKey(_) => ttrpc::Code::PERMISSION_DENIED,
        E::KeyUnseal(e) => unseal_code(e),
        E::KeyFetch { source, .. } => kbc_code(source),
        E::BadUevent { .. }
        | E::KeyFile { .. }
        | E::Spawn { .. }
        | E::Tool { .. }
        | E::Layout(_)
        | E::Io { .. }
        | E::Task(_) => ttrpc::Code::INTERNAL,
    }
}

/// The ttRPC code of a failed UnWrapKey, on the same rules as [`unseal_code`].
pub fn unwrap_key_code(e: &UnwrapKeyError) -> ttrpc::Code {
    use UnwrapKeyError as E;
    match e {
        E::Request(_)
        | E::WrongOperation(_)
        | E::MissingAnnotation
        | E::Packet(_)
        | E::UnsupportedPacketVersion(_)
        | E::UnsupportedWrapType(_)
        | E::InvalidKid { .. }
        | E::MissingIv
        | E::Unwrap {
            source: WrapError::IvLength { .. },
            ..
        } => ttrpc::Code::INVALID_ARGUMENT,
        E::Kek { source, .. } => kbc_code(source),
        E::Provider(e) => kms_code(e),
        E::Unwrap { .. } | E::Output(_) => ttrpc::Code::INTERNAL,
    }
}

#[async_trait]
impl api_ttrpc::GetResourceService for Hub {
    async fn get_resource(
        &self,
        _ctx: &TtrpcContext,
        req: api::GetResourceRequest,
    ) -> ttrpc::Result<api::GetResourceResponse> {
        match Hub::get_resource(self, &req.ResourcePath).await {
            Ok(resource) => Ok(api::GetResourceResponse {
                Resource: resource.to_vec(),
                ..Default::default()
            }),
            Err(e) => {
                warn!("GetResource failed: {e}");
                Err(get_resource_status(&e))
            }
        }
    }
}

#[async_trait]
impl api_ttrpc::SealedSecretService for Hub {
    async fn unseal_secret(
        &self,
        _ctx: &TtrpcContext,
        req: api::UnsealSecretInput,
    ) -> ttrpc::Result<api::UnsealSecretOutput> {
        match Hub::unseal_secret(self, &req.secret).await {
            Ok(plaintext) => Ok(api::UnsealSecretOutput {
                plaintext: plaintext.to_vec(),
                ..Default::default()
            }),
            Err(e) => {
                warn!("UnsealSecret failed: {e}");
                Err(status(unseal_code(&e), &e))
            }
        }
    }
}

#[async_trait]
impl keyprovider_ttrpc::KeyProviderService for Hub {
    async fn wrap_key(
        &self,
        _ctx: &TtrpcContext,
        _req: keyprovider::KeyProviderKeyWrapProtocolInput,
    ) -> ttrpc::Result<keyprovider::KeyProviderKeyWrapProtocolOutput> {
        Err(status(ttrpc::Code::FAILED_PRECONDITION, &WRAP_REFUSED))
    }

    async fn un_wrap_key(
        &self,
        _ctx: &TtrpcContext,
        req: keyprovider::KeyProviderKeyWrapProtocolInput,
    ) -> ttrpc::Result<keyprovider::KeyProviderKeyWrapProtocolOutput> {
        match self
            .key_unwrapper
            .handle_unwrap_request(&req.KeyProviderKeyWrapProtocolInput)
            .await
        {
            Ok(output) => Ok(keyprovider::KeyProviderKeyWrapProtocolOutput {
                KeyProviderKeyWrapProtocolOutput: output.to_vec(),
                ..Default::default()
            }),
            Err(e) => {
                warn!("UnWrapKey failed: {e}");
                Err(status(unwrap_key_code(&e), &e))
            }
        }
    }
}

#[async_trait]
impl api_ttrpc::ImagePullService for Hub {
    async fn pull_image(
        &self,
        _ctx: &TtrpcContext,
        req: api::ImagePullRequest,
    ) -> ttrpc::Result<api::ImagePullResponse> {
        match Hub::pull_image(self, &req.image_url, &req.bundle_path).await {
            Ok(manifest_digest) => Ok(api::ImagePullResponse {
                manifest_digest,
                ..Default::default()
            }),
            Err(e) => {
                warn!("PullImage failed: {e}");
                Err(status(pull_image_code(&e), &e))
            }
        }
    }
}

#[async_trait]
impl api_ttrpc::SecureMountService for Hub {
    async fn secure_mount(
        &self,
        _ctx: &TtrpcContext,
        req: api::SecureMountRequest,
    ) -> ttrpc::Result<api::SecureMountResponse> {
        match Hub::secure_mount(
            self,
            &req.volume_type,
            &req.options,
            &req.flags,
            &req.mount_point,
        )
        .await
        {
            Ok(_) => Ok(api::SecureMountResponse::default()),
            Err(e) => {
                warn!("SecureMount failed: {e}");
                Err(status(secure_mount_code(&e), &e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Credential, LoadOptions};
    use crate::secure_mount::SecureMountPaths;

    /// Serves `default/key/1`, has no `default/key/2`, fails on anything else.
    struct FixedKbc;

    #[async_trait]
    impl Kbc for FixedKbc {
        async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
            match uri.repo_type_tag() {
                Some(("default", "key", "1")) => Ok(Zeroizing::new(b"top secret".to_vec())),
                Some(("default", "key", "2")) => Err(KbcError::NotFound(uri.to_string())),
                #[cfg(feature = "kbs")]
                Some(("default", "key", "denied")) => Err(KbcError::Denied {
                    uri: uri.to_string(),
                    source: Box::new(kbs_protocol::Error::Unauthorized {
                        path: "resource/default/key/denied".into(),
                        info: None,
                        body: String::new(),
                    }),
                }),
                _ => Err(KbcError::NotCompiled("cc_kbc".into())),
            }
        }
    }

    fn hub_in(dir: &std::path::Path, credentials: Vec<(&str, PathBuf)>) -> Hub {
        let mut options = LoadOptions::new(None, crate::Environment::default());
        options.kernel_cmdline = dir.join("cmdline");
        options.credentials_dir = dir.join("kbs");
        let mut config = crate::Config::load(&options).unwrap().config;
        config.credentials = credentials
            .into_iter()
            .map(|(uri, path)| Credential {
                resource_uri: ResourceUri::parse(uri).unwrap(),
                path,
            })
            .collect();
        Hub::new(config, Box::new(FixedKbc))
    }

    fn status(e: &GetResourceError) -> (ttrpc::Code, String) {
        match get_resource_status(e) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn get_resource_and_its_error_codes() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub_in(dir.path(), vec![]);
        assert_eq!(
            hub.get_resource("kbs:///default/key/1")
                .await
                .unwrap()
                .as_slice(),
            b"top secret"
        );

        let e = hub
            .get_resource("kbs:///default/../../etc/passwd")
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            GetResourceError::InvalidUri(ResourceUriError::DotSegment(_))
        ));
        let (code, message) = status(&e);
        assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
        assert!(
            message.starts_with("[CDH] [ERROR]: ResourcePath is not a valid resource URI"),
            "{message}"
        );

        let e = hub.get_resource("kbs:///default/key/2").await.unwrap_err();
        let (code, message) = status(&e);
        assert_eq!(code, ttrpc::Code::NOT_FOUND);
        assert_eq!(
            message,
            "[CDH] [ERROR]: getting resource failed: resource kbs:///default/key/2 not found"
        );

        #[cfg(feature = "kbs")]
        {
            let e = hub
                .get_resource("kbs:///default/key/denied")
                .await
                .unwrap_err();
            let (code, message) = status(&e);
            assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
            assert!(
                message.starts_with(
                    "[CDH] [ERROR]: getting resource failed: access to resource kbs:///default/key/denied denied: "
                ),
                "{message}"
            );
        }

        let e = hub.get_resource("kbs:///other/key/3").await.unwrap_err();
        let (code, message) = status(&e);
        assert_eq!(code, ttrpc::Code::INTERNAL);
        assert!(
            message.starts_with("[CDH] [ERROR]: getting resource failed: KBC `cc_kbc`"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn credentials_are_provisioned_and_failures_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let kbs = dir.path().join("kbs");
        let hub = hub_in(
            dir.path(),
            vec![
                ("kbs:///default/key/2", kbs.join("missing")),
                ("kbs:///default/key/1", kbs.join("sub/one")),
            ],
        );
        let failures = hub.provision_credentials().await;
        assert_eq!(failures.len(), 1);
        assert!(matches!(
            &failures[0],
            CredentialError::Fetch { uri, source: KbcError::NotFound(_) } if uri == "kbs:///default/key/2"
        ));
        assert_eq!(std::fs::read(kbs.join("sub/one")).unwrap(), b"top secret");
        assert!(!kbs.join("missing").exists());
    }

    fn secure_mount_status(e: &SecureMountError) -> (ttrpc::Code, String) {
        match super::status(secure_mount_code(e), e) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn secure_mount_checks_the_host_before_it_fetches_the_key() {
        use testkit::loopdev::{is_root, kernel_has_device_mapper, LoopDevice};

        let dir = tempfile::tempdir().unwrap();
        let hub = hub_in(dir.path(), vec![]);
        use crate::secure_mount::request::options;
        let mount_point = dir.path().join("volume");
        let mount_point = mount_point.to_str().unwrap();
        for (volume_type, code, message) in [
            (
                "alibaba-cloud-oss",
                ttrpc::Code::UNIMPLEMENTED,
                "[CDH] [ERROR]: volume_type `alibaba-cloud-oss` is not built into this hub; it mounts `block-device` volumes",
            ),
            (
                "nfs",
                ttrpc::Code::INVALID_ARGUMENT,
                "[CDH] [ERROR]: unknown volume_type `nfs`; this hub mounts `block-device` volumes",
            ),
        ] {
            let e = hub
                .secure_mount(volume_type, &HashMap::new(), &[], mount_point)
                .await
                .unwrap_err();
            assert_eq!(secure_mount_status(&e), (code, message.to_string()));
        }
        let e = hub
            .secure_mount(
                "block-device",
                &options(&[
                    ("sourceType", "empty"),
                    ("encryptionType", "zfs"),
                    ("deviceId", "7:0"),
                ]),
                &[],
                mount_point,
            )
            .await
            .unwrap_err();
        assert_eq!(secure_mount_status(&e).0, ttrpc::Code::UNIMPLEMENTED);

        if !is_root() || kernel_has_device_mapper() {
            eprintln!("key checks need root and run where device-mapper is missing");
            return;
        }
        let disk = LoopDevice::new(dir.path(), 8).unwrap();
        let before = std::fs::read(&disk.file).unwrap();
        let id = disk.id().unwrap();
        std::fs::write(dir.path().join("misc"), "236 device-mapper\n").unwrap();
        std::fs::create_dir(dir.path().join("mapper")).unwrap();
        let paths = SecureMountPaths {
            proc_misc: dir.path().join("misc"),
            mapper_dir: dir.path().join("mapper"),
            header_dir: dir.path().join("headers"),
            key_file_dir: dir.path().to_path_buf(),
            ..SecureMountPaths::default()
        };
        let hub = hub.with_secure_mount_paths(paths);
        let with_key = |key: &str| {
            options(&[
                ("deviceId", &id),
                ("sourceType", "empty"),
                ("encryptionType", "luks2"),
                ("key", key),
            ])
        };
        for (key, code, start) in [
            (
                "kbs:///default/key/2",
                ttrpc::Code::NOT_FOUND,
                "[CDH] [ERROR]: fetching the volume key kbs:///default/key/2: ",
            ),
            (
                "sealed.a.b",
                ttrpc::Code::INVALID_ARGUMENT,
                "[CDH] [ERROR]: unsealing the volume key: ",
            ),
            // the KBS key formats the device; the missing device-mapper stops the mapping
            // and the format is undone
            (
                "kbs:///default/key/1",
                ttrpc::Code::FAILED_PRECONDITION,
                "[CDH] [ERROR]: device-mapper is not available (cryptsetup: ",
            ),
        ] {
            let e = hub
                .secure_mount("block-device", &with_key(key), &[], mount_point)
                .await
                .unwrap_err();
            let (actual_code, message) = secure_mount_status(&e);
            assert_eq!(actual_code, code, "{key}: {message}");
            assert!(message.starts_with(start), "{key}: {message}");
            assert!(!message.contains("top secret"), "{message}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("headers"))
                .unwrap()
                .count(),
            0
        );
        assert!(std::fs::read(&disk.file).unwrap() == before);
    }

    #[test]
    fn debug_does_not_show_the_kbc() {
        let dir = tempfile::tempdir().unwrap();
        let debug = format!("{:?}", hub_in(dir.path(), vec![]));
        assert!(debug.starts_with("Hub { config: Config {"), "{debug}");
    }
}
