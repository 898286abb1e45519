//! `ImagePullService.PullImage` (spec 1.2, 5.7): image-rs in this process, with everything
//! it needs from the hub itself, never through the hub's own socket (spec 12 item 14):
//!
//! - configuration resources named by `kbs://` URIs (signature policy, registries.d
//!   sigstore configuration, auth.json, registries.conf) come from the hub's one KBC
//!   ([`KbcResources`]); `file://` URIs and absolute paths are read locally;
//! - layer keys come from the hub's [`LayerKeyUnwrapper`] as the in-process keyprovider
//!   `attestation-agent` (the name kata-agent's `OCICRYPT_KEYPROVIDER_CONFIG` gives the
//!   hub), so `UnWrapKey` and image pulls share one KBC and its token; the other providers
//!   of that file (`cmd` or `ttrpc`) unwrap the layers annotated for them
//!   ([`layer_key_wrappers`]);
//! - the signature policy is `image-policy`'s containers-policy.json when `[image]`
//!   configures one, else every image is accepted (as upstream).
//!
//! The image-rs client is built once, at the first pull, and shared: pulls of different
//! images run concurrently (upstream serialized every pull behind one mutex, spec 12
//! item 18); a layer two pulls want at once is fetched once.
//!
//! After a successful pull the attestation agent records the event
//! `github.com/confidential-containers PullImage {"digest":"…","image":"…"}` (RFC 8785
//! content) with `ExtendRuntimeMeasurement`. An agent that answers NOT_ENABLED or
//! NOT_SUPPORTED, or that cannot be reached at all (no agent in this guest), is logged and
//! the pull succeeds. Any other failure **fails the pull closed**: the agent is there and
//! was asked to measure, so an image that runs without its measurement would be invisible
//! to the verifier. The bundle is then removed again, so nothing unmeasured is left for the
//! caller to use and a retry starts clean. (Upstream also failed the pull, but left the
//! bundle behind.)

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use image_policy::{ContainersPolicy, PolicyLoadError, PolicyOptions};
use image_rs::{
    DecryptError, ImageClient, ImageConfig, KeyUnwrap, LayerError, LocalResources,
    OcicryptKeyUnwrap, PullError, PullOptions, Reference, ReferenceError, RegistryError,
    ResolveError, ResourceError, ResourceProvider, UnpackError,
};
use kbs_protocol::ResourceUri;
use kms::Kbc;
use ocicrypt_rs::keywrap::{
    keyprovider::{
        KeyProviderAttrs, KeyProviderError, KeyProviderKeyWrapper, KeyProviderTransport,
        OcicryptConfig,
    },
    KeyWrappers,
};
use protos::{pull_image_event, EventError};
use tokio::sync::OnceCell;
use tracing::{error, info, warn};

use crate::{
    client::{AaClient, ClientError, RuntimeMeasurementResult},
    keyprovider::LayerKeyUnwrapper,
};

/// How long the attestation agent gets to record a pull (upstream's CDH→AA timeout).
pub(crate) const AA_TIMEOUT: Duration = Duration::from_secs(10);

/// The keyprovider name the hub answers layer-key requests for (annotation
/// `org.opencontainers.image.enc.keys.provider.attestation-agent`).
pub(crate) const KEY_PROVIDER_NAME: &str = "attestation-agent";

/// Longest `bundle_path` accepted (Linux `PATH_MAX`).
pub(crate) const MAX_BUNDLE_PATH_LEN: usize = 4096;

/// Why `bundle_path` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundlePathProblem {
    /// empty
    Empty,
    /// not absolute
    Relative,
    /// holds a `..` component
    DotDot,
    /// holds a NUL byte
    Nul,
    /// longer than [`MAX_BUNDLE_PATH_LEN`]
    TooLong,
    /// is `/`
    Root,
}

impl std::fmt::Display for BundlePathProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BundlePathProblem::Empty => "it is empty",
            BundlePathProblem::Relative => "it is not an absolute path",
            BundlePathProblem::DotDot => "it contains a `..` component",
            BundlePathProblem::Nul => "it contains a NUL byte",
            BundlePathProblem::TooLong => "it is longer than 4096 bytes",
            BundlePathProblem::Root => "it is `/`; a bundle needs its own directory",
        })
    }
}

/// Why the PullImage event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum MeasurementError {
    /// The event cannot be written to the eventlog (e.g. an absurdly long image name).
    #[error("the PullImage event cannot be recorded: {0}")]
    Event(#[from] EventError),
    /// The agent was reached but did not record the event.
    #[error("the attestation agent did not record the PullImage event: {0}")]
    Agent(Box<ClientError>),
}

/// Why an image was not pulled.
#[derive(Debug, thiserror::Error)]
pub enum PullImageError {
    /// `bundle_path` is unusable.
    #[error("bundle_path {path:?} is refused: {problem}")]
    InvalidBundlePath {
        /// the path (shortened)
        path: String,
        /// what is wrong
        problem: BundlePathProblem,
    },
    /// `image_url` is not an image reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The image client could not be set up from `[image]`.
    #[error("setting up the image client from [image]: {}", describe(.0))]
    Setup(Box<PullError>),
    /// The signature policy `[image]` names could not be set up.
    #[error("setting up the image signature policy: {0}")]
    PolicySetup(PolicyLoadError),
    /// The in-process keyprovider could not be set up.
    #[error("setting up the in-process keyprovider: {0}")]
    KeyProvider(KeyProviderError),
    /// The pull failed.
    #[error("pulling {image}: {}", describe(.source))]
    Pull {
        /// the image_url
        image: String,
        /// why
        source: Box<PullError>,
    },
    /// The image was pulled but its measurement was not recorded; the bundle was removed.
    #[error("{image} was pulled but not measured, so its bundle was removed: {source}")]
    Measurement {
        /// the image_url
        image: String,
        /// why
        source: MeasurementError,
    },
}

/// The error text, with every source's error when all of them failed.
fn describe(e: &PullError) -> String {
    match e {
        PullError::AllSourcesFailed { attempts } => format!(
            "every source failed: {}",
            attempts
                .iter()
                .map(|(source, e)| format!("{source}: {}", describe(e)))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.to_string(),
    }
}

/// The ttRPC code of a failed pull:
/// - INVALID_ARGUMENT for a bad reference, or an image this client refuses whatever the
///   state of the guest (not an image, a layer type it does not know, a layer entry that
///   escapes the rootfs, a device node, a broken hard link or whiteout);
/// - PERMISSION_DENIED for a refusal (signature policy, blocked registry, registry
///   credentials refused, a token realm the credentials are not sent to);
/// - NOT_FOUND when the registry has no such image (or none for this platform);
/// - UNAVAILABLE when the registry stalled (worth a retry);
/// - DATA_LOSS when the registry's bytes are not the image's (digest, size or diff_id
///   mismatch, a corrupt compressed stream or tar, an encrypted layer failing
///   authentication);
/// - RESOURCE_EXHAUSTED when the image exceeds a limit (decompression ratio, manifest or
///   config size, entry size, entry count, depth);
/// - FAILED_PRECONDITION for an encrypted layer with no way to unwrap its key, or a work
///   directory whose filesystem cannot hold whiteouts;
/// - ALREADY_EXISTS when the bundle exists, ABORTED while another pull makes it;
/// - INTERNAL otherwise.
///
/// When every source failed alike, their common code.
pub(crate) fn pull_error_code(e: &PullError) -> ttrpc::Code {
    use ttrpc::Code;
    match e {
        PullError::Reference(_)
        | PullError::Resolve(ResolveError::NoSearchRegistries(_))
        | PullError::NotAnImage { .. } => Code::INVALID_ARGUMENT,
        PullError::PolicyDenied { .. } | PullError::Resolve(ResolveError::Blocked { .. }) => {
            Code::PERMISSION_DENIED
        }
        PullError::Registry { source, .. } => registry_error_code(source),
        PullError::Layer(layer) => layer_error_code(layer),
        PullError::NoMatchingPlatform { .. } => Code::NOT_FOUND,
        PullError::Bundle(image_rs::BundleError::Exists(_)) => Code::ALREADY_EXISTS,
        PullError::Store(image_rs::StoreError::BundleBusy(_)) => Code::ABORTED,
        PullError::AllSourcesFailed { attempts } => {
            let mut codes = attempts.iter().map(|(_, e)| pull_error_code(e));
            match codes.next() {
                Some(first) if codes.all(|c| c == first) => first,
                _ => Code::INTERNAL,
            }
        }
        _ => Code::INTERNAL,
    }
}

/// The code of a registry failure (see [`pull_error_code`]).
fn registry_error_code(e: &RegistryError) -> ttrpc::Code {
    use ttrpc::Code;
    match e {
        RegistryError::Unauthorized { .. } | RegistryError::RealmRefused { .. } => {
            Code::PERMISSION_DENIED
        }
        RegistryError::TooSlow { .. } => Code::UNAVAILABLE,
        RegistryError::NotFound { .. } => Code::NOT_FOUND,
        RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. } => {
            Code::DATA_LOSS
        }
        RegistryError::TooLarge { .. } => Code::RESOURCE_EXHAUSTED,
        _ => Code::INTERNAL,
    }
}

/// The code of a layer failure (see [`pull_error_code`]).
fn layer_error_code(e: &LayerError) -> ttrpc::Code {
    use ttrpc::Code;
    match e {
        LayerError::DigestMismatch { .. }
        | LayerError::SizeMismatch { .. }
        | LayerError::Decompress { .. }
        | LayerError::DiffIdMismatch { .. }
        | LayerError::Decrypt(DecryptError::Authentication { .. }) => Code::DATA_LOSS,
        LayerError::Decrypt(
            DecryptError::NoKeyUnwrap { .. } | DecryptError::NotCompiled { .. },
        ) => Code::FAILED_PRECONDITION,
        LayerError::CompressionRatio { .. } => Code::RESOURCE_EXHAUSTED,
        LayerError::UnsupportedMediaType { .. } => Code::INVALID_ARGUMENT,
        LayerError::Download { source, .. } => registry_error_code(source),
        LayerError::Unpack { source, .. } => match source {
            UnpackError::EntryTooLarge { .. }
            | UnpackError::LayerTooLarge { .. }
            | UnpackError::TooManyEntries { .. }
            | UnpackError::PathTooDeep { .. } => Code::RESOURCE_EXHAUSTED,
            UnpackError::PathTraversal { .. }
            | UnpackError::AbsolutePath { .. }
            | UnpackError::SymlinkInPath { .. }
            | UnpackError::ParentNotDirectory { .. }
            | UnpackError::HardlinkTargetMissing { .. }
            | UnpackError::HardlinkToDirectory { .. }
            | UnpackError::InvalidWhiteout { .. }
            | UnpackError::DeviceNotAllowed { .. }
            | UnpackError::UnsupportedEntryType { .. }
            | UnpackError::ForbiddenXattr { .. }
            | UnpackError::InvalidHeader { .. } => Code::INVALID_ARGUMENT,
            UnpackError::TruncatedEntry { .. } => Code::DATA_LOSS,
            UnpackError::OpaqueUnsupported { .. } | UnpackError::WhiteoutUnsupported { .. } => {
                Code::FAILED_PRECONDITION
            }
            _ => Code::INTERNAL,
        },
        _ => Code::INTERNAL,
    }
}

/// The ttRPC code of a failed PullImage (see [`pull_error_code`]).
pub(crate) fn pull_image_code(e: &PullImageError) -> ttrpc::Code {
    match e {
        PullImageError::InvalidBundlePath { .. } | PullImageError::Reference(_) => {
            ttrpc::Code::INVALID_ARGUMENT
        }
        PullImageError::Pull { source, .. } => pull_error_code(source),
        PullImageError::Setup(_)
        | PullImageError::PolicySetup(_)
        | PullImageError::KeyProvider(_)
        | PullImageError::Measurement { .. } => ttrpc::Code::INTERNAL,
    }
}

/// `bundle_path` as a path: absolute, not `/`, no `..`, no NUL, at most 4096 bytes.
pub(crate) fn check_bundle_path(bundle_path: &str) -> Result<PathBuf, PullImageError> {
    let refuse = |problem| PullImageError::InvalidBundlePath {
        path: bundle_path.chars().take(200).collect(),
        problem,
    };
    let path = Path::new(bundle_path);
    if bundle_path.is_empty() {
        return Err(refuse(BundlePathProblem::Empty));
    }
    if bundle_path.len() > MAX_BUNDLE_PATH_LEN {
        return Err(refuse(BundlePathProblem::TooLong));
    }
    if bundle_path.contains('\0') {
        return Err(refuse(BundlePathProblem::Nul));
    }
    if !path.is_absolute() {
        return Err(refuse(BundlePathProblem::Relative));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(refuse(BundlePathProblem::DotDot));
    }
    if !path.components().any(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse(BundlePathProblem::Root));
    }
    Ok(path.to_path_buf())
}

/// image-rs's resources through the hub's KBC: `kbs://` URIs from the KBC, `file://` URIs
/// and absolute paths from local files.
#[derive(Clone)]
pub struct KbcResources {
    kbc: Arc<dyn Kbc>,
}

impl std::fmt::Debug for KbcResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbcResources").finish_non_exhaustive()
    }
}

impl KbcResources {
    /// Resources from `kbc`.
    pub fn new(kbc: Arc<dyn Kbc>) -> Self {
        Self { kbc }
    }
}

#[async_trait]
impl ResourceProvider for KbcResources {
    async fn get_resource(&self, uri: &str) -> Result<Vec<u8>, ResourceError> {
        if !uri.starts_with("kbs:") && !uri.starts_with("kbs+") {
            return LocalResources.get_resource(uri).await;
        }
        let provider_err = |message: String| ResourceError::Provider {
            uri: uri.chars().take(200).collect(),
            message,
        };
        let parsed = ResourceUri::parse(uri).map_err(|e| provider_err(e.to_string()))?;
        let resource = self
            .kbc
            .get_resource(&parsed)
            .await
            .map_err(|e| provider_err(e.to_string()))?;
        Ok(resource.to_vec())
    }
}

/// What became of the PullImage event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullMeasurement {
    /// recorded in the eventlog and extended into the register
    Recorded,
    /// the agent's eventlog is disabled
    NotEnabled,
    /// the agent's platform cannot extend a runtime register
    NotSupported,
    /// no attestation agent answers at `[aa] aa_socket`
    AgentUnreachable,
}

/// Asks the attestation agent at `aa_socket` to record the pull of `image` (as the caller
/// wrote it) with manifest `digest`.
pub(crate) async fn measure_pull(
    aa_socket: &str,
    image: &str,
    digest: &str,
) -> Result<PullMeasurement, MeasurementError> {
    let event = pull_image_event(image, digest)?;
    let agent = AaClient::new(aa_socket, AA_TIMEOUT);
    let result = match agent
        .extend_runtime_measurement(event.domain(), event.operation(), event.content(), None)
        .await
    {
        Ok(result) => result,
        Err(e @ ClientError::Connect { .. }) => {
            warn!(
                aa_socket,
                image,
                digest,
                "the attestation agent is not reachable ({e}): this pull is not in the eventlog"
            );
            return Ok(PullMeasurement::AgentUnreachable);
        }
        Err(e) => return Err(MeasurementError::Agent(Box::new(e))),
    };
    Ok(match result {
        RuntimeMeasurementResult::OK => PullMeasurement::Recorded,
        RuntimeMeasurementResult::NOT_ENABLED => PullMeasurement::NotEnabled,
        RuntimeMeasurementResult::NOT_SUPPORTED => PullMeasurement::NotSupported,
    })
}

/// The key wrappers a pull unwraps layer keys with: `in_process` (the hub's own handler) for
/// provider [`KEY_PROVIDER_NAME`], whatever transport `keyproviders` gives it, then every
/// other provider of `keyproviders` (the `OCICRYPT_KEYPROVIDER_CONFIG` file) over its
/// configured transport. A provider this build cannot reach (`grpc`, or `native` under
/// another name) is left out with a warning; each wrapper only opens the annotation
/// `org.opencontainers.image.enc.keys.provider.<its name>`.
pub(crate) fn layer_key_wrappers(
    keyproviders: Option<&OcicryptConfig>,
    in_process: Arc<LayerKeyUnwrapper>,
) -> Result<KeyWrappers, KeyProviderError> {
    let mut wrappers = KeyWrappers::new();
    wrappers.add(KeyProviderKeyWrapper::new(
        KEY_PROVIDER_NAME,
        KeyProviderTransport::InProcess(in_process),
    )?);
    for (name, attrs) in keyproviders.iter().flat_map(|c| &c.key_providers) {
        if name == KEY_PROVIDER_NAME {
            continue;
        }
        match hub_transport(name, attrs) {
            Ok(transport) => {
                wrappers.add(KeyProviderKeyWrapper::new(name, transport)?);
            }
            Err(e) => warn!(provider = %name, "key provider not used: {e}"),
        }
    }
    Ok(wrappers)
}

/// The transport the hub reaches provider `name` by (upstream's precedence cmd > grpc >
/// ttrpc), never gRPC: the hub carries no gRPC stack, whatever features a workspace build
/// unifies into ocicrypt-rs.
pub(crate) fn hub_transport(
    name: &str,
    attrs: &KeyProviderAttrs,
) -> Result<KeyProviderTransport, KeyProviderError> {
    if attrs.cmd.is_none() && attrs.grpc.is_some() {
        return Err(KeyProviderError::Config {
            path: format!("provider `{name}`"),
            reason: "gRPC key providers are not built into the hub; use a cmd or ttrpc provider"
                .to_string(),
        });
    }
    KeyProviderTransport::from_attrs(name, attrs)
}

/// Pulls images into bundles with one image-rs client, built at the first pull.
pub struct ImagePuller {
    config: ImageConfig,
    aa_socket: String,
    resources: Arc<KbcResources>,
    key_unwrapper: Arc<LayerKeyUnwrapper>,
    keyproviders: Option<OcicryptConfig>,
    client: OnceCell<ImageClient>,
}

impl std::fmt::Debug for ImagePuller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePuller")
            .field("config", &self.config)
            .field("aa_socket", &self.aa_socket)
            .field("client_ready", &self.client.initialized())
            .finish_non_exhaustive()
    }
}

impl ImagePuller {
    /// A puller for `config` (`[image]`) recording pulls with the agent at `aa_socket`,
    /// fetching resources with `kbc` and unwrapping layer keys with `key_unwrapper`.
    pub fn new(
        config: ImageConfig,
        aa_socket: String,
        kbc: Arc<dyn Kbc>,
        key_unwrapper: Arc<LayerKeyUnwrapper>,
    ) -> Self {
        Self {
            config,
            aa_socket,
            resources: Arc::new(KbcResources::new(kbc)),
            key_unwrapper,
            keyproviders: None,
            client: OnceCell::new(),
        }
    }

    /// Also unwraps layer keys with the other providers of `keyproviders` (the
    /// `OCICRYPT_KEYPROVIDER_CONFIG` file); see [`layer_key_wrappers`].
    pub fn with_keyproviders(mut self, keyproviders: Option<OcicryptConfig>) -> Self {
        self.keyproviders = keyproviders;
        self
    }

    /// The client, built by the first caller (others wait for it, then share it). A
    /// failed build is retried by the next pull.
    async fn client(&self) -> Result<&ImageClient, PullImageError> {
        self.client.get_or_try_init(|| self.build_client()).await
    }

    async fn build_client(&self) -> Result<ImageClient, PullImageError> {
        let resources: Arc<dyn ResourceProvider> = self.resources.clone();
        // The policy first: a policy that cannot be set up must not leave the work
        // directory locked by a half-built client.
        let policy = match PolicyOptions::from_image_config(&self.config) {
            Some(options) => {
                // Registries and lookaside servers are reached with each pull's own
                // settings (credentials, insecure registries, proxies, CAs).
                let policy = ContainersPolicy::new(options, resources.clone())
                    .map_err(PullImageError::PolicySetup)?;
                info!("image signature policy configured");
                Some(Arc::new(policy))
            }
            None => {
                info!("no image signature policy configured: every image is accepted");
                None
            }
        };
        let wrappers = layer_key_wrappers(self.keyproviders.as_ref(), self.key_unwrapper.clone())
            .map_err(PullImageError::KeyProvider)?;
        let key_unwrap: Arc<dyn KeyUnwrap> = Arc::new(OcicryptKeyUnwrap::new(wrappers));
        let mut client = ImageClient::new(self.config.clone())
            .await
            .map_err(|e| PullImageError::Setup(Box::new(e)))?
            .with_resource_provider(resources)
            .with_key_unwrap(key_unwrap);
        if let Some(policy) = policy {
            client = client.with_signature_policy(policy);
        }
        info!(work_dir = %self.config.work_dir.display(), "image client ready");
        Ok(client)
    }

    /// Pulls `image_url` into `bundle_path` (`rootfs/` and `config.json`), records the
    /// pull with the attestation agent, and returns the manifest digest.
    pub async fn pull_image(
        &self,
        image_url: &str,
        bundle_path: &str,
    ) -> Result<String, PullImageError> {
        let bundle = check_bundle_path(bundle_path)?;
        Reference::parse(image_url)?;
        let client = self.client().await?;
        let started = Instant::now();
        let report = client
            .pull_image(image_url, &bundle, &PullOptions::default())
            .await
            .map_err(|source| PullImageError::Pull {
                image: image_url.to_string(),
                source: Box::new(source),
            })?;
        let digest = report.image.manifest_digest.to_string();
        info!(
            image = image_url,
            digest,
            bundle = bundle_path,
            layers_fetched = report.image.layers_fetched,
            layers_reused = report.image.layers_reused,
            seconds = started.elapsed().as_secs_f64(),
            "image pulled"
        );
        match measure_pull(&self.aa_socket, image_url, &digest).await {
            Ok(PullMeasurement::Recorded) => info!(image = image_url, digest, "pull measured"),
            Ok(PullMeasurement::NotEnabled) => {
                info!(
                    image = image_url,
                    "pull not measured: the agent's eventlog is disabled"
                )
            }
            Ok(PullMeasurement::NotSupported) => warn!(
                image = image_url,
                "pull not measured: the agent's platform has no runtime measurement"
            ),
            Ok(PullMeasurement::AgentUnreachable) => {}
            Err(source) => {
                error!(image = image_url, digest, "{source}: removing the bundle");
                if let Err(undo) = client.remove_bundle(&bundle).await {
                    error!(
                        bundle = bundle_path,
                        "removing the unmeasured bundle failed: {}",
                        describe(&undo)
                    );
                }
                return Err(PullImageError::Measurement {
                    image: image_url.to_string(),
                    source,
                });
            }
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kms::KbcError;
    use protos::{attestation_agent as aa, attestation_agent_ttrpc as aa_ttrpc};
    use ttrpc::r#async::TtrpcContext;
    use zeroize::Zeroizing;

    use super::*;

    #[test]
    fn bundle_paths_must_be_absolute_without_dot_dot() {
        for (path, problem) in [
            ("", BundlePathProblem::Empty),
            ("relative/bundle", BundlePathProblem::Relative),
            ("./bundle", BundlePathProblem::Relative),
            ("/run/../etc", BundlePathProblem::DotDot),
            ("/run/bundle/..", BundlePathProblem::DotDot),
            ("/..", BundlePathProblem::DotDot),
            ("/run/a\0b", BundlePathProblem::Nul),
            ("/", BundlePathProblem::Root),
            ("//./", BundlePathProblem::Root),
        ] {
            match check_bundle_path(path) {
                Err(PullImageError::InvalidBundlePath { problem: p, .. }) => {
                    assert_eq!(p, problem, "{path:?}")
                }
                other => panic!("{path:?}: {other:?}"),
            }
        }
        let long = format!("/{}", "a".repeat(MAX_BUNDLE_PATH_LEN));
        let e = check_bundle_path(&long).unwrap_err();
        assert!(matches!(
            e,
            PullImageError::InvalidBundlePath {
                problem: BundlePathProblem::TooLong,
                ..
            }
        ));
        // the message shows a shortened path
        assert!(e.to_string().len() < 400, "{e}");
        assert_eq!(pull_image_code(&e), ttrpc::Code::INVALID_ARGUMENT);

        assert_eq!(
            check_bundle_path("/run/kata-containers/abc/./x").unwrap(),
            PathBuf::from("/run/kata-containers/abc/x")
        );
        assert_eq!(
            check_bundle_path("/run/kata-containers/a..b").unwrap(),
            PathBuf::from("/run/kata-containers/a..b")
        );
    }

    fn registry_error(source: RegistryError) -> PullError {
        PullError::Registry {
            reference: "r.io/a:1".into(),
            source,
        }
    }

    #[test]
    fn pull_errors_map_to_their_codes() {
        use ttrpc::Code;
        let not_found = || {
            registry_error(RegistryError::NotFound {
                what: "manifest",
                url: "http://r.io/v2/a/manifests/1".into(),
            })
        };
        let unauthorized = || {
            registry_error(RegistryError::Unauthorized {
                registry: "r.io".into(),
                repository: "a".into(),
                status: 401,
                message: String::new(),
            })
        };
        let internal = || {
            registry_error(RegistryError::Status {
                url: "http://r.io/v2/".into(),
                status: 500,
                message: String::new(),
            })
        };
        let digest: image_rs::Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
        for (error, code) in [
            (
                PullError::Reference(Reference::parse("UPPER/Case:tag").unwrap_err()),
                Code::INVALID_ARGUMENT,
            ),
            (
                PullError::PolicyDenied {
                    reference: "r.io/a:1".into(),
                    digest,
                    message: "rejected".into(),
                },
                Code::PERMISSION_DENIED,
            ),
            (
                PullError::Resolve(ResolveError::Blocked {
                    reference: "r.io/a:1".into(),
                    prefix: "r.io".into(),
                }),
                Code::PERMISSION_DENIED,
            ),
            (unauthorized(), Code::PERMISSION_DENIED),
            (
                registry_error(RegistryError::RealmRefused {
                    registry: "r.io".into(),
                    realm: "http://elsewhere.io/token".into(),
                }),
                Code::PERMISSION_DENIED,
            ),
            (
                registry_error(RegistryError::TooSlow {
                    url: "http://r.io/v2/a/blobs/sha256:00".into(),
                    bytes: 10,
                    seconds: 60,
                    limit: 1024,
                }),
                Code::UNAVAILABLE,
            ),
            (not_found(), Code::NOT_FOUND),
            (
                PullError::NoMatchingPlatform {
                    reference: "r.io/a:1".into(),
                    platform: "linux/s390x".into(),
                },
                Code::NOT_FOUND,
            ),
            (
                PullError::Bundle(image_rs::BundleError::Exists("/b/config.json".into())),
                Code::ALREADY_EXISTS,
            ),
            (
                PullError::Store(image_rs::StoreError::BundleBusy("/b".into())),
                Code::ABORTED,
            ),
            (internal(), Code::INTERNAL),
            (
                PullError::AllSourcesFailed {
                    attempts: vec![
                        ("m.io/a:1".into(), not_found()),
                        ("r.io/a:1".into(), not_found()),
                    ],
                },
                Code::NOT_FOUND,
            ),
            (
                PullError::AllSourcesFailed {
                    attempts: vec![
                        ("m.io/a:1".into(), internal()),
                        ("r.io/a:1".into(), not_found()),
                    ],
                },
                Code::INTERNAL,
            ),
            (
                PullError::AllSourcesFailed { attempts: vec![] },
                Code::INTERNAL,
            ),
        ] {
            assert_eq!(pull_error_code(&error), code, "{error}");
        }
    }

    /// What the registry sent is judged: corrupt bytes, images over a limit, and images
    /// this client refuses to unpack each have their code, also inside a layer's download.
    #[test]
    fn content_errors_map_to_their_codes() {
        use ttrpc::Code;
        let digest: image_rs::Digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        let other: image_rs::Digest = format!("sha256:{}", "2".repeat(64)).parse().unwrap();
        let layer = |e: LayerError| PullError::Layer(e);
        let unpack = |source: UnpackError| {
            layer(LayerError::Unpack {
                digest: digest.clone(),
                source,
            })
        };
        let path = || "etc/passwd".to_string();
        for (error, code) in [
            (
                layer(LayerError::DigestMismatch {
                    expected: digest.clone(),
                    actual: other.clone(),
                }),
                Code::DATA_LOSS,
            ),
            (
                layer(LayerError::SizeMismatch {
                    digest: digest.clone(),
                    expected: 10,
                    actual: 11,
                }),
                Code::DATA_LOSS,
            ),
            (
                layer(LayerError::Decompress {
                    digest: digest.clone(),
                    format: "gzip",
                    message: "invalid deflate stream".into(),
                }),
                Code::DATA_LOSS,
            ),
            (
                layer(LayerError::DiffIdMismatch {
                    digest: digest.clone(),
                    expected: digest.clone(),
                    actual: other.clone(),
                }),
                Code::DATA_LOSS,
            ),
            (
                layer(LayerError::Decrypt(DecryptError::Authentication {
                    digest: digest.to_string(),
                    message: "HMAC mismatch".into(),
                })),
                Code::DATA_LOSS,
            ),
            (
                registry_error(RegistryError::DigestMismatch {
                    what: "manifest",
                    expected: digest.clone(),
                    actual: other.clone(),
                }),
                Code::DATA_LOSS,
            ),
            (
                unpack(UnpackError::TruncatedEntry {
                    path: path(),
                    expected: 100,
                    actual: 7,
                }),
                Code::DATA_LOSS,
            ),
            (
                layer(LayerError::CompressionRatio {
                    digest: digest.clone(),
                    ratio: 100,
                    compressed: 1 << 20,
                    uncompressed: 1 << 30,
                }),
                Code::RESOURCE_EXHAUSTED,
            ),
            (
                registry_error(RegistryError::TooLarge {
                    what: "manifest",
                    url: "http://r.io/v2/a/manifests/1".into(),
                    limit: 4 << 20,
                }),
                Code::RESOURCE_EXHAUSTED,
            ),
            (
                unpack(UnpackError::TooManyEntries { limit: 1_000_000 }),
                Code::RESOURCE_EXHAUSTED,
            ),
            (
                unpack(UnpackError::PathTraversal { path: path() }),
                Code::INVALID_ARGUMENT,
            ),
            (
                unpack(UnpackError::DeviceNotAllowed {
                    path: path(),
                    kind: "block",
                }),
                Code::INVALID_ARGUMENT,
            ),
            (
                layer(LayerError::UnsupportedMediaType {
                    digest: digest.clone(),
                    media_type: "text/plain".into(),
                }),
                Code::INVALID_ARGUMENT,
            ),
            (
                layer(LayerError::Decrypt(DecryptError::NoKeyUnwrap {
                    digest: digest.to_string(),
                })),
                Code::FAILED_PRECONDITION,
            ),
            (
                layer(LayerError::Download {
                    digest: digest.clone(),
                    source: RegistryError::TooSlow {
                        url: "http://r.io/v2/a/blobs/sha256:11".into(),
                        bytes: 10,
                        seconds: 60,
                        limit: 1024,
                    },
                }),
                Code::UNAVAILABLE,
            ),
            (
                layer(LayerError::Cancelled {
                    digest: digest.clone(),
                }),
                Code::INTERNAL,
            ),
        ] {
            assert_eq!(pull_error_code(&error), code, "{error}");
        }
    }

    #[test]
    fn auth_file_contents_stay_out_of_errors() {
        use image_rs::AuthFile;
        let secret = "c2VjcmV0OnBhc3N3b3Jk";
        let malformed =
            AuthFile::parse(format!("{{\"auths\":\"{secret}\"}}").as_bytes()).unwrap_err();
        for error in [
            PullImageError::Setup(Box::new(malformed.clone().into())),
            PullImageError::Pull {
                image: "r.io/a:1".into(),
                source: Box::new(PullError::AllSourcesFailed {
                    attempts: vec![("r.io/a:1".into(), malformed.clone().into())],
                }),
            },
        ] {
            let text = error.to_string();
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("invalid auth.json"), "{text}");
        }
    }

    /// Serves `default/policy/1`, has no `default/policy/2`.
    #[derive(Debug)]
    struct OneResource;

    #[async_trait]
    impl Kbc for OneResource {
        async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
            match uri.repo_type_tag() {
                Some(("default", "policy", "1")) => {
                    Ok(Zeroizing::new(b"{\"default\":[]}".to_vec()))
                }
                _ => Err(KbcError::NotFound(uri.to_string())),
            }
        }
    }

    #[tokio::test]
    async fn resources_come_from_the_kbc_or_local_files() {
        let resources = KbcResources::new(Arc::new(OneResource));
        assert_eq!(
            resources
                .get_resource("kbs:///default/policy/1")
                .await
                .unwrap(),
            b"{\"default\":[]}"
        );
        match resources.get_resource("kbs:///default/policy/2").await {
            Err(ResourceError::Provider { uri, message }) => {
                assert_eq!(uri, "kbs:///default/policy/2");
                assert!(message.contains("not found"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resources
                .get_resource("kbs:///default/../../etc/passwd")
                .await,
            Err(ResourceError::Provider { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(&file, b"{}").unwrap();
        assert_eq!(
            resources
                .get_resource(&format!("file://{}", file.display()))
                .await
                .unwrap(),
            b"{}"
        );
        assert_eq!(
            resources
                .get_resource(file.to_str().unwrap())
                .await
                .unwrap(),
            b"{}"
        );
        assert!(matches!(
            resources
                .get_resource("https://example.com/policy.json")
                .await,
            Err(ResourceError::Unsupported(_))
        ));
    }

    /// The `OCICRYPT_KEYPROVIDER_CONFIG` providers are used for the layers annotated for
    /// them; `attestation-agent` stays the in-process handler whatever transport the file
    /// gives it; providers this build cannot reach are left out.
    #[tokio::test]
    async fn keyprovider_config_providers_unwrap_their_layers() {
        use base64::{engine::general_purpose::STANDARD, Engine as _};
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("keyprovider.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\ncat > \"$0.request\"\nprintf '%s' '{\"keyunwrapresults\":{\"optsdata\":\"b3B0cw==\"}}'\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = OcicryptConfig::parse(
            serde_json::json!({"key-providers": {
                "attestation-agent": {"ttrpc": format!("unix://{}/nobody.sock", dir.path().display())},
                "ext-cmd": {"cmd": {"path": script.display().to_string()}},
                "ext-grpc": {"grpc": "127.0.0.1:9"},
                "ext-native": {"native": "attestation-agent"},
            }})
            .to_string()
            .as_bytes(),
            "test",
        )
        .unwrap();
        let unwrapper = Arc::new(LayerKeyUnwrapper::new(
            Arc::new(OneResource),
            kms::KmsProviders::new(dir.path()),
        ));
        let schemes = |wrappers: &KeyWrappers| {
            wrappers
                .iter()
                .map(|w| w.scheme().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            schemes(&layer_key_wrappers(None, unwrapper.clone()).unwrap()),
            ["provider.attestation-agent"]
        );
        let wrappers = layer_key_wrappers(Some(&config), unwrapper).unwrap();
        assert_eq!(
            schemes(&wrappers),
            ["provider.attestation-agent", "provider.ext-cmd"]
        );

        // the cmd provider answers for its own annotation
        let annotation = |provider: &str, packet: &[u8]| {
            [(
                format!("org.opencontainers.image.enc.keys.provider.{provider}"),
                STANDARD.encode(packet),
            )]
        };
        let opts = wrappers
            .unwrap(annotation("ext-cmd", b"marker"))
            .await
            .unwrap();
        assert_eq!(opts.as_slice(), b"opts");
        let request: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("keyprovider.sh.request")).unwrap(),
        )
        .unwrap();
        assert_eq!(request["op"], "keyunwrap");
        assert_eq!(request["keyunwrapparams"]["annotation"], "bWFya2Vy");

        // attestation-agent goes to the hub's own handler, never to the configured socket:
        // its KBC lacks the key
        let packet = br#"{"kid":"kbs:///default/key/9","wrapped_data":"AAAA","iv":"AAAAAAAAAAAAAAAA","wrap_type":"A256GCM"}"#;
        let err = wrappers
            .unwrap(annotation("attestation-agent", packet))
            .await
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("default/key/9"), "{text}");
        assert!(!text.contains("nobody.sock"), "{text}");
        // a layer only for a provider left out does not open
        assert!(wrappers
            .unwrap(annotation("ext-grpc", b"marker"))
            .await
            .is_err());
    }

    /// An attestation agent that records ExtendRuntimeMeasurement requests and answers
    /// with `answer`.
    struct RecordingAgent {
        requests: Mutex<Vec<aa::ExtendRuntimeMeasurementRequest>>,
        answer: Result<aa::RuntimeMeasurementResult, ttrpc::Code>,
    }

    #[async_trait]
    impl aa_ttrpc::AttestationAgentService for RecordingAgent {
        async fn extend_runtime_measurement(
            &self,
            _ctx: &TtrpcContext,
            req: aa::ExtendRuntimeMeasurementRequest,
        ) -> ttrpc::Result<aa::ExtendRuntimeMeasurementResponse> {
            self.requests.lock().unwrap().push(req);
            match self.answer {
                Ok(result) => Ok(aa::ExtendRuntimeMeasurementResponse {
                    Result: result.into(),
                    ..Default::default()
                }),
                Err(code) => Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    code,
                    "[ERROR:attestation-agent] AA extend runtime measurement failed",
                ))),
            }
        }
    }

    async fn agent(
        dir: &Path,
        answer: Result<aa::RuntimeMeasurementResult, ttrpc::Code>,
    ) -> (String, Arc<RecordingAgent>, protos::server::RunningServer) {
        let addr = format!("unix://{}", dir.join("aa.sock").display());
        let agent = Arc::new(RecordingAgent {
            requests: Mutex::new(Vec::new()),
            answer,
        });
        let server = protos::server::start(
            &addr,
            [aa_ttrpc::create_attestation_agent_service(agent.clone())],
        )
        .await
        .unwrap();
        (addr, agent, server)
    }

    const DIGEST: &str = "sha256:4be429a5fbb2e71ae7958bfa558bc637cf3a61baf40a708cb8fff532b39e52d0";

    #[tokio::test]
    async fn the_pull_event_is_canonical_json() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, agent, server) = agent(dir.path(), Ok(aa::RuntimeMeasurementResult::OK)).await;
        let image = "registry.example:5000/app/\"quoted\"\\name:v1";
        assert_eq!(
            measure_pull(&addr, image, DIGEST).await.unwrap(),
            PullMeasurement::Recorded
        );
        let requests = agent.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.Domain, "github.com/confidential-containers");
        assert_eq!(request.Operation, "PullImage");
        // test vector: members sorted, no whitespace, JSON escapes
        assert_eq!(
            request.Content.as_bytes(),
            b"{\"digest\":\"sha256:4be429a5fbb2e71ae7958bfa558bc637cf3a61baf40a708cb8fff532b39e52d0\",\
              \"image\":\"registry.example:5000/app/\\\"quoted\\\"\\\\name:v1\"}"
        );
        // no register index: the agent's configured default
        assert_eq!(request.RegisterIndex, None);
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn disabled_unsupported_and_absent_agents_are_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (answer, expected) in [
            (
                aa::RuntimeMeasurementResult::NOT_ENABLED,
                PullMeasurement::NotEnabled,
            ),
            (
                aa::RuntimeMeasurementResult::NOT_SUPPORTED,
                PullMeasurement::NotSupported,
            ),
        ] {
            let (addr, agent, server) = agent(dir.path(), Ok(answer)).await;
            assert_eq!(
                measure_pull(&addr, "r.io/a:1", DIGEST).await.unwrap(),
                expected
            );
            assert_eq!(agent.requests.lock().unwrap().len(), 1);
            server.stop().await.unwrap();
        }
        let absent = format!("unix://{}", dir.path().join("absent.sock").display());
        assert_eq!(
            measure_pull(&absent, "r.io/a:1", DIGEST).await.unwrap(),
            PullMeasurement::AgentUnreachable
        );
    }

    #[tokio::test]
    async fn an_agent_that_fails_to_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, agent, server) = agent(dir.path(), Err(ttrpc::Code::INTERNAL)).await;
        match measure_pull(&addr, "r.io/a:1", DIGEST).await {
            Err(MeasurementError::Agent(e)) => {
                assert_eq!(e.code(), Some(ttrpc::Code::INTERNAL), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(agent.requests.lock().unwrap().len(), 1);
        // an event the eventlog cannot hold is refused before the agent is asked
        let long = format!("r.io/{}", "a".repeat(70 * 1024));
        assert!(matches!(
            measure_pull(&addr, &long, DIGEST).await,
            Err(MeasurementError::Event(_))
        ));
        assert_eq!(agent.requests.lock().unwrap().len(), 1);
        server.stop().await.unwrap();
    }
}
