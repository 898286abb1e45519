//! The flatten snapshotter: copies the layers bottom to top into one directory, with
//! overlayfs semantics: a 0/0 character device removes the name below it, an opaque
//! directory hides everything below it, a directory replaces a non-directory (and the
//! other way round), and the uppermost metadata wins. Hard links inside a layer stay hard
//! links. Both trees are walked through file descriptors, never following symlinks.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use super::{io_error, prepare_rootfs, SnapshotError};
use crate::fsutil::{child_type, list_dir, open_child_dir, open_dir_path, remove_all_at};
use crate::layer::unpack::OPAQUE_XATTR;

fn errno<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> SnapshotError + 'a {
    move |e| io_error(op, path)(e.into())
}

// `Stat` field types differ between architectures (c_long, i64, u32...): cast explicitly.
#[allow(clippy::unnecessary_cast)]
fn times(stat: &Stat) -> Timestamps {
    let t = |sec: i64, nsec: u64| Timespec {
        tv_sec: sec,
        tv_nsec: nsec.try_into().unwrap_or(0),
    };
    Timestamps {
        last_access: t(stat.st_atime as i64, stat.st_atime_nsec as u64),
        last_modification: t(stat.st_mtime as i64, stat.st_mtime_nsec as u64),
    }
}

fn is_whiteout(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice && stat.st_rdev == 0
}

/// Copies the xattrs of `src` to `dst` (both regular files or directories), except the
/// overlay ones.
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, path: &Path) -> Result<(), SnapshotError> {
    let mut names = vec![0u8; 4096];
    let len = match rfs::flistxattr(src, &mut names) {
        Ok(len) => len,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(Errno::RANGE) => {
            let size = rfs::flistxattr(src, &mut [0u8; 0]).map_err(errno("list xattrs", path))?;
            names.resize(size, 0);
            rfs::flistxattr(src, &mut names).map_err(errno("list xattrs", path))?
        }
        Err(e) => return Err(errno("list xattrs", path)(e)),
    };
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let name = OsStr::from_bytes(name);
        let mut value = vec![0u8; 64 * 1024];
        let n = rfs::fgetxattr(src, name, &mut value).map_err(errno("read xattr", path))?;
        match rfs::fsetxattr(dst, name, &value[..n], XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(errno("write xattr", path)(e)),
        }
    }
    Ok(())
}

fn set_owner_mode(fd: BorrowedFd<'_>, stat: &Stat, path: &Path) -> Result<(), SnapshotError> {
    rfs::fchown(
        fd,
        Some(Uid::from_raw(stat.st_uid)),
        Some(Gid::from_raw(stat.st_gid)),
    )
    .map_err(errno("chown", path))?;
    rfs::fchmod(fd, Mode::from_raw_mode(stat.st_mode & 0o7777)).map_err(errno("chmod", path))
}

/// Per-layer state: where the first copy of each multiply-linked inode went.
struct LayerCopy<'a> {
    dst_root: BorrowedFd<'a>,
    links: HashMap<(u64, u64), Vec<OsString>>,
}

impl LayerCopy<'_> {
    fn copy_dir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        rel: &mut Vec<OsString>,
        shown: &Path,
    ) -> Result<(), SnapshotError> {
        let opaque = {
            let mut value = [0u8; 4];
            matches!(rfs::fgetxattr(src, OPAQUE_XATTR, &mut value), Ok(1) if value[0] == b'y')
        };
        if opaque {
            for (name, _) in list_dir(dst).map_err(errno("list", shown))? {
                remove_all_at(dst, &name).map_err(errno("remove", &shown.join(&name)))?;
            }
        }
        for (name, _) in list_dir(src).map_err(errno("list", shown))? {
            let path = shown.join(&name);
            let stat =
                rfs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno("stat", &path))?;
            if is_whiteout(&stat) {
                remove_all_at(dst, &name).map_err(errno("remove", &path))?;
                continue;
            }
            let kind = FileType::from_raw_mode(stat.st_mode);
            let existing = child_type(dst, &name).map_err(errno("stat", &path))?;
            if kind == FileType::Directory {
                match existing {
                    Some(FileType::Directory) => {}
                    Some(_) => {
                        rfs::unlinkat(dst, &name, AtFlags::empty())
                            .map_err(errno("unlink", &path))?;
                        rfs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))
                            .map_err(errno("mkdir", &path))?;
                    }
                    None => rfs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))
                        .map_err(errno("mkdir", &path))?,
                }
                let src_child = open_child_dir(src, &name).map_err(errno("open", &path))?;
                let dst_child = open_child_dir(dst, &name).map_err(errno("open", &path))?;
                rel.push(name.clone());
                self.copy_dir(src_child.as_fd(), dst_child.as_fd(), rel, &path)?;
                rel.pop();
                set_owner_mode(dst_child.as_fd(), &stat, &path)?;
                copy_xattrs(src_child.as_fd(), dst_child.as_fd(), &path)?;
                rfs::futimens(dst_child.as_fd(), &times(&stat))
                    .map_err(errno("set times", &path))?;
                continue;
            }
            if let Some(existing) = existing {
                if existing == FileType::Directory {
                    remove_all_at(dst, &name).map_err(errno("remove", &path))?;
                } else {
                    rfs::unlinkat(dst, &name, AtFlags::empty()).map_err(errno("unlink", &path))?;
                }
            }
            let key = (stat.st_dev as u64, stat.st_ino as u64);
            if kind != FileType::Directory && stat.st_nlink > 1 {
                if let Some(first) = self.links.get(&key) {
                    let (first_leaf, first_parent) = match first.split_last() {
                        Some(split) => split,
                        None => continue,
                    };
                    let first_dir = walk(self.dst_root, first_parent, &path)?;
                    rfs::linkat(first_dir.as_fd(), first_leaf, dst, &name, AtFlags::empty())
                        .map_err(errno("link", &path))?;
                    continue;
                }
                let mut full = rel.clone();
                full.push(name.clone());
                self.links.insert(key, full);
            }
            match kind {
                FileType::RegularFile => {
                    let from = rfs::openat(
                        src,
                        &name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(errno("open", &path))?;
                    let to = rfs::openat(
                        dst,
                        &name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(errno("create", &path))?;
                    let mut from = File::from(from);
                    let mut to = File::from(to);
                    std::io::copy(&mut from, &mut to).map_err(io_error("copy", &path))?;
                    set_owner_mode(to.as_fd(), &stat, &path)?;
                    copy_xattrs(from.as_fd(), to.as_fd(), &path)?;
                    rfs::futimens(to.as_fd(), &times(&stat)).map_err(errno("set times", &path))?;
                }
                FileType::Symlink => {
                    let target = rfs::readlinkat(src, &name, Vec::new())
                        .map_err(errno("readlink", &path))?;
                    rfs::symlinkat(target.as_c_str(), dst, &name)
                        .map_err(errno("symlink", &path))?;
                    self.finish_special(dst, &name, &stat, &path, false)?;
                }
                FileType::Fifo
                | FileType::CharacterDevice
                | FileType::BlockDevice
                | FileType::Socket => {
                    rfs::mknodat(
                        dst,
                        &name,
                        kind,
                        Mode::from_raw_mode(stat.st_mode & 0o7777),
                        stat.st_rdev as rfs::Dev,
                    )
                    .map_err(errno("mknod", &path))?;
                    self.finish_special(dst, &name, &stat, &path, true)?;
                }
                FileType::Directory | FileType::Unknown => {}
            }
        }
        Ok(())
    }

    fn finish_special(
        &self,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        stat: &Stat,
        path: &Path,
        chmod: bool,
    ) -> Result<(), SnapshotError> {
        rfs::chownat(
            dst,
            name,
            Some(Uid::from_raw(stat.st_uid)),
            Some(Gid::from_raw(stat.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno("chown", path))?;
        if chmod {
            rfs::chmodat(
                dst,
                name,
                Mode::from_raw_mode(stat.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(errno("chmod", path))?;
        }
        rfs::utimensat(dst, name, &times(stat), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno("set times", path))
    }
}

fn walk(root: BorrowedFd<'_>, comps: &[OsString], shown: &Path) -> Result<OwnedFd, SnapshotError> {
    let mut current = rfs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno("open", shown))?;
    for comp in comps {
        current = open_child_dir(current.as_fd(), comp).map_err(errno("open", shown))?;
    }
    Ok(current)
}

/// Copies `layers` (bottom first) into `rootfs` (absent or empty). Blocking.
pub(crate) fn flatten(layers: &[PathBuf], rootfs: &Path) -> Result<(), SnapshotError> {
    prepare_rootfs(rootfs)?;
    let dst_root = open_dir_path(rootfs).map_err(io_error("open", rootfs))?;
    for layer in layers {
        let src_root = open_dir_path(layer).map_err(io_error("open", layer))?;
        let mut copy = LayerCopy {
            dst_root: dst_root.as_fd(),
            links: HashMap::new(),
        };
        copy.copy_dir(src_root.as_fd(), dst_root.as_fd(), &mut Vec::new(), rootfs)?;
        let stat = rfs::fstat(src_root.as_fd()).map_err(errno("stat", layer))?;
        set_owner_mode(dst_root.as_fd(), &stat, rootfs)?;
        rfs::futimens(dst_root.as_fd(), &times(&stat)).map_err(errno("set times", rootfs))?;
    }
    Ok(())
}
