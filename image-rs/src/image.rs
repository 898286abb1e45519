//! [`ImageClient`]: pulls images into the layer store and makes bundles from them.
//!
//! A pull resolves the reference into sources (registries.conf), and for the first source
//! that works: fetches the manifest (selecting the platform from an index), runs the
//! signature-policy hook, fetches the config, then fetches the layers it does not have
//! yet, `max_concurrent_layer_downloads_per_image` at a time, each through the verified
//! streaming pipeline of [`crate::layer`]. Pulls run concurrently; a layer wanted by two
//! pulls at once is fetched once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;

use crate::bundle::{self, BundleError, BUNDLE_CONFIG, BUNDLE_ROOTFS};
use crate::config::{ConfigError, ImageConfig, RegistryConfig};
use crate::decrypt::KeyUnwrap;
use crate::layer::{self, layer_format, CancelSignal, LayerError, LayerJob, UnpackOptions};
use crate::policy::{AcceptAll, PolicyRequest, SignaturePolicy};
use crate::reference::{Reference, ReferenceError};
use crate::registry::{
    resolve, AuthFile, AuthFileError, ClientSettings, Credentials, PullSource, RegistryClient,
    RegistryError, Repository, ResolveError,
};
use crate::resource::{LocalResources, ResourceError, ResourceProvider};
use crate::snapshot::{self, SnapshotError, SnapshotterKind};
use crate::store::{
    take_down_pending, BundleClaim, BundleRecord, BundleState, GcReport, LayerStore, StoreError,
};
use oci_model::Digest;
use oci_model::{
    ImageConfiguration, ManifestKind, PlatformSpec, DOCKER_CONFIG, MAX_CONFIG_BYTES, OCI_CONFIG,
};

/// Most layers accepted in one image.
pub(crate) const MAX_LAYERS: usize = 1000;

/// Why a pull (or a bundle operation) failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// the configuration is invalid
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// the image reference is invalid
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// registries.conf resolution refused the reference
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// a configuration resource could not be read
    #[error("reading a configuration resource: {0}")]
    Resource(#[from] ResourceError),
    /// the auth.json is invalid
    #[error(transparent)]
    AuthFile(#[from] AuthFileError),
    /// talking to the registry failed
    #[error("{reference}: {source}")]
    Registry {
        /// the reference pulled
        reference: String,
        /// the error
        #[source]
        source: RegistryError,
    },
    /// the index has no manifest for this platform
    #[error("{reference}: the index has no image for {platform}")]
    NoMatchingPlatform {
        /// the reference
        reference: String,
        /// the platform asked for
        platform: String,
    },
    /// the manifest is not a container image
    #[error("{reference}: not a container image: {reason}")]
    NotAnImage {
        /// the reference
        reference: String,
        /// why
        reason: String,
    },
    /// the signature policy refused the image
    #[error("the signature policy refused {reference} ({digest}): {message}")]
    PolicyDenied {
        /// the reference pulled
        reference: String,
        /// the manifest digest
        digest: Digest,
        /// the policy's reason
        message: String,
    },
    /// a layer failed
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// the store failed
    #[error(transparent)]
    Store(#[from] StoreError),
    /// making the rootfs failed
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// writing config.json failed
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// the bundle is not known
    #[error("{0} is not a bundle made by this client")]
    UnknownBundle(PathBuf),
    /// every source failed
    #[error("every source failed: {}", .attempts.iter().map(|(r, e)| format!("{r}: {e}")).collect::<Vec<_>>().join("; "))]
    AllSourcesFailed {
        /// each source and its error
        attempts: Vec<(String, PullError)>,
    },
    /// a background task failed
    #[error("internal task failure: {0}")]
    Task(String),
}

impl PullError {
    /// Errors after which no other source is tried: the policy's verdict is final.
    fn is_final(&self) -> bool {
        matches!(self, PullError::PolicyDenied { .. } | PullError::Store(_))
    }
}

/// Per-pull settings.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// the platform to pick from an index (default: the config's `platform`, else this
    /// machine)
    pub platform: Option<PlatformSpec>,
    /// credentials for every source (default: auth.json lookup)
    pub credentials: Option<Credentials>,
    /// the snapshotter for the bundle (default: the config's)
    pub snapshotter: Option<SnapshotterKind>,
}

/// An image in the store.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// the reference it was pulled from (a mirror or remapped location, if so)
    pub pulled: Reference,
    /// the manifest digest
    pub manifest_digest: Digest,
    /// the index digest, when the manifest was selected from one
    pub index_digest: Option<Digest>,
    /// the image config
    pub config: ImageConfiguration,
    /// the layer directories, bottom first
    pub layers: Vec<PathBuf>,
    /// layers downloaded by this pull
    pub layers_fetched: usize,
    /// layers found in the store
    pub layers_reused: usize,
}

/// An image pulled into a bundle.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// the image
    pub image: PulledImage,
    /// the bundle directory
    pub bundle: PathBuf,
    /// how its rootfs was made
    pub snapshotter: SnapshotterKind,
}

/// Pulls images and makes bundles; share one per work directory (it is `Send + Sync`
/// and pulls run concurrently).
#[derive(Debug)]
pub struct ImageClient {
    config: ImageConfig,
    store: Arc<LayerStore>,
    registry: RegistryClient,
    policy: Arc<dyn SignaturePolicy>,
    key_unwrap: Option<Arc<dyn KeyUnwrap>>,
    resources: Arc<dyn ResourceProvider>,
    platform: PlatformSpec,
}

enum LayerOutcome {
    Fetched,
    Reused,
}

impl ImageClient {
    /// A client for `config` (opens the layer store, which locks the work directory).
    pub async fn new(config: ImageConfig) -> Result<Self, PullError> {
        config.validate()?;
        let platform = match &config.platform {
            Some(p) => PlatformSpec::parse(p).map_err(|e| ConfigError::Invalid {
                key: "platform",
                reason: e.to_string(),
            })?,
            None => PlatformSpec::current(),
        };
        let registry = RegistryClient::new(&ClientSettings {
            proxy: config.image_pull_proxy.clone(),
            extra_root_certificates: config.extra_root_certificates.clone(),
            low_speed: config.low_speed(),
        })
        .map_err(|source| PullError::Registry {
            reference: String::new(),
            source,
        })?;
        let work_dir = config.work_dir.clone();
        let store = tokio::task::spawn_blocking(move || LayerStore::open(&work_dir))
            .await
            .map_err(|e| PullError::Task(e.to_string()))??;
        Ok(Self {
            config,
            store: Arc::new(store),
            registry,
            policy: Arc::new(AcceptAll),
            key_unwrap: None,
            resources: Arc::new(LocalResources),
            platform,
        })
    }

    /// Uses `policy` for every pull.
    pub fn with_signature_policy(mut self, policy: Arc<dyn SignaturePolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Unwraps layer keys with `unwrap` (otherwise OCICRYPT_KEYPROVIDER_CONFIG, if set).
    pub fn with_key_unwrap(mut self, unwrap: Arc<dyn KeyUnwrap>) -> Self {
        self.key_unwrap = Some(unwrap);
        self
    }

    /// Reads configuration resources through `provider`.
    pub fn with_resource_provider(mut self, provider: Arc<dyn ResourceProvider>) -> Self {
        self.resources = provider;
        self
    }

    /// The layer store.
    pub fn store(&self) -> &LayerStore {
        &self.store
    }

    async fn registry_config(&self) -> Result<RegistryConfig, PullError> {
        if let Some(inline) = &self.config.registry_config {
            if self.config.registry_configuration_uri.is_some() {
                tracing::warn!("both registry_config and registry_configuration_uri are set: the inline registry_config is used");
            }
            return Ok(inline.clone());
        }
        match &self.config.registry_configuration_uri {
            Some(uri) => {
                let bytes = self.resources.get_resource(uri).await?;
                let text = String::from_utf8(bytes).map_err(|_| ConfigError::Parse {
                    what: "registries.conf",
                    message: "not UTF-8".into(),
                })?;
                Ok(RegistryConfig::from_toml(&text)?)
            }
            None => Ok(RegistryConfig::default()),
        }
    }

    async fn auth_file(&self) -> Result<Option<AuthFile>, PullError> {
        match &self.config.authenticated_registry_credentials_uri {
            Some(uri) => Ok(Some(AuthFile::parse(
                &self.resources.get_resource(uri).await?,
            )?)),
            None => Ok(None),
        }
    }

    /// Pulls `image` into the store (no bundle).
    pub async fn pull_layers(
        &self,
        image: &str,
        options: &PullOptions,
    ) -> Result<PulledImage, PullError> {
        let requested = Reference::parse(image)?;
        let registries = self.registry_config().await?;
        let auth = self.auth_file().await?;
        let sources = resolve(&requested, &registries)?;
        let single = sources.len() == 1;
        let mut attempts = Vec::new();
        for source in sources {
            let credentials = options
                .credentials
                .clone()
                .or_else(|| auth.as_ref().and_then(|a| a.lookup(&source.reference)));
            match self
                .pull_from(&requested, &source, credentials, options)
                .await
            {
                Ok(pulled) => return Ok(pulled),
                Err(e) if single || e.is_final() => return Err(e),
                Err(e) => {
                    tracing::warn!(source = %source.reference, error = %e, "source failed, trying the next");
                    attempts.push((source.reference.to_string(), e));
                }
            }
        }
        Err(PullError::AllSourcesFailed { attempts })
    }

    async fn pull_from(
        &self,
        requested: &Reference,
        source: &PullSource,
        credentials: Option<Credentials>,
        options: &PullOptions,
    ) -> Result<PulledImage, PullError> {
        let name = source.reference.to_string();
        let registry_err = |source: RegistryError| PullError::Registry {
            reference: name.clone(),
            source,
        };
        let mut repo = self
            .registry
            .repository(&source.reference, source.insecure, credentials)
            .await
            .map_err(registry_err)?;
        let top = repo
            .fetch_manifest(
                &source.reference.manifest_reference(),
                source.reference.digest(),
            )
            .await
            .map_err(registry_err)?;
        let platform = options.platform.as_ref().unwrap_or(&self.platform);
        let (manifest_fetch, index_digest) = match &top.kind {
            ManifestKind::Image(_) => (top.clone(), None),
            ManifestKind::Index(index) => {
                let entry =
                    platform
                        .select(index)
                        .ok_or_else(|| PullError::NoMatchingPlatform {
                            reference: name.clone(),
                            platform: platform.to_string(),
                        })?;
                let fetched = repo
                    .fetch_manifest(entry.digest.as_str(), Some(&entry.digest))
                    .await
                    .map_err(registry_err)?;
                (fetched, Some(top.digest.clone()))
            }
        };
        let ManifestKind::Image(manifest) = &manifest_fetch.kind else {
            return Err(PullError::NotAnImage {
                reference: name,
                reason: "an index entry points to another index".into(),
            });
        };
        let manifest_digest = manifest_fetch.digest.clone();

        // The policy decides before any layer is fetched or reused.
        self.policy
            .check(&PolicyRequest {
                requested,
                pulled: &source.reference,
                manifest_digest: &manifest_digest,
                index_digest: index_digest.as_ref(),
                manifest: &manifest_fetch.bytes,
                repository: &repo,
            })
            .await
            .map_err(|e| PullError::PolicyDenied {
                reference: name.clone(),
                digest: manifest_digest.clone(),
                message: e.message,
            })?;

        if manifest.config.media_type != OCI_CONFIG && manifest.config.media_type != DOCKER_CONFIG {
            return Err(PullError::NotAnImage {
                reference: name,
                reason: format!("config media type {:?}", manifest.config.media_type),
            });
        }
        if manifest.layers.len() > MAX_LAYERS {
            return Err(PullError::NotAnImage {
                reference: name,
                reason: format!("{} layers, more than {MAX_LAYERS}", manifest.layers.len()),
            });
        }
        let config_bytes = repo
            .fetch_blob(&manifest.config, "image config", MAX_CONFIG_BYTES)
            .await
            .map_err(registry_err)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|e| PullError::NotAnImage {
                reference: name.clone(),
                reason: format!("invalid image config: {e}"),
            })?;
        if config.rootfs.fs_type != "layers" {
            return Err(PullError::NotAnImage {
                reference: name,
                reason: format!("rootfs type {:?} (not \"layers\")", config.rootfs.fs_type),
            });
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(PullError::NotAnImage {
                reference: name,
                reason: format!(
                    "{} layers but {} diff_ids in the config",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        if !config.os.is_empty() && config.os != platform.os {
            return Err(PullError::NotAnImage {
                reference: name,
                reason: format!("image OS {:?}, not {:?}", config.os, platform.os),
            });
        }
        for layer in &manifest.layers {
            if layer_format(&layer.media_type).is_none() {
                return Err(LayerError::UnsupportedMediaType {
                    digest: layer.digest.clone(),
                    media_type: layer.media_type.clone(),
                }
                .into());
            }
        }

        let _pin = self.store.pin(&config.rootfs.diff_ids);
        let unpack_options = UnpackOptions {
            limits: self.config.unpack_limits,
            allow_device_nodes: self.config.allow_device_nodes,
            preserve_ownership: true,
        };
        let mut jobs: Vec<LayerJob> = Vec::new();
        for (descriptor, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if jobs.iter().all(|j| &j.diff_id != diff_id) {
                jobs.push(LayerJob {
                    descriptor: descriptor.clone(),
                    diff_id: diff_id.clone(),
                    options: unpack_options,
                });
            }
        }
        // On the first failure the others are told to stop, and awaited: when the pull
        // returns, no thread of it still writes (no staging directory is left behind).
        let (cancel_tx, cancel) = CancelSignal::new();
        let mut running = futures::stream::iter(jobs)
            .map(|job| self.ensure_layer(repo.clone(), job, cancel.clone()))
            .buffer_unordered(self.config.layer_concurrency());
        let mut outcomes = Vec::new();
        let mut first_error = None;
        while let Some(result) = running.next().await {
            match result {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    if first_error.is_none() {
                        let _ = cancel_tx.send(true);
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let layers_fetched = outcomes
            .iter()
            .filter(|o| matches!(o, LayerOutcome::Fetched))
            .count();
        self.store
            .record_image(&manifest_digest, &name, &manifest.config.digest, &config)
            .await?;
        Ok(PulledImage {
            pulled: source.reference.clone(),
            manifest_digest,
            index_digest,
            layers: config
                .rootfs
                .diff_ids
                .iter()
                .map(|d| self.store.layer_path(d))
                .collect(),
            layers_fetched,
            layers_reused: outcomes.len() - layers_fetched,
            config,
        })
    }

    async fn key_unwrapper(&self) -> Result<Option<Arc<dyn KeyUnwrap>>, LayerError> {
        if let Some(k) = &self.key_unwrap {
            return Ok(Some(k.clone()));
        }
        #[cfg(feature = "encryption")]
        {
            match crate::decrypt::OcicryptKeyUnwrap::from_keyprovider_env() {
                Ok(Some(k)) => return Ok(Some(Arc::new(k))),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "OCICRYPT_KEYPROVIDER_CONFIG is unusable"),
            }
        }
        Ok(None)
    }

    async fn ensure_layer(
        &self,
        mut repo: Repository,
        job: LayerJob,
        cancel: CancelSignal,
    ) -> Result<LayerOutcome, PullError> {
        let encrypted = layer_format(&job.descriptor.media_type).is_some_and(|f| f.encrypted);
        let _lock = self.store.lock_layer(&job.diff_id).await;
        if cancel.is_raised() {
            return Err(LayerError::Cancelled {
                digest: job.descriptor.digest.clone(),
            }
            .into());
        }
        if self
            .store
            .has_layer(&job.diff_id, &job.descriptor.digest, encrypted)
            .await
        {
            tracing::debug!(layer = %job.diff_id, "layer already in the store");
            return Ok(LayerOutcome::Reused);
        }
        let cipher = if encrypted {
            let unwrapper = self.key_unwrapper().await?;
            layer::prepare_decryption(&job, unwrapper.as_deref()).await?
        } else {
            None
        };
        let blob = repo
            .open_blob(&job.descriptor)
            .await
            .map_err(|source| PullError::Registry {
                reference: repo.name(),
                source,
            })?;
        let store = self.store.clone();
        let staging = tokio::task::spawn_blocking(move || store.new_staging())
            .await
            .map_err(|e| PullError::Task(e.to_string()))??;
        let diff_id = job.diff_id.clone();
        let blob_digest = job.descriptor.digest.clone();
        tracing::info!(layer = %blob_digest, size = job.descriptor.size, media_type = %job.descriptor.media_type, "fetching layer");
        let (stats, staging) = layer::fetch_into(job, blob, cipher, staging, cancel).await?;
        self.store
            .commit_layer(staging, &diff_id, &blob_digest, stats.file_bytes)
            .await?;
        Ok(LayerOutcome::Fetched)
    }

    /// Pulls `image` and makes `bundle` from it: `<bundle>/rootfs` and
    /// `<bundle>/config.json`. Returns what was pulled; `report.image.manifest_digest` is
    /// the digest kata-agent expects back.
    pub async fn pull_image(
        &self,
        image: &str,
        bundle: &Path,
        options: &PullOptions,
    ) -> Result<PullReport, PullError> {
        let pulled = self.pull_layers(image, options).await?;
        let snapshotter = options.snapshotter.unwrap_or(self.config.snapshotter);
        let claim = self.store.claim_bundle(bundle)?;
        let stale = match self.store.bundle_state(&claim).await {
            BundleState::Complete(_) => {
                return Err(BundleError::Exists(bundle.join(BUNDLE_CONFIG)).into())
            }
            BundleState::Pending(stale) => Some(stale),
            BundleState::Unknown => None,
        };
        let bundle_dir = bundle.to_path_buf();
        blocking(move || -> Result<(), PullError> {
            if let Some(stale) = stale {
                tracing::warn!(bundle = %bundle_dir.display(), "taking down a bundle an interrupted pull left half-made");
                take_down_pending(&bundle_dir, &stale, true)?;
            }
            // Before the pending record: it must name only what this pull creates.
            let config_path = bundle_dir.join(BUNDLE_CONFIG);
            match config_path.symlink_metadata() {
                Ok(_) => return Err(BundleError::Exists(config_path).into()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BundleError::Io {
                        op: "stat",
                        path: config_path,
                        source: e,
                    }
                    .into())
                }
            }
            snapshot::empty_rootfs_exists(&bundle_dir.join(BUNDLE_ROOTFS))?;
            Ok(())
        })
        .await??;
        let record = BundleRecord {
            image: pulled.manifest_digest.clone(),
            snapshotter,
            scratch: (snapshotter == SnapshotterKind::Overlay)
                .then(|| self.store.new_snapshot_dir()),
        };
        self.store.begin_bundle(&claim, record.clone()).await?;
        let bundle_dir = bundle.to_path_buf();
        let layers = pulled.layers.clone();
        let config = pulled.config.clone();
        let scratch = record.scratch.clone();
        let built = blocking(move || -> Result<(), PullError> {
            std::fs::create_dir_all(&bundle_dir).map_err(|e| BundleError::Io {
                op: "create",
                path: bundle_dir.clone(),
                source: e,
            })?;
            let rootfs = bundle_dir.join(BUNDLE_ROOTFS);
            match &scratch {
                Some(scratch) => snapshot::mount_overlay(&layers, &rootfs, scratch)?,
                None => snapshot::flatten(&layers, &rootfs)?,
            }
            bundle::write_runtime_config(&config, &bundle_dir)?;
            Ok(())
        })
        .await
        .and_then(|built| built);
        let done = match built {
            Ok(()) => self
                .store
                .complete_bundle(&claim, record.clone())
                .await
                .map_err(PullError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            self.undo_bundle(&claim, bundle, record, &e).await;
            return Err(e);
        }
        Ok(PullReport {
            image: pulled,
            bundle: bundle.to_path_buf(),
            snapshotter,
        })
    }

    /// Takes down what a failed pull made of its bundle, then forgets the pending record;
    /// if that fails the record stays, for the next pull, removal or start to retry.
    async fn undo_bundle(
        &self,
        claim: &BundleClaim,
        bundle: &Path,
        record: BundleRecord,
        error: &PullError,
    ) {
        // Files another writer put there after the checks are theirs, not ours to remove.
        let rootfs_is_ours =
            !matches!(error, PullError::Snapshot(SnapshotError::RootfsNotEmpty(_)));
        let config_is_ours = !matches!(error, PullError::Bundle(BundleError::Exists(_)));
        let bundle_dir = bundle.to_path_buf();
        let undone = if rootfs_is_ours {
            blocking(move || take_down_pending(&bundle_dir, &record, config_is_ours))
                .await
                .and_then(|undone| undone.map_err(PullError::from))
        } else {
            Ok(())
        };
        let forgotten = match undone {
            Ok(()) => self
                .store
                .forget_bundle(claim)
                .await
                .map_err(PullError::from),
            Err(e) => Err(e),
        };
        if let Err(undo) = forgotten {
            tracing::warn!(bundle = %bundle.display(), error = %undo, "could not undo a failed bundle; it stays pending until the next pull into it, its removal or the next start");
        }
    }

    /// Unmounts (or deletes) the rootfs of a bundle made by [`ImageClient::pull_image`]
    /// and removes its `config.json`; also takes down a bundle a killed or failed pull
    /// left half-made.
    pub async fn remove_bundle(&self, bundle: &Path) -> Result<(), PullError> {
        let claim = self.store.claim_bundle(bundle)?;
        let state = self.store.bundle_state(&claim).await;
        let bundle_dir = bundle.to_path_buf();
        blocking(move || -> Result<(), PullError> {
            let record = match state {
                BundleState::Unknown => return Err(PullError::UnknownBundle(bundle_dir)),
                BundleState::Pending(record) => {
                    return Ok(take_down_pending(&bundle_dir, &record, true)?)
                }
                BundleState::Complete(record) => record,
            };
            let rootfs = bundle_dir.join(BUNDLE_ROOTFS);
            match record.snapshotter {
                SnapshotterKind::Overlay => snapshot::unmount(&rootfs, record.scratch.as_deref())?,
                SnapshotterKind::Flatten => {
                    crate::fsutil::remove_tree(&rootfs).map_err(snapshot_io(&rootfs))?
                }
            }
            let _ = std::fs::remove_dir(&rootfs);
            match std::fs::remove_file(bundle_dir.join(BUNDLE_CONFIG)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BundleError::Io {
                    op: "remove",
                    path: bundle_dir.join(BUNDLE_CONFIG),
                    source: e,
                }
                .into()),
                _ => Ok(()),
            }
        })
        .await??;
        // Forgotten only once taken down: a removal that failed can be retried.
        Ok(self.store.forget_bundle(&claim).await?)
    }

    /// Forgets an image (refused while a bundle uses it); its layers go at the next
    /// [`ImageClient::gc`].
    pub async fn remove_image(&self, manifest_digest: &Digest) -> Result<bool, PullError> {
        Ok(self.store.forget_image(manifest_digest).await?)
    }

    /// Removes the layers no image references.
    pub async fn gc(&self) -> Result<GcReport, PullError> {
        Ok(self.store.gc().await?)
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PullError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PullError::Task(e.to_string()))
}

fn snapshot_io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        op: "remove",
        path: path.to_path_buf(),
        source,
    }
}
