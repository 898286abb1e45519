//! Safe extraction of one layer tar into an (empty, private) staging directory, in the
//! format overlayfs reads as a lower layer.
//!
//! - Paths: absolute paths and `..` components are refused; every parent directory is
//!   opened one component at a time with `O_NOFOLLOW|O_DIRECTORY` from the root's file
//!   descriptor, so a symlink anywhere in a parent path is refused rather than followed,
//!   and files are created with `O_CREAT|O_EXCL|O_NOFOLLOW` after the old entry is
//!   unlinked. Hard link targets are resolved the same way (inside the root, no symlinks).
//! - Whiteouts: `.wh.<name>` becomes a 0/0 character device `<name>`; `.wh..wh..opq`
//!   sets `trusted.overlay.opaque=y` on its directory, and fails loudly when the
//!   filesystem refuses trusted xattrs (upstream silently skipped it, letting lower
//!   files leak through).
//! - Metadata through the descriptors (`fchown`, `fchmod`, `futimens`, `fsetxattr`);
//!   directory times are set at the end so that creating children does not change them.
//! - Device nodes only when allowed; `trusted.overlay.*` xattrs from a layer are refused
//!   (they would change what overlayfs shows); per-entry, per-layer and entry-count limits.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use serde::Deserialize;

use crate::fsutil::{child_type, open_child_dir, open_dir_path, proc_path, remove_all_at};

/// The xattr overlayfs reads to make a directory opaque.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
const COPY_BUFFER: usize = 256 * 1024;
const MAX_XATTR_VALUE: usize = 64 * 1024;
const MAX_PAX_BYTES: u64 = 1 << 20;

/// Limits on what one layer may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UnpackLimits {
    /// `max_layer_bytes`: uncompressed size of the layer tar stream
    pub max_layer_bytes: u64,
    /// `max_entry_bytes`: size of one file
    pub max_entry_bytes: u64,
    /// `max_entries`: entries in one layer
    pub max_entries: u64,
    /// `max_path_depth`: components in one path
    pub max_path_depth: usize,
    /// `max_compression_ratio`: how many times the bytes of the blob read so far the
    /// uncompressed stream may grow to, beyond its first [`RATIO_FREE_BYTES`] (0: no
    /// limit). Refuses decompression bombs after a few MiB instead of at
    /// `max_layer_bytes`; raise it for images with huge runs of zeros.
    pub max_compression_ratio: u64,
}

/// Uncompressed bytes of a layer never held against `max_compression_ratio`: small
/// layers of empty files and directories inflate well beyond any sane ratio.
pub const RATIO_FREE_BYTES: u64 = 16 << 20;

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_layer_bytes: 64 << 30,
            max_entry_bytes: 32 << 30,
            max_entries: 4_000_000,
            max_path_depth: 256,
            max_compression_ratio: 256,
        }
    }
}

/// How to unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    /// size and count limits
    pub limits: UnpackLimits,
    /// create character and block devices (otherwise they are refused)
    pub allow_device_nodes: bool,
    /// apply the owners recorded in the layer (needs CAP_CHOWN)
    pub preserve_ownership: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            limits: UnpackLimits::default(),
            allow_device_nodes: false,
            preserve_ownership: true,
        }
    }
}

/// Why a layer was refused or could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// a path with a `..` component
    #[error("layer entry {path:?} climbs out of the layer with `..`")]
    PathTraversal {
        /// the entry (or link target) path
        path: String,
    },
    /// an absolute path
    #[error("layer entry {path:?} is an absolute path")]
    AbsolutePath {
        /// the entry (or link target) path
        path: String,
    },
    /// a parent component is a symlink
    #[error(
        "layer entry {path:?} goes through the symlink {component:?}: refused rather than followed"
    )]
    SymlinkInPath {
        /// the entry (or link target) path
        path: String,
        /// the symlink component
        component: String,
    },
    /// a parent component is not a directory
    #[error("layer entry {path:?}: {component:?} is not a directory")]
    ParentNotDirectory {
        /// the entry path
        path: String,
        /// the offending component
        component: String,
    },
    /// a hard link to something that does not exist (yet) in the layer
    #[error("hard link {path:?} points to {target:?}, which is not in the layer")]
    HardlinkTargetMissing {
        /// the link
        path: String,
        /// its target
        target: String,
    },
    /// a hard link to a directory
    #[error("hard link {path:?} points to the directory {target:?}")]
    HardlinkToDirectory {
        /// the link
        path: String,
        /// its target
        target: String,
    },
    /// a whiteout naming `.`, `..` or nothing
    #[error("invalid whiteout {path:?}")]
    InvalidWhiteout {
        /// the whiteout entry
        path: String,
    },
    /// a device node while they are not allowed
    #[error("layer entry {path:?} is a {kind} device node; device nodes are not allowed (allow_device_nodes)")]
    DeviceNotAllowed {
        /// the entry
        path: String,
        /// character or block
        kind: &'static str,
    },
    /// a file larger than the per-entry limit
    #[error("layer entry {path:?} is {size} bytes, more than the {limit} allowed")]
    EntryTooLarge {
        /// the entry
        path: String,
        /// its declared size
        size: u64,
        /// the limit
        limit: u64,
    },
    /// the layer is larger than allowed
    #[error("the layer is larger than the {limit} bytes allowed")]
    LayerTooLarge {
        /// the limit
        limit: u64,
    },
    /// too many entries
    #[error("the layer has more than {limit} entries")]
    TooManyEntries {
        /// the limit
        limit: u64,
    },
    /// a path deeper than allowed
    #[error("layer entry {path:?} is deeper than {limit} components")]
    PathTooDeep {
        /// the entry
        path: String,
        /// the limit
        limit: usize,
    },
    /// an entry type other than file, directory, link, device or fifo
    #[error("layer entry {path:?} has unsupported tar type {kind:?}")]
    UnsupportedEntryType {
        /// the entry
        path: String,
        /// the type flag
        kind: char,
    },
    /// an xattr that would change how overlayfs shows the layer
    #[error(
        "layer entry {path:?} carries the overlayfs attribute {name:?}, which a layer must not set"
    )]
    ForbiddenXattr {
        /// the entry
        path: String,
        /// the xattr name
        name: String,
    },
    /// a header field that does not parse
    #[error("layer entry {path:?}: invalid header: {message}")]
    InvalidHeader {
        /// the entry
        path: String,
        /// what is wrong
        message: String,
    },
    /// the data of an entry ends early
    #[error("layer entry {path:?} is truncated: {expected} bytes declared, {actual} present")]
    TruncatedEntry {
        /// the entry
        path: String,
        /// declared size
        expected: u64,
        /// bytes present
        actual: u64,
    },
    /// the filesystem refuses the opaque-directory xattr: overlay semantics impossible
    #[error("cannot mark {path:?} opaque ({OPAQUE_XATTR}): {source}; the work directory's filesystem must support trusted xattrs")]
    OpaqueUnsupported {
        /// the directory
        path: String,
        /// the error
        #[source]
        source: io::Error,
    },
    /// the whiteout device cannot be created
    #[error(
        "cannot create whiteout {path:?} (0/0 character device): {source}; this needs CAP_MKNOD"
    )]
    WhiteoutUnsupported {
        /// the whiteout
        path: String,
        /// the error
        #[source]
        source: io::Error,
    },
    /// reading the layer stream failed (decompression, decryption, download, tar framing)
    #[error("reading the layer stream: {0}")]
    Read(#[source] io::Error),
    /// a filesystem operation failed
    #[error("{op} {path:?}: {source}")]
    Io {
        /// the operation
        op: &'static str,
        /// the entry path
        path: String,
        /// the error
        #[source]
        source: io::Error,
    },
}

/// What one unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// tar entries processed
    pub entries: u64,
    /// bytes of regular file content written
    pub file_bytes: u64,
}

fn display(path: &[u8]) -> String {
    String::from_utf8_lossy(&path[..path.len().min(512)]).into_owned()
}

fn io_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |e| UnpackError::Io {
        op,
        path: path.to_string(),
        source: e.into(),
    }
}

/// Splits an archive path into components, refusing absolute paths and `..`.
fn components<'a>(
    raw: &'a [u8],
    shown: &str,
    limits: &UnpackLimits,
) -> Result<Vec<&'a OsStr>, UnpackError> {
    if raw.first() == Some(&b'/') {
        return Err(UnpackError::AbsolutePath {
            path: shown.to_string(),
        });
    }
    let mut out = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => {
                return Err(UnpackError::PathTraversal {
                    path: shown.to_string(),
                })
            }
            _ => out.push(OsStr::from_bytes(part)),
        }
    }
    if out.len() > limits.max_path_depth {
        return Err(UnpackError::PathTooDeep {
            path: shown.to_string(),
            limit: limits.max_path_depth,
        });
    }
    Ok(out)
}

/// Opens the directory `comps` below `root` one component at a time, never following a
/// symlink; missing directories are created (mode 0755) when `create` is set.
fn walk(
    root: BorrowedFd<'_>,
    comps: &[&OsStr],
    create: bool,
    shown: &str,
) -> Result<Option<OwnedFd>, UnpackError> {
    let mut current: Option<OwnedFd> = None;
    for comp in comps {
        let parent = current.as_ref().map_or(root, |fd| fd.as_fd());
        let next = open_component(parent, comp, create, shown)?;
        match next {
            Some(fd) => current = Some(fd),
            None => return Ok(None),
        }
    }
    match current {
        Some(fd) => Ok(Some(fd)),
        None => Ok(Some(
            rfs::openat(
                root,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("open", shown))?,
        )),
    }
}

fn open_component(
    parent: BorrowedFd<'_>,
    comp: &OsStr,
    create: bool,
    shown: &str,
) -> Result<Option<OwnedFd>, UnpackError> {
    match open_child_dir(parent, comp) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) if create => {
            match rfs::mkdirat(parent, comp, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io_err("mkdir", shown)(e)),
            }
            match open_child_dir(parent, comp) {
                Ok(fd) => Ok(Some(fd)),
                Err(e) => Err(not_a_dir(parent, comp, shown, e)),
            }
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(not_a_dir(parent, comp, shown, e)),
    }
}

fn not_a_dir(parent: BorrowedFd<'_>, comp: &OsStr, shown: &str, error: Errno) -> UnpackError {
    let component = comp.to_string_lossy().into_owned();
    match child_type(parent, comp) {
        Ok(Some(FileType::Symlink)) => UnpackError::SymlinkInPath {
            path: shown.to_string(),
            component,
        },
        Ok(Some(FileType::Directory)) | Ok(None) => io_err("open", shown)(error),
        Ok(Some(_)) => UnpackError::ParentNotDirectory {
            path: shown.to_string(),
            component,
        },
        Err(e) => io_err("stat", shown)(e),
    }
}

/// The chain of open directories of the last entry's parent, reused while consecutive
/// entries share a prefix.
struct DirCursor {
    stack: Vec<(OsString, OwnedFd)>,
}

impl DirCursor {
    fn enter<'a>(
        &'a mut self,
        root: BorrowedFd<'a>,
        comps: &[&OsStr],
        shown: &str,
    ) -> Result<BorrowedFd<'a>, UnpackError> {
        let common = self
            .stack
            .iter()
            .zip(comps)
            .take_while(|((name, _), comp)| name.as_os_str() == **comp)
            .count();
        self.stack.truncate(common);
        for comp in &comps[common..] {
            let parent = self.stack.last().map_or(root, |(_, fd)| fd.as_fd());
            let fd = open_component(parent, comp, true, shown)?
                .ok_or_else(|| io_err("open", shown)(Errno::NOENT))?;
            self.stack.push((comp.to_os_string(), fd));
        }
        Ok(self.stack.last().map_or(root, |(_, fd)| fd.as_fd()))
    }

    fn clear(&mut self) {
        self.stack.clear();
    }
}

#[derive(Default)]
struct PaxInfo {
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn parse_pax_time(value: &str) -> Option<(i64, u32)> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        nanos = format!("{digits:0<9}").parse().ok()?;
    }
    Some((secs, nanos))
}

fn read_pax<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<PaxInfo, UnpackError> {
    let mut info = PaxInfo::default();
    let bad = |message: String| UnpackError::InvalidHeader {
        path: shown.to_string(),
        message,
    };
    let Some(extensions) = entry.pax_extensions().map_err(UnpackError::Read)? else {
        return Ok(info);
    };
    let mut total = 0u64;
    for extension in extensions {
        let extension = extension.map_err(|e| bad(format!("PAX record: {e}")))?;
        total += extension.value_bytes().len() as u64;
        if total > MAX_PAX_BYTES {
            return Err(bad("PAX records larger than 1 MiB".into()));
        }
        let key = extension
            .key()
            .map_err(|_| bad("PAX key is not UTF-8".into()))?;
        let text = || std::str::from_utf8(extension.value_bytes()).ok();
        match key {
            "uid" => {
                info.uid = Some(
                    text()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("PAX uid".into()))?,
                )
            }
            "gid" => {
                info.gid = Some(
                    text()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("PAX gid".into()))?,
                )
            }
            "mtime" => {
                info.mtime = Some(
                    text()
                        .and_then(parse_pax_time)
                        .ok_or_else(|| bad("PAX mtime".into()))?,
                )
            }
            _ => {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if extension.value_bytes().len() > MAX_XATTR_VALUE {
                        return Err(bad(format!("xattr {name} larger than 64 KiB")));
                    }
                    info.xattrs
                        .push((name.to_string(), extension.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(info)
}

#[derive(Debug, PartialEq, Eq)]
enum XattrAction {
    Apply,
    Skip,
    Forbid,
}

fn xattr_action(name: &str) -> XattrAction {
    if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
        XattrAction::Forbid
    } else if name.starts_with("user.")
        || name == "security.capability"
        || name == "system.posix_acl_access"
        || name == "system.posix_acl_default"
    {
        XattrAction::Apply
    } else {
        XattrAction::Skip
    }
}

/// Metadata of one entry, applied after it is created.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: (i64, u32),
    xattrs: Vec<(String, Vec<u8>)>,
}

fn timestamps(mtime: (i64, u32)) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime.0,
        tv_nsec: i64::from(mtime.1),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Applies owners, xattrs and the like; separate from the cursor so both can be borrowed.
struct MetaWriter {
    preserve_ownership: bool,
    warned_xattrs: bool,
}

impl MetaWriter {
    fn apply_xattrs_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        for (name, value) in &meta.xattrs {
            if xattr_action(name) != XattrAction::Apply {
                continue;
            }
            if let Err(e) = rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                self.xattr_failed(name, shown, e)?;
            }
        }
        Ok(())
    }

    fn apply_xattrs_path(
        &mut self,
        parent: BorrowedFd<'_>,
        leaf: &OsStr,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        for (name, value) in &meta.xattrs {
            if xattr_action(name) != XattrAction::Apply {
                continue;
            }
            if let Err(e) = rfs::lsetxattr(
                proc_path(parent, leaf),
                name.as_str(),
                value,
                XattrFlags::empty(),
            ) {
                self.xattr_failed(name, shown, e)?;
            }
        }
        Ok(())
    }

    fn xattr_failed(&mut self, name: &str, shown: &str, e: Errno) -> Result<(), UnpackError> {
        match e {
            Errno::NOTSUP | Errno::PERM => {
                if !self.warned_xattrs {
                    tracing::warn!(entry = shown, xattr = name, error = %e, "xattr not applied: the work directory's filesystem refuses it");
                    self.warned_xattrs = true;
                }
                Ok(())
            }
            e => Err(io_err("setxattr", shown)(e)),
        }
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        if self.preserve_ownership {
            rfs::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(io_err("chown", shown))?;
        }
        Ok(())
    }

    fn chown_at(
        &self,
        parent: BorrowedFd<'_>,
        leaf: &OsStr,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if self.preserve_ownership {
            rfs::chownat(
                parent,
                leaf,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io_err("chown", shown))?;
        }
        Ok(())
    }
}

struct Unpacker<'o> {
    root: OwnedFd,
    options: &'o UnpackOptions,
    cursor: DirCursor,
    writer: MetaWriter,
    dir_times: Vec<(Vec<OsString>, (i64, u32))>,
    stats: UnpackStats,
    declared_bytes: u64,
    buffer: Vec<u8>,
}

impl Unpacker<'_> {
    /// Makes room for a new entry `leaf`: an existing directory is kept for a new
    /// directory, anything else is removed.
    fn clear_slot(
        parent: BorrowedFd<'_>,
        leaf: &OsStr,
        new_is_dir: bool,
        shown: &str,
    ) -> Result<bool, UnpackError> {
        match child_type(parent, leaf).map_err(io_err("stat", shown))? {
            None => Ok(false),
            Some(FileType::Directory) if new_is_dir => Ok(true),
            Some(FileType::Directory) => {
                remove_all_at(parent, leaf).map_err(io_err("remove", shown))?;
                Ok(false)
            }
            Some(_) => {
                rfs::unlinkat(parent, leaf, AtFlags::empty()).map_err(io_err("unlink", shown))?;
                Ok(false)
            }
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        self.stats.entries += 1;
        if self.stats.entries > self.options.limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: self.options.limits.max_entries,
            });
        }
        let raw_path = entry.path_bytes().into_owned();
        let shown = display(&raw_path);
        let limits = self.options.limits;
        let comps = components(&raw_path, &shown, &limits)?;
        let pax = read_pax(&mut entry, &shown)?;
        for (name, _) in &pax.xattrs {
            if xattr_action(name) == XattrAction::Forbid {
                return Err(UnpackError::ForbiddenXattr {
                    path: shown,
                    name: name.clone(),
                });
            }
        }
        let header = entry.header();
        let bad = |field: &str, e: io::Error| UnpackError::InvalidHeader {
            path: shown.clone(),
            message: format!("{field}: {e}"),
        };
        let uid = match pax.uid {
            Some(uid) => uid,
            None => header.uid().map_err(|e| bad("uid", e))?,
        };
        let gid = match pax.gid {
            Some(gid) => gid,
            None => header.gid().map_err(|e| bad("gid", e))?,
        };
        let mtime = match pax.mtime {
            Some(t) => t,
            None => (
                i64::try_from(header.mtime().map_err(|e| bad("mtime", e))?).unwrap_or(i64::MAX),
                0,
            ),
        };
        let meta = Meta {
            uid: u32::try_from(uid)
                .map_err(|_| bad("uid", io::Error::other("does not fit 32 bits")))?,
            gid: u32::try_from(gid)
                .map_err(|_| bad("gid", io::Error::other("does not fit 32 bits")))?,
            mode: header.mode().map_err(|e| bad("mode", e))? & 0o7777,
            mtime,
            xattrs: pax.xattrs,
        };

        let Some((leaf, parent_comps)) = comps.split_last() else {
            // "." or "./": the layer root itself.
            if kind != tar::EntryType::Directory {
                return Err(UnpackError::InvalidHeader {
                    path: shown,
                    message: "the layer root entry is not a directory".into(),
                });
            }
            self.writer.chown_fd(self.root.as_fd(), &meta, &shown)?;
            rfs::fchmod(self.root.as_fd(), Mode::from_raw_mode(meta.mode))
                .map_err(io_err("chmod", &shown))?;
            self.writer
                .apply_xattrs_fd(self.root.as_fd(), &meta, &shown)?;
            self.dir_times.push((Vec::new(), meta.mtime));
            return Ok(());
        };
        let leaf_bytes = leaf.as_bytes();

        if leaf_bytes.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(leaf_bytes, parent_comps, &shown);
        }

        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.size();
                if size > limits.max_entry_bytes {
                    return Err(UnpackError::EntryTooLarge {
                        path: shown,
                        size,
                        limit: limits.max_entry_bytes,
                    });
                }
                self.declared_bytes = self.declared_bytes.saturating_add(size);
                if self.declared_bytes > limits.max_layer_bytes {
                    return Err(UnpackError::LayerTooLarge {
                        limit: limits.max_layer_bytes,
                    });
                }
                let parent = self.cursor.enter(self.root.as_fd(), parent_comps, &shown)?;
                Self::clear_slot(parent, leaf, false, &shown)?;
                let fd = rfs::openat(
                    parent,
                    *leaf,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io_err("create", &shown))?;
                let mut file = File::from(fd);
                let mut written = 0u64;
                loop {
                    let n = match entry.read(&mut self.buffer) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(UnpackError::Read(e)),
                    };
                    file.write_all(&self.buffer[..n])
                        .map_err(|e| UnpackError::Io {
                            op: "write",
                            path: shown.clone(),
                            source: e,
                        })?;
                    written += n as u64;
                }
                if written != size {
                    return Err(UnpackError::TruncatedEntry {
                        path: shown,
                        expected: size,
                        actual: written,
                    });
                }
                self.stats.file_bytes += written;
                self.writer.chown_fd(file.as_fd(), &meta, &shown)?;
                rfs::fchmod(file.as_fd(), Mode::from_raw_mode(meta.mode))
                    .map_err(io_err("chmod", &shown))?;
                self.writer.apply_xattrs_fd(file.as_fd(), &meta, &shown)?;
                rfs::futimens(file.as_fd(), &timestamps(meta.mtime))
                    .map_err(io_err("set times", &shown))?;
            }
            tar::EntryType::Directory => {
                let parent = self.cursor.enter(self.root.as_fd(), parent_comps, &shown)?;
                if !Self::clear_slot(parent, leaf, true, &shown)? {
                    rfs::mkdirat(parent, *leaf, Mode::from_raw_mode(0o700))
                        .map_err(io_err("mkdir", &shown))?;
                }
                let dir = open_child_dir(parent, leaf).map_err(io_err("open", &shown))?;
                self.writer.chown_fd(dir.as_fd(), &meta, &shown)?;
                rfs::fchmod(dir.as_fd(), Mode::from_raw_mode(meta.mode))
                    .map_err(io_err("chmod", &shown))?;
                self.writer.apply_xattrs_fd(dir.as_fd(), &meta, &shown)?;
                self.dir_times
                    .push((comps.iter().map(|c| c.to_os_string()).collect(), meta.mtime));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidHeader {
                        path: shown.clone(),
                        message: "symlink without target".into(),
                    })?
                    .into_owned();
                let parent = self.cursor.enter(self.root.as_fd(), parent_comps, &shown)?;
                Self::clear_slot(parent, leaf, false, &shown)?;
                rfs::symlinkat(OsStr::from_bytes(&target), parent, *leaf)
                    .map_err(io_err("symlink", &shown))?;
                self.writer.chown_at(parent, leaf, &meta, &shown)?;
                self.writer.apply_xattrs_path(parent, leaf, &meta, &shown)?;
                rfs::utimensat(
                    parent,
                    *leaf,
                    &timestamps(meta.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io_err("set times", &shown))?;
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidHeader {
                        path: shown.clone(),
                        message: "hard link without target".into(),
                    })?
                    .into_owned();
                let target_shown = display(&target_raw);
                let target_comps = components(&target_raw, &target_shown, &limits)?;
                if target_comps == comps {
                    return Ok(()); // a link to itself: nothing to do
                }
                let Some((target_leaf, target_parent)) = target_comps.split_last() else {
                    return Err(UnpackError::HardlinkToDirectory {
                        path: shown,
                        target: target_shown,
                    });
                };
                let source_dir = walk(self.root.as_fd(), target_parent, false, &target_shown)?
                    .ok_or_else(|| UnpackError::HardlinkTargetMissing {
                        path: shown.clone(),
                        target: target_shown.clone(),
                    })?;
                match child_type(source_dir.as_fd(), target_leaf)
                    .map_err(io_err("stat", &target_shown))?
                {
                    None => {
                        return Err(UnpackError::HardlinkTargetMissing {
                            path: shown,
                            target: target_shown,
                        })
                    }
                    Some(FileType::Directory) => {
                        return Err(UnpackError::HardlinkToDirectory {
                            path: shown,
                            target: target_shown,
                        })
                    }
                    Some(_) => {}
                }
                let parent = self.cursor.enter(self.root.as_fd(), parent_comps, &shown)?;
                Self::clear_slot(parent, leaf, false, &shown)?;
                rfs::linkat(
                    source_dir.as_fd(),
                    *target_leaf,
                    parent,
                    *leaf,
                    AtFlags::empty(),
                )
                .map_err(io_err("link", &shown))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                // A fifo has no device numbers (some writers leave the fields empty).
                let (major, minor) = if kind == tar::EntryType::Fifo {
                    (0, 0)
                } else {
                    (
                        header
                            .device_major()
                            .map_err(|e| bad("devmajor", e))?
                            .unwrap_or(0),
                        header
                            .device_minor()
                            .map_err(|e| bad("devminor", e))?
                            .unwrap_or(0),
                    )
                };
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let is_whiteout = kind == tar::EntryType::Char && major == 0 && minor == 0;
                if !is_whiteout && file_type != FileType::Fifo && !self.options.allow_device_nodes {
                    return Err(UnpackError::DeviceNotAllowed {
                        path: shown,
                        kind: if kind == tar::EntryType::Char {
                            "character"
                        } else {
                            "block"
                        },
                    });
                }
                let parent = self.cursor.enter(self.root.as_fd(), parent_comps, &shown)?;
                Self::clear_slot(parent, leaf, false, &shown)?;
                rfs::mknodat(
                    parent,
                    *leaf,
                    file_type,
                    Mode::from_raw_mode(meta.mode),
                    rfs::makedev(major, minor),
                )
                .map_err(|e| match (is_whiteout, e) {
                    (true, Errno::PERM) => UnpackError::WhiteoutUnsupported {
                        path: shown.clone(),
                        source: e.into(),
                    },
                    _ => io_err("mknod", &shown)(e),
                })?;
                self.writer.chown_at(parent, leaf, &meta, &shown)?;
                rfs::chmodat(
                    parent,
                    *leaf,
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .map_err(io_err("chmod", &shown))?;
                self.writer.apply_xattrs_path(parent, leaf, &meta, &shown)?;
                rfs::utimensat(
                    parent,
                    *leaf,
                    &timestamps(meta.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io_err("set times", &shown))?;
            }
            other => {
                return Err(UnpackError::UnsupportedEntryType {
                    path: shown,
                    kind: char::from(other.as_byte()),
                })
            }
        }
        Ok(())
    }

    fn whiteout(
        &mut self,
        leaf: &[u8],
        parent_comps: &[&OsStr],
        shown: &str,
    ) -> Result<(), UnpackError> {
        if leaf == OPAQUE_MARKER {
            let dir = self.cursor.enter(self.root.as_fd(), parent_comps, shown)?;
            return rfs::fsetxattr(dir, OPAQUE_XATTR, b"y", XattrFlags::empty()).map_err(|e| {
                UnpackError::OpaqueUnsupported {
                    path: shown.to_string(),
                    source: e.into(),
                }
            });
        }
        if leaf.starts_with(AUFS_META_PREFIX) {
            // AUFS bookkeeping (`.wh..wh.plnk`, ...): not content.
            return Ok(());
        }
        let name = &leaf[WHITEOUT_PREFIX.len()..];
        if name.is_empty() || name == b"." || name == b".." {
            return Err(UnpackError::InvalidWhiteout {
                path: shown.to_string(),
            });
        }
        let name = OsStr::from_bytes(name);
        let parent = self.cursor.enter(self.root.as_fd(), parent_comps, shown)?;
        Self::clear_slot(parent, name, false, shown)?;
        rfs::mknodat(
            parent,
            name,
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
        .map_err(|e| UnpackError::WhiteoutUnsupported {
            path: shown.to_string(),
            source: e.into(),
        })
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        self.cursor.clear();
        for (comps, mtime) in std::mem::take(&mut self.dir_times) {
            let refs: Vec<&OsStr> = comps.iter().map(OsString::as_os_str).collect();
            let shown = refs
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            // A directory replaced or whited out later is simply gone.
            match walk(self.root.as_fd(), &refs, false, &shown) {
                Ok(Some(dir)) => rfs::futimens(dir.as_fd(), &timestamps(mtime))
                    .map_err(io_err("set times", &shown))?,
                Ok(None)
                | Err(UnpackError::SymlinkInPath { .. })
                | Err(UnpackError::ParentNotDirectory { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Extracts the tar stream `reader` into the directory `root` (which should be empty and
/// private to this call). Reads the stream only up to the end-of-archive marker: the
/// caller drains the rest (it is part of the diff_id).
pub fn unpack<R: Read>(
    reader: R,
    root: &Path,
    options: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root_fd = open_dir_path(root).map_err(|e| UnpackError::Io {
        op: "open layer root",
        path: root.display().to_string(),
        source: e,
    })?;
    let mut unpacker = Unpacker {
        root: root_fd,
        options,
        cursor: DirCursor { stack: Vec::new() },
        dir_times: Vec::new(),
        stats: UnpackStats::default(),
        declared_bytes: 0,
        buffer: vec![0u8; COPY_BUFFER],
        writer: MetaWriter {
            preserve_ownership: options.preserve_ownership,
            warned_xattrs: false,
        },
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let entry = entry.map_err(UnpackError::Read)?;
        unpacker.entry(entry)?;
    }
    unpacker.finish()?;
    Ok(unpacker.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escapes() {
        let l = UnpackLimits::default();
        let ok = |p: &str| {
            components(p.as_bytes(), p, &l).map(|v| {
                v.iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(ok("./a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(ok(".").unwrap(), Vec::<String>::new());
        assert!(matches!(ok("../x"), Err(UnpackError::PathTraversal { .. })));
        assert!(matches!(
            ok("a/../../x"),
            Err(UnpackError::PathTraversal { .. })
        ));
        assert!(matches!(ok("a/.."), Err(UnpackError::PathTraversal { .. })));
        assert!(matches!(
            ok("/etc/passwd"),
            Err(UnpackError::AbsolutePath { .. })
        ));
        let deep = "a/".repeat(300);
        assert!(matches!(ok(&deep), Err(UnpackError::PathTooDeep { .. })));
    }

    #[test]
    fn pax_times_and_xattr_policy() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time("-5.25"), Some((-5, 250_000_000)));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time("1.x"), None);
        assert_eq!(xattr_action("trusted.overlay.opaque"), XattrAction::Forbid);
        assert_eq!(xattr_action("user.overlay.redirect"), XattrAction::Forbid);
        assert_eq!(xattr_action("user.mime"), XattrAction::Apply);
        assert_eq!(xattr_action("security.capability"), XattrAction::Apply);
        assert_eq!(xattr_action("security.selinux"), XattrAction::Skip);
        assert_eq!(xattr_action("trusted.other"), XattrAction::Skip);
    }
}
