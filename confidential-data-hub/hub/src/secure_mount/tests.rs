//! SecureMount against the real `cryptsetup`, `mkfs.ext4` and loop devices. This kernel
//! may lack device-mapper: then every step up to the mapping is run for real and the
//! mapping's refusal is checked to undo them; with device-mapper the whole mount runs.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use sha2::{Digest as _, Sha256};
use testkit::loopdev::{is_root, kernel_has_device_mapper, LoopDevice};

use super::luks2::{self, superblock_backups, OpenMode, SuperblockBackups};
use super::*;

const CRYPTSETUP: &str = "cryptsetup";
const MKFS_OUTPUT: &str = "mke2fs 1.47.0 (5-Feb-2023)\n\
Creating filesystem with 65536 1k blocks and 16384 inodes\n\
Filesystem UUID: 0a9be715-4077-4e88-b9a4-a1fee70bed2b\n\
Superblock backups stored on blocks: \n\
\t8193, 24577, 40961, 57345\n\
\n";

fn digest(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// Paths under `dir`, with real sysfs, /dev and tools. Without device-mapper, a
/// `/proc/misc` that lists it and a mapper directory stand in, so the steps before the
/// mapping run for real.
fn paths_in(dir: &Path) -> SecureMountPaths {
    let (mapper_dir, proc_misc) = if kernel_has_device_mapper() {
        (PathBuf::from("/dev/mapper"), PathBuf::from("/proc/misc"))
    } else {
        let mapper = dir.join("mapper");
        std::fs::create_dir_all(&mapper).unwrap();
        let misc = dir.join("misc");
        std::fs::write(&misc, "236 device-mapper\n").unwrap();
        (mapper, misc)
    };
    std::fs::create_dir_all(dir.join("cdh")).unwrap();
    SecureMountPaths {
        mapper_dir,
        proc_misc,
        header_dir: dir.join("cdh/luks-headers"),
        key_file_dir: dir.join("cdh"),
        ..SecureMountPaths::default()
    }
}

fn request(pairs: &[(&str, &str)], mount_point: &Path) -> BlockDeviceRequest {
    BlockDeviceRequest::parse(&request::options(pairs), mount_point.to_str().unwrap()).unwrap()
}

/// `cryptsetup luksDump` of a header.
fn luks_dump(header: &Path) -> String {
    let out = Command::new(CRYPTSETUP)
        .arg("luksDump")
        .arg(header)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn superblock_backups_are_read_from_mkfs_output() {
    assert_eq!(
        superblock_backups(MKFS_OUTPUT).unwrap(),
        SuperblockBackups {
            block_size: 1024,
            blocks: vec![8193, 24577, 40961, 57345],
        }
    );
    let wrapped = "Creating filesystem with 2621440 4k blocks and 655360 inodes\n\
        Superblock backups stored on blocks: \n\t32768, 98304, 163840, 229376, 294912, 819200, 884736,\n\t1605632\n\n\
        Allocating group tables: done\n";
    assert_eq!(
        superblock_backups(wrapped).unwrap().blocks,
        [32768, 98304, 163840, 229376, 294912, 819200, 884736, 1605632]
    );
    // a file system too small for backups
    assert_eq!(
        superblock_backups("Creating filesystem with 512 1k blocks and 64 inodes\n")
            .unwrap()
            .blocks,
        Vec::<u64>::new()
    );
    for bad in [
        "",
        "Superblock backups stored on blocks: \n\t8193\n",
        "Creating filesystem with many 1k blocks\n",
        "Creating filesystem with 512 0k blocks\n",
        "Creating filesystem with 512 1M blocks\n",
        "Creating filesystem with 512 1024k blocks\n",
    ] {
        assert!(
            matches!(superblock_backups(bad), Err(SecureMountError::Layout(_))),
            "{bad:?}"
        );
    }
    let hostile = "Creating filesystem with 65536 1k blocks\nSuperblock backups stored on blocks: \n\t8193, ../x\n\n";
    let e = superblock_backups(hostile).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read the ext4 layout from `mkfs.ext4 -n`: `../x` in the backup superblock list"
    );
}

#[test]
fn integrity_zero_ranges_cover_block_0_and_the_backups_in_whole_crypt_sectors() {
    // 1 KiB blocks: block 0 and block 8193 lie inside 4 KiB crypt sectors
    let layout = SuperblockBackups {
        block_size: 1024,
        blocks: vec![8193, 24577],
    };
    assert_eq!(
        luks2::integrity_zero_ranges(&layout).unwrap(),
        [
            0..4096,
            8192 * 1024..8196 * 1024,
            24576 * 1024..24580 * 1024
        ]
    );
    let layout = SuperblockBackups {
        block_size: 4096,
        blocks: vec![32768],
    };
    assert_eq!(
        luks2::integrity_zero_ranges(&layout).unwrap(),
        [0..4096, 32768 * 4096..32769 * 4096]
    );
    let hostile = SuperblockBackups {
        block_size: 4096,
        blocks: vec![u64::MAX / 2],
    };
    assert!(matches!(
        luks2::integrity_zero_ranges(&hostile),
        Err(SecureMountError::Layout(_))
    ));
}

/// kata's mkfsOpts carry their own `-E`; mke2fs keeps only the last one.
#[test]
fn extended_options_are_merged_into_one_list() {
    let merged = |args: &[&str]| {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        luks2::merge_extended_option(&mut args, "lazy_itable_init=0");
        args
    };
    assert_eq!(
        merged(&["-E", "lazy_journal_init"]),
        ["-E", "lazy_journal_init,lazy_itable_init=0"]
    );
    assert_eq!(
        merged(&["-O", "^has_journal", "-m", "0", "-i", "163840", "-I", "128"]),
        [
            "-O",
            "^has_journal",
            "-m",
            "0",
            "-i",
            "163840",
            "-I",
            "128",
            "-E",
            "lazy_itable_init=0"
        ]
    );
    assert_eq!(
        merged(&["-Elazy_journal_init", "-q"]),
        ["-Elazy_journal_init,lazy_itable_init=0", "-q"]
    );
    assert_eq!(merged(&[]), ["-E", "lazy_itable_init=0"]);
}

#[tokio::test]
async fn backup_superblocks_of_real_mkfs_are_zeroed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::write(&disk, vec![0xffu8; 64 << 20]).unwrap();
    let out = Command::new("mkfs.ext4")
        .args(["-n", "-F"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let layout = superblock_backups(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(!layout.blocks.is_empty(), "{layout:?}");
    // `-n` wrote nothing
    assert!(std::fs::read(&disk).unwrap().iter().all(|b| *b == 0xff));

    luks2::zero_blocks(&disk, &layout).await.unwrap();
    let data = std::fs::read(&disk).unwrap();
    let size = layout.block_size as usize;
    // block 0 (mke2fs reads it first) and every backup superblock, each in the whole
    // 4 KiB crypt sectors it touches
    let zeroed: Vec<std::ops::Range<usize>> = std::iter::once(0)
        .chain(layout.blocks.iter().map(|b| *b as usize))
        .map(|b| b * size / 4096 * 4096..((b + 1) * size).div_ceil(4096) * 4096)
        .collect();
    assert!(zeroed[0] == (0..4096), "{zeroed:?}");
    for (i, chunk) in data.chunks(size).enumerate() {
        let expected = if zeroed.iter().any(|r| r.contains(&(i * size))) {
            0
        } else {
            0xff
        };
        assert!(chunk.iter().all(|b| *b == expected), "block {i}");
    }
}

#[test]
fn device_ids_resolve_through_uevent() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    for (id, uevent) in [
        ("252:16", "MAJOR=252\nMINOR=16\nDEVNAME=vdb\nDEVTYPE=disk\n"),
        ("253:0", "MAJOR=253\nDEVNAME=mapper/x\n"),
        ("8:0", "MAJOR=8\nMINOR=0\n"),
        ("8:1", "DEVNAME=../../etc/passwd\n"),
        ("8:2", "DEVNAME=/etc/passwd\n"),
        ("8:3", "DEVNAME=\n"),
    ] {
        std::fs::create_dir_all(sys.join(id)).unwrap();
        std::fs::write(sys.join(id).join("uevent"), uevent).unwrap();
    }
    let mounter = SecureMounter::new(SecureMountPaths {
        sys_dev_block: sys.clone(),
        dev_dir: dir.path().join("dev"),
        ..SecureMountPaths::default()
    });
    let id = |major, minor| DeviceSpec::Id { major, minor };
    assert_eq!(
        mounter.resolve_device(&id(252, 16)).unwrap(),
        dir.path().join("dev/vdb")
    );
    assert_eq!(
        mounter.resolve_device(&id(253, 0)).unwrap(),
        dir.path().join("dev/mapper/x")
    );
    for minor in 0..=3 {
        let e = mounter.resolve_device(&id(8, minor)).unwrap_err();
        assert!(
            matches!(&e, SecureMountError::BadUevent { path } if *path == sys.join(format!("8:{minor}/uevent"))),
            "{e}"
        );
    }
    let e = mounter.resolve_device(&id(9, 9)).unwrap_err();
    assert!(
        matches!(
            e,
            SecureMountError::NoSuchDeviceId {
                major: 9,
                minor: 9,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        mounter
            .resolve_device(&DeviceSpec::Path("/dev/vdc".into()))
            .unwrap(),
        PathBuf::from("/dev/vdc")
    );
    // the real sysfs resolves a real loop device
    if is_root() {
        let disk = LoopDevice::new(dir.path(), 1).unwrap();
        let (major, minor) = disk
            .id()
            .unwrap()
            .split_once(':')
            .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
            .unwrap();
        assert_eq!(
            SecureMounter::default()
                .resolve_device(&id(major, minor))
                .unwrap(),
            disk.device
        );
    }
}

#[test]
fn a_mounted_or_held_device_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    for (path, contents) in [
        ("252:16/holders/", ""),
        ("252:16/vdb1/partition", "1"),
        ("252:16/vdb1/dev", "252:17\n"),
        ("252:32/holders/dm-0", ""),
        ("252:48/holders/", ""),
    ] {
        let path = sys.join(path);
        if path.to_string_lossy().ends_with('/') {
            std::fs::create_dir_all(&path).unwrap();
        } else {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
        }
    }
    let mountinfo = dir.path().join("mountinfo");
    std::fs::write(
        &mountinfo,
        "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
         31 22 252:17 / /data rw,relatime - ext4 /dev/vdb1 rw\n\
         truncated\n",
    )
    .unwrap();
    let mounter = SecureMounter::new(SecureMountPaths {
        sys_dev_block: sys,
        mountinfo,
        ..SecureMountPaths::default()
    });
    assert_eq!(
        mounter.device_use("252:16").as_deref(),
        Some("252:17 is mounted at /data")
    );
    assert_eq!(
        mounter.device_use("252:32").as_deref(),
        Some("held by dm-0")
    );
    assert_eq!(
        mounter.device_use("254:0").as_deref(),
        Some("254:0 is mounted at /")
    );
    assert_eq!(mounter.device_use("252:48"), None);
}

#[tokio::test]
async fn key_files_must_lie_in_the_runtime_dir() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    let allowed = paths.key_file_dir.clone();
    let mounter = SecureMounter::new(paths);
    std::fs::create_dir_all(allowed.join("kbs")).unwrap();
    std::fs::write(allowed.join("kbs/disk-key"), b"0123456789").unwrap();
    assert_eq!(
        mounter
            .read_key_file(&allowed.join("kbs/disk-key"))
            .await
            .unwrap()
            .as_slice(),
        b"0123456789"
    );

    std::fs::write(dir.path().join("outside"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), allowed.join("link")).unwrap();
    let e = mounter
        .read_key_file(&allowed.join("link"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SecureMountError::KeyFileOutside { path, .. } if *path == dir.path().join("outside").canonicalize().unwrap()),
        "{e}"
    );
    let e = mounter
        .read_key_file(&dir.path().join("outside"))
        .await
        .unwrap_err();
    assert!(matches!(e, SecureMountError::KeyFileOutside { .. }), "{e}");

    let e = mounter
        .read_key_file(&allowed.join("missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SecureMountError::KeyFile { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e}"
    );
    std::fs::write(allowed.join("empty"), b"").unwrap();
    let e = mounter
        .read_key_file(&allowed.join("empty"))
        .await
        .unwrap_err();
    assert!(matches!(e, SecureMountError::KeyLength { len: 0 }), "{e}");
    std::fs::write(allowed.join("huge"), vec![1u8; MAX_KEY_LEN + 1]).unwrap();
    let e = mounter
        .read_key_file(&allowed.join("huge"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, SecureMountError::KeyLength { len } if len == MAX_KEY_LEN + 1),
        "{e}"
    );
}

#[tokio::test]
async fn luks2_format_with_a_detached_header_leaves_the_device_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("device");
    std::fs::write(&device, vec![0x5au8; 32 << 20]).unwrap();
    let before = digest(&device);
    let headers = dir.path().join("headers");
    let header = luks2::header_path(&headers, &device);
    luks2::create_header_file(&headers, &header).unwrap();
    assert_eq!(
        std::fs::metadata(&headers).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&header).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // a second format of the same device is refused before cryptsetup runs
    let e = luks2::create_header_file(&headers, &header).unwrap_err();
    assert!(
        matches!(&e, SecureMountError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{e}"
    );

    let key = random_key();
    let cryptsetup = Path::new(CRYPTSETUP);
    luks2::format(cryptsetup, &device, &header, &key, true, false)
        .await
        .unwrap();
    assert_eq!(digest(&device), before, "the data device was written");
    assert!(luks2::is_luks2(cryptsetup, &header).await.unwrap());
    assert!(!luks2::is_luks2(cryptsetup, &device).await.unwrap());

    let dump = luks_dump(&header);
    assert!(dump.contains("Version:       \t2"), "{dump}");
    assert!(dump.contains("cipher: aes-xts-plain64"), "{dump}");
    assert!(dump.contains("sector: 4096 [bytes]"), "{dump}");
    assert!(dump.contains("PBKDF:      pbkdf2"), "{dump}");

    luks2::open(cryptsetup, &device, Some(&header), &key, OpenMode::TestKey)
        .await
        .unwrap();
    let mut wrong = key.clone();
    wrong[0] ^= 1;
    let e = luks2::open(
        cryptsetup,
        &device,
        Some(&header),
        &wrong,
        OpenMode::TestKey,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, SecureMountError::WrongKey(d) if *d == device),
        "{e}"
    );
}

#[tokio::test]
async fn a_supplied_key_gets_argon2id_within_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("device");
    std::fs::write(&device, vec![0u8; 20 << 20]).unwrap();
    let header = dir.path().join("h/device.header");
    luks2::create_header_file(&dir.path().join("h"), &header).unwrap();
    let cryptsetup = Path::new(CRYPTSETUP);
    luks2::format(
        cryptsetup,
        &device,
        &header,
        b"a passphrase\n",
        false,
        false,
    )
    .await
    .unwrap();
    let dump = luks_dump(&header);
    assert!(dump.contains("PBKDF:      argon2id"), "{dump}");
    assert!(dump.contains("Memory:     65536"), "{dump}");
    // the key is taken byte for byte: the trailing newline belongs to it
    luks2::open(
        cryptsetup,
        &device,
        Some(&header),
        b"a passphrase\n",
        OpenMode::TestKey,
    )
    .await
    .unwrap();
    let e = luks2::open(
        cryptsetup,
        &device,
        Some(&header),
        b"a passphrase",
        OpenMode::TestKey,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SecureMountError::WrongKey(_)), "{e}");
}

#[tokio::test]
async fn prepare_checks_the_host_before_any_key_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("volume");

    // a regular file is not a block device
    let mounter = Arc::new(SecureMounter::new(paths_in(dir.path())));
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let e = mounter
        .prepare(request(
            &[
                ("devicePath", file.to_str().unwrap()),
                ("sourceType", "empty"),
                ("encryptionType", "luks2"),
            ],
            &mount_point,
        ))
        .unwrap_err();
    assert!(matches!(e, SecureMountError::NotABlockDevice { .. }), "{e}");
    if !is_root() {
        eprintln!("not root: loop-device checks skipped");
        return;
    }
    let disk = LoopDevice::new(dir.path(), 8).unwrap();
    let id = disk.id().unwrap();
    let empty = [
        ("deviceId", id.as_str()),
        ("sourceType", "empty"),
        ("encryptionType", "luks2"),
        ("mapperName", "cdh-test-prepare"),
    ];

    // no device-mapper
    std::fs::write(dir.path().join("no-misc"), " 1 psaux\n237 loop-control\n").unwrap();
    let no_dm = Arc::new(SecureMounter::new(SecureMountPaths {
        proc_misc: dir.path().join("no-misc"),
        ..paths_in(dir.path())
    }));
    let e = no_dm.prepare(request(&empty, &mount_point)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "device-mapper is not available ({} lists no device-mapper); LUKS2 volumes need the dm-crypt kernel module",
            dir.path().join("no-misc").display()
        )
    );

    let paths = paths_in(dir.path());
    let mounter = Arc::new(SecureMounter::new(paths.clone()));
    // one request per device at a time
    let first = mounter.prepare(request(&empty, &mount_point)).unwrap();
    assert_eq!(first.device(), disk.device);
    let mut other_name = empty;
    other_name[3] = ("mapperName", "cdh-test-other");
    // the same device by its path
    let by_path = [
        ("devicePath", disk.device.to_str().unwrap()),
        ("sourceType", "empty"),
        ("encryptionType", "luks2"),
        ("mapperName", "cdh-test-other"),
    ];
    for options in [&other_name, &by_path] {
        let e = mounter.prepare(request(options, &mount_point)).unwrap_err();
        assert!(matches!(&e, SecureMountError::Busy(d) if *d == id), "{e}");
    }
    drop(first);
    drop(mounter.prepare(request(&other_name, &mount_point)).unwrap());

    // a mounted device is in use
    let fs_dir = dir.path().join("mounted");
    std::fs::create_dir(&fs_dir).unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&disk.device)
        .output()
        .unwrap();
    assert!(mkfs.status.success(), "{mkfs:?}");
    rustix::mount::mount(
        &disk.device,
        &fs_dir,
        "ext4",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    let result = mounter.prepare(request(&empty, &mount_point));
    rustix::mount::unmount(&fs_dir, rustix::mount::UnmountFlags::empty()).unwrap();
    let e = result.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{} is in use: {id} is mounted at {}",
            disk.device.display(),
            fs_dir.display()
        )
    );

    // a mount point reached through a symbolic link
    std::os::unix::fs::symlink("/tmp", dir.path().join("link")).unwrap();
    let through_link = dir.path().join("link/volume");
    let e = mounter.prepare(request(&empty, &through_link)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "mount_point `{}` passes through the symbolic link {}",
            through_link.display(),
            dir.path().join("link").display()
        )
    );

    // an occupied mount point for a device link
    std::fs::create_dir(&mount_point).unwrap();
    let e = mounter.prepare(request(&empty, &mount_point)).unwrap_err();
    assert!(matches!(e, SecureMountError::MountPointExists(_)), "{e}");
    std::fs::remove_dir(&mount_point).unwrap();

    // a device this hub formatted already
    let header = mounter.header_path(&disk.device);
    luks2::create_header_file(&paths.header_dir, &header).unwrap();
    let e = mounter.prepare(request(&empty, &mount_point)).unwrap_err();
    assert!(
        matches!(&e, SecureMountError::AlreadyFormatted { header: h, .. } if *h == header),
        "{e}"
    );
    std::fs::remove_file(&header).unwrap();

    // a mapper name in use
    if !kernel_has_device_mapper() {
        std::fs::write(paths.mapper_dir.join("cdh-test-prepare"), b"").unwrap();
        let e = mounter.prepare(request(&empty, &mount_point)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mapper name `cdh-test-prepare` is already in use"
        );
    }
}

/// Formats and opens a real loop device. Without device-mapper the mapping fails and
/// the format is undone: no header is left and the device holds what it held.
#[tokio::test]
async fn an_empty_device_is_formatted_opened_and_linked_or_fully_undone() {
    if !is_root() {
        eprintln!("not root: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDevice::new(dir.path(), 24).unwrap();
    let before = digest(&disk.file);
    let mount_point = dir.path().join("volumes/data");
    let paths = paths_in(dir.path());
    let mounter = Arc::new(SecureMounter::new(paths.clone()));
    let id = disk.id().unwrap();
    let prepared = mounter
        .prepare(request(
            &[
                ("deviceId", id.as_str()),
                ("sourceType", "empty"),
                ("encryptionType", "luks2"),
            ],
            &mount_point,
        ))
        .unwrap();
    let name = prepared.mapper_name().to_string();
    // a random version-4 UUID
    assert_eq!(name.len(), 36, "{name}");
    assert_eq!(&name[14..15], "4", "{name}");
    let header = mounter.header_path(&disk.device);
    let result = prepared.mount(random_key()).await;
    if kernel_has_device_mapper() {
        assert_eq!(result.unwrap(), mount_point);
        assert_eq!(
            std::fs::read_link(&mount_point).unwrap(),
            Path::new("/dev/mapper").join(&name)
        );
        assert!(header.exists());
        luks2::close(Path::new(CRYPTSETUP), &name).await.unwrap();
    } else {
        let e = result.unwrap_err();
        assert!(
            e.to_string().starts_with(
                "device-mapper is not available (cryptsetup: Cannot initialize device-mapper"
            ),
            "{e}"
        );
        assert!(!header.exists(), "the header of the failed format is left");
        assert!(!mount_point.exists());
        assert_eq!(std::fs::read_dir(&paths.header_dir).unwrap().count(), 0);
    }
    assert_eq!(digest(&disk.file), before, "the data device was written");
}

/// An `encrypted` device is checked for LUKS2 and opened with its own header; a wrong key
/// is told apart from a missing device-mapper.
#[tokio::test]
async fn an_encrypted_device_is_checked_and_opened_with_its_key() {
    if !is_root() {
        eprintln!("not root: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDevice::new(dir.path(), 24).unwrap();
    let paths = paths_in(dir.path());
    std::fs::write(paths.key_file_dir.join("disk.key"), b"right key").unwrap();
    let mounter = Arc::new(SecureMounter::new(paths.clone()));
    let id = disk.id().unwrap();
    let key_uri = format!("file://{}", paths.key_file_dir.join("disk.key").display());
    let options = [
        ("deviceId", id.as_str()),
        ("sourceType", "encrypted"),
        ("encryptionType", "luks2"),
        ("key", key_uri.as_str()),
        ("targetType", "fileSystem"),
    ];
    let mount_point = dir.path().join("mnt");

    // not LUKS yet
    let before = digest(&disk.file);
    let prepared = mounter.prepare(request(&options, &mount_point)).unwrap();
    let e = prepared
        .mount(Zeroizing::new(b"right key".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{} holds no LUKS volume; use sourceType `empty` to format it",
            disk.device.display()
        )
    );
    assert_eq!(digest(&disk.file), before);

    // formatted elsewhere, with the header on the device
    let mut format = Command::new(CRYPTSETUP)
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            "-",
        ])
        .arg(&disk.device)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    format
        .stdin
        .take()
        .unwrap()
        .write_all(b"right key")
        .unwrap();
    assert!(format.wait().unwrap().success());
    let formatted = digest(&disk.file);

    // cryptsetup asks device-mapper for the name before it tries the key, so only a host
    // with device-mapper tells a wrong key apart in the mount itself
    let cryptsetup = Path::new(CRYPTSETUP);
    if kernel_has_device_mapper() {
        let prepared = mounter.prepare(request(&options, &mount_point)).unwrap();
        let e = prepared
            .mount(Zeroizing::new(b"wrong key".to_vec()))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SecureMountError::WrongKey(d) if *d == disk.device),
            "{e}"
        );
    }
    let e = luks2::open(
        cryptsetup,
        &disk.device,
        None,
        b"wrong key",
        OpenMode::TestKey,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, SecureMountError::WrongKey(d) if *d == disk.device),
        "{e}"
    );
    luks2::open(
        cryptsetup,
        &disk.device,
        None,
        b"right key",
        OpenMode::TestKey,
    )
    .await
    .unwrap();

    let key = mounter
        .read_key_file(&paths.key_file_dir.join("disk.key"))
        .await
        .unwrap();
    let prepared = mounter.prepare(request(&options, &mount_point)).unwrap();
    let result = prepared.mount(key).await;
    if kernel_has_device_mapper() {
        // no file system on it: the mount fails and the mapping is closed again
        assert!(
            matches!(result, Err(SecureMountError::Io { .. })),
            "{result:?}"
        );
    } else {
        let e = result.unwrap_err();
        assert!(
            matches!(e, SecureMountError::DeviceMapperUnavailable { .. }),
            "{e}"
        );
    }
    assert!(!mount_point.exists());
    assert_eq!(digest(&disk.file), formatted);
    // no header is made for an encrypted device
    assert!(!paths.header_dir.exists());
}
