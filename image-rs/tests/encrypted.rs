//! Layers encrypted by skopeo (containers/ocicrypt, JWE with RSA-OAEP): gzip, zstd and
//! plain-tar layers, decrypted through the `KeyUnwrap` hook (ocicrypt-rs key wrappers),
//! compared with umoci's unpack of the plain image; missing or wrong keys and an altered
//! HMAC are refused with typed errors and leave nothing behind.

#![cfg(feature = "encryption")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use common::{assert_same_tree, run, staging_dirs, stored_layers, Env};
use image_rs::DecryptError;
use image_rs::LayerError;
use image_rs::{Digest, ImageClient, OcicryptKeyUnwrap, PullError, PullOptions};
use ocicrypt_rs::keywrap::jwe::JweKeyWrapper;
use ocicrypt_rs::keywrap::KeyWrappers;
use test_images::fixtures;
use test_images::{Compression, Descriptor, OciLayout};

fn openssl_rsa(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&private)
        .arg("2048"));
    run(Command::new("openssl")
        .arg("rsa")
        .arg("-in")
        .arg(&private)
        .arg("-pubout")
        .arg("-out")
        .arg(&public));
    (private, public)
}

fn unwrapper(private_key: &std::path::Path) -> Arc<OcicryptKeyUnwrap> {
    let key = ocicrypt_rs::parse_private_key(&std::fs::read(private_key).unwrap(), None).unwrap();
    let mut jwe = JweKeyWrapper::new();
    jwe.add_private_key(key);
    let mut wrappers = KeyWrappers::new();
    wrappers.add(jwe);
    Arc::new(OcicryptKeyUnwrap::new(wrappers))
}

/// Rewrites the manifest of `layout`'s tag `from` with `edit` and tags the result `to`.
fn edit_manifest(
    layout: &OciLayout,
    from: &str,
    to: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Descriptor {
    let descriptor = layout.resolve_tag(from).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&layout.read_blob(descriptor.digest.as_str()).unwrap()).unwrap();
    edit(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let written = layout.write_blob(&bytes, &descriptor.media_type).unwrap();
    assert_eq!(written.digest, Digest::sha256_of(&bytes));
    layout.tag(to, &written).unwrap();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_encrypted_layers_decrypt_and_tampering_is_refused() {
    let env = Env::plain();
    let keys = env.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (private, public) = openssl_rsa(&keys, "rsa");
    let (other_private, _) = openssl_rsa(&keys, "other");

    // The plain image, and its skopeo-encrypted twin.
    let plain = env.layout.write_image(&fixtures::multi_layer()).unwrap();
    env.layout.tag("plain", &plain.manifest).unwrap();
    let enc_dir = env.dir.path().join("enc-oci");
    run(Command::new("skopeo")
        .args(["copy", "-q", "--encryption-key"])
        .arg(format!("jwe:{}", public.display()))
        .arg(format!("oci:{}:plain", env.layout.root().display()))
        .arg(format!("oci:{}:enc", enc_dir.display())));
    let enc = OciLayout::create(&enc_dir).unwrap();
    let enc_manifest = enc.resolve_tag("enc").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&enc.read_blob(enc_manifest.digest.as_str()).unwrap()).unwrap();
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert!(types.iter().all(|t| t.ends_with("+encrypted")), "{types:?}");
    assert!(
        types.contains(&"application/vnd.oci.image.layer.v1.tar+zstd+encrypted"),
        "{types:?}"
    );
    let target = env.registry.target();
    test_images::push_image(&enc, &enc_manifest, &target, "enc/multi", "v1")
        .await
        .unwrap();
    let reference = format!("{}/enc/multi:v1", env.registry.host());

    // The expected rootfs: umoci on the plain image with gzip instead of zstd.
    let mut gzip_twin = fixtures::multi_layer();
    for layer in &mut gzip_twin.layers {
        if layer.compression == Compression::Zstd {
            layer.compression = Compression::Gzip;
        }
    }
    let (gzip_reference, _) = env.publish(&gzip_twin, "plain/multi-gz", "v1").await;
    let expected = env.umoci_rootfs(&gzip_reference, "plain");

    // With the key: decrypted, identical to the plain image.
    let client = env
        .client("work")
        .await
        .with_key_unwrap(unwrapper(&private));
    let bundle = env.dir.path().join("bundle");
    let report = client
        .pull_image(&reference, &bundle, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report.image.manifest_digest.to_string(),
        enc_manifest.digest
    );
    assert_eq!(report.image.layers_fetched, 3);
    assert_same_tree(&bundle.join("rootfs"), &expected);
    client.remove_bundle(&bundle).await.unwrap();

    // No key unwrapper, or the wrong key: refused before any byte is stored.
    for (name, client) in [
        (
            "nokey",
            ImageClient::new(env.config("nokey")).await.unwrap(),
        ),
        (
            "wrongkey",
            env.client("wrongkey")
                .await
                .with_key_unwrap(unwrapper(&other_private)),
        ),
    ] {
        let err = client
            .pull_layers(&reference, &PullOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                PullError::Layer(LayerError::Decrypt(
                    DecryptError::NoKeyUnwrap { .. } | DecryptError::Unwrap { .. }
                ))
            ),
            "{name}: {err}"
        );
        let work = env.dir.path().join(name);
        assert_eq!(
            (stored_layers(&work), staging_dirs(&work)),
            (0, 0),
            "{name}"
        );
    }

    // A different HMAC in the annotation (same blob, same key): the layer fails
    // authentication at its end; nothing is committed.
    let tampered = edit_manifest(&enc, "enc", "tampered", |m| {
        let annotations = &mut m["layers"][0]["annotations"];
        let pubopts = annotations["org.opencontainers.image.enc.pubopts"]
            .as_str()
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut opts: serde_json::Value =
            serde_json::from_slice(&b64.decode(pubopts).unwrap()).unwrap();
        let mut hmac = b64.decode(opts["hmac"].as_str().unwrap()).unwrap();
        hmac[0] ^= 1;
        opts["hmac"] = serde_json::Value::String(b64.encode(hmac));
        annotations["org.opencontainers.image.enc.pubopts"] =
            serde_json::Value::String(b64.encode(serde_json::to_vec(&opts).unwrap()));
    });
    test_images::push_image(&enc, &tampered, &target, "enc/tampered", "v1")
        .await
        .unwrap();
    let client = env
        .client("tampered")
        .await
        .with_key_unwrap(unwrapper(&private));
    let bundle = env.dir.path().join("tampered-bundle");
    let err = client
        .pull_image(
            &format!("{}/enc/tampered:v1", env.registry.host()),
            &bundle,
            &PullOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::Layer(LayerError::Decrypt(DecryptError::Authentication { ref message, .. })) if message.contains("HMAC")),
        "{err}"
    );
    let work = env.dir.path().join("tampered");
    assert_eq!(staging_dirs(&work), 0);
    // The other two (intact) layers may have been committed; the tampered one never is.
    assert!(stored_layers(&work) <= 2);
    assert!(!bundle.join("rootfs").exists());
}
