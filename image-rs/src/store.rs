//! The layer store under the work directory:
//!
//! ```text
//! <work_dir>/.lock            flock: one process per work directory
//! <work_dir>/metadata.json    layers, images and bundles (written atomically)
//! <work_dir>/layers/<alg>-<hex of diff_id>/   committed layer roots (overlayfs lower dirs)
//! <work_dir>/staging/<id>/    layers being unpacked (removed on failure and at startup)
//! <work_dir>/snapshots/<id>/  overlay upper/work directories of bundles
//! ```
//!
//! A layer becomes visible only by the rename of its verified staging directory; the
//! metadata follows. At startup, staging leftovers (a killed pull) and layer directories
//! the metadata does not know are removed, so nothing half-written is ever reused.
//! Layers are shared by digest across images; [`LayerStore::gc`] removes the ones no
//! recorded image references.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::fsutil::remove_tree;
use crate::snapshot::SnapshotterKind;
use oci_model::Digest;
use oci_model::ImageConfiguration;

const METADATA: &str = "metadata.json";
const METADATA_VERSION: u32 = 1;
const MAX_METADATA_BYTES: u64 = 256 << 20;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// another process holds the work directory
    #[error("the work directory {0} is in use by another process")]
    Busy(PathBuf),
    /// a file operation failed
    #[error("{op} {path}: {source}")]
    Io {
        /// the operation
        op: &'static str,
        /// the path
        path: PathBuf,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// the metadata file is unreadable
    #[error("{path} is corrupt: {message}; move it away to start with an empty store")]
    CorruptMetadata {
        /// the file
        path: PathBuf,
        /// what is wrong
        message: String,
    },
    /// an image is still used by a bundle
    #[error("image {image} is still used by the bundle {bundle}")]
    ImageInUse {
        /// the image
        image: Digest,
        /// a bundle using it
        bundle: PathBuf,
    },
    /// a snapshot directory left by a killed process could not be cleaned up
    #[error("cleaning up the unrecorded snapshot {path}: {message}")]
    StaleSnapshot {
        /// the snapshot directory
        path: PathBuf,
        /// what failed
        message: String,
    },
    /// a background task failed
    #[error("store task failed: {0}")]
    Task(String),
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One stored layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// digests of the blobs it was unpacked from (compressed, possibly encrypted)
    pub blobs: BTreeSet<Digest>,
    /// bytes of file content
    pub file_bytes: u64,
}

/// One pulled image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// references it was pulled as
    pub references: BTreeSet<String>,
    /// the config digest
    pub config_digest: Digest,
    /// its layers, bottom first
    pub diff_ids: Vec<Digest>,
    /// the image config
    pub config: ImageConfiguration,
}

/// One bundle made from an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// the image (manifest digest)
    pub image: Digest,
    /// how the rootfs was made
    pub snapshotter: SnapshotterKind,
    /// the overlay upper/work directory, if any
    pub scratch: Option<PathBuf>,
}

/// Everything the store knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// format version
    pub version: u32,
    /// layers by diff_id
    pub layers: BTreeMap<Digest, LayerRecord>,
    /// images by manifest digest
    pub images: BTreeMap<Digest, ImageRecord>,
    /// bundles by path
    pub bundles: BTreeMap<PathBuf, BundleRecord>,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// layers removed
    pub removed_layers: Vec<Digest>,
}

/// A staging directory, removed when dropped unless committed.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    committed: bool,
}

impl StagingDir {
    /// Where to unpack.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = remove_tree(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove a staging directory");
            }
        }
    }
}

/// Held while a layer is being fetched: a second request for it waits, then finds it.
#[derive(Debug)]
pub struct LayerLock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Keeps layers from garbage collection while a pull uses them.
#[derive(Debug)]
pub struct Pin {
    store: Arc<PinTable>,
    layers: Vec<Digest>,
}

#[derive(Debug, Default)]
struct PinTable(Mutex<HashMap<Digest, usize>>);

impl Drop for Pin {
    fn drop(&mut self) {
        let mut table = self.store.0.lock().unwrap_or_else(|p| p.into_inner());
        for layer in &self.layers {
            if let Some(count) = table.get_mut(layer) {
                *count -= 1;
                if *count == 0 {
                    table.remove(layer);
                }
            }
        }
    }
}

/// The layer store of one work directory.
#[derive(Debug)]
pub struct LayerStore {
    root: PathBuf,
    _lock: File,
    metadata: tokio::sync::Mutex<Metadata>,
    inflight: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    pins: Arc<PinTable>,
    counter: AtomicU64,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

impl LayerStore {
    /// Opens (creating) the store in `root`, takes its lock, and removes what a killed
    /// process left behind. Blocking: call it from a blocking context.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for dir in ["layers", "staging", "snapshots"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_error("create", &path))?;
        }
        let lock_path = root.join(".lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error("open", &lock_path))?;
        rustix::fs::flock(
            lock.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .map_err(|_| StoreError::Busy(root.to_path_buf()))?;

        let staging = root.join("staging");
        for entry in fs::read_dir(&staging).map_err(io_error("list", &staging))? {
            let entry = entry.map_err(io_error("list", &staging))?;
            tracing::info!(path = %entry.path().display(), "removing a staging directory left by an interrupted pull");
            remove_tree(&entry.path()).map_err(io_error("remove", &entry.path()))?;
        }

        let meta_path = root.join(METADATA);
        let mut metadata = match File::open(&meta_path) {
            Ok(file) => {
                let len = file.metadata().map_err(io_error("stat", &meta_path))?.len();
                if len > MAX_METADATA_BYTES {
                    return Err(StoreError::CorruptMetadata {
                        path: meta_path,
                        message: format!("{len} bytes"),
                    });
                }
                let metadata: Metadata = serde_json::from_reader(std::io::BufReader::new(file))
                    .map_err(|e| StoreError::CorruptMetadata {
                        path: meta_path.clone(),
                        message: e.to_string(),
                    })?;
                if metadata.version != METADATA_VERSION {
                    return Err(StoreError::CorruptMetadata {
                        path: meta_path,
                        message: format!(
                            "version {} (this build reads {METADATA_VERSION})",
                            metadata.version
                        ),
                    });
                }
                metadata
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Metadata {
                version: METADATA_VERSION,
                ..Metadata::default()
            },
            Err(e) => return Err(io_error("open", &meta_path)(e)),
        };

        // Snapshot directories no bundle records belong to a process killed between
        // mounting a bundle's overlay and recording it: detach the overlay, drop the files.
        let recorded: BTreeSet<PathBuf> = metadata
            .bundles
            .values()
            .filter_map(|b| b.scratch.clone())
            .collect();
        let snapshots = root.join("snapshots");
        for entry in fs::read_dir(&snapshots).map_err(io_error("list", &snapshots))? {
            let path = entry.map_err(io_error("list", &snapshots))?.path();
            if recorded.contains(&path) {
                continue;
            }
            let detached = crate::snapshot::remove_stale_snapshot(&path).map_err(|e| {
                StoreError::StaleSnapshot {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            tracing::info!(
                path = %path.display(),
                detached = ?detached,
                "removed a snapshot directory no bundle records"
            );
        }

        // Layer directories and records must agree.
        let layers_dir = root.join("layers");
        let mut on_disk = BTreeSet::new();
        for entry in fs::read_dir(&layers_dir).map_err(io_error("list", &layers_dir))? {
            let entry = entry.map_err(io_error("list", &layers_dir))?;
            let name = entry.file_name();
            match Digest::from_file_name(&name.to_string_lossy())
                .filter(|d| metadata.layers.contains_key(d))
            {
                Some(digest) => {
                    on_disk.insert(digest);
                }
                None => {
                    tracing::info!(path = %entry.path().display(), "removing a layer directory the metadata does not record");
                    remove_tree(&entry.path()).map_err(io_error("remove", &entry.path()))?;
                }
            }
        }
        let before = metadata.layers.len();
        metadata.layers.retain(|d, _| on_disk.contains(d));
        if metadata.layers.len() != before {
            let bytes =
                serde_json::to_vec(&metadata).map_err(|e| StoreError::Task(e.to_string()))?;
            write_atomic(&meta_path, &bytes).map_err(io_error("write", &meta_path))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
            metadata: tokio::sync::Mutex::new(metadata),
            inflight: Mutex::new(HashMap::new()),
            pins: Arc::new(PinTable::default()),
            counter: AtomicU64::new(0),
        })
    }

    /// The work directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the layer with `diff_id` lives.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.file_name())
    }

    /// A fresh scratch directory name under `snapshots/`.
    pub fn new_snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots").join(self.unique_name())
    }

    fn unique_name(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{}-{n}-{nanos:x}", std::process::id())
    }

    /// Creates an empty staging directory (blocking).
    pub fn new_staging(&self) -> Result<StagingDir, StoreError> {
        let path = self.root.join("staging").join(self.unique_name());
        fs::create_dir(&path).map_err(io_error("create", &path))?;
        Ok(StagingDir {
            path,
            committed: false,
        })
    }

    /// Serializes fetches of one layer: the second caller waits for the first.
    pub async fn lock_layer(&self, diff_id: &Digest) -> LayerLock {
        let mutex = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            // Forget entries nobody holds any more.
            inflight.retain(|_, m| Arc::strong_count(m) > 1);
            inflight.entry(diff_id.clone()).or_default().clone()
        };
        LayerLock {
            _guard: mutex.lock_owned().await,
        }
    }

    /// Whether the layer can be reused for a blob: any stored layer with this diff_id
    /// for a plain blob; for an encrypted blob, only if this very blob was decrypted
    /// into it before (reuse must not skip the key check for a different ciphertext).
    pub async fn has_layer(&self, diff_id: &Digest, blob: &Digest, encrypted: bool) -> bool {
        let metadata = self.metadata.lock().await;
        metadata
            .layers
            .get(diff_id)
            .is_some_and(|record| !encrypted || record.blobs.contains(blob))
    }

    /// Keeps `layers` from [`LayerStore::gc`] until the pin is dropped.
    pub fn pin(&self, layers: &[Digest]) -> Pin {
        let mut table = self.pins.0.lock().unwrap_or_else(|p| p.into_inner());
        for layer in layers {
            *table.entry(layer.clone()).or_default() += 1;
        }
        Pin {
            store: self.pins.clone(),
            layers: layers.to_vec(),
        }
    }

    async fn persist(&self, metadata: &Metadata) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(metadata).map_err(|e| StoreError::Task(e.to_string()))?;
        let path = self.root.join(METADATA);
        tokio::task::spawn_blocking(move || {
            write_atomic(&path, &bytes).map_err(io_error("write", &path))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Makes a verified staging directory the layer `diff_id`, or records another blob
    /// for an existing one.
    pub async fn commit_layer(
        &self,
        mut staging: StagingDir,
        diff_id: &Digest,
        blob: &Digest,
        file_bytes: u64,
    ) -> Result<(), StoreError> {
        let target = self.layer_path(diff_id);
        let source = staging.path.clone();
        let renamed = tokio::task::spawn_blocking(move || match fs::rename(&source, &target) {
            Ok(()) => Ok(true),
            // Already there (verified when it was committed): keep it.
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
                    || e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) =>
            {
                Ok(false)
            }
            Err(e) => Err(io_error("commit layer", &target)(e)),
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        staging.committed = renamed;
        let mut metadata = self.metadata.lock().await;
        let record = metadata
            .layers
            .entry(diff_id.clone())
            .or_insert_with(|| LayerRecord {
                blobs: BTreeSet::new(),
                file_bytes,
            });
        record.blobs.insert(blob.clone());
        let snapshot = metadata.clone();
        self.persist(&snapshot).await
    }

    /// Records a pulled image (after all its layers are committed).
    pub async fn record_image(
        &self,
        manifest: &Digest,
        reference: &str,
        config_digest: &Digest,
        config: &ImageConfiguration,
    ) -> Result<(), StoreError> {
        let mut metadata = self.metadata.lock().await;
        let record = metadata
            .images
            .entry(manifest.clone())
            .or_insert_with(|| ImageRecord {
                references: BTreeSet::new(),
                config_digest: config_digest.clone(),
                diff_ids: config.rootfs.diff_ids.clone(),
                config: config.clone(),
            });
        record.references.insert(reference.to_string());
        let snapshot = metadata.clone();
        self.persist(&snapshot).await
    }

    /// Records a bundle.
    pub async fn record_bundle(
        &self,
        bundle: &Path,
        record: BundleRecord,
    ) -> Result<(), StoreError> {
        let mut metadata = self.metadata.lock().await;
        metadata.bundles.insert(bundle.to_path_buf(), record);
        let snapshot = metadata.clone();
        self.persist(&snapshot).await
    }

    /// Forgets a bundle and returns its record.
    pub async fn forget_bundle(&self, bundle: &Path) -> Result<Option<BundleRecord>, StoreError> {
        let mut metadata = self.metadata.lock().await;
        let removed = metadata.bundles.remove(bundle);
        if removed.is_some() {
            let snapshot = metadata.clone();
            self.persist(&snapshot).await?;
        }
        Ok(removed)
    }

    /// Forgets an image (its layers go at the next [`LayerStore::gc`]); refused while a
    /// bundle uses it.
    pub async fn forget_image(&self, manifest: &Digest) -> Result<bool, StoreError> {
        let mut metadata = self.metadata.lock().await;
        if let Some((bundle, _)) = metadata.bundles.iter().find(|(_, b)| &b.image == manifest) {
            return Err(StoreError::ImageInUse {
                image: manifest.clone(),
                bundle: bundle.clone(),
            });
        }
        let removed = metadata.images.remove(manifest).is_some();
        if removed {
            let snapshot = metadata.clone();
            self.persist(&snapshot).await?;
        }
        Ok(removed)
    }

    /// A copy of the metadata.
    pub async fn metadata(&self) -> Metadata {
        self.metadata.lock().await.clone()
    }

    /// Removes the layers no recorded image references (and no pull in progress pins).
    pub async fn gc(&self) -> Result<GcReport, StoreError> {
        let mut metadata = self.metadata.lock().await;
        let referenced: BTreeSet<Digest> = metadata
            .images
            .values()
            .flat_map(|i| i.diff_ids.iter().cloned())
            .collect();
        let pinned: BTreeSet<Digest> = self
            .pins
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let doomed: Vec<Digest> = metadata
            .layers
            .keys()
            .filter(|d| !referenced.contains(*d) && !pinned.contains(*d))
            .cloned()
            .collect();
        for digest in &doomed {
            metadata.layers.remove(digest);
        }
        let snapshot = metadata.clone();
        // Metadata first: a crash after it leaves orphan directories, removed at startup.
        self.persist(&snapshot).await?;
        let paths: Vec<PathBuf> = doomed.iter().map(|d| self.layer_path(d)).collect();
        tokio::task::spawn_blocking(move || {
            for path in paths {
                remove_tree(&path).map_err(io_error("remove layer", &path))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(GcReport {
            removed_layers: doomed,
        })
    }
}
