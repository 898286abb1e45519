//! kata-containers' build of the guest components (its static-build script for
//! coco-guest-components), run as kata runs it in this repository: `make build`, `strip` of
//! the three binaries at `target/<arch>-unknown-linux-<libc>/release/`, `make install`, the
//! ocicrypt config and cryptsetup, and the `attestation-agent-nv` rebuild with `ATTESTER`.
//!
//! `CARGO` is a recorder that notes cargo's arguments. Its first `cargo build` is real
//! (kata's own `TEE_PLATFORM=""` with its x86 `ATTESTER`), and that agent's `--version`
//! shows the attesters compiled in; later calls put the real build's binaries where cargo
//! would. Every release build with other features costs minutes on two cores, and what
//! differs between platforms (and for the `-nv` agent) is the Makefile's feature list,
//! which the recorder checks exactly. `KATA_BUILD_ALL_REAL=1` makes every call real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

/// kata's commands, in its order (`DESTDIR`, `TEE_PLATFORM`, `RUST_ARCH`, `LIBC` and
/// optionally `NV_ATTESTER` come from the environment, as in kata's build container).
const KATA_BUILD: &str = r#"
set -o errexit -o nounset -o pipefail
DESTDIR="${DESTDIR}/usr/local/bin" TEE_PLATFORM=${TEE_PLATFORM} make build
strip "target/${RUST_ARCH}-unknown-linux-${LIBC}/release/confidential-data-hub"
strip "target/${RUST_ARCH}-unknown-linux-${LIBC}/release/attestation-agent"
strip "target/${RUST_ARCH}-unknown-linux-${LIBC}/release/api-server-rest"
DESTDIR="${DESTDIR}/usr/local/bin" TEE_PLATFORM=${TEE_PLATFORM} make install
install -D -m0644 "confidential-data-hub/hub/src/image/ocicrypt_config.json" "${DESTDIR}/etc/ocicrypt_config.json"
install -D -m0755 /usr/sbin/cryptsetup "${DESTDIR}/usr/sbin/cryptsetup"
if [[ -n "${NV_ATTESTER:-}" ]]; then
    rm "target/${RUST_ARCH}-unknown-linux-${LIBC}/release/attestation-agent"
    ATTESTER="${NV_ATTESTER}" DESTDIR="${DESTDIR}/usr/local/bin" TEE_PLATFORM=${TEE_PLATFORM} make build
    strip "target/${RUST_ARCH}-unknown-linux-${LIBC}/release/attestation-agent"
    install -D -m0755 "target/${RUST_ARCH}-unknown-linux-${LIBC}/release/attestation-agent" \
        "${DESTDIR}/usr/local/bin/attestation-agent-nv"
fi
"#;

/// Notes its arguments; runs the real cargo the first time (keeping its binaries in
/// `$REFERENCE_BIN`) or always with `$ALL_REAL`, else copies those binaries to where cargo
/// would have put them.
const RECORDER: &str = r#"#!/usr/bin/env bash
set -o errexit -o nounset -o pipefail
printf '%s\n' "$*" >> "$RECORD"
target=""
prev=""
for arg in "$@"; do
    [[ "$prev" == "--target" ]] && target="$arg"
    prev="$arg"
done
out="${CARGO_TARGET_DIR:-target}/${target}/release"
bins=(attestation-agent confidential-data-hub api-server-rest)
if [[ "$ALL_REAL" == 1 || ! -e "$REFERENCE_BIN/attestation-agent" ]]; then
    "$REAL_CARGO" "$@"
    mkdir -p "$REFERENCE_BIN"
    for b in "${bins[@]}"; do install -m0755 "$out/$b" "$REFERENCE_BIN/$b"; done
else
    mkdir -p "$out"
    for b in "${bins[@]}"; do install -m0755 "$REFERENCE_BIN/$b" "$out/$b"; done
fi
"#;

const BINARIES: [&str; 3] = [
    "attestation-agent",
    "confidential-data-hub",
    "api-server-rest",
];

struct Case {
    tee_platform: &'static str,
    /// kata's `ATTESTER` environment (its build passes one, empty platform or not)
    attester_env: &'static str,
    nv_attester: Option<&'static str>,
    /// attestation-agent features of the build
    aa_features: &'static [&'static str],
    /// attestation-agent features of the `-nv` build
    nv_features: &'static [&'static str],
}

const CASES: &[Case] = &[
    // kata x86_64: TEE_PLATFORM="" and ATTESTER="snp-attester,tdx-attester"
    Case {
        tee_platform: "",
        attester_env: "snp-attester,tdx-attester",
        nv_attester: Some("none,tpm-attester"),
        aa_features: &["snp-attester", "tdx-attester"],
        nv_features: &["tpm-attester"],
    },
    Case {
        tee_platform: "none",
        attester_env: "snp-attester,tdx-attester",
        nv_attester: None,
        aa_features: &[],
        nv_features: &[],
    },
    Case {
        tee_platform: "all",
        attester_env: "none",
        nv_attester: None,
        aa_features: &["all-attesters"],
        nv_features: &[],
    },
    Case {
        tee_platform: "tdx",
        attester_env: "",
        nv_attester: None,
        aa_features: &["tdx-attester"],
        nv_features: &[],
    },
    Case {
        tee_platform: "snp",
        attester_env: "",
        nv_attester: None,
        aa_features: &["snp-attester"],
        nv_features: &[],
    },
    Case {
        tee_platform: "az-cvm-vtpm",
        attester_env: "",
        nv_attester: None,
        aa_features: &["az-snp-vtpm-attester", "az-tdx-vtpm-attester"],
        nv_features: &[],
    },
    Case {
        tee_platform: "amd",
        attester_env: "",
        nv_attester: None,
        aa_features: &["snp-attester"],
        nv_features: &[],
    },
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_arch() -> String {
    let out = Command::new("uname").arg("-m").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs kata's sequence for `case` into a fresh DESTDIR with `recorder` as cargo; returns
/// the DESTDIR and the recorded cargo command lines.
fn kata_build(case: &Case, recorder: &Recorder) -> (tempfile::TempDir, Vec<String>) {
    let destdir = tempfile::tempdir().unwrap();
    let record = destdir.path().join("cargo-calls");
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(KATA_BUILD)
        .current_dir(repo())
        .env("DESTDIR", destdir.path())
        .env("TEE_PLATFORM", case.tee_platform)
        .env("ATTESTER", case.attester_env)
        .env("RUST_ARCH", rust_arch())
        .env("LIBC", "gnu")
        .env_remove("NV_ATTESTER")
        .env_remove("RESOURCE_PROVIDER")
        // cargo test's own variables must not steer the build
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("CARGO_PKG_NAME")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    if let Some(nv) = case.nv_attester {
        cmd.env("NV_ATTESTER", nv);
    }
    cmd.env("CARGO", &recorder.script)
        .env("REAL_CARGO", &recorder.real_cargo)
        .env("ALL_REAL", if recorder.all_real { "1" } else { "0" })
        .env("RECORD", &record)
        .env("REFERENCE_BIN", &recorder.reference);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "kata's build failed for TEE_PLATFORM={:?}:\n{}\n{}",
        case.tee_platform,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&record)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&record);
    (destdir, calls)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// An ELF file without a symbol table (what `strip` leaves).
fn is_stripped(path: &Path) -> bool {
    let out = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{} is not ELF", path.display());
    !String::from_utf8_lossy(&out.stdout).contains(".symtab")
}

/// The tree kata packs into its rootfs.
fn check_tree(destdir: &Path, with_nv: bool) {
    let bin = destdir.join("usr/local/bin");
    let mut names: Vec<&str> = BINARIES.to_vec();
    if with_nv {
        names.push("attestation-agent-nv");
    }
    for name in &names {
        let path = bin.join(name);
        assert_eq!(mode(&path), 0o755, "{}", path.display());
        assert!(is_stripped(&path), "{} is not stripped", path.display());
    }
    let mut listed: Vec<String> = std::fs::read_dir(&bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    names.sort();
    assert_eq!(listed, names);

    let config = destdir.join("etc/ocicrypt_config.json");
    assert_eq!(mode(&config), 0o644);
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"key-providers": {"attestation-agent": {
            "ttrpc": "unix:///run/confidential-containers/cdh.sock"}}})
    );
    assert_eq!(mode(&destdir.join("usr/sbin/cryptsetup")), 0o755);
}

/// The attestation-agent features of a recorded `cargo build` line.
fn aa_features(call: &str) -> BTreeSet<String> {
    let words: Vec<&str> = call.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"build"), "{call}");
    for expected in ["--release", "--locked", "--no-default-features", "--target"] {
        assert!(words.contains(&expected), "{expected} missing: {call}");
    }
    let features = words
        .iter()
        .position(|w| *w == "--features")
        .map(|i| words[i + 1])
        .unwrap_or("");
    features
        .split(',')
        .filter_map(|f| f.strip_prefix("attestation-agent/"))
        .filter(|f| !matches!(*f, "kbs" | "coco_as"))
        .map(str::to_string)
        .collect()
}

/// The recording cargo of [`RECORDER`].
struct Recorder {
    _dir: tempfile::TempDir,
    script: PathBuf,
    reference: PathBuf,
    real_cargo: String,
    all_real: bool,
}

impl Recorder {
    fn new() -> Recorder {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("cargo");
        std::fs::write(&script, RECORDER).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Recorder {
            reference: dir.path().join("reference"),
            script,
            // the cargo running this test, as the Makefile's `cargo` would be
            real_cargo: std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()),
            all_real: std::env::var("KATA_BUILD_ALL_REAL").is_ok_and(|v| v == "1"),
            _dir: dir,
        }
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The hardware attesters an agent binary lists in `--version`.
fn compiled_attesters(agent: &Path) -> BTreeSet<String> {
    let out = Command::new(agent).arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let list = text
        .split("attesters: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no attester list in {text:?}"));
    list.split(", ")
        .filter(|a| !a.starts_with("sample"))
        .map(str::to_string)
        .collect()
}

/// The shared libraries an ELF file names as `NEEDED`, in its order.
fn needed_libraries(elf: &Path) -> Vec<String> {
    let out = Command::new("readelf").arg("-d").arg(elf).output().unwrap();
    assert!(out.status.success(), "readelf -d {}", elf.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| Some(line.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect()
}

/// What `--version` lists for attestation-agent features.
fn attesters_of(features: &[&str]) -> BTreeSet<String> {
    features
        .iter()
        .flat_map(|f| match *f {
            "tdx-attester" => vec!["tdx"],
            "snp-attester" => vec!["snp"],
            "tpm-attester" => vec!["tpm"],
            "az-snp-vtpm-attester" => vec!["az-snp-vtpm"],
            "az-tdx-vtpm-attester" => vec!["az-tdx-vtpm"],
            "all-attesters" => vec![
                "tdx",
                "sgx",
                "az-tdx-vtpm",
                "az-snp-vtpm",
                "snp",
                "csv",
                "cca",
                "se",
                "tpm",
            ],
            other => panic!("no attester name for {other}"),
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn kata_build_sequence_produces_the_rootfs_tree() {
    let recorder = Recorder::new();
    for (i, case) in CASES.iter().enumerate() {
        let (destdir, calls) = kata_build(case, &recorder);
        check_tree(destdir.path(), case.nv_attester.is_some());
        // `make build`, and for -nv the second one; `make install` builds nothing
        let mut expected = vec![set(case.aa_features)];
        if case.nv_attester.is_some() {
            expected.push(set(case.nv_features));
        }
        let recorded: Vec<BTreeSet<String>> = calls.iter().map(|c| aa_features(c)).collect();
        assert_eq!(
            recorded, expected,
            "TEE_PLATFORM={:?}: {calls:?}",
            case.tee_platform
        );
        assert!(
            calls
                .iter()
                .all(|c| c.contains("confidential-data-hub/kbs")),
            "{calls:?}"
        );
        let bin = destdir.path().join("usr/local/bin");
        if i == 0 || recorder.all_real {
            assert_eq!(
                compiled_attesters(&bin.join("attestation-agent")),
                attesters_of(case.aa_features),
                "TEE_PLATFORM={:?}",
                case.tee_platform
            );
            // daemon-link keeps libm.so and libgcc_s.so out: each maps libc.so.6 alone
            for b in BINARIES {
                assert_eq!(needed_libraries(&bin.join(b)), ["libc.so.6"], "{b}");
            }
        }
        if recorder.all_real && case.nv_attester.is_some() {
            assert_eq!(
                compiled_attesters(&bin.join("attestation-agent-nv")),
                attesters_of(case.nv_features)
            );
        }
    }
}

/// Values upstream does not take are refused by make itself, before cargo runs.
#[test]
fn make_refuses_unknown_platforms_and_attesters() {
    for (var, value, says) in [
        ("TEE_PLATFORM", "tdx2", "TEE_PLATFORM must be empty"),
        ("ATTESTER", "tdx-attester,gpu-attester", "gpu-attester"),
        ("LIBC", "uclibc", "LIBC must be gnu or musl"),
        (
            "RESOURCE_PROVIDER",
            "kbs,vault",
            "RESOURCE_PROVIDER takes kbs and sev",
        ),
        (
            "KMS_PROVIDER",
            "aliyun,vault",
            "KMS_PROVIDER takes aliyun, aws, ehsm or none",
        ),
    ] {
        let mut cmd = Command::new("make");
        cmd.args(["-s", "help"]).current_dir(repo());
        if var == "ATTESTER" {
            cmd.env("TEE_PLATFORM", "");
        }
        let out = cmd.env(var, value).output().unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{var}={value}: {stderr}");
    }
    // LIBC from the environment, as kata passes it
    let out = Command::new("make")
        .args(["-s", "help"])
        .current_dir(repo())
        .env("LIBC", "musl")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("(now: musl;"));
    // NO_RESOURCE_PROVIDER=true builds without the KBS client
    let out = Command::new("make")
        .args(["-s", "help"])
        .current_dir(repo())
        .env("NO_RESOURCE_PROVIDER", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ENABLE_KBS   = true|false   (now: false)"),
        "{stdout}"
    );
}

/// The features `make help` says `make build` passes to cargo.
fn make_features(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new("make")
        .args(["-s", "help"])
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let list = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("features passed to cargo: "))
        .unwrap_or_else(|| panic!("no feature line in {stdout}"));
    list.split(',')
        .filter(|f| f.starts_with("confidential-data-hub/"))
        .map(str::to_string)
        .collect()
}

/// upstream's `KMS_PROVIDER` picks the data hub's KMS providers, from the command line or
/// the environment; the KBS client stays whatever the list.
#[test]
fn kms_provider_picks_the_cdh_providers() {
    let cdh = |features: &[&str]| -> BTreeSet<String> {
        features
            .iter()
            .map(|f| format!("confidential-data-hub/{f}"))
            .collect()
    };
    assert_eq!(make_features(&[]), cdh(&["aliyun", "aws", "kbs"]));
    assert_eq!(
        make_features(&["KMS_PROVIDER=aliyun,ehsm"]),
        cdh(&["aliyun", "ehsm", "kbs"])
    );
    assert_eq!(make_features(&["KMS_PROVIDER=none"]), cdh(&["kbs"]));
    assert_eq!(
        make_features(&["KMS_PROVIDER=ehsm", "NO_RESOURCE_PROVIDER=true"]),
        cdh(&["ehsm"])
    );
    // a command-line CDH_FEATURES cannot drop the KBS client
    assert_eq!(
        make_features(&["CDH_FEATURES=aws"]),
        cdh(&["aliyun", "aws", "kbs"])
    );
}
