//! The `coco` guest extension in a real guest kernel (issue 13): `coco-extension/build.sh`'s
//! disk attached as a virtio disk with serial `extension-coco`, opened in the guest as kata's
//! kata-extension-mount.sh opens it (`veritysetup open --no-superblock` with the runtime's
//! verity_params, partition 1 the EROFS data, partition 2 the hash tree), mounted read-only
//! at /run/kata-extensions/coco/, and the daemons kata-agent launches taken from the
//! manifest `etc/kata-extensions/components.toml` inside it (vm/init's mount_extension and
//! resolve_manifest). A copy of the disk with one byte flipped in the data partition must
//! not mount or not read.
//!
//! Needs the debug daemons (`cargo build --bins`), mkfs.erofs and veritysetup on the host
//! and QEMU: `make vm-test` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use testkit::{
    kata::assert_launched_as_kata,
    process::workspace_bin,
    vm::{self, VmConfig, VmRun},
};

/// Where kata-agent mounts the coco extension.
const ROOT: &str = "/run/kata-extensions/coco";

struct Extension {
    out: tempfile::TempDir,
    params: String,
}

impl Extension {
    fn disk(&self) -> PathBuf {
        self.out.path().join("kata-containers-coco-extension.img")
    }

    fn param(&self, key: &str) -> &str {
        self.params
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {}", self.params))
    }

    /// `sha256sum` of every file of the tree, as the guest lists them (`./path`, C order).
    fn sums(&self) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . -type f | sort | xargs sha256sum")
            .arg("sh")
            .arg(self.out.path().join("rootfs"))
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The extension of the debug daemons, built once per test process.
fn extension() -> &'static Extension {
    static EXT: OnceLock<Extension> = OnceLock::new();
    EXT.get_or_init(|| {
        let bin_dir = workspace_bin("attestation-agent")
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let out = tempfile::Builder::new()
            .prefix("vmtest-ext-")
            .tempdir()
            .unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let started = std::time::Instant::now();
        let built = Command::new("bash")
            .arg(repo.join("coco-extension/build.sh"))
            .env("BIN_DIR", &bin_dir)
            .env("OUT_DIR", out.path())
            .env("STRIP_BINARIES", "yes")
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "coco-extension/build.sh failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        eprintln!("coco extension built in {:?}", started.elapsed());
        let params = fs::read_to_string(out.path().join("root_hash_coco-extension.txt"))
            .unwrap()
            .trim()
            .to_string();
        Extension { out, params }
    })
}

fn boot(disk: &Path, params: &str) -> VmRun {
    let config = VmConfig::default()
        .env("VMTEST_EXTENSION", "coco")
        .env("VMTEST_EXTENSION_PARAMS", params)
        .env("VMTEST_SCENARIOS", "extension")
        .image("extension-coco", disk);
    let run = vm::run(&config).unwrap();
    eprintln!(
        "extension boot: QEMU wall time {:?}, init at {} ms, extension mounted and read in {} ms, \
         launched at {} ms of uptime",
        run.wall,
        run.fact("init_ms").unwrap_or("?"),
        run.fact("ext_ms").unwrap_or("?"),
        run.fact("launched").unwrap_or("?"),
    );
    run
}

/// (start, sectors) of MBR partition `n` (1-based) of the disk image.
fn partition(image: &[u8], n: usize) -> (u64, u64) {
    let e = 446 + 16 * (n - 1);
    let le = |o: usize| u32::from_le_bytes(image[o..o + 4].try_into().unwrap()) as u64;
    (le(e + 8), le(e + 12))
}

#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_extension_daemons_launch_from_the_verified_erofs() {
    let ext = extension();
    let run = boot(&ext.disk(), &ext.params);
    assert!(run.done(), "{}", run.report());
    // the disk and its two partitions, as the guest kernel sees a virtio disk's msdos label
    let disk = run.fact("ext_disk").unwrap_or_default();
    let words: Vec<&str> = disk.split(' ').collect();
    assert_eq!(words.len(), 3, "{disk}\n{}", run.report());
    assert_eq!(words[1], format!("/dev/{}1", words[0]), "{disk}");
    assert_eq!(words[2], format!("/dev/{}2", words[0]), "{disk}");
    assert_eq!(
        run.fact("ext_open"),
        Some("0"),
        "{}\n{}",
        run.text("ext_open.log"),
        run.report()
    );
    // the live table: dm-verity of p1 with p2 as hash device and the runtime's root hash
    let table = run.text("ext_table");
    assert!(table.contains(" verity 1 "), "{table}");
    assert!(table.contains(ext.param("root_hash")), "{table}");
    assert!(table.contains(ext.param("salt")), "{table}");
    let mount = run.fact("ext_mount").unwrap();
    let m: Vec<&str> = mount.split(' ').collect();
    assert_eq!(m[..3], ["0", "/dev/mapper/coco-verity", "erofs"], "{mount}");
    assert!(m[3].split(',').any(|o| o == "ro"), "{mount}");
    assert_eq!(run.fact("ext_read"), Some("0"), "{}", run.report());
    // every file of the tree read back through dm-verity with the host's digests
    assert_eq!(run.text("ext_sums"), ext.sums());
    // the manifest's binaries and CDH's environment, from the extension
    for daemon in [
        "attestation-agent",
        "confidential-data-hub",
        "api-server-rest",
    ] {
        assert_eq!(
            run.fact_for("ext_path", daemon),
            Some(format!("{ROOT}/usr/local/bin/{daemon}").as_str()),
            "{}",
            run.text("ext_resolved")
        );
    }
    let cdh_env = run.all("ext_env");
    assert!(
        cdh_env.contains(
            &format!(
                "confidential-data-hub OCICRYPT_KEYPROVIDER_CONFIG={ROOT}/etc/ocicrypt_config.json"
            )
            .as_str()
        ),
        "{cdh_env:?}"
    );
    assert!(
        cdh_env.contains(
            &format!("confidential-data-hub PATH={ROOT}/usr/sbin:/bin:/sbin:/usr/bin:/usr/sbin")
                .as_str()
        ),
        "{cdh_env:?}"
    );
    // kata's launch: each socket within 6 s, in order, and the running daemons are the
    // extension's executables
    let ready: Vec<(&str, u64)> = run
        .all("ready")
        .into_iter()
        .map(|v| {
            let (name, ms) = v.split_once(' ').unwrap();
            (name, ms.parse().unwrap())
        })
        .collect();
    eprintln!("extension launch: socket-ready times (ms) {ready:?}");
    assert_launched_as_kata(&ready, &run.report());
    for daemon in [
        "attestation-agent",
        "confidential-data-hub",
        "api-server-rest",
    ] {
        assert_eq!(
            run.fact_for("exe", daemon),
            Some(format!("{ROOT}/usr/local/bin/{daemon}").as_str()),
            "{}",
            run.report()
        );
    }
    assert!(run
        .fact("ext_mounted")
        .unwrap_or_default()
        .starts_with("/dev/mapper/coco-verity erofs ro"));
    for log in ["aa.log", "cdh.log", "asr.log"] {
        assert!(!run.text(log).contains("panicked"), "{}", run.text(log));
    }
}

#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_extension_with_a_flipped_data_byte_does_not_launch() {
    let ext = extension();
    let mut image = fs::read(ext.disk()).unwrap();
    let (p1, _) = partition(&image, 1);
    let erofs_bytes = fs::metadata(ext.out.path().join("coco-extension.erofs"))
        .unwrap()
        .len();
    // a byte in the middle of the EROFS image (inside a daemon's compressed data)
    let at = (p1 * 512 + erofs_bytes / 2) as usize;
    let before = image[at];
    image[at] ^= 0x01;
    let tampered = tempfile::NamedTempFile::new().unwrap();
    fs::write(tampered.path(), &image).unwrap();
    assert_ne!(fs::read(tampered.path()).unwrap()[at], before);

    let run = boot(tampered.path(), &ext.params);
    assert!(run.done(), "{}", run.report());
    // the mapping opens (dm-verity checks on read), then the mount or the read fails
    assert_eq!(run.fact("ext_open"), Some("0"), "{}", run.report());
    let mount_rc = run.fact("ext_mount").unwrap_or("missing").split(' ').next();
    let read = run.fact("ext_read").unwrap_or("");
    assert!(
        mount_rc != Some("0") || read.starts_with("1 "),
        "the tampered extension mounted and read: mount {:?}, read {read:?}\n{}",
        run.fact("ext_mount"),
        run.report()
    );
    assert_eq!(run.fact("extension_failed"), Some("coco"));
    assert!(run.fact("launch_failed").is_some());
    assert!(run.all("ready").is_empty(), "{}", run.report());
    // the kernel's word for it
    let dmesg = run.text("dmesg");
    assert!(
        dmesg
            .lines()
            .any(|l| l.contains("device-mapper: verity") && l.contains("is corrupted")),
        "{dmesg}"
    );
}
