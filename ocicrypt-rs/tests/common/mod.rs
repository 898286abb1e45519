//! Fixtures shared by the integration tests: real openssl keys, real OCI layouts, the
//! real skopeo.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Fails the test with a clear message when a required tool is missing: these tests must
/// never pass silently without their real peer.
pub(crate) fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is required by this test and was not found on PATH; install it (Debian: apt-get install -y skopeo openssl zstd gzip tar)"
    );
}

pub(crate) fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn sh(script: &str) -> Vec<u8> {
    run(Command::new("sh").arg("-ec").arg(script))
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) struct Keys {
    pub rsa_priv: PathBuf,
    pub rsa_pub: PathBuf,
    pub ec_priv_pkcs8: PathBuf,
    pub ec_pub: PathBuf,
    pub cert: PathBuf,
    pub cert_key: PathBuf,
}

/// RSA-2048 and P-256 JWE key pairs and a self-signed RSA certificate, made by openssl.
pub(crate) fn make_keys(dir: &Path) -> Keys {
    require("openssl");
    let d = dir.display();
    sh(&format!(
        "cd {d}
         openssl genrsa -out rsa.pem 2048 2>/dev/null
         openssl rsa -in rsa.pem -pubout -out rsa-pub.pem 2>/dev/null
         openssl ecparam -name prime256v1 -genkey -noout -out ec-sec1.pem
         openssl pkcs8 -topk8 -nocrypt -in ec-sec1.pem -out ec.pem
         openssl ec -in ec-sec1.pem -pubout -out ec-pub.pem 2>/dev/null
         openssl req -x509 -newkey rsa:2048 -nodes -keyout cert-key.pem -out cert.pem -days 2 -subj /CN=ocicrypt-test 2>/dev/null"
    ));
    Keys {
        rsa_priv: dir.join("rsa.pem"),
        rsa_pub: dir.join("rsa-pub.pem"),
        ec_priv_pkcs8: dir.join("ec.pem"),
        ec_pub: dir.join("ec-pub.pem"),
        cert: dir.join("cert.pem"),
        cert_key: dir.join("cert-key.pem"),
    }
}

pub(crate) const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(crate) const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn put_blob(layout: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    std::fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// An OCI layout at `layout` tagged `tag` with a gzip, a zstd and an uncompressed layer
/// made by tar/gzip/zstd; returns the layer digests.
pub(crate) fn make_layout(work: &Path, layout: &Path, tag: &str) -> Vec<String> {
    require("tar");
    require("gzip");
    require("zstd");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let w = work.display();
    sh(&format!(
        "cd {w}; mkdir -p r1 r2/etc r3/data
         echo hello-ocicrypt > r1/hello.txt; head -c 200000 /dev/urandom > r1/random.bin
         echo zstd layer > r2/etc/layer2.conf; echo plain tar layer > r3/data/layer3.txt
         for i in 1 2 3; do tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf l$i.tar -C r$i .; done
         gzip -n -c l1.tar > l1.tar.gz; zstd -q -c l2.tar > l2.tar.zst"
    ));
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (mt, file, tar) in [
        (GZIP, "l1.tar.gz", "l1.tar"),
        (ZSTD, "l2.tar.zst", "l2.tar"),
        (TAR, "l3.tar", "l3.tar"),
    ] {
        let data = std::fs::read(work.join(file)).unwrap();
        let tar_data = std::fs::read(work.join(tar)).unwrap();
        let digest = put_blob(layout, &data);
        layers.push(json!({"mediaType": mt, "digest": digest, "size": data.len()}));
        diff_ids.push(format!("sha256:{}", sha256_hex(&tar_data)));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/cat", "/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let config_digest = put_blob(layout, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers
    }))
    .unwrap();
    let manifest_digest = put_blob(layout, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The manifest of the image tagged `tag` (or the only one).
pub(crate) fn manifest(layout: &Path, tag: Option<&str>) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            tag.is_none()
                || d["annotations"]["org.opencontainers.image.ref.name"] == tag.unwrap_or_default()
        })
        .expect("image in index.json")
        .clone();
    let digest = desc["digest"].as_str().unwrap();
    let bytes = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(
        format!("sha256:{}", sha256_hex(&bytes)),
        digest,
        "manifest digest in index.json"
    );
    serde_json::from_slice(&bytes).unwrap()
}

pub(crate) fn layers(layout: &Path, tag: Option<&str>) -> Vec<Value> {
    manifest(layout, tag)["layers"].as_array().unwrap().clone()
}

pub(crate) fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// `skopeo copy` with the given extra flags, oci: to oci:.
pub(crate) fn skopeo_copy(flags: &[String], src: &str, dst: &str) {
    require("skopeo");
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "-q"])
        .args(flags)
        .args([src, dst]);
    run(&mut cmd);
}

pub(crate) fn flag(name: &str, value: &Path) -> String {
    format!("--{name}={}", value.display())
}
