//! Snapshotters: how a bundle's `rootfs` is made from the stored layers (overlayfs-format
//! directories, bottom first).
//!
//! - `overlayfs` (default): an overlay mount, layers as lower directories and a private
//!   upper/work directory per bundle; costs nothing per byte.
//! - `flatten`: a copy that applies whiteouts and opaque directories as overlayfs would,
//!   for guests without overlayfs or when a plain directory is wanted.

mod flatten;
mod overlay;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use flatten::flatten;
pub use overlay::mount_overlay;
pub(crate) use overlay::{remove_stale_snapshot, unmount};

/// Which snapshotter makes the rootfs (config key `snapshotter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotterKind {
    /// overlay mount of the layers
    #[default]
    #[serde(rename = "overlayfs", alias = "overlay")]
    Overlay,
    /// a flattened copy
    #[serde(rename = "flatten")]
    Flatten,
}

impl std::str::FromStr for SnapshotterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "overlayfs" | "overlay" => Ok(SnapshotterKind::Overlay),
            "flatten" => Ok(SnapshotterKind::Flatten),
            other => Err(format!(
                "unknown snapshotter {other:?} (overlayfs or flatten)"
            )),
        }
    }
}

/// Why a rootfs could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
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
    /// the overlay mount failed
    #[error("overlay mount on {target} failed: {message}")]
    Mount {
        /// the mount point
        target: PathBuf,
        /// what the kernel said
        message: String,
    },
    /// the rootfs directory is not empty
    #[error("{0} already exists and is not empty")]
    RootfsNotEmpty(PathBuf),
}

pub(crate) fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `rootfs` exists (empty); refused if it holds anything: not ours to fill.
pub(crate) fn empty_rootfs_exists(rootfs: &Path) -> Result<bool, SnapshotError> {
    match std::fs::read_dir(rootfs) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SnapshotError::RootfsNotEmpty(rootfs.to_path_buf()));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("read", rootfs)(e)),
    }
}

/// Creates `rootfs` (absent or empty) as a directory.
pub(crate) fn prepare_rootfs(rootfs: &Path) -> Result<(), SnapshotError> {
    if empty_rootfs_exists(rootfs)? {
        return Ok(());
    }
    std::fs::create_dir_all(rootfs).map_err(io_error("create", rootfs))
}
