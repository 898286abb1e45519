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
//!
//! A bundle is recorded as pending (`pending_bundles`) before anything of it is created,
//! and moves to `bundles` once complete. What a pending record names was absent or empty
//! when it was written, so a process killed in between leaves only files this store made:
//! they are taken down at the next start, or by the next pull into (or removal of) that
//! bundle. A bundle path without any record is never cleaned up: it may be someone
//! else's.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::bundle::{BUNDLE_CONFIG, BUNDLE_ROOTFS};
use crate::fsutil::remove_tree;
use crate::snapshot::{SnapshotError, SnapshotterKind};
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
    /// another pull or removal works on the bundle
    #[error("another pull or removal is working on the bundle {0}; retry when it is done")]
    BundleBusy(PathBuf),
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
    /// bundles being made, by path (absent from files written before it existed)
    #[serde(default)]
    pub pending_bundles: BTreeMap<PathBuf, BundleRecord>,
}

/// What the store records about a bundle path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BundleState {
    /// nothing: whatever is there is not ours
    Unknown,
    /// being made, or left half-made by a killed or failed pull
    Pending(BundleRecord),
    /// complete
    Complete(BundleRecord),
}

#[derive(Debug, Default)]
struct ClaimTable(Mutex<HashSet<PathBuf>>);

/// Exclusive use of a bundle path by one pull or removal of this process, until dropped.
#[derive(Debug)]
pub(crate) struct BundleClaim {
    table: Arc<ClaimTable>,
    path: PathBuf,
}

impl Drop for BundleClaim {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        table.remove(&self.path);
    }
}

/// Takes down what a pending bundle may hold: `config.json` (unless `config_is_ours` is
/// false: someone else wrote it), the overlay mounted on the record's scratch directory
/// and that directory, and the rootfs (the flattened tree; for an overlay only the empty
/// mount point). The pending record was written when these were absent or empty, so all
/// of it is ours. Blocking.
pub(crate) fn take_down_pending(
    bundle: &Path,
    record: &BundleRecord,
    config_is_ours: bool,
) -> Result<(), SnapshotError> {
    let not_found_ok = |result: std::io::Result<()>, op, path: &Path| match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SnapshotError::Io {
            op,
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    };
    if config_is_ours {
        let config = bundle.join(BUNDLE_CONFIG);
        not_found_ok(fs::remove_file(&config), "remove", &config)?;
    }
    let rootfs = bundle.join(BUNDLE_ROOTFS);
    match record.snapshotter {
        SnapshotterKind::Overlay => {
            if let Some(scratch) = &record.scratch {
                crate::snapshot::remove_stale_snapshot(scratch)?;
            }
            // Not a tree removal: once the overlay is gone the mount point is empty, and
            // anything else found there was not made by us.
            not_found_ok(fs::remove_dir(&rootfs), "remove", &rootfs)
        }
        SnapshotterKind::Flatten => not_found_ok(remove_tree(&rootfs), "remove", &rootfs),
    }
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
    claims: Arc<ClaimTable>,
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
                // A scratch directory is deleted with its bundle: only ever one of ours.
                let snapshots = root.join("snapshots");
                let foreign = metadata
                    .bundles
                    .iter()
                    .chain(&metadata.pending_bundles)
                    .find_map(|(bundle, record)| {
                        let scratch = record.scratch.as_ref()?;
                        let ours = scratch.parent() == Some(snapshots.as_path())
                            && scratch.file_name().is_some();
                        (!ours).then(|| (bundle.clone(), scratch.clone()))
                    });
                if let Some((bundle, scratch)) = foreign {
                    return Err(StoreError::CorruptMetadata {
                        path: meta_path,
                        message: format!(
                            "the bundle {} names the scratch directory {}, outside {}",
                            bundle.display(),
                            scratch.display(),
                            snapshots.display()
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

        // Bundles a killed process left pending: take them down. One that cannot be stays
        // pending (the next pull into it or its removal retries) rather than keeping every
        // other pull from starting.
        let mut changed = false;
        for (bundle, record) in std::mem::take(&mut metadata.pending_bundles) {
            tracing::warn!(bundle = %bundle.display(), "taking down a bundle an interrupted pull left half-made");
            match take_down_pending(&bundle, &record, true) {
                Ok(()) => changed = true,
                Err(e) => {
                    tracing::warn!(bundle = %bundle.display(), error = %e, "could not take down a half-made bundle; the next pull into it or its removal retries");
                    metadata.pending_bundles.insert(bundle, record);
                }
            }
        }

        // Snapshot directories no bundle records belong to a process killed between
        // mounting a bundle's overlay and recording it: detach the overlay, drop the files.
        let recorded: BTreeSet<PathBuf> = metadata
            .bundles
            .values()
            .chain(metadata.pending_bundles.values())
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
        if changed || metadata.layers.len() != before {
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
            claims: Arc::new(ClaimTable::default()),
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

    /// Claims `bundle` for one pull or removal: refused while another of this process
    /// holds it (a pending record it holds is live work, not a leftover).
    pub(crate) fn claim_bundle(&self, bundle: &Path) -> Result<BundleClaim, StoreError> {
        let mut table = self.claims.0.lock().unwrap_or_else(|p| p.into_inner());
        if !table.insert(bundle.to_path_buf()) {
            return Err(StoreError::BundleBusy(bundle.to_path_buf()));
        }
        Ok(BundleClaim {
            table: self.claims.clone(),
            path: bundle.to_path_buf(),
        })
    }

    /// What is recorded about the claimed bundle.
    pub(crate) async fn bundle_state(&self, claim: &BundleClaim) -> BundleState {
        let metadata = self.metadata.lock().await;
        if let Some(record) = metadata.bundles.get(&claim.path) {
            BundleState::Complete(record.clone())
        } else if let Some(record) = metadata.pending_bundles.get(&claim.path) {
            BundleState::Pending(record.clone())
        } else {
            BundleState::Unknown
        }
    }

    /// Records the claimed bundle as pending: call it before creating anything of it.
    pub(crate) async fn begin_bundle(
        &self,
        claim: &BundleClaim,
        record: BundleRecord,
    ) -> Result<(), StoreError> {
        let mut metadata = self.metadata.lock().await;
        metadata.pending_bundles.insert(claim.path.clone(), record);
        let snapshot = metadata.clone();
        self.persist(&snapshot).await
    }

    /// Turns the claimed bundle's pending record into a complete one.
    pub(crate) async fn complete_bundle(
        &self,
        claim: &BundleClaim,
        record: BundleRecord,
    ) -> Result<(), StoreError> {
        let mut metadata = self.metadata.lock().await;
        let pending = metadata.pending_bundles.remove(&claim.path);
        metadata.bundles.insert(claim.path.clone(), record);
        let snapshot = metadata.clone();
        let persisted = self.persist(&snapshot).await;
        if persisted.is_err() {
            // The file still says pending: so must memory, for the caller's undo.
            metadata.bundles.remove(&claim.path);
            if let Some(pending) = pending {
                metadata.pending_bundles.insert(claim.path.clone(), pending);
            }
        }
        persisted
    }

    /// Forgets the claimed bundle (pending or complete), once it is taken down.
    pub(crate) async fn forget_bundle(&self, claim: &BundleClaim) -> Result<(), StoreError> {
        let mut metadata = self.metadata.lock().await;
        let complete = metadata.bundles.remove(&claim.path).is_some();
        let pending = metadata.pending_bundles.remove(&claim.path).is_some();
        if complete || pending {
            let snapshot = metadata.clone();
            self.persist(&snapshot).await?;
        }
        Ok(())
    }

    /// Forgets an image (its layers go at the next [`LayerStore::gc`]); refused while a
    /// bundle uses it.
    pub async fn forget_image(&self, manifest: &Digest) -> Result<bool, StoreError> {
        let mut metadata = self.metadata.lock().await;
        if let Some((bundle, _)) = metadata
            .bundles
            .iter()
            .chain(&metadata.pending_bundles)
            .find(|(_, b)| &b.image == manifest)
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn record(snapshotter: SnapshotterKind, scratch: Option<PathBuf>) -> BundleRecord {
        BundleRecord {
            image: Digest::parse(IMAGE).unwrap(),
            snapshotter,
            scratch,
        }
    }

    fn on_disk(work: &Path) -> serde_json::Value {
        serde_json::from_slice(&fs::read(work.join(METADATA)).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn metadata_written_before_pending_bundles_existed_loads() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        fs::create_dir_all(&work).unwrap();
        let old = serde_json::json!({
            "version": 1,
            "layers": {},
            "images": {},
            "bundles": {"/run/b1": {"image": IMAGE, "snapshotter": "flatten", "scratch": null}}
        });
        fs::write(work.join(METADATA), old.to_string()).unwrap();
        let store = LayerStore::open(&work).unwrap();
        let metadata = store.metadata().await;
        assert_eq!(
            metadata.bundles,
            BTreeMap::from([(
                PathBuf::from("/run/b1"),
                record(SnapshotterKind::Flatten, None)
            )])
        );
        assert!(metadata.pending_bundles.is_empty());
    }

    #[test]
    fn a_scratch_directory_outside_the_store_is_corrupt_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let victim = dir.path().join("victim");
        fs::create_dir_all(&work).unwrap();
        fs::create_dir_all(victim.join("data")).unwrap();
        for scratch in [
            victim.clone(),
            work.join("snapshots/../../victim"),
            work.join("snapshots/.."),
        ] {
            for field in ["bundles", "pending_bundles"] {
                let mut metadata = serde_json::json!({
                    "version": 1, "layers": {}, "images": {}, "bundles": {}, "pending_bundles": {}
                });
                metadata[field] = serde_json::json!({
                    "/run/b1": {"image": IMAGE, "snapshotter": "overlay", "scratch": scratch}
                });
                fs::write(work.join(METADATA), metadata.to_string()).unwrap();
                let err = LayerStore::open(&work).unwrap_err();
                assert!(
                    matches!(&err, StoreError::CorruptMetadata { message, .. } if message.contains("outside")),
                    "{field} {}: {err}",
                    scratch.display()
                );
                assert!(victim.join("data").is_dir());
            }
        }
    }

    #[tokio::test]
    async fn open_takes_down_pending_bundles_and_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let flat = dir.path().join("flat");
        let overlay = dir.path().join("overlay");
        {
            let store = LayerStore::open(&work).unwrap();
            let scratch = store.new_snapshot_dir();
            fs::create_dir_all(scratch.join("upper/half")).unwrap();
            fs::create_dir_all(flat.join("rootfs/usr/bin")).unwrap();
            fs::write(flat.join("rootfs/usr/bin/half-copied"), b"x").unwrap();
            fs::write(flat.join("config.json"), b"{\"trunc").unwrap();
            fs::create_dir_all(overlay.join("rootfs")).unwrap();
            let flat_claim = store.claim_bundle(&flat).unwrap();
            let overlay_claim = store.claim_bundle(&overlay).unwrap();
            store
                .begin_bundle(&flat_claim, record(SnapshotterKind::Flatten, None))
                .await
                .unwrap();
            store
                .begin_bundle(
                    &overlay_claim,
                    record(SnapshotterKind::Overlay, Some(scratch.clone())),
                )
                .await
                .unwrap();
            assert_eq!(
                on_disk(&work)["pending_bundles"].as_object().unwrap().len(),
                2
            );
            // the kill: no completion, no undo
        }
        let store = LayerStore::open(&work).unwrap();
        assert!(!flat.join("rootfs").exists());
        assert!(!flat.join("config.json").exists());
        assert!(flat.is_dir(), "the bundle directory itself is not ours");
        assert!(!overlay.join("rootfs").exists());
        assert_eq!(fs::read_dir(work.join("snapshots")).unwrap().count(), 0);
        let metadata = store.metadata().await;
        assert!(metadata.pending_bundles.is_empty());
        assert!(metadata.bundles.is_empty());
        assert_eq!(on_disk(&work)["pending_bundles"], serde_json::json!({}));
    }

    #[tokio::test]
    async fn a_pending_bundle_holding_foreign_files_is_kept_and_does_not_block_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let bundle = dir.path().join("bundle");
        {
            let store = LayerStore::open(&work).unwrap();
            let claim = store.claim_bundle(&bundle).unwrap();
            store
                .begin_bundle(
                    &claim,
                    record(SnapshotterKind::Overlay, Some(store.new_snapshot_dir())),
                )
                .await
                .unwrap();
        }
        // Not an overlay of ours: a file in the mount point itself.
        fs::create_dir_all(bundle.join("rootfs")).unwrap();
        fs::write(bundle.join("rootfs/theirs"), b"keep me").unwrap();
        let store = LayerStore::open(&work).unwrap();
        assert_eq!(fs::read(bundle.join("rootfs/theirs")).unwrap(), b"keep me");
        let claim = store.claim_bundle(&bundle).unwrap();
        assert!(matches!(
            store.bundle_state(&claim).await,
            BundleState::Pending(BundleRecord {
                snapshotter: SnapshotterKind::Overlay,
                ..
            })
        ));
        assert_eq!(
            on_disk(&work)["pending_bundles"].as_object().unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn a_claimed_bundle_is_busy_and_its_pending_image_cannot_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayerStore::open(dir.path()).unwrap();
        let bundle = dir.path().join("bundle");
        let claim = store.claim_bundle(&bundle).unwrap();
        assert!(
            matches!(store.claim_bundle(&bundle), Err(StoreError::BundleBusy(p)) if p == bundle)
        );
        {
            store
                .begin_bundle(&claim, record(SnapshotterKind::Flatten, None))
                .await
                .unwrap();
            let image = Digest::parse(IMAGE).unwrap();
            assert!(matches!(
                store.forget_image(&image).await,
                Err(StoreError::ImageInUse { bundle: b, .. }) if b == bundle
            ));
            store
                .complete_bundle(&claim, record(SnapshotterKind::Flatten, None))
                .await
                .unwrap();
            assert_eq!(
                store.bundle_state(&claim).await,
                BundleState::Complete(record(SnapshotterKind::Flatten, None))
            );
            assert_eq!(
                on_disk(dir.path())["pending_bundles"],
                serde_json::json!({})
            );
            store.forget_bundle(&claim).await.unwrap();
            assert_eq!(store.bundle_state(&claim).await, BundleState::Unknown);
            assert_eq!(on_disk(dir.path())["bundles"], serde_json::json!({}));
        }
        drop(claim);
        assert!(store.claim_bundle(&bundle).is_ok());
    }
}
