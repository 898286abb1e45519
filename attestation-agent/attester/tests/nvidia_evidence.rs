//! The NVIDIA GPU attester against a fake `libnvidia-ml` (tests/nvidia/fake_nvml.c, built
//! here with gcc) serving real GPUs' recorded evidence (testdata/nvidia/, see its README),
//! appraised by the checks trustee's `nvidia` verifier makes (tests/nvidia/verifier.rs).
//!
//! The attester finds the fake through `AA_NVML_LIBRARY`, passed in an [`Env`] snapshot;
//! each test builds its own library with its directory baked in, so tests share nothing.
//! A recorded report carries the nonce it was recorded with: asking with that nonce is the
//! passing case, asking with another one gets the same report back, as a replay would.

#![cfg(feature = "nvidia-attester")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "nvidia/verifier.rs"]
mod verifier;

use std::path::{Path, PathBuf};
use std::process::Command;

use attester::{
    detect, find_nvidia_gpus, Attester, AttesterError, DetectOptions, Env, NoNvidiaDevice,
    NvidiaAttester, Platform, SamplePolicy, Tee, NVML_LIBRARY_ENV,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::Value;
use verifier::{appraise, Reject};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nvidia");

fn data(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(DATA).join(name)).unwrap()
}

fn root() -> Vec<u8> {
    data("nvidia_device_root.pem")
}

/// A recorded GPU: raw report, PEM chain, NVML architecture.
#[derive(Clone)]
struct Gpu {
    report: Vec<u8>,
    certs: Vec<u8>,
    arch: u32,
}

impl Gpu {
    fn hopper() -> Self {
        let hex = String::from_utf8(data("hopper_report.hex")).unwrap();
        Self {
            report: hex::decode(hex.trim()).unwrap(),
            certs: data("hopper_cert_chain.pem"),
            arch: 9,
        }
    }

    fn blackwell() -> Self {
        let hex = String::from_utf8(data("blackwell_report.hex")).unwrap();
        Self {
            report: hex::decode(hex.trim()).unwrap(),
            certs: data("blackwell_cert_chain.pem"),
            arch: 10,
        }
    }

    /// The nonce the report was recorded with (its SPDM request's).
    fn recorded_nonce(&self) -> Vec<u8> {
        self.report[4..36].to_vec()
    }
}

/// The report data of trustee's CoCo capture: a SHA-384 runtime-data digest whose first
/// 32 bytes are the Hopper report's nonce.
const HOPPER_REPORT_DATA: &str = "87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fece279b616efefc2aae21da80cf5581250";

/// A fake NVML library and the directory it serves.
struct FakeNvml {
    dir: tempfile::TempDir,
    lib: PathBuf,
}

impl FakeNvml {
    fn new(gpus: &[Gpu], settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::write(path.join("gpus"), gpus.len().to_string()).unwrap();
        for (i, gpu) in gpus.iter().enumerate() {
            std::fs::write(path.join(format!("gpu{i}.report")), &gpu.report).unwrap();
            std::fs::write(path.join(format!("gpu{i}.certs")), &gpu.certs).unwrap();
            std::fs::write(path.join(format!("gpu{i}.arch")), gpu.arch.to_string()).unwrap();
            std::fs::write(
                path.join(format!("gpu{i}.uuid")),
                format!("GPU-0000000{i}-1111-2222-3333-444444444444"),
            )
            .unwrap();
        }
        for (name, value) in settings {
            std::fs::write(path.join(name), value).unwrap();
        }
        let lib = path.join("libnvidia-ml.so.1");
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nvidia/fake_nvml.c");
        let out = Command::new("gcc")
            .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
            .arg(&lib)
            .arg(format!("-DFAKE_DIR=\"{}\"", path.display()))
            .arg(source)
            .output()
            .expect("gcc is needed to build the fake libnvidia-ml");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir, lib }
    }

    fn env(&self) -> Env {
        [(NVML_LIBRARY_ENV, self.lib.to_str().unwrap())]
            .into_iter()
            .collect()
    }

    /// The nonce the attester put in GPU `index`'s request.
    fn nonce_asked(&self, index: usize) -> Vec<u8> {
        std::fs::read(self.dir.path().join(format!("gpu{index}.nonce"))).unwrap()
    }

    fn attester(&self) -> NvidiaAttester {
        find_nvidia_gpus(&self.env()).unwrap()
    }
}

fn device(evidence: &Value, index: usize) -> &Value {
    &evidence["device_evidence_list"][index]
}

#[tokio::test]
async fn hopper_evidence_passes_the_verifier_checks_field_for_field() {
    let gpu = Gpu::hopper();
    let fake = FakeNvml::new(std::slice::from_ref(&gpu), &[]);
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();
    let attester = fake.attester();
    assert_eq!(attester.tee(), Tee::Nvidia);
    let evidence = attester.get_evidence(&report_data).await.unwrap();

    // the nonce NVML was asked for is the report data regularized to 32 bytes
    assert_eq!(fake.nonce_asked(0), report_data[..32]);
    assert_eq!(fake.nonce_asked(0), gpu.recorded_nonce());

    // the layout, field for field
    let object = evidence.as_object().unwrap();
    assert_eq!(object.keys().collect::<Vec<_>>(), ["device_evidence_list"]);
    let entry = device(&evidence, 0).as_object().unwrap();
    let mut keys: Vec<&str> = entry.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["arch", "certificate", "evidence", "uuid"]);
    assert_eq!(entry["arch"], "HOPPER");
    assert_eq!(entry["uuid"], "GPU-00000000-1111-2222-3333-444444444444");
    assert_eq!(
        STANDARD
            .decode(entry["evidence"].as_str().unwrap())
            .unwrap(),
        gpu.report
    );
    assert_eq!(
        STANDARD
            .decode(entry["certificate"].as_str().unwrap())
            .unwrap(),
        gpu.certs
    );

    let claims = appraise(&evidence, &report_data, &root()).unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].arch, "HOPPER");
    assert_eq!(claims[0].measurements.len(), 64);
    assert_eq!(claims[0].config["driver_version"], "580.95.05");
    assert_eq!(
        claims[0].config["fwid"],
        "f1ae7d0093a3f5689cced58045c9744f94eb2aa4ddca88135197fb41a7be45576c2881cf920e2cbcc090b1cb921f7b2d"
    );
}

#[tokio::test]
async fn blackwell_evidence_passes_the_verifier_checks() {
    let gpu = Gpu::blackwell();
    let fake = FakeNvml::new(std::slice::from_ref(&gpu), &[]);
    // a SHA-256 digest: exactly the 32 bytes of the nonce
    let report_data = gpu.recorded_nonce();
    let evidence = fake.attester().get_evidence(&report_data).await.unwrap();
    assert_eq!(device(&evidence, 0)["arch"], "BLACKWELL");
    let claims = appraise(&evidence, &report_data, &root()).unwrap();
    assert_eq!(claims[0].measurements.len(), 64);
    assert_eq!(claims[0].config["driver_version"], "595.58.03");
    assert_eq!(claims[0].config["vbios_version"], "98.02.81.00.01");
    assert_eq!(
        claims[0].config["fwid"],
        "9b92cc3e53b9265259e1abde163653288c2474fcafd8e5c0fd62ce9c9036fb62723fe3715b50f4ac27c68b62e2fd9240"
    );
}

#[tokio::test]
async fn every_gpu_is_attested_with_the_same_nonce() {
    let gpu = Gpu::hopper();
    let fake = FakeNvml::new(&[gpu.clone(), gpu.clone(), gpu], &[]);
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();
    let evidence = fake.attester().get_evidence(&report_data).await.unwrap();
    let list = evidence["device_evidence_list"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for (i, entry) in list.iter().enumerate() {
        assert_eq!(fake.nonce_asked(i), report_data[..32]);
        assert_eq!(
            entry["uuid"],
            format!("GPU-0000000{i}-1111-2222-3333-444444444444")
        );
    }
    let claims = appraise(&evidence, &report_data, &root()).unwrap();
    assert_eq!(claims.len(), 3);
}

#[tokio::test]
async fn a_gpu_answering_over_another_nonce_fails_the_whole_evidence() {
    // Hopper and Blackwell side by side; their recordings carry different nonces, so one
    // of them always answers over a nonce that was not asked for.
    let fake = FakeNvml::new(&[Gpu::hopper(), Gpu::blackwell()], &[]);
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();
    let err = fake
        .attester()
        .get_evidence(&report_data)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttesterError::Platform { tee: Tee::Nvidia, message }
            if message.contains("GPU 1 (GPU-00000001-") && message.contains("nonce asked for")),
        "{err}"
    );
    assert_eq!(fake.nonce_asked(1), report_data[..32]);
}

#[tokio::test]
async fn a_changed_nonce_fails_the_verifier() {
    let fake = FakeNvml::new(&[Gpu::hopper()], &[]);
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();
    let evidence = fake.attester().get_evidence(&report_data).await.unwrap();
    // the KBS expects another nonce than the one the evidence was made for
    let mut other = report_data.clone();
    other[31] ^= 1;
    let err = appraise(&evidence, &other, &root()).unwrap_err();
    assert!(matches!(err, Reject::Nonce { .. }), "{err:?}");
    // bytes past the 32 of the nonce are not bound, exactly as trustee truncates
    let mut tail = report_data.clone();
    tail[40] ^= 1;
    appraise(&evidence, &tail, &root()).unwrap();

    // asking the GPU for another nonce: the recorded report comes back and the attester
    // refuses it before the verifier would
    let err = fake.attester().get_evidence(&other).await.unwrap_err();
    assert!(
        matches!(&err, AttesterError::Platform { message, .. } if message.contains("nonce asked for")),
        "{err}"
    );
    assert_eq!(fake.nonce_asked(0), other[..32]);
}

/// The PEM blocks of a chain.
fn pem_blocks(pem: &[u8]) -> Vec<String> {
    let text = String::from_utf8(pem.to_vec()).unwrap();
    text.split_inclusive("-----END CERTIFICATE-----\n")
        .map(str::to_string)
        .collect()
}

fn with_certificate(evidence: &Value, pem: &str) -> Value {
    let mut evidence = evidence.clone();
    evidence["device_evidence_list"][0]["certificate"] = STANDARD.encode(pem).into();
    evidence
}

#[tokio::test]
async fn a_broken_certificate_chain_fails_the_verifier() {
    let gpu = Gpu::hopper();
    let blocks = pem_blocks(&gpu.certs);
    assert_eq!(blocks.len(), 5);

    // end to end: the GPU serves a chain without its provisioner CA
    let mut broken = gpu.clone();
    broken.certs = [&blocks[0], &blocks[1], &blocks[3], &blocks[4]]
        .map(String::as_str)
        .concat()
        .into_bytes();
    let fake = FakeNvml::new(&[broken], &[]);
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();
    let evidence = fake.attester().get_evidence(&report_data).await.unwrap();
    let err = appraise(&evidence, &report_data, &root()).unwrap_err();
    assert!(
        matches!(&err, Reject::Chain(m) if m.contains("is not issued by")),
        "{err:?}"
    );

    let good = FakeNvml::new(std::slice::from_ref(&gpu), &[]);
    let evidence = good.attester().get_evidence(&report_data).await.unwrap();
    let chain = |parts: &[usize]| {
        parts
            .iter()
            .map(|i| blocks[*i].as_str())
            .collect::<String>()
    };
    // no root: the last certificate is not NVIDIA's
    let err = appraise(
        &with_certificate(&evidence, &chain(&[0, 1, 2, 3])),
        &report_data,
        &root(),
    );
    assert_eq!(err.unwrap_err(), Reject::UntrustedRoot);
    // only the root: it did not sign the report (checked first, as trustee does)
    let err = appraise(
        &with_certificate(&evidence, &chain(&[4])),
        &report_data,
        &root(),
    );
    assert_eq!(err.unwrap_err(), Reject::Signature);
    // the leaf alone: no chain to the root
    let err = appraise(
        &with_certificate(&evidence, &chain(&[0])),
        &report_data,
        &root(),
    );
    assert!(matches!(err.unwrap_err(), Reject::Chain(m) if m.contains("at least")));
    // another GPU's leaf: the report signature no longer verifies
    let blackwell = pem_blocks(&Gpu::blackwell().certs);
    let mixed = [blackwell[0].as_str(), &chain(&[1, 2, 3, 4])].concat();
    let err = appraise(&with_certificate(&evidence, &mixed), &report_data, &root());
    assert_eq!(err.unwrap_err(), Reject::Signature);
    // trusted against another root than the chain's
    let err = appraise(&evidence, &report_data, blackwell[3].as_bytes());
    assert_eq!(err.unwrap_err(), Reject::UntrustedRoot);
    // an intermediate's signature flipped
    let mut der_tampered = blocks.clone();
    der_tampered[2] = tamper_signature(&blocks[2]);
    let err = appraise(
        &with_certificate(&evidence, &der_tampered.concat()),
        &report_data,
        &root(),
    );
    assert!(matches!(err.unwrap_err(), Reject::Chain(_)));
}

/// Flips a bit in the last byte of a certificate's signature.
fn tamper_signature(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = STANDARD.decode(body).unwrap();
    let last = der.len() - 1;
    der[last] ^= 1;
    let encoded = STANDARD.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn a_truncated_or_altered_report_fails_the_verifier() {
    let gpu = Gpu::hopper();
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();

    // end to end: the GPU serves a truncated report (it still starts with the request)
    let mut short = gpu.clone();
    short.report.truncate(2000);
    let fake = FakeNvml::new(&[short], &[]);
    let evidence = fake.attester().get_evidence(&report_data).await.unwrap();
    let err = appraise(&evidence, &report_data, &root()).unwrap_err();
    assert!(
        matches!(&err, Reject::Report(m) if m.contains("overflow")),
        "{err:?}"
    );

    let fake = FakeNvml::new(std::slice::from_ref(&gpu), &[]);
    let evidence = fake.attester().get_evidence(&report_data).await.unwrap();
    let with_report = |report: &[u8]| {
        let mut e = evidence.clone();
        e["device_evidence_list"][0]["evidence"] = STANDARD.encode(report).into();
        e
    };
    // every truncation is refused, none panics; the signature ends 1 byte before the end
    // of the recording (a trailing byte that is not parsed, as trustee ignores it)
    let signed_end = gpu.report.len() - 1;
    for len in [0, 1, 36, 37, 44, 100, 3000, signed_end - 96, signed_end - 1] {
        let err = appraise(&with_report(&gpu.report[..len]), &report_data, &root()).unwrap_err();
        assert!(matches!(err, Reject::Report(_)), "{len}: {err:?}");
    }
    appraise(
        &with_report(&gpu.report[..signed_end]),
        &report_data,
        &root(),
    )
    .unwrap();
    // one measurement bit changed: the signature no longer verifies
    let mut altered = gpu.report.clone();
    altered[200] ^= 1;
    let err = appraise(&with_report(&altered), &report_data, &root()).unwrap_err();
    assert_eq!(err, Reject::Signature);
    // hex is accepted as trustee accepts it, garbage is not
    let mut hexed = evidence.clone();
    hexed["device_evidence_list"][0]["evidence"] = hex::encode(&gpu.report).into();
    appraise(&hexed, &report_data, &root()).unwrap();
    let mut garbage = evidence.clone();
    garbage["device_evidence_list"][0]["evidence"] = "not evidence!".into();
    assert!(matches!(
        appraise(&garbage, &report_data, &root()).unwrap_err(),
        Reject::Format(_)
    ));
    let mut wrong_arch = evidence.clone();
    wrong_arch["device_evidence_list"][0]["arch"] = "AMPERE".into();
    assert!(matches!(
        appraise(&wrong_arch, &report_data, &root()).unwrap_err(),
        Reject::Arch(_)
    ));
}

#[test]
fn no_library_no_driver_no_gpu_or_no_cc_is_no_device() {
    let missing: Env = [(NVML_LIBRARY_ENV, "/nonexistent/libnvidia-ml.so.1")]
        .into_iter()
        .collect();
    assert!(matches!(
        find_nvidia_gpus(&missing),
        Err(NoNvidiaDevice::Library(_))
    ));

    let no_driver = FakeNvml::new(&[Gpu::hopper()], &[("init_rc", "9")]);
    let err = find_nvidia_gpus(&no_driver.env()).unwrap_err();
    assert!(
        matches!(&err, NoNvidiaDevice::Driver(m) if m.contains("nvmlInit_v2") && m.contains("Driver Not Loaded")),
        "{err}"
    );

    let no_gpu = FakeNvml::new(&[], &[]);
    assert_eq!(
        find_nvidia_gpus(&no_gpu.env()).unwrap_err(),
        NoNvidiaDevice::NoGpu
    );

    let cc_off = FakeNvml::new(&[Gpu::hopper()], &[("cc_feature", "0")]);
    assert!(matches!(
        find_nvidia_gpus(&cc_off.env()),
        Err(NoNvidiaDevice::NotConfidential(_))
    ));

    // detection leaves the device out and keeps going
    let dir = tempfile::tempdir().unwrap();
    for env in [missing, no_driver.env(), no_gpu.env(), cc_off.env()] {
        let detected = detect(&Platform::new(dir.path()), &options(env)).unwrap();
        assert_eq!(detected.primary.tee(), Tee::Sample);
        assert!(detected.additional.is_empty());
    }
}

fn options(env: Env) -> DetectOptions {
    DetectOptions {
        sample: SamplePolicy::Allowed("test".into()),
        env,
    }
}

#[tokio::test]
async fn detection_adds_the_gpus_as_additional_evidence() {
    let gpu = Gpu::hopper();
    let fake = FakeNvml::new(&[gpu], &[]);
    let dir = tempfile::tempdir().unwrap();
    let detected = detect(&Platform::new(dir.path()), &options(fake.env())).unwrap();
    let additional: Vec<Tee> = detected.additional.iter().map(|a| a.tee()).collect();
    assert_eq!(additional, [Tee::Nvidia]);
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();
    let text = detected.additional_evidence(&report_data).await.unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(all.as_object().unwrap().len(), 1);
    appraise(&all["nvidia"], &report_data, &root()).unwrap();
}

#[tokio::test]
async fn a_misbehaving_library_is_an_error_not_a_crash() {
    let report_data = hex::decode(HOPPER_REPORT_DATA).unwrap();
    // a report size beyond the buffer
    let fake = FakeNvml::new(&[Gpu::hopper()], &[("report_size", "100000")]);
    let err = fake
        .attester()
        .get_evidence(&report_data)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("100000 bytes"), "{err}");
    // a GPU that cannot produce CC evidence (Ampere)
    let mut ampere = Gpu::hopper();
    ampere.arch = 7;
    let fake = FakeNvml::new(&[ampere], &[]);
    let err = fake
        .attester()
        .get_evidence(&report_data)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("architecture 7"), "{err}");
    // an impossible GPU count
    let fake = FakeNvml::new(&[Gpu::hopper()], &[("gpus", "100000")]);
    let err = fake
        .attester()
        .get_evidence(&report_data)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("100000 GPUs"), "{err}");
    // a library without the confidential-computing functions
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libnvidia-ml.so.1");
    std::fs::write(
        dir.path().join("empty.c"),
        "int nvmlInit_v2(void) { return 0; }\n",
    )
    .unwrap();
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(dir.path().join("empty.c"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let env: Env = [(NVML_LIBRARY_ENV, lib.to_str().unwrap())]
        .into_iter()
        .collect();
    let err = find_nvidia_gpus(&env).unwrap_err();
    assert!(
        matches!(&err, NoNvidiaDevice::Library(m) if m.contains("nvmlShutdown")),
        "{err}"
    );
}

/// On a machine with a real GPU (scripts/nvidia-gpu-check.sh): appraises the evidence in
/// `$NVIDIA_EVIDENCE_FILE` (the JSON of the `nvidia` line of evidence-getter) against the
/// report data in `$NVIDIA_REPORT_DATA` (hex).
#[test]
#[ignore = "needs evidence from a real GPU; run by scripts/nvidia-gpu-check.sh"]
fn real_gpu_evidence() {
    let path = std::env::var("NVIDIA_EVIDENCE_FILE").expect("NVIDIA_EVIDENCE_FILE");
    let report_data = hex::decode(std::env::var("NVIDIA_REPORT_DATA").expect("NVIDIA_REPORT_DATA"))
        .expect("NVIDIA_REPORT_DATA is hex");
    let evidence: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let claims = appraise(&evidence, &report_data, &root()).unwrap_or_else(|e| panic!("{e:?}"));
    for device in &claims {
        println!(
            "{} {}: {} measurements, driver {}, vbios {}, fwid {}",
            device.arch,
            device.uuid,
            device.measurements.len(),
            device.config["driver_version"],
            device.config["vbios_version"],
            device.config["fwid"]
        );
    }
    assert!(!claims.is_empty());
}
