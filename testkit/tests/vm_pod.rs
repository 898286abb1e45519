//! The pod VM: one boot of the test guest (`vm/build-guest.sh`: Debian's kernel under QEMU
//! TCG, busybox init doing what kata-agent does) runs the `boot` and `secure_mount`
//! scenarios; each test below asserts on one part of what the guest reported.
//!
//! - boot: initdata written as kata-agent writes it, the three daemons launched with kata's
//!   argv and environment, each socket ready within kata's 6 s, the sample-attester warning
//!   in the agent's log, a KBS resource from the host's test KBS (10.0.2.2 in the guest)
//!   through `cc_kbc` over the hub's socket and over the REST shim at 127.0.0.1:8006.
//! - secure mount: kata's trusted image store and encrypted emptyDir, each with and without
//!   dm-integrity, on real virtio disks with real dm-crypt and ext4; after teardown the disk
//!   images hold no plaintext; a wrong key answers PERMISSION_DENIED; the host checks refuse
//!   as designed on a real kernel.
//!
//! Needs qemu-system-x86, cpio, kmod and the Debian mirror (scripts/install-test-deps.sh;
//! the guest is cached under /var/tmp/coco-guest-vm) and the debug daemons
//! (`cargo build --workspace --bins`). Ignored by a plain `cargo test`; `make vm-test` (and
//! so `make test`) runs them with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use base64::Engine as _;
use testkit::{
    kata::{assert_launched_as_kata, PodInitdata},
    kbs::{Counters, KbsConfig, TestKbs},
    vm::{self, file_contains, nonzero_bytes, Guest, VmConfig, VmRun},
};

const SECRET: &[u8] = b"resource for a pod VM started as kata starts it";
/// A key the KBS does not have: a refusal that fetched it would answer NOT_FOUND.
const ABSENT_KEY: &str = "kbs:///default/volume-key/absent";
/// The disks of kata's two volumes, each with and without dm-integrity.
const VOLUMES: [&str; 4] = ["store", "store-int", "emptydir", "emptydir-int"];

struct Pod {
    run: VmRun,
    counters: Counters,
    init_data: Option<serde_json::Value>,
    initdata: String,
    marker: String,
}

fn pod() -> &'static Pod {
    static POD: OnceLock<Result<Pod, String>> = OnceLock::new();
    match POD.get_or_init(|| boot().map_err(|e| e.to_string())) {
        Ok(pod) => pod,
        Err(e) => panic!("the pod VM did not run: {e}"),
    }
}

fn boot() -> Result<Pod, Box<dyn std::error::Error>> {
    let guest = Guest::get()?;
    eprintln!(
        "guest kernel {} ready in {:?}",
        guest.kernel_version, guest.build_time
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let kbs = TestKbs::start(KbsConfig::default()).await?;
        kbs.put_resource("default/key/1", SECRET);
        // the guest reaches the host's 127.0.0.1 as 10.0.2.2 (QEMU user networking)
        let url = format!("http://10.0.2.2:{}", kbs.addr().port());
        let PodInitdata {
            aa_toml,
            cdh_toml,
            initdata,
        } = PodInitdata::new(&url);
        let nonce: [u8; 8] = rand_bytes();
        let marker = format!("vmtest-plaintext-{}", hex(&nonce));
        let mut config = VmConfig::default()
            .env("VMTEST_SCENARIOS", "boot secure_mount")
            .env("VMTEST_RESOURCE", "kbs:///default/key/1")
            .env("VMTEST_MARKER", marker.clone())
            .env("VMTEST_KEY_URI", ABSENT_KEY)
            .env("VMTEST_RIGHT_KEY", "the key this volume was formatted with")
            .env("VMTEST_WRONG_KEY", "a key that opens nothing")
            .file("initdata/initdata.toml", initdata.clone())
            .file("initdata/aa.toml", aa_toml)
            .file("initdata/cdh.toml", cdh_toml);
        for case in VOLUMES {
            config = config.disk(case, 64);
        }
        config = config.disk("prepared", 64).disk("plain", 32);
        let run = tokio::task::spawn_blocking(move || vm::run(&config)).await??;
        eprintln!("pod VM: QEMU wall time {:?}", run.wall);
        for end in run.all("scenario_end") {
            eprintln!("pod VM: scenario (name rc ms): {end}");
        }
        Ok(Pod {
            counters: kbs.counters(),
            init_data: kbs.last_init_data(),
            run,
            initdata,
            marker,
        })
    })
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use rand_core::RngCore as _;
    let mut b = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `<rc> <base64>` as the boot scenario reports a fetch.
fn fetched(value: Option<&str>) -> (i32, Vec<u8>) {
    let value = value.unwrap_or("missing");
    let (rc, b64) = value.split_once(' ').unwrap_or((value, ""));
    (
        rc.parse().unwrap_or(-1),
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap_or_default(),
    )
}

/// The outcome of SecureMount request `name`: (cdh-tool's exit code, its message).
fn request<'a>(pod: &'a Pod, name: &str) -> (i32, &'a str) {
    let v = pod
        .run
        .fact_for("sm", name)
        .unwrap_or_else(|| panic!("no SecureMount request {name}\n{}", pod.run.report()));
    let (rc, msg) = v.split_once(' ').unwrap_or((v, ""));
    (rc.parse().unwrap(), msg)
}

fn assert_refused(pod: &Pod, name: &str, code: &str, reason: &str) {
    let (rc, msg) = request(pod, name);
    assert_ne!(rc, 0, "{name} was not refused: {msg}");
    assert!(
        msg.contains(&format!("SecureMount failed with {code}:")) && msg.contains(reason),
        "{name}: expected {code} ({reason}), got: {msg}"
    );
}

#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_boots_as_kata_boots_it() {
    let pod = pod();
    let run = &pod.run;
    assert!(run.done(), "{}", run.report());
    assert_eq!(
        run.fact("kernel"),
        Some(Guest::get().unwrap().kernel_version.as_str())
    );
    let ready: Vec<(&str, u64)> = run
        .all("ready")
        .into_iter()
        .map(|v| {
            let (name, ms) = v.split_once(' ').unwrap();
            (name, ms.parse().unwrap())
        })
        .collect();
    eprintln!(
        "guest: init at {} ms, modules loaded at {} ms, daemons launched at {} ms of uptime; \
         socket-ready times (ms): {ready:?}; QEMU wall time {:?}",
        run.fact("init_ms").unwrap_or("?"),
        run.fact("modules_ms").unwrap_or("?"),
        run.fact("launched").unwrap_or("?"),
        run.wall
    );
    assert_launched_as_kata(&ready, &run.report());
    assert!(run.all("modprobe_failed").is_empty(), "{}", run.report());
    // the boot scenario ran with device-mapper, as in a kata guest kernel
    assert_eq!(run.fact("dm"), Some("yes"), "{}", run.report());
    let aa_log = run.text("aa.log");
    assert!(
        aa_log.contains("no TEE found: falling back to the sample attester"),
        "{aa_log}"
    );
    for log in ["aa.log", "cdh.log", "asr.log"] {
        assert!(!run.text(log).contains("panicked"), "{}", run.text(log));
    }
}

#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_kbs_resource_through_cc_kbc_from_the_guest() {
    let pod = pod();
    let run = &pod.run;
    // kata-agent's GetResource over the hub's socket
    assert_eq!(
        fetched(run.fact("resource_ttrpc")),
        (0, SECRET.to_vec()),
        "{}\n{}",
        run.text("get-resource.err"),
        run.report()
    );
    // a workload's GET on the REST shim inside the guest
    assert_eq!(
        fetched(run.fact("resource_rest")),
        (0, SECRET.to_vec()),
        "{}\n{}",
        run.text("wget.err"),
        run.report()
    );
    // the initdata reached the KBS verbatim with the one attestation of the pod
    assert_eq!(
        pod.init_data,
        Some(serde_json::json!({"format": "toml", "body": pod.initdata}))
    );
    assert_eq!(pod.counters.attest_ok, 1, "{:?}", pod.counters);
}

/// One of kata's volumes: mounted from a dm-crypt mapping, LUKS2 with kata's cipher, the
/// mkfsOpts applied, the file read back, and only ciphertext on the disk once closed.
fn assert_volume(pod: &Pod, case: &str, integrity: bool, store: bool) {
    let run = &pod.run;
    let (rc, msg) = request(pod, case);
    assert_eq!(rc, 0, "{case}: {msg}\n{}", run.report());
    // ext4 from a dm-crypt mapping
    let mount = run.fact_for("mount", case).unwrap();
    let fields: Vec<&str> = mount.split(' ').collect();
    let mount_point = if store {
        "/run/kata-containers/image"
    } else {
        "/run/kata-containers/sandbox/ephemeral/encrypted-empty-dir"
    };
    assert!(fields[0].starts_with("/dev/mapper/"), "{case}: {mount}");
    assert_eq!(fields[1], mount_point, "{case}: {mount}");
    assert_eq!(fields[2], "ext4", "{case}: {mount}");
    assert!(fields[3].contains("noatime"), "{case}: {mount}");
    let name = fields[0].trim_start_matches("/dev/mapper/");
    let status = run.text(&format!("status.{case}"));
    let line = |key: &str| {
        status
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        status.contains(&format!("{} is active and is in use", fields[0])),
        "{case}: {status}"
    );
    // status cannot name the type of a volume whose header is detached; luksDump of the
    // header in the hub's runtime directory can
    assert_eq!(line("type"), "n/a", "{case}: {status}");
    assert_eq!(line("cipher"), "aes-xts-plain64", "{case}: {status}");
    let keysize = if integrity { "768 bits" } else { "512 bits" };
    assert_eq!(line("keysize"), keysize, "{case}: {status}");
    assert!(line("device").starts_with("/dev/vd"), "{case}: {status}");
    // the live table: dm-crypt with kata's cipher and 4096-byte sectors, the key in the
    // kernel keyring (never in the table)
    let table = run.text(&format!("table.{case}"));
    let crypt = table
        .lines()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("{case}: no table for {name}: {table}"));
    let words: Vec<&str> = crypt.split_whitespace().collect();
    assert_eq!(words[3], "crypt", "{case}: {crypt}");
    // xts takes a 64-byte key; with dm-integrity the 32-byte HMAC key follows it
    if integrity {
        assert_eq!(
            words[4], "capi:authenc(hmac(sha256),xts(aes))-plain64",
            "{case}: {crypt}"
        );
        assert!(
            words[5].starts_with(":96:logon:cryptsetup:"),
            "{case}: {crypt}"
        );
        assert!(crypt.contains("integrity:32:aead"), "{case}: {crypt}");
    } else {
        assert_eq!(words[4], "aes-xts-plain64", "{case}: {crypt}");
        assert!(
            words[5].starts_with(":64:logon:cryptsetup:"),
            "{case}: {crypt}"
        );
    }
    assert!(crypt.contains("sector_size:4096"), "{case}: {crypt}");
    // (status cannot read the integrity of a detached header either: the table above and
    // luksDump below show it)
    let dump = run.text(&format!("luksdump.{case}"));
    let dump_line = |key: &str| {
        dump.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(dump_line("Version"), "2", "{case}: {dump}");
    assert_eq!(dump_line("cipher"), "aes-xts-plain64", "{case}: {dump}");
    assert_eq!(dump_line("sector"), "4096 [bytes]", "{case}: {dump}");
    assert_eq!(
        dump_line("integrity"),
        if integrity { "hmac(sha256)" } else { "" },
        "{case}: {dump}"
    );
    // the random key needs no password hashing: one keyslot, pbkdf2
    assert_eq!(dump_line("PBKDF"), "pbkdf2", "{case}: {dump}");
    // the mapping is dm-crypt keyed by a LUKS2 header (and dm-integrity below it)
    let uuids = run.all("dm_uuid");
    assert!(
        uuids
            .iter()
            .any(|u| u.starts_with(&format!("{case} {name} CRYPT-LUKS2-"))),
        "{case}: {uuids:?}"
    );
    assert_eq!(
        uuids
            .iter()
            .any(|u| u.starts_with(&format!("{case} {name}_dif CRYPT-INTEGRITY-"))),
        integrity,
        "{case}: {uuids:?}"
    );
    // kata's mkfsOpts reached mkfs.ext4
    let dump = run.text(&format!("dumpe2fs.{case}"));
    let features = dump
        .lines()
        .find_map(|l| l.strip_prefix("Filesystem features:"))
        .unwrap_or_default();
    if store {
        assert!(features.contains("has_journal"), "{case}: {dump}");
    } else {
        assert!(!features.contains("has_journal"), "{case}: {dump}");
        assert!(
            dump.contains("Inode size:\t          128"),
            "{case}: {dump}"
        );
        assert!(
            dump.contains("Reserved block count:     0"),
            "{case}: {dump}"
        );
    }
    // written, read back after dropping the page cache; no plaintext on the disk
    let written = run.fact_for("written", case).unwrap();
    assert_eq!(written.len(), 64, "{case}");
    assert_eq!(run.fact_for("readback", case), Some(written), "{case}");
    // closed: nothing holds the disk any more
    let teardown = run.fact_for("teardown", case).unwrap();
    assert!(teardown.starts_with("0 0 "), "{case}: teardown {teardown}");
    let disk = run.disk(case);
    assert!(
        !file_contains(disk, pod.marker.as_bytes()).unwrap(),
        "{case}: the disk image holds the plaintext marker"
    );
    // and the ciphertext did reach the disk (ext4 metadata and the file)
    let written_bytes = nonzero_bytes(disk).unwrap();
    assert!(
        written_bytes > 64 * 1024,
        "{case}: only {written_bytes} non-zero bytes on the disk"
    );
    // the host's search does find plaintext where there is some: the unencrypted control
    assert!(file_contains(run.disk("plain"), pod.marker.as_bytes()).unwrap());
}

/// kata's trusted image store (`-E lazy_journal_init`, at /run/kata-containers/image/) and
/// encrypted emptyDir (`-O ^has_journal -m 0 -i 163840 -I 128`), `dataIntegrity=false`.
#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_secure_mount_kata_volumes_are_encrypted_on_disk() {
    let pod = pod();
    assert_eq!(
        pod.run.fact("mount").map(|m| m.split(' ').next()),
        Some(Some("store"))
    );
    assert_volume(pod, "store", false, true);
    assert_volume(pod, "emptydir", false, false);
}

/// The same two volumes with `dataIntegrity=true` (dm-integrity, hmac-sha256, not wiped).
#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_secure_mount_kata_volumes_with_data_integrity() {
    let pod = pod();
    assert_volume(pod, "store-int", true, true);
    assert_volume(pod, "emptydir-int", true, false);
}

#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_secure_mount_wrong_key_is_permission_denied() {
    let pod = pod();
    let run = &pod.run;
    assert_eq!(run.fact("prepared"), Some("0"), "{}", run.report());
    assert_refused(
        pod,
        "wrong-key",
        "PERMISSION_DENIED",
        "the key does not open the LUKS volume",
    );
    // refused: header as it was, no mapping beside the control node, no mount point
    assert_eq!(
        run.fact("after_wrong_key"),
        Some("header-unchanged 1 absent 0"),
        "{}",
        run.report()
    );
    let (rc, msg) = request(pod, "right-key");
    assert_eq!(rc, 0, "{msg}");
    let written = run.fact_for("written", "prepared").unwrap();
    assert_eq!(run.fact_for("readback", "prepared"), Some(written));
    assert!(run
        .fact_for("teardown", "prepared")
        .unwrap()
        .starts_with("0 0 "));
    assert!(!file_contains(run.disk("prepared"), pod.marker.as_bytes()).unwrap());
}

#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_secure_mount_host_checks_refuse_on_a_real_kernel() {
    let pod = pod();
    let run = &pod.run;
    assert_eq!(run.text("rmmod.err"), "");
    assert_refused(
        pod,
        "no-device-mapper",
        "FAILED_PRECONDITION",
        "device-mapper is not available",
    );
    assert_eq!(
        run.fact_for("headers_after_refusal", "no-device-mapper"),
        Some("0")
    );
    assert_eq!(run.fact_for("untouched", "no-device-mapper"), Some("0"));
    assert_refused(
        pod,
        "mounted-device",
        "FAILED_PRECONDITION",
        "is mounted at",
    );
    for case in ["store", "emptydir"] {
        assert_refused(
            pod,
            &format!("held-{case}"),
            "FAILED_PRECONDITION",
            "held by dm-",
        );
        assert_refused(
            pod,
            &format!("mapper-name-{case}"),
            "ALREADY_EXISTS",
            "is already in use",
        );
        assert_refused(
            pod,
            &format!("again-{case}"),
            "ALREADY_EXISTS",
            "was already formatted by this hub",
        );
    }
    assert_refused(pod, "system-dir", "INVALID_ARGUMENT", "/etc/vmtest-volume");
    assert_refused(pod, "symlink", "INVALID_ARGUMENT", "symbolic link");
    assert_refused(pod, "no-such-device", "NOT_FOUND", "names no block device");
    // nothing left by the refusals: no volume behind the link, no mount point, no mapping
    assert_eq!(run.fact("refused_left"), Some("0 absent 1"));
    // every refusal named a key the KBS does not have, and none fetched it: the KBS saw
    // only the boot scenario's two resource requests
    assert_eq!(pod.counters.resource_get, 2, "{:?}", pod.counters);
}
