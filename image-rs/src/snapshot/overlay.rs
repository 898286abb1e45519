//! The overlayfs snapshotter.

use std::path::{Path, PathBuf};

use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use super::{io_error, prepare_rootfs, SnapshotError};
use crate::fsutil::remove_tree;

/// Longest option string the classic `mount(2)` accepts (one page, with the NUL).
const MAX_MOUNT_DATA: usize = 4095;

/// Mounts the layers (bottom first) as an overlay on `rootfs`, with upper and work
/// directories under `scratch`. Blocking.
pub fn mount_overlay(
    layers: &[PathBuf],
    rootfs: &Path,
    scratch: &Path,
) -> Result<(), SnapshotError> {
    prepare_rootfs(rootfs)?;
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    for dir in [&upper, &work] {
        std::fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    }
    let mut lowers: Vec<PathBuf> = layers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        // An image without layers still needs one lower directory.
        let empty = scratch.join("empty");
        std::fs::create_dir_all(&empty).map_err(io_error("create", &empty))?;
        lowers.push(empty);
    }
    // The mount API takes each lower directory separately (no escaping, no length limit;
    // Linux 6.8+); older kernels get the classic option string.
    match mount_with_fsconfig(&lowers, &upper, &work, rootfs) {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::debug!(error = %e, "overlay through fsconfig failed, trying mount(2)");
            mount_classic(&lowers, &upper, &work, rootfs)
        }
    }
}

fn mount_with_fsconfig(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    rootfs: &Path,
) -> rustix::io::Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for lower in lowers {
        fsconfig_set_string(&fs, "lowerdir+", lower.as_path())?;
    }
    fsconfig_set_string(&fs, "upperdir", upper)?;
    fsconfig_set_string(&fs, "workdir", work)?;
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        rootfs,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

fn mount_classic(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    rootfs: &Path,
) -> Result<(), SnapshotError> {
    let err = |message: String| SnapshotError::Mount {
        target: rootfs.to_path_buf(),
        message,
    };
    let mut paths = Vec::new();
    for path in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        let text = path
            .to_str()
            .ok_or_else(|| err(format!("{} is not UTF-8", path.display())))?;
        if text.contains([',', ':', '\\']) {
            return Err(err(format!(
                "{text} contains `,`, `:` or `\\`, which mount options cannot carry"
            )));
        }
        paths.push(text);
    }
    let (lower_paths, rest) = paths.split_at(lowers.len());
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower_paths.join(":"),
        rest[0],
        rest[1]
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(err(format!(
            "{} layers make a {}-byte option string, longer than mount(2) takes; use the flatten snapshotter or a shorter work_dir",
            lowers.len(),
            data.len()
        )));
    }
    let data = std::ffi::CString::new(data).map_err(|e| err(e.to_string()))?;
    rustix::mount::mount(
        "overlay",
        rootfs,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| err(e.to_string()))
}

/// Unmounts an overlay rootfs (if mounted) and removes its scratch directory. Blocking.
pub fn unmount(rootfs: &Path, scratch: Option<&Path>) -> Result<(), SnapshotError> {
    match rustix::mount::unmount(rootfs, UnmountFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => {
            return Err(SnapshotError::Mount {
                target: rootfs.to_path_buf(),
                message: format!("unmount: {e}"),
            })
        }
    }
    if let Some(scratch) = scratch {
        remove_tree(scratch).map_err(io_error("remove", scratch))?;
    }
    Ok(())
}
