//! Detection order on fake platform trees: tdx → sgx → az-tdx-vtpm → az-snp-vtpm → snp →
//! csv → cca → se → tpm, then device TEEs; the sample attester only when allowed.

#![cfg(feature = "all-attesters")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{io, path::Path, sync::Arc};

use attester::{detect, AttesterError, ConfigFs, DetectOptions, Env, Platform, Tee};
use common::Swtpm;

/// configfs-tsm of an Arm CCA realm: `mkdir` creates the provider attribute.
#[derive(Debug)]
struct CcaConfigFs;

impl ConfigFs for CcaConfigFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)?;
        std::fs::write(path.join("provider"), "arm_cca_guest\n")?;
        std::fs::write(path.join("generation"), "0\n")
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        std::fs::write(path, data)
    }
}

fn put(root: &Path, path: &str, contents: &str) {
    let full = Platform::new(root).path(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, contents).unwrap();
}

fn remove(root: &Path, path: &str) {
    let full = Platform::new(root).path(path);
    if full.is_dir() {
        std::fs::remove_dir_all(full).unwrap();
    } else {
        std::fs::remove_file(full).unwrap();
    }
}

fn primary(platform: &Platform, env: &Env) -> Result<Tee, AttesterError> {
    let options = DetectOptions {
        sample: attester::SamplePolicy::Refused("test".into()),
        env: env.clone(),
    };
    detect(platform, &options).map(|d| d.primary.tee())
}

#[test]
fn the_first_tee_in_the_documented_order_wins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let platform = Platform::new(root).with_configfs(Arc::new(CcaConfigFs));
    let swtpm = Swtpm::start();
    let env: Env = [("AA_TPM_TCTI".to_string(), swtpm.tcti())]
        .into_iter()
        .collect();

    put(root, "/dev/tdx_guest", "");
    put(root, "/dev/attestation/attestation_type", "dcap");
    put(root, "/sys/devices/platform/sev-guest/uevent", "");
    put(root, "/dev/csv-guest", "");
    std::fs::create_dir_all(platform.path("/sys/kernel/config/tsm/report")).unwrap();
    put(root, "/sys/firmware/uv/prot_virt_guest", "1\n");

    let order = [
        (Tee::Tdx, Some("/dev/tdx_guest")),
        (Tee::Sgx, Some("/dev/attestation")),
        (Tee::Snp, Some("/sys/devices/platform/sev-guest")),
        (Tee::Csv, Some("/dev/csv-guest")),
        (Tee::Cca, Some("/sys/kernel/config/tsm")),
        (Tee::Se, Some("/sys/firmware/uv")),
        (Tee::Tpm, None),
    ];
    for (tee, interface) in order {
        assert_eq!(primary(&platform, &env).unwrap(), tee);
        if let Some(path) = interface {
            remove(root, path);
        }
    }
    // without the TPM there is nothing left, and no silent sample
    let err = primary(&platform, &Env::default()).unwrap_err();
    assert!(matches!(err, AttesterError::NoTeeDetected { .. }), "{err}");
    let sample = detect(
        &platform,
        &DetectOptions {
            sample: attester::SamplePolicy::Allowed("test".into()),
            env: Env::default(),
        },
    )
    .unwrap();
    assert_eq!(sample.primary.tee(), Tee::Sample);
}

#[test]
fn azure_vtpm_comes_before_snp_and_devices_are_added() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = dir.path();
    let platform = Platform::new(root);
    let swtpm = Swtpm::start();
    // an SNP HCL report in the vTPM NV
    let mut hcl = vec![0u8; 32 + 1184];
    hcl[..4].copy_from_slice(b"HCLA");
    for word in [22u32, 1, 2, 1, 2] {
        hcl.extend_from_slice(&word.to_le_bytes());
    }
    hcl.extend_from_slice(b"{}");
    std::fs::write(work.path().join("hcl.bin"), &hcl).unwrap();
    let size = hcl.len().to_string();
    swtpm.tool(
        work.path(),
        &[
            "tpm2_nvdefine",
            "0x01400001",
            "-C",
            "o",
            "-s",
            &size,
            "-a",
            "ownerread|ownerwrite",
        ],
    );
    swtpm.tool(
        work.path(),
        &["tpm2_nvwrite", "0x01400001", "-C", "o", "-i", "hcl.bin"],
    );
    put(root, "/sys/devices/platform/sev-guest/uevent", "");

    let env: Env = [
        ("AA_TPM_TCTI".to_string(), swtpm.tcti()),
        ("ENABLE_SAMPLE_DEVICE".to_string(), "1".to_string()),
    ]
    .into_iter()
    .collect();
    let detected = detect(
        &platform,
        &DetectOptions {
            sample: attester::SamplePolicy::Refused("test".into()),
            env,
        },
    )
    .unwrap();
    assert_eq!(detected.primary.tee(), Tee::AzSnpVtpm);
    let devices: Vec<Tee> = detected.additional.iter().map(|a| a.tee()).collect();
    assert_eq!(devices, vec![Tee::SampleDevice]);
}
