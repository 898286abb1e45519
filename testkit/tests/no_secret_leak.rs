//! Secrets never leak: the three daemons at trace level through a run that moves every
//! kind of secret they handle over the wire (a KBS resource, a sealed secret's plaintext,
//! the TEE private key and the KBS token, an encrypted image's layer key and its KEK, a
//! registry password from an auth.json), then every byte they logged and every file
//! written in their runtime directory outside the secret locations (the pulled image's
//! store and bundle included) is searched for those secrets, raw and in base64 and hex.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{io::Read as _, path::Path, process::Command, sync::Arc};

use base64::Engine;
use ocicrypt_rs::{
    finalize_encryption,
    keywrap::{
        keyprovider::{KekKeyProvider, KeyProviderKeyWrapper, KeyProviderTransport, WrapType},
        KeyWrappers,
    },
    EncryptingReader,
};
use protos::{api, api_ttrpc};
use test_images::{Compression, Entry, ImageSpec, LayerSpec, OciLayout, Registry, RegistryOptions};
use testkit::{
    kbs::{KbsConfig, TestKbs},
    process::workspace_bin,
    suite::{KbcSetup, Suite},
};

const RESOURCE: &[u8] = b"leak-probe resource 7d1c9e4b2a";
const SEALED_PLAINTEXT: &[u8] = b"leak-probe sealed 5f0a83c6e1";
const REGISTRY_USER: &str = "leak-user";
const REGISTRY_PASSWORD: &str = "leak-probe-registry-pw-91c4e2";
const KEK_ID: &str = "kbs:///default/image-kek/1";

/// The KEK of the encrypted image (a KBS resource).
fn kek() -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(29).wrapping_add(11))
        .collect()
}

/// Publishes a one-layer image encrypted for the `attestation-agent` keyprovider with
/// [`kek`] as `repo:v1`; returns the layer's symmetric key.
async fn publish_encrypted(registry: &Registry, layout: &OciLayout, repo: &str) -> Vec<u8> {
    let spec = ImageSpec::new(vec![LayerSpec::new(
        Compression::Gzip,
        vec![Entry::file(
            "app/hello.txt",
            "hello from an encrypted layer\n",
        )],
    )]);
    let built = layout.write_image(&spec).unwrap();
    let mut provider = KekKeyProvider::new();
    provider.add_kek(KEK_ID, &kek()).unwrap();
    provider.set_wrap_type(WrapType::A256Gcm);
    let mut wrappers = KeyWrappers::new();
    wrappers.add(
        KeyProviderKeyWrapper::new(
            "attestation-agent",
            KeyProviderTransport::InProcess(Arc::new(provider)),
        )
        .unwrap()
        .with_wrap_params(vec![]),
    );
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&layout.read_blob(built.manifest.digest.as_str()).unwrap()).unwrap();
    let layer = &mut manifest["layers"][0];
    let media_type = layer["mediaType"].as_str().unwrap().to_string();
    let digest = layer["digest"].as_str().unwrap().to_string();
    let plain = layout.read_blob(&digest).unwrap();
    let mut reader = EncryptingReader::new(plain.as_slice(), Some(&digest)).unwrap();
    let mut blob = Vec::new();
    reader.read_to_end(&mut blob).unwrap();
    let options = reader.finish().unwrap();
    let encrypted_type = format!("{media_type}+encrypted");
    let encrypted = finalize_encryption(&options, &encrypted_type, &wrappers)
        .await
        .unwrap();
    let written = layout.write_blob(&blob, &encrypted_type).unwrap();
    layer["mediaType"] = encrypted_type.into();
    layer["digest"] = written.digest.as_str().into();
    layer["size"] = written.size.into();
    layer["annotations"] = serde_json::to_value(&encrypted.annotations).unwrap();
    let written = layout
        .write_blob(
            &serde_json::to_vec(&manifest).unwrap(),
            &built.manifest.media_type,
        )
        .unwrap();
    test_images::push_image(layout, &written, &registry.target(), repo, "v1")
        .await
        .unwrap();
    options.private.symmetric_key.to_vec()
}

/// A secret's encodings, each named.
type Forms = Vec<(String, Vec<u8>)>;

/// The forms a secret may take in a log line or a file.
fn forms(secret: &[u8]) -> Forms {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    vec![
        ("raw".into(), secret.to_vec()),
        (
            "base64".into(),
            b64.encode(secret).trim_end_matches('=').as_bytes().to_vec(),
        ),
        ("base64url".into(), b64url.encode(secret).into_bytes()),
        ("hex".into(), hex::encode(secret).into_bytes()),
        (
            "debug bytes".into(),
            format!("{:?}", &secret[..8]).into_bytes(),
        ),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every regular file under `dir`, with its bytes.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files(&path, out);
        } else if kind.is_file() {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_or_a_file_at_trace_level() {
    // every daemon started below inherits it (this binary has no other test)
    std::env::set_var("RUST_LOG", "trace");
    let kbs = TestKbs::start(KbsConfig::default()).await.unwrap();
    kbs.put_resource("default/key/1", RESOURCE);
    kbs.put_resource("default/app/sealed-value", SEALED_PLAINTEXT);
    let suite = Suite::new(&KbcSetup::CcKbc {
        url: kbs.url(),
        ca_pem: None,
    })
    .unwrap();

    // An encrypted image in a registry that wants a password; its KEK and the auth.json
    // come from the KBS, as in a pod.
    let registry = tokio::task::block_in_place(|| {
        Registry::start(RegistryOptions {
            credentials: Some((REGISTRY_USER.into(), REGISTRY_PASSWORD.into())),
            ..RegistryOptions::default()
        })
    })
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(scratch.path().join("oci")).unwrap();
    let layer_key = publish_encrypted(&registry, &layout, "leak/encrypted").await;
    kbs.put_resource("default/image-kek/1", kek());
    let auth = serde_json::json!({"auths": {registry.host(): {"auth":
        base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"))}}});
    kbs.put_resource("default/credential/auth", auth.to_string().into_bytes());
    let mut cdh_config = std::fs::read_to_string(suite.path("cdh.toml")).unwrap();
    cdh_config.push_str(&format!(
        "[image]\nwork_dir = \"{}\"\nsnapshotter = \"flatten\"\n\
         authenticated_registry_credentials_uri = \"kbs:///default/credential/auth\"\n\
         [image.registry_config]\n[[image.registry_config.registry]]\nlocation = \"{}\"\ninsecure = true\n",
        suite.path("image-work").display(),
        registry.host()
    ));
    std::fs::write(suite.path("cdh.toml"), cdh_config).unwrap();

    // the sealed secret's signing key, published in the KBS
    let keys = suite.path("signing-keys");
    let secret_tool = workspace_bin("secret").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&secret_tool).args(args).output().unwrap();
        assert!(out.status.success(), "secret {args:?}: {out:?}");
        out.stdout
    };
    run(&[
        "keygen",
        "--kid",
        "leak",
        "--output-dir",
        keys.to_str().unwrap(),
    ]);
    kbs.put_resource(
        "default/sealing-key/leak",
        std::fs::read(keys.join("public.jwk")).unwrap(),
    );
    let sealed = run(&[
        "seal",
        "--signing-kid",
        "kbs:///default/sealing-key/leak",
        "--signing-jwk-path",
        keys.join("private.jwk").to_str().unwrap(),
        "vault",
        "--resource-uri",
        "kbs:///default/app/sealed-value",
        "--provider",
        "kbs",
    ]);
    std::fs::remove_dir_all(&keys).unwrap();

    let daemons = suite.start_all().unwrap();

    let get = |path: &str| tokio::task::block_in_place(|| suite.get(path)).unwrap();
    let (status, body) = get("/cdh/resource/default/key/1");
    assert_eq!((status, body.as_slice()), (200, RESOURCE));
    let (status, body) = get("/aa/token?token_type=kbs");
    assert_eq!(status, 200);
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let jwt = token["token"].as_str().unwrap().to_string();
    let tee_key_pem = token["tee_keypair"].as_str().unwrap().to_string();

    let client = ttrpc::r#async::Client::connect(&format!("unix://{}", suite.cdh_sock.display()))
        .await
        .unwrap();
    let unsealed = api_ttrpc::SealedSecretServiceClient::new(client)
        .unseal_secret(
            ttrpc::context::with_timeout(20_000_000_000),
            &api::UnsealSecretInput {
                secret: String::from_utf8(sealed)
                    .unwrap()
                    .trim()
                    .as_bytes()
                    .to_vec(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(unsealed.plaintext, SEALED_PLAINTEXT);

    // the encrypted image, with the registry password from the auth.json
    let bundle = suite.path("bundle");
    let client = ttrpc::r#async::Client::connect(&format!("unix://{}", suite.cdh_sock.display()))
        .await
        .unwrap();
    let pulled = api_ttrpc::ImagePullServiceClient::new(client)
        .pull_image(
            ttrpc::context::with_timeout(120_000_000_000),
            &api::ImagePullRequest {
                image_url: format!("{}/leak/encrypted:v1", registry.host()),
                bundle_path: bundle.display().to_string(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(pulled.manifest_digest.starts_with("sha256:"));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/app/hello.txt")).unwrap(),
        "hello from an encrypted layer\n"
    );

    for daemon in daemons.into_iter().rev() {
        daemon.stop().unwrap();
    }

    // the TEE private key, by the base64 body of its PEM lines; the token by its signature
    let key_body: String = tee_key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let jwt_signature = jwt.rsplit('.').next().unwrap().to_string();
    let basic = format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}");
    let mut secrets: Vec<(&str, Forms)> = vec![
        ("KBS resource", forms(RESOURCE)),
        ("sealed secret plaintext", forms(SEALED_PLAINTEXT)),
        ("layer key", forms(&layer_key)),
        ("layer KEK", forms(&kek())),
        ("registry password", forms(REGISTRY_PASSWORD.as_bytes())),
        ("registry basic credentials", forms(basic.as_bytes())),
    ];
    secrets.push((
        "TEE private key",
        vec![("PEM body".into(), key_body.as_bytes()[..48].to_vec())],
    ));
    secrets.push((
        "KBS token",
        vec![("signature".into(), jwt_signature.as_bytes().to_vec())],
    ));

    // everything the run wrote: every file of the runtime directory, the daemons' stderr
    // logs included (the credentials directory `kbs/` is a secret location)
    let mut written = Vec::new();
    files(suite.dir(), &mut written);
    written.retain(|(path, _)| !path.contains("/kbs/"));
    let logs: Vec<&(String, Vec<u8>)> = written
        .iter()
        .filter(|(path, _)| path.ends_with(".stderr"))
        .collect();
    assert_eq!(
        logs.len(),
        3,
        "{:?}",
        written.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    // the logs are really at trace level
    for (path, log) in &logs {
        assert!(contains(log, b"TRACE"), "no trace output in {path}");
    }
    for (what, forms) in &secrets {
        for (form, needle) in forms {
            for (place, bytes) in &written {
                assert!(
                    !contains(bytes, needle),
                    "the {what} ({form}) is in {place}"
                );
            }
        }
    }
}
