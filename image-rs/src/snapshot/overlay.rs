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
pub(crate) fn unmount(rootfs: &Path, scratch: Option<&Path>) -> Result<(), SnapshotError> {
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

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for `\`).
fn unescape_mountinfo(field: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt as _;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let digits = bytes.get(i + 1..i + 4)?;
            let text = std::str::from_utf8(digits).ok()?;
            out.push(u8::from_str_radix(text, 8).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// The mount points of the overlays in `mountinfo` (`/proc/self/mountinfo` text) whose
/// upper directory is `<scratch>/upper`. Lines that do not parse are skipped.
pub(crate) fn overlays_of(scratch: &Path, mountinfo: &str) -> Vec<PathBuf> {
    let upper = scratch.join("upper");
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut fields = after.split(' ');
            let (fs_type, _source, options) = (fields.next()?, fields.next()?, fields.next()?);
            let names_scratch = options.split(',').any(|option| {
                option
                    .strip_prefix("upperdir=")
                    .and_then(unescape_mountinfo)
                    .is_some_and(|dir| dir == upper)
            });
            (fs_type == "overlay" && names_scratch)
                .then(|| unescape_mountinfo(before.split(' ').nth(4)?))
                .flatten()
        })
        .collect()
}

/// Detaches every overlay still mounted on `scratch` (left by a process killed between
/// mounting a bundle and recording it), then removes `scratch`. Blocking.
pub(crate) fn remove_stale_snapshot(scratch: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_error("read", Path::new("/proc/self/mountinfo")))?;
    let mounts = overlays_of(scratch, &mountinfo);
    for target in &mounts {
        rustix::mount::unmount(target, UnmountFlags::DETACH).map_err(|e| SnapshotError::Mount {
            target: target.clone(),
            message: format!("unmount of a stale overlay: {e}"),
        })?;
    }
    remove_tree(scratch).map_err(io_error("remove", scratch))?;
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_overlays_are_found_by_their_upper_directory() {
        let scratch = Path::new("/work dir/snapshots/7-1");
        let mountinfo = "\
22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
44 27 0:39 / /run/kata/c1/rootfs rw,relatime - overlay overlay rw,lowerdir=/w/l/a,upperdir=/work\\040dir/snapshots/7-1/upper,workdir=/work\\040dir/snapshots/7-1/work,uuid=on
45 27 0:40 / /run/kata/with\\040space/rootfs rw - overlay overlay rw,upperdir=/work\\040dir/snapshots/7-1/upper,workdir=x
46 27 0:41 / /run/other rw - overlay overlay rw,upperdir=/work\\040dir/snapshots/7-10/upper,workdir=y
47 27 0:42 / /run/tmpfs rw - tmpfs tmpfs rw,upperdir=/work\\040dir/snapshots/7-1/upper
48 27 0:43 / /bad\\04 rw - overlay overlay rw,upperdir=/work\\040dir/snapshots/7-1/upper
50 27 0:45 / /run/x rw - overlay overlay rw,upperdir=/work\\04
truncated line without separator
49 27 0:44 / - overlay
";
        assert_eq!(
            overlays_of(scratch, mountinfo),
            [
                PathBuf::from("/run/kata/c1/rootfs"),
                PathBuf::from("/run/kata/with space/rootfs")
            ]
        );
        assert!(overlays_of(Path::new("/elsewhere"), mountinfo).is_empty());
    }
}
