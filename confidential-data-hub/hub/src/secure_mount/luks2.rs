//! LUKS2 through `cryptsetup` (and `mkfs.ext4` for file-system targets), run as child
//! processes; the key goes in on a pipe.

use std::{
    ffi::OsString,
    fs::{DirBuilder, OpenOptions},
    os::unix::{
        ffi::OsStrExt as _,
        fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
    process::{Output, Stdio},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use tokio::io::AsyncWriteExt as _;

use super::{
    io_error, log_undo_failure, BlockDeviceRequest, SecureMountError, SecureMountPaths, SourceType,
    TargetType,
};

/// Size of a detached LUKS2 header (metadata and keyslot areas, cryptsetup's default).
pub(super) const HEADER_SIZE: u64 = 16 << 20;
/// Memory (KiB) argon2id may use for a supplied key: a pod VM has little to spare.
const ARGON2_MEMORY_KIB: &str = "65536";

fn arg(s: &str) -> OsString {
    OsString::from(s)
}

/// Runs `program args`, feeding `input` on stdin (then closing it); the output of a
/// process that ran, whatever its status.
async fn run(
    program: &Path,
    args: &[OsString],
    input: Option<&[u8]>,
) -> Result<Output, SecureMountError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| SecureMountError::Spawn {
        program: program.to_path_buf(),
        source,
    })?;
    let stdin = child.stdin.take();
    let feed = async move {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            // a child that exits without reading closes the pipe; its status says why
            let _ = stdin.write_all(input).await;
        }
    };
    let ((), output) = tokio::join!(feed, child.wait_with_output());
    output.map_err(|source| SecureMountError::Spawn {
        program: program.to_path_buf(),
        source,
    })
}

/// The last few lines of a tool's stderr (tools never see the key on their command line,
/// so their messages cannot hold it).
fn stderr_tail(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(4)..].join("; ")
}

fn tool_error(action: String, output: &Output) -> SecureMountError {
    SecureMountError::Tool {
        action,
        status: output.status,
        stderr: stderr_tail(output),
    }
}

/// `cryptsetup luksFormat` of `device` with its header in `header` (already created,
/// [`HEADER_SIZE`] bytes). A random key needs no password hashing, so it gets the
/// cheapest PBKDF; a supplied key gets argon2id within [`ARGON2_MEMORY_KIB`].
pub(super) async fn format(
    cryptsetup: &Path,
    device: &Path,
    header: &Path,
    key: &[u8],
    random_key: bool,
    integrity: bool,
) -> Result<(), SecureMountError> {
    let mut args: Vec<OsString> = [
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--cipher",
        "aes-xts-plain64",
        "--sector-size",
        CRYPT_SECTOR_TEXT,
        "--key-file",
        "-",
    ]
    .into_iter()
    .map(arg)
    .collect();
    if random_key {
        args.extend(
            ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]
                .into_iter()
                .map(arg),
        );
    } else {
        args.extend(
            ["--pbkdf", "argon2id", "--pbkdf-memory", ARGON2_MEMORY_KIB]
                .into_iter()
                .map(arg),
        );
    }
    if integrity {
        args.extend(
            [
                "--integrity",
                "hmac-sha256",
                "--integrity-no-wipe",
                "--integrity-no-journal",
            ]
            .into_iter()
            .map(arg),
        );
    }
    args.extend([arg("--header"), header.into(), device.into()]);
    let output = run(cryptsetup, &args, Some(key)).await?;
    if output.status.success() {
        return Ok(());
    }
    Err(device_mapper_error(&output)
        .unwrap_or_else(|| tool_error(format!("formatting {}", device.display()), &output)))
}

/// `Some` when cryptsetup failed for want of device-mapper.
fn device_mapper_error(output: &Output) -> Option<SecureMountError> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find(|line| line.contains("Cannot initialize device-mapper"))
        .map(|line| SecureMountError::DeviceMapperUnavailable {
            detail: format!("cryptsetup: {}", line.trim()),
        })
}

/// What `cryptsetup open` is asked to do.
#[derive(Debug, Clone, Copy)]
pub(super) enum OpenMode<'a> {
    /// Map the device as `/dev/mapper/<name>`.
    Map {
        /// the mapper name
        name: &'a str,
        /// skip the dm-integrity journal
        no_integrity_journal: bool,
    },
    /// Only check that the key opens a keyslot (needs no device-mapper).
    #[cfg(test)]
    TestKey,
}

/// `cryptsetup open` of `device` (header on the device unless `header` is given).
pub(super) async fn open(
    cryptsetup: &Path,
    device: &Path,
    header: Option<&Path>,
    key: &[u8],
    mode: OpenMode<'_>,
) -> Result<(), SecureMountError> {
    let mut args: Vec<OsString> = ["open", "--type", "luks2", "--key-file", "-"]
        .into_iter()
        .map(arg)
        .collect();
    if let Some(header) = header {
        args.extend([arg("--header"), header.into()]);
    }
    match mode {
        OpenMode::Map {
            name,
            no_integrity_journal,
        } => {
            if no_integrity_journal {
                args.push(arg("--integrity-no-journal"));
            }
            args.extend([device.into(), arg(name)]);
        }
        #[cfg(test)]
        OpenMode::TestKey => args.extend([arg("--test-passphrase"), device.into()]),
    }
    let output = run(cryptsetup, &args, Some(key)).await?;
    match output.status.code() {
        Some(0) => Ok(()),
        // cryptsetup's exit code for "no key available with this passphrase"
        Some(2) => Err(SecureMountError::WrongKey(device.to_path_buf())),
        _ => Err(device_mapper_error(&output)
            .unwrap_or_else(|| tool_error(format!("opening {}", device.display()), &output))),
    }
}

/// `cryptsetup close <name>`.
pub(super) async fn close(cryptsetup: &Path, name: &str) -> Result<(), SecureMountError> {
    let output = run(cryptsetup, &[arg("close"), arg(name)], None).await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(tool_error(format!("closing {name}"), &output))
    }
}

/// Whether `device` starts with a LUKS2 header (`cryptsetup isLuks --type luks2`).
pub(super) async fn is_luks2(cryptsetup: &Path, device: &Path) -> Result<bool, SecureMountError> {
    let args = [arg("isLuks"), arg("--type"), arg("luks2"), device.into()];
    let output = run(cryptsetup, &args, None).await?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(tool_error(
            format!("checking {}", device.display()),
            &output,
        )),
    }
}

/// The layout `mkfs.ext4 -n` announces: block size and backup superblock blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SuperblockBackups {
    /// bytes per block
    pub(super) block_size: u64,
    /// block numbers of the backup superblocks
    pub(super) blocks: Vec<u64>,
}

/// Reads `mkfs.ext4 -n`'s output: "Creating filesystem with N Xk blocks" and the numbers
/// after "Superblock backups stored on blocks:" up to the next blank line.
pub(super) fn superblock_backups(output: &str) -> Result<SuperblockBackups, SecureMountError> {
    let block_size = output
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("Creating filesystem with ")?;
            let mut words = rest.split_whitespace();
            let _count: u64 = words.next()?.parse().ok()?;
            let size = words.next()?.strip_suffix('k')?.parse::<u64>().ok()?;
            (words.next() == Some("blocks") && size > 0 && size <= 64).then_some(size * 1024)
        })
        .ok_or_else(|| {
            SecureMountError::Layout("no \"Creating filesystem with N Xk blocks\" line".into())
        })?;
    let mut blocks = Vec::new();
    if let Some(start) = output.find("Superblock backups stored on blocks:") {
        let list = &output[start + "Superblock backups stored on blocks:".len()..];
        let list = list.split("\n\n").next().unwrap_or_default();
        for item in list.split([',', ' ', '\t', '\n']).filter(|s| !s.is_empty()) {
            let block = item.parse::<u64>().map_err(|_| {
                SecureMountError::Layout(format!("`{item}` in the backup superblock list"))
            })?;
            blocks.push(block);
        }
    }
    Ok(SuperblockBackups { block_size, blocks })
}

/// dm-crypt's sector size for the volumes formatted here: the unit every write to the
/// mapping is read-modified-written in.
pub(super) const CRYPT_SECTOR: u64 = 4096;
const CRYPT_SECTOR_TEXT: &str = "4096";

/// The byte ranges mkfs reads before it writes them, each widened to whole crypt sectors:
/// block 0 (mke2fs reads it, then clears its first sectors) and the backup superblocks.
/// With dm-integrity and no wipe, a sector never written fails its check when read.
pub(super) fn integrity_zero_ranges(
    layout: &SuperblockBackups,
) -> Result<Vec<std::ops::Range<u64>>, SecureMountError> {
    let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
    for block in std::iter::once(&0).chain(&layout.blocks) {
        let start = block
            .checked_mul(layout.block_size)
            .and_then(|start| Some(start..start.checked_add(layout.block_size)?))
            .ok_or_else(|| {
                SecureMountError::Layout(format!("block {block} is beyond any device"))
            })?;
        let range = start.start / CRYPT_SECTOR * CRYPT_SECTOR
            ..start.end.div_ceil(CRYPT_SECTOR) * CRYPT_SECTOR;
        if !ranges.contains(&range) {
            ranges.push(range);
        }
    }
    Ok(ranges)
}

/// Writes zeros over the [`integrity_zero_ranges`] of `device`.
pub(super) async fn zero_blocks(
    device: &Path,
    layout: &SuperblockBackups,
) -> Result<(), SecureMountError> {
    let device = device.to_path_buf();
    let ranges = integrity_zero_ranges(layout)?;
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .write(true)
            .open(&device)
            .map_err(io_error("open", &device))?;
        for range in ranges {
            let zeros = vec![0u8; usize::try_from(range.end - range.start).unwrap_or(0)];
            file.write_all_at(&zeros, range.start)
                .map_err(io_error("zero the superblock places of", &device))?;
        }
        file.sync_all().map_err(io_error("sync", &device))
    })
    .await?
}

/// One volume being set up.
pub(super) struct Volume<'a> {
    pub(super) paths: &'a SecureMountPaths,
    pub(super) device: &'a Path,
    pub(super) mapper_name: &'a str,
    pub(super) request: &'a BlockDeviceRequest,
}

/// What to take back if a later step fails.
#[derive(Default)]
struct Undo {
    header: Option<PathBuf>,
    opened: bool,
    created_mount_point: bool,
}

impl Volume<'_> {
    fn mapped(&self) -> PathBuf {
        self.paths.mapper_dir.join(self.mapper_name)
    }

    /// Formats (`empty`), opens, and links or mounts; undoes the steps done on failure.
    pub(super) async fn set_up(
        &self,
        key: &[u8],
        random_key: bool,
    ) -> Result<(), SecureMountError> {
        let mut undo = Undo::default();
        let result = self.steps(key, random_key, &mut undo).await;
        if result.is_err() {
            if undo.created_mount_point {
                if let Err(e) = std::fs::remove_dir(&self.request.mount_point) {
                    log_undo_failure("removing the mount point", &e);
                }
            }
            if undo.opened {
                if let Err(e) = close(&self.paths.cryptsetup, self.mapper_name).await {
                    log_undo_failure("closing the mapping", &e);
                }
            }
            if let Some(header) = &undo.header {
                if let Err(e) = std::fs::remove_file(header) {
                    log_undo_failure("removing the header", &e);
                }
            }
        }
        result
    }

    async fn steps(
        &self,
        key: &[u8],
        random_key: bool,
        undo: &mut Undo,
    ) -> Result<(), SecureMountError> {
        let cryptsetup = &self.paths.cryptsetup;
        let header = match self.request.source {
            SourceType::Empty => {
                let header = header_path(&self.paths.header_dir, self.device);
                create_header_file(&self.paths.header_dir, &header)?;
                undo.header = Some(header.clone());
                format(
                    cryptsetup,
                    self.device,
                    &header,
                    key,
                    random_key,
                    self.request.integrity,
                )
                .await?;
                Some(header)
            }
            SourceType::Encrypted => {
                if !is_luks2(cryptsetup, self.device).await? {
                    return Err(SecureMountError::NotLuks(self.device.to_path_buf()));
                }
                None
            }
        };
        open(
            cryptsetup,
            self.device,
            header.as_deref(),
            key,
            OpenMode::Map {
                name: self.mapper_name,
                no_integrity_journal: self.request.integrity,
            },
        )
        .await?;
        undo.opened = true;
        let mapped = self.mapped();
        let mount_point = &self.request.mount_point;
        match self.request.target {
            TargetType::Device => {
                if let Some(parent) = mount_point.parent() {
                    std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
                }
                std::os::unix::fs::symlink(&mapped, mount_point)
                    .map_err(io_error("link the device at", mount_point))?;
            }
            TargetType::FileSystem => {
                if self.request.source == SourceType::Empty {
                    self.make_file_system(&mapped).await?;
                }
                match std::fs::symlink_metadata(mount_point) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(SecureMountError::InvalidMountPoint {
                            path: mount_point.clone(),
                            reason: "exists and is not a directory".into(),
                        })
                    }
                    Err(_) => {
                        std::fs::create_dir_all(mount_point)
                            .map_err(io_error("create", mount_point))?;
                        undo.created_mount_point = true;
                    }
                }
                let (source, target) = (mapped.clone(), mount_point.clone());
                tokio::task::spawn_blocking(move || {
                    rustix::mount::mount(
                        &source,
                        &target,
                        "ext4",
                        rustix::mount::MountFlags::NOATIME,
                        None,
                    )
                    .map_err(|e| SecureMountError::Io {
                        action: "mount ext4 at",
                        path: target.clone(),
                        source: e.into(),
                    })
                })
                .await??;
            }
        }
        Ok(())
    }

    /// `mkfs.ext4` on the opened device; with integrity the backup superblock places are
    /// zeroed first and inode tables initialized now rather than lazily.
    async fn make_file_system(&self, mapped: &Path) -> Result<(), SecureMountError> {
        let mkfs = &self.paths.mkfs_ext4;
        let mut args: Vec<OsString> = vec![arg("-F")];
        let mut options = self.request.mkfs_options.clone();
        if self.request.integrity {
            // mke2fs keeps only its last -E: the extended options go into one list
            merge_extended_option(&mut options, "lazy_itable_init=0");
        }
        args.extend(options.iter().map(OsString::from));
        if self.request.integrity {
            let mut dry_run = vec![arg("-n")];
            dry_run.extend(args.iter().cloned());
            dry_run.push(mapped.into());
            let output = run(mkfs, &dry_run, None).await?;
            if !output.status.success() {
                return Err(tool_error(
                    format!("mkfs.ext4 -n on {}", mapped.display()),
                    &output,
                ));
            }
            let layout = superblock_backups(&String::from_utf8_lossy(&output.stdout))?;
            zero_blocks(mapped, &layout).await?;
        }
        args.push(mapped.into());
        let output = run(mkfs, &args, None).await?;
        if output.status.success() {
            Ok(())
        } else {
            Err(tool_error(
                format!("mkfs.ext4 on {}", mapped.display()),
                &output,
            ))
        }
    }
}

/// Adds `option` to the mkfs arguments' extended options: to the last `-E <list>` (or
/// `-E<list>`), or as a new `-E option`.
pub(super) fn merge_extended_option(args: &mut Vec<String>, option: &str) {
    let last = args
        .iter()
        .rposition(|a| a == "-E" || (a.starts_with("-E") && a.len() > 2));
    match last {
        Some(i) if args[i] == "-E" && i + 1 < args.len() => {
            args[i + 1] = format!("{},{option}", args[i + 1]);
        }
        Some(i) if args[i] != "-E" => args[i] = format!("{},{option}", args[i]),
        _ => args.extend(["-E".to_string(), option.to_string()]),
    }
}

/// The detached header of `device` in `dir`: `<dir>/<base64url(device path)>.header`.
pub(super) fn header_path(dir: &Path, device: &Path) -> PathBuf {
    dir.join(format!(
        "{}.header",
        URL_SAFE_NO_PAD.encode(device.as_os_str().as_bytes())
    ))
}

/// Creates `header` (mode 0600, [`HEADER_SIZE`] bytes, sparse) in `dir` (created 0700);
/// refuses an existing one, so two formats of one device cannot both proceed.
pub(super) fn create_header_file(dir: &Path, header: &Path) -> Result<(), SecureMountError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create", dir))?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(header)
        .map_err(io_error("create", header))?;
    file.set_len(HEADER_SIZE)
        .map_err(io_error("size", header))?;
    Ok(())
}
