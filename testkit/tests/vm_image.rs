//! kata-agent's PullImage in the guest: the hub pulls from the host's registry
//! (`test-images serve`: a real docker-registry on 127.0.0.1 with the suite's fixtures,
//! 10.0.2.2 from the guest) into a bundle on the guest kernel's overlayfs, with the
//! signature policy and the layer keys from its KBC (offline_fs_kbc): an image cosign-signed
//! on the host (the signature manifest at the `sha256-<hex>.sig` tag, pushed with curl, the
//! payload signed with openssl) is accepted, and so is a signed copy with its layers
//! encrypted as ocicrypt's keyprovider does (`publish_encrypted`: AES-256-CTR-HMAC-SHA256,
//! the private options wrapped A256GCM under kbs:///default/key/1) into the same rootfs;
//! an unsigned image, one signed by another key, and a signed one encrypted under a KEK the
//! KBC does not hold are refused and leave no bundle.
//!
//! Needs the debug binaries (`cargo build --workspace --bins`: test-images, the daemons,
//! cdh-tool), docker-registry, openssl and QEMU: `make vm-test` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use sha2::{Digest as _, Sha256};
use testkit::{
    process::workspace_bin,
    vm::{self, VmConfig},
};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `test-images serve`: (the process, host:port, reference -> manifest digest).
fn serve(work: &std::path::Path) -> (Proc, String, BTreeMap<String, String>) {
    let mut child = Command::new(workspace_bin("test-images").unwrap())
        .arg("serve")
        .arg("--work")
        .arg(work)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut images = BTreeMap::new();
    let mut host = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("serving on") {
            break;
        }
        let (reference, digest) = line.split_once('\t').unwrap();
        host = reference.split('/').next().unwrap().to_string();
        images.insert(reference.to_string(), digest.to_string());
    }
    assert!(!images.is_empty(), "test-images served nothing");
    (proc, host, images)
}

/// A P-256 key pair in `<dir>/<name>.key`; returns the public key (PEM).
fn cosign_key(dir: &std::path::Path, name: &str) -> String {
    let key = dir.join(format!("{name}.key"));
    let ok = Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new("openssl")
        .args(["ec", "-pubout", "-in"])
        .arg(&key)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Runs `sh -c script` with `args`; panics with its output on failure.
fn sh(script: &str, args: &[&str]) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Uploads `blob` to `repo` of the registry at `host` (plain HTTP); returns its digest.
fn push_blob(host: &str, repo: &str, blob: &[u8], dir: &std::path::Path) -> String {
    let digest = format!("sha256:{}", sha256_hex(blob));
    let file = dir.join(sha256_hex(blob));
    std::fs::write(&file, blob).unwrap();
    // POST opens an upload session (its Location, maybe relative), PUT ?digest= closes it
    sh(
        r#"loc=$(curl -sf -D - -o /dev/null -X POST "http://$1/v2/$2/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case "$loc" in http*) ;; *) loc="http://$1$loc" ;; esac
case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$4" "$loc${sep}digest=$3""#,
        &[host, repo, &digest, file.to_str().unwrap()],
    );
    digest
}

/// AES-256-CTR (the 16-byte nonce as the initial big-endian counter block) of `data` in
/// place, as ocicrypt's AES_256_CTR_HMAC_SHA256 layer cipher.
fn aes256_ctr(key: &[u8; 32], nonce: &[u8; 16], data: &mut [u8]) {
    use aes_gcm::aes::{
        cipher::{BlockEncrypt as _, KeyInit as _},
        Aes256, Block,
    };
    let cipher = Aes256::new(key.into());
    let mut counter = u128::from_be_bytes(*nonce);
    for chunk in data.chunks_mut(16) {
        let mut block: Block = counter.to_be_bytes().into();
        cipher.encrypt_block(&mut block);
        for (b, k) in chunk.iter_mut().zip(block.iter()) {
            *b ^= k;
        }
        counter = counter.wrapping_add(1);
    }
}

/// HMAC-SHA256 (RFC 2104) of `data` with a 32-byte key.
fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(key);
    let pad = |x: u8| k.iter().map(|b| b ^ x).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn random<const N: usize>() -> [u8; N] {
    use rand_core::RngCore as _;
    let mut b = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

/// Publishes `<repo>:<tag>`, a copy of `<repo>:v1` whose layers are encrypted as ocicrypt
/// does for `provider:attestation-agent:keyid=<kid>` (what coco-keyprovider wraps): each
/// layer under its own AES-256-CTR key with an HMAC-SHA256 in the `pubopts` annotation,
/// the private options `{"symkey","digest","cipheroptions":{"nonce"}}` wrapped with A256GCM
/// under `kek` in an annotation packet. Returns the new manifest's digest.
fn publish_encrypted(
    host: &str,
    repo: &str,
    tag: &str,
    kid: &str,
    kek: &[u8; 32],
    dir: &std::path::Path,
) -> String {
    use aes_gcm::{aead::Aead as _, Aes256Gcm, KeyInit as _, Nonce};
    let manifest = sh(
        "curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \"http://$1/v2/$2/manifests/v1\"",
        &[host, repo],
    );
    let mut manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{manifest}"
    );
    for layer in manifest["layers"].as_array_mut().unwrap() {
        let digest = layer["digest"].as_str().unwrap().to_string();
        let file = dir.join("layer");
        sh(
            "curl -sf -o \"$3\" \"http://$1/v2/$2/blobs/$4\"",
            &[host, repo, file.to_str().unwrap(), &digest],
        );
        let mut data = std::fs::read(&file).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&data)), digest);
        let (symkey, nonce) = (random::<32>(), random::<16>());
        aes256_ctr(&symkey, &nonce, &mut data);
        let hmac = hmac_sha256(&symkey, &data);
        let private = serde_json::json!({
            "symkey": STANDARD.encode(symkey),
            "digest": digest,
            "cipheroptions": {"nonce": STANDARD.encode(nonce)},
        })
        .to_string();
        let iv = random::<12>();
        let wrapped = Aes256Gcm::new_from_slice(kek)
            .unwrap()
            .encrypt(&Nonce::from(iv), private.as_bytes())
            .unwrap();
        let packet = serde_json::json!({
            "kid": kid,
            "wrapped_data": STANDARD.encode(wrapped),
            "iv": STANDARD.encode(iv),
            "wrap_type": "A256GCM",
        })
        .to_string();
        let pubopts = serde_json::json!({
            "cipher": "AES_256_CTR_HMAC_SHA256",
            "hmac": STANDARD.encode(hmac),
            "cipheroptions": {},
        })
        .to_string();
        let media_type = layer["mediaType"].as_str().unwrap().to_string() + "+encrypted";
        layer["mediaType"] = media_type.into();
        layer["digest"] = push_blob(host, repo, &data, dir).into();
        layer["size"] = data.len().into();
        layer["annotations"] = serde_json::json!({
            "org.opencontainers.image.enc.keys.provider.attestation-agent": STANDARD.encode(packet),
            "org.opencontainers.image.enc.pubopts": STANDARD.encode(pubopts),
        });
    }
    let manifest = manifest.to_string();
    let file = dir.join("encrypted-manifest.json");
    std::fs::write(&file, &manifest).unwrap();
    sh(
        "curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
         --data-binary \"@$3\" \"http://$1/v2/$2/manifests/$4\"",
        &[host, repo, file.to_str().unwrap(), tag],
    );
    format!("sha256:{}", sha256_hex(manifest.as_bytes()))
}

/// cosign's signature of `manifest_digest` (identity `identity`) with `<dir>/<key>.key`,
/// pushed as cosign does: an OCI manifest at tag `sha256-<hex>.sig` whose layer is the
/// simple-signing payload, the signature in its `dev.cosignproject.cosign/signature`.
fn cosign_sign(
    host: &str,
    repo: &str,
    manifest_digest: &str,
    identity: &str,
    key: &str,
    dir: &std::path::Path,
) {
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string();
    let payload_file = dir.join(format!("payload-{}", sha256_hex(payload.as_bytes())));
    std::fs::write(&payload_file, &payload).unwrap();
    let signature = sh(
        "openssl dgst -sha256 -sign \"$1\" \"$2\" | base64 -w0",
        &[
            dir.join(format!("{key}.key")).to_str().unwrap(),
            payload_file.to_str().unwrap(),
        ],
    );
    let payload_digest = push_blob(host, repo, payload.as_bytes(), dir);
    let config = serde_json::json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
    })
    .to_string();
    let config_digest = push_blob(host, repo, config.as_bytes(), dir);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(),
            "digest": payload_digest,
            "annotations": {"dev.cosignproject.cosign/signature": signature.trim()},
        }],
    })
    .to_string();
    let file = dir.join("signature-manifest.json");
    std::fs::write(&file, &manifest).unwrap();
    let tag = manifest_digest.replace(':', "-") + ".sig";
    sh(
        "curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
         --data-binary \"@$3\" \"http://$1/v2/$2/manifests/$4\"",
        &[host, repo, file.to_str().unwrap(), &tag],
    );
}

#[test]
#[ignore = "boots a VM (about a minute of TCG): make vm-test runs it"]
fn vm_image_pull_onto_overlayfs_and_policy_refusal() {
    let work = tempfile::Builder::new()
        .prefix("vmtest-img-")
        .tempdir()
        .unwrap();
    let (_registry, host, images) = serve(work.path());
    let port = host.rsplit(':').next().unwrap();
    let guest_host = format!("10.0.2.2:{port}");
    let ok = format!("{guest_host}/test/plain:v1");
    let unsigned = format!("{guest_host}/test/multi-layer:v1");
    let ok_digest = &images[&format!("{host}/test/plain:v1")];

    let wrong_key = format!("{guest_host}/test/links:v1");
    let kek = random::<32>();
    let encrypted = format!("{guest_host}/test/plain:encrypted");
    let encrypted_digest = publish_encrypted(
        &host,
        "test/plain",
        "encrypted",
        "kbs:///default/key/1",
        &kek,
        work.path(),
    );
    let policy_key = cosign_key(work.path(), "policy");
    cosign_key(work.path(), "other");
    cosign_sign(
        &host,
        "test/plain",
        ok_digest,
        &format!("{guest_host}/test/plain"),
        "policy",
        work.path(),
    );
    // encrypted for kbs:///default/key/2, which the KBC holds another key for
    let wrong_kek = format!("{guest_host}/test/plain:wrong-kek");
    let wrong_kek_digest = publish_encrypted(
        &host,
        "test/plain",
        "wrong-kek",
        "kbs:///default/key/2",
        &random::<32>(),
        work.path(),
    );
    cosign_sign(
        &host,
        "test/plain",
        &wrong_kek_digest,
        &format!("{guest_host}/test/plain"),
        "policy",
        work.path(),
    );
    cosign_sign(
        &host,
        "test/plain",
        &encrypted_digest,
        &format!("{guest_host}/test/plain"),
        "policy",
        work.path(),
    );
    cosign_sign(
        &host,
        "test/links",
        &images[&format!("{host}/test/links:v1")],
        &format!("{guest_host}/test/links"),
        "other",
        work.path(),
    );
    let signed_by_policy_key = serde_json::json!([{
        "type": "sigstoreSigned",
        "keyData": STANDARD.encode(&policy_key),
        "signedIdentity": {"type": "matchRepository"},
    }]);
    let policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            format!("{guest_host}/test"): signed_by_policy_key,
        }}
    });
    let resources = serde_json::json!({
        "default/security-policy/test": STANDARD.encode(policy.to_string()),
        "default/key/1": STANDARD.encode(kek),
        "default/key/2": STANDARD.encode(random::<32>()),
    });
    let cdh_toml = format!(
        "[kbc]\nname = \"offline_fs_kbc\"\n\n[image]\nwork_dir = \"/run/image-rs\"\n\
         image_security_policy_uri = \"kbs:///default/security-policy/test\"\n\n\
         [image.registry_config]\n[[image.registry_config.registry]]\n\
         location = \"{guest_host}\"\ninsecure = true\n"
    );
    let config = VmConfig::default()
        .env("VMTEST_SCENARIOS", "image_pull")
        .env("VMTEST_IMAGE_OK", ok.clone())
        .env("VMTEST_IMAGE_UNSIGNED", unsigned.clone())
        .env("VMTEST_IMAGE_WRONG_KEY", wrong_key.clone())
        .env("VMTEST_IMAGE_ENCRYPTED", encrypted.clone())
        .env("VMTEST_IMAGE_WRONG_KEK", wrong_kek.clone())
        .file("initdata/cdh.toml", cdh_toml)
        .file(
            "etc/aa-offline_fs_kbc-resources.json",
            resources.to_string(),
        );
    let run = vm::run(&config).unwrap();
    eprintln!(
        "image boot: QEMU wall time {:?}, launched at {} ms of uptime, pulls (ms) {:?}",
        run.wall,
        run.fact("launched").unwrap_or("?"),
        run.all("pull_ms"),
    );
    assert!(run.done(), "{}", run.report());

    // the accepted image: its manifest digest, a bundle on overlayfs, the fixture's files
    let pulled = run.fact_for("pull", "ok").unwrap_or_default();
    assert_eq!(pulled.trim(), format!("0 {ok_digest}"), "{}", run.report());
    let mount = run.fact_for("bundle_mount", "ok").unwrap_or_default();
    let m: Vec<&str> = mount.split(' ').collect();
    assert_eq!(m.get(1), Some(&"overlay"), "{mount}");
    assert!(m.get(2).is_some_and(|o| o.contains("lowerdir=")), "{mount}");
    // test_images::fixtures::plain()
    let expected = [
        ("./bin/hello", "#!/bin/sh\necho hello\n"),
        ("./etc/hostname", "plain\n"),
        ("./hello.txt", "hello coco\n"),
    ]
    .iter()
    .map(|(p, c)| format!("{}  {p}\n", sha256_hex(c.as_bytes())))
    .collect::<String>();
    assert_eq!(run.text("rootfs_sums"), expected);
    let config_json: serde_json::Value =
        serde_json::from_slice(run.files.get("config.json").unwrap()).unwrap();
    assert_eq!(config_json["root"]["path"], "rootfs", "{config_json}");

    // the unsigned image: refused by the policy, no bundle
    let refused = run.fact_for("pull", "unsigned").unwrap_or_default();
    assert!(!refused.starts_with("0 "), "{refused}");
    assert!(refused.contains("PERMISSION_DENIED"), "{refused}");
    let unsigned_digest = &images[&format!("{host}/test/multi-layer:v1")];
    assert!(
        refused.contains(&format!(
            "the signature policy refused {unsigned} ({unsigned_digest})"
        )),
        "{refused}"
    );
    assert!(
        refused.contains("a cosign signature was required, but no signature exists"),
        "{refused}"
    );
    assert_eq!(run.fact_for("bundle", "unsigned"), Some("absent"));
    assert_eq!(run.fact_for("bundle_mount", "unsigned"), Some(""));

    // signed and encrypted: the layer key unwrapped through the KBC, the same rootfs
    let pulled = run.fact_for("pull", "encrypted").unwrap_or_default();
    assert_eq!(
        pulled.trim(),
        format!("0 {encrypted_digest}"),
        "{}",
        run.report()
    );
    assert_eq!(
        run.fact_for("bundle_mount", "encrypted")
            .unwrap_or_default()
            .split(' ')
            .nth(1),
        Some("overlay")
    );
    assert_eq!(run.text("rootfs_sums.encrypted"), expected);
    assert!(run
        .text("cdh.log")
        .contains("media_type=application/vnd.oci.image.layer.v1.tar+gzip+encrypted"));
    // signed, encrypted under a KEK the KBC does not hold: refused, no bundle
    let refused = run.fact_for("pull", "wrongkek").unwrap_or_default();
    assert!(!refused.starts_with("0 "), "{refused}");
    assert!(refused.contains(&wrong_kek), "{refused}");
    assert!(refused.contains("unwrapping the key of layer"), "{refused}");
    assert_eq!(
        run.fact_for("bundle", "wrongkek"),
        Some("absent"),
        "{refused}"
    );

    // signed, but by another key than the policy's: refused, no bundle
    let refused = run.fact_for("pull", "wrongkey").unwrap_or_default();
    assert!(refused.contains("PERMISSION_DENIED"), "{refused}");
    assert!(
        refused.contains(&format!("the signature policy refused {wrong_key}")),
        "{refused}"
    );
    assert!(refused.contains("signature does not verify"), "{refused}");
    assert_eq!(run.fact_for("bundle", "wrongkey"), Some("absent"));
}
