//! The encryption side end to end: `coco-keyprovider` (real binary, KEKs registered in the
//! test KBS through trustee's admin API with an Ed25519 key made by `openssl genpkey`)
//! wraps the layer keys of an image that the project's `ocicrypt` CLI encrypts through the
//! provider config, the image goes to a real registry, and the real hub pulls it in cc_kbc
//! mode with the real attestation agent (ML-KEM-768 TEE key): the bundle's rootfs equals
//! the plain image's, for both `algorithm` values.
//!
//! Needs `cargo build --bins` first (`make test` does): the provider and `ocicrypt` are
//! other packages' binaries.
#![cfg(feature = "kbs")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use common::*;
use confidential_data_hub::CdhClient;
use ocicrypt_rs::keywrap::keyprovider::AnnotationPacket;
use test_images::{fixtures, OciLayout, Registry, RegistryOptions};
use testkit::kbs::{KbsConfig, TestKbs};
use testkit::process::{free_port, workspace_bin, Daemon, Ready};

const PULL_TIMEOUT: Duration = Duration::from_secs(120);
const PROVIDER_ANNOTATION: &str = "org.opencontainers.image.enc.keys.provider.attestation-agent";

/// Overlay rootfs mounts made by the hub, unmounted at the end.
struct Bundles(Vec<PathBuf>);

impl Drop for Bundles {
    fn drop(&mut self) {
        for bundle in &self.0 {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(bundle.join("rootfs"))
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The admin key pair the way trustee's documentation makes it.
fn openssl_admin_key_pair(dir: &Path) -> (PathBuf, String) {
    let private = dir.join("admin.key");
    let public = dir.join("admin.pub");
    run_ok(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            path_str(&private),
        ],
    );
    run_ok(
        "openssl",
        &[
            "pkey",
            "-in",
            path_str(&private),
            "-pubout",
            "-out",
            path_str(&public),
        ],
    );
    (private, std::fs::read_to_string(public).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_encrypted_by_coco_keyprovider_pulls_through_cc_kbc() {
    let guest = Guest::new();
    let (admin_key, admin_pub) = openssl_admin_key_pair(guest.dir.path());
    let kbs = TestKbs::start(KbsConfig {
        admin_public_key: Some(admin_pub),
        ..KbsConfig::default()
    })
    .await
    .unwrap();

    // the provider, registering KEKs in the KBS
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let mut cmd = Command::new(workspace_bin("coco-keyprovider").unwrap());
    cmd.args(["-s", &addr.to_string(), "--kbs", &kbs.url(), "-a"])
        .arg(&admin_key)
        .env("RUST_LOG", "info");
    let log_dir = guest.dir.path().to_path_buf();
    let provider = tokio::task::spawn_blocking(move || {
        Daemon::spawn("coco-keyprovider", cmd, &log_dir, Ready::Tcp(addr), START)
    })
    .await
    .unwrap()
    .unwrap();
    let provider_config = guest.path("ocicrypt_keyprovider.conf");
    std::fs::write(
        &provider_config,
        serde_json::json!({"key-providers": {"attestation-agent": {"grpc": addr.to_string()}}})
            .to_string(),
    )
    .unwrap();

    // the plain image, in a layout and on the registry
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let layout = OciLayout::create(guest.path("oci")).unwrap();
    let plain = fixtures::publish(
        &layout,
        &registry.target(),
        &fixtures::multi_layer(),
        "test/multi",
        "v1",
    )
    .await
    .unwrap();

    // encrypted with the project's ocicrypt CLI through coco-keyprovider, then pushed
    let ocicrypt = workspace_bin("ocicrypt").unwrap();
    let mut encrypted = Vec::new();
    for (name, params, wrap_type) in [
        ("gcm", "keyid=kbs:///default/image-kek/gcm", "A256GCM"),
        (
            "ctr",
            "keyid=kbs:///default/image-kek/ctr::algorithm=A256CTR",
            "A256CTR",
        ),
    ] {
        let out_dir = guest.path(&format!("oci-{name}"));
        run_ok(
            path_str(&ocicrypt),
            &[
                "encrypt",
                "--keyprovider-config",
                path_str(&provider_config),
                "--key",
                &format!("provider:attestation-agent:{params}"),
                "--input",
                &format!("oci:{}:v1", layout.root().display()),
                "--output",
                &format!("oci:{}:v1", out_dir.display()),
            ],
        );
        let out = OciLayout::create(&out_dir).unwrap();
        let manifest_desc = out.resolve_tag("v1").unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&out.read_blob(manifest_desc.digest.as_str()).unwrap()).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        for layer in layers {
            assert!(
                layer["mediaType"].as_str().unwrap().ends_with("+encrypted"),
                "{layer}"
            );
            let packet = STANDARD
                .decode(layer["annotations"][PROVIDER_ANNOTATION].as_str().unwrap())
                .unwrap();
            let packet = AnnotationPacket::parse(&packet).unwrap();
            assert_eq!(packet.kid, format!("kbs:///default/image-kek/{name}"));
            assert_eq!(packet.wrap_type.as_deref(), Some(wrap_type));
            assert_eq!(packet.version.as_deref(), Some("0.1.0"));
        }
        let kek = kbs.resource(&format!("default/image-kek/{name}")).unwrap();
        assert_eq!(kek.len(), 32);
        let repo = format!("enc/{name}");
        test_images::push_image(&out, &manifest_desc, &registry.target(), &repo, "v1")
            .await
            .unwrap();
        encrypted.push((
            format!("{}/{repo}:v1", registry.host()),
            manifest_desc.digest,
        ));
    }
    // one KEK per keyid, registered once for the three layers
    assert_eq!(kbs.counters().resource_post_ok, 2);

    // the guest: the agent attests with an ML-KEM-768 key, the hub pulls with cc_kbc
    let _aa = guest.start_aa(&format!(
        "[token_configs.kbs]\nurl = \"{}\"\ntee_key_algorithm = \"ML-KEM-768+A192KW\"\n",
        kbs.url()
    ));
    let config = format!(
        "[aa]\naa_socket = \"unix://{}\"\n[kbc]\nname = \"cc_kbc\"\nurl = \"{}\"\n\
         [image]\nwork_dir = \"{}\"\n[image.registry_config]\n\
         [[image.registry_config.registry]]\nlocation = \"{}\"\ninsecure = true\n",
        guest.aa_sock().display(),
        kbs.url(),
        guest.path("image-work").display(),
        registry.host()
    );
    let cdh = guest.spawn_cdh(guest.cdh_command(&config));
    let client = CdhClient::connect(&guest.cdh_addr(), PULL_TIMEOUT)
        .await
        .unwrap();
    let mut bundles = Bundles(Vec::new());

    let plain_bundle = guest.path("bundles/plain");
    bundles.0.push(plain_bundle.clone());
    let digest = client
        .pull_image(
            &format!("{}/test/multi:v1", registry.host()),
            path_str(&plain_bundle),
        )
        .await
        .unwrap();
    assert_eq!(digest, plain.manifest.digest);
    let expected = tree(&plain_bundle.join("rootfs"));
    assert_eq!(expected.len(), 6, "{expected:#?}");

    for (reference, manifest_digest) in &encrypted {
        let bundle = guest.path(&format!("bundles/{}", reference.replace(['/', ':'], "_")));
        bundles.0.push(bundle.clone());
        let digest = client
            .pull_image(reference, path_str(&bundle))
            .await
            .unwrap_or_else(|e| panic!("{reference}: {e}\n{}", cdh.stderr()));
        assert_eq!(&digest, manifest_digest);
        assert_eq!(tree(&bundle.join("rootfs")), expected, "{reference}");
    }
    // the KEKs were released to an ML-KEM-768 TEE key, not an EC one
    let tee_pubkey = kbs.last_tee_pubkey().unwrap();
    assert_eq!(tee_pubkey["kty"], "AKP", "{tee_pubkey}");
    assert_eq!(tee_pubkey["alg"], "ML-KEM-768+A192KW");

    assert!(cdh.stop().unwrap().success());
    drop(bundles);
    let log = provider.stderr();
    assert!(log.contains("KEK registered in the KBS"), "{log}");
    assert!(provider.stop().unwrap().success());
}
