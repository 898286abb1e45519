//! The fixtures against real peers: pushed to a real docker-registry, read back with skopeo
//! and unpacked with umoci.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use oci_model::Digest;
use test_images::{fixtures, push_image, OciLayout, Registry, RegistryOptions};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn skopeo_unpack(reference: &str, extra: &[&str], work: &Path) -> std::path::PathBuf {
    let oci = work.join("copied");
    let mut copy = Command::new("skopeo");
    copy.arg("copy").arg("-q").args(extra);
    copy.arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:t", oci.display()));
    run(&mut copy);
    let bundle = work.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:t", oci.display()))
        .arg(&bundle));
    bundle.join("rootfs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_push_byte_exact_and_unpack_with_umoci() {
    let work = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(work.path().join("oci")).unwrap();
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let target = registry.target();

    let built = fixtures::publish(
        &layout,
        &target,
        &fixtures::multi_layer(),
        "test/multi",
        "v1",
    )
    .await
    .unwrap();
    // Pushed as is: the plain tar layer is not recompressed and the digest is kept.
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/test/multi:v1", registry.host()),
    ]));
    assert_eq!(Digest::sha256_of(raw.as_bytes()), built.manifest.digest);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["layers"][2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );

    // umoci 0.4 cannot read zstd layers: unpack the gzip/tar image of the set with it.
    fixtures::publish(
        &layout,
        &target,
        &fixtures::whiteouts_without_zstd(),
        "test/wh",
        "v1",
    )
    .await
    .unwrap();
    let rootfs = skopeo_unpack(
        &format!("{}/test/wh:v1", registry.host()),
        &["--src-tls-verify=false"],
        work.path(),
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("c/new")).unwrap(),
        "only this survives in c\n"
    );
    assert!(!rootfs.join("c/hidden-by-opaque").exists());
    assert!(!rootfs.join("a/removed").exists());
    assert!(!rootfs.join("b").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("e/inside")).unwrap(),
        "now a directory\n"
    );

    // A multi-arch index and its images.
    let index = fixtures::write_multi_arch(&layout).unwrap();
    push_image(&layout, &index, &target, "test/multi-arch", "v1")
        .await
        .unwrap();
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/test/multi-arch:v1", registry.host()),
    ]));
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(json["manifests"].as_array().unwrap().len(), 2);
    let arm = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--override-arch=arm64",
        &format!("docker://{}/test/multi-arch:v1", registry.host()),
    ]));
    let arm: serde_json::Value = serde_json::from_str(&arm).unwrap();
    assert_eq!(arm["Architecture"], "arm64");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_tls_registry_needs_the_credentials_and_the_ca() {
    let work = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(work.path().join("oci")).unwrap();
    let registry = Registry::start(RegistryOptions {
        credentials: Some(("alice".into(), "wonderland".into())),
        tls: true,
        token_auth: None,
    })
    .unwrap();
    assert!(registry.url().starts_with("https://"));
    fixtures::publish(
        &layout,
        &registry.target(),
        &fixtures::users(),
        "test/users",
        "v1",
    )
    .await
    .unwrap();

    // Without credentials the push is refused.
    let mut anonymous = registry.target();
    anonymous.credentials = None;
    let err = fixtures::publish(&layout, &anonymous, &fixtures::plain(), "test/plain", "v1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    // skopeo with the CA and the credentials reads it back.
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), registry.ca_pem().unwrap()).unwrap();
    let rootfs = skopeo_unpack(
        &format!("{}/test/users:v1", registry.host()),
        &[
            "--src-cert-dir",
            certs.to_str().unwrap(),
            "--src-creds",
            "alice:wonderland",
        ],
        work.path(),
    );
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .contains("app:x:1000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_blob_is_served_as_tampered() {
    let work = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(work.path().join("oci")).unwrap();
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let built = fixtures::publish(
        &layout,
        &registry.target(),
        &fixtures::plain(),
        "test/plain",
        "v1",
    )
    .await
    .unwrap();
    let digest = built.layers[0].digest.clone();
    registry
        .tamper_blob(digest.as_str(), |data| {
            let last = data.len() - 1;
            data[last] ^= 0xff;
        })
        .unwrap();
    let url = format!("{}/v2/test/plain/blobs/{digest}", registry.url());
    let body = run(Command::new("curl")
        .args(["-fsS", &url])
        .arg("-o")
        .arg(work.path().join("blob")));
    assert!(body.is_empty());
    let served = std::fs::read(work.path().join("blob")).unwrap();
    assert_eq!(served.len() as u64, built.layers[0].size);
    assert_ne!(Digest::sha256_of(&served), digest);
    registry.stop().unwrap();
}
