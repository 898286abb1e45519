//! File-descriptor-relative helpers: every path below a root is resolved one component at a
//! time with `O_NOFOLLOW`, so a symlink planted in untrusted content is never followed.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Opens a directory we trust by path (a root we created), refusing a symlink.
pub(crate) fn open_dir_path(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens child directory `name` of `parent` without following a symlink.
pub(crate) fn open_child_dir(parent: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The type of `name` in `parent` (not following a symlink), `None` if absent.
pub(crate) fn child_type(parent: BorrowedFd<'_>, name: &OsStr) -> Result<Option<FileType>, Errno> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names in a directory (without `.` and `..`).
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<(OsString, FileType)>, Errno> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push((OsStr::from_bytes(name).to_os_string(), entry.file_type()));
    }
    Ok(names)
}

/// Removes `name` in `parent` and, if it is a directory, everything below it, never
/// following symlinks. Iterative, so depth costs heap, not stack.
pub(crate) fn remove_all_at(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match child_type(parent, name)? {
        None => return Ok(()),
        Some(FileType::Directory) => {}
        Some(_) => return rfs::unlinkat(parent, name, AtFlags::empty()),
    }
    // Stack of (directory fd, its name in the level above); the top is emptied first.
    let mut stack: Vec<(OwnedFd, OsString)> =
        vec![(open_child_dir(parent, name)?, name.to_os_string())];
    while let Some((dir, _)) = stack.last() {
        let mut descended = None;
        for (child, kind) in list_dir(dir.as_fd())? {
            let is_dir = match kind {
                FileType::Directory => true,
                FileType::Unknown => child_type(dir.as_fd(), &child)? == Some(FileType::Directory),
                _ => false,
            };
            if is_dir {
                descended = Some((open_child_dir(dir.as_fd(), &child)?, child));
                break;
            }
            rfs::unlinkat(dir.as_fd(), &child, AtFlags::empty())?;
        }
        match descended {
            Some(next) => stack.push(next),
            None => {
                if let Some((_, done)) = stack.pop() {
                    let above = stack.last().map_or(parent, |(fd, _)| fd.as_fd());
                    rfs::unlinkat(above, &done, AtFlags::REMOVEDIR)?;
                }
            }
        }
    }
    Ok(())
}

/// Removes a tree we own by path (staging directories, snapshots): std's
/// `remove_dir_all` does not follow symlinks.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `/proc/self/fd/<dir>/<name>`: a path for the calls that only exist path-based
/// (`lsetxattr`), resolved through our own directory descriptor, never through names in
/// the untrusted tree except the final one, which those calls do not follow.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    let mut path = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(name);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_all_at_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::write(tree.join("a/b/c/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/b/link2")).unwrap();
        let root = open_dir_path(dir.path()).unwrap();
        remove_all_at(root.as_fd(), OsStr::new("tree")).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        remove_all_at(root.as_fd(), OsStr::new("absent")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("toplink")).unwrap();
        remove_all_at(root.as_fd(), OsStr::new("toplink")).unwrap();
        assert!(outside.join("keep").exists());
        assert_eq!(
            child_type(root.as_fd(), OsStr::new("outside")).unwrap(),
            Some(FileType::Directory)
        );
    }
}
