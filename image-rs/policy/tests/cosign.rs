//! `sigstoreSigned` with cosign-format signatures made here (keys and signatures by
//! `openssl`, pushed as the `sha256-<hex>.sig` tag of a real registry): the accept/reject
//! table, every key type, identities, multi-arch index signatures, and signatures read
//! with the pull's own registry access (TLS CA, token auth).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use image_policy::{ContainersPolicy, DocumentSource, PolicyLoadError, PolicyOptions};
use image_rs::Digest;
use image_rs::PolicyRequest;
use image_rs::{ImageClient, ImageConfig, PullError, PullOptions};
use oci_model::OCI_MANIFEST;
use test_images::RegistryOptions;

const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const COSIGN_TYPE: &str = "cosign container image signature";

/// An openssl key pair.
struct Key {
    private: PathBuf,
    public: PathBuf,
    ed25519: bool,
}

impl Key {
    fn generate(dir: &Path, name: &str, kind: &str) -> Self {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        let mut gen = Command::new("openssl");
        match kind {
            "p256" | "p384" => {
                let curve = if kind == "p256" {
                    "prime256v1"
                } else {
                    "secp384r1"
                };
                gen.args(["ecparam", "-name", curve, "-genkey", "-noout", "-out"])
                    .arg(&private);
            }
            "ed25519" => {
                gen.args(["genpkey", "-algorithm", "ed25519", "-out"])
                    .arg(&private);
            }
            "rsa" => {
                gen.args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                ])
                .arg(&private);
            }
            other => panic!("{other}"),
        }
        run(&mut gen);
        run(Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&private)
            .arg("-pubout")
            .arg("-out")
            .arg(&public));
        Self {
            private,
            public,
            ed25519: kind == "ed25519",
        }
    }

    /// cosign's signature: ECDSA/RSA over SHA-256 of the payload, Ed25519 over the payload.
    fn sign(&self, payload: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("payload");
        let output = dir.path().join("sig");
        std::fs::write(&input, payload).unwrap();
        if self.ed25519 {
            run(Command::new("openssl")
                .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
                .arg(&self.private)
                .arg("-in")
                .arg(&input)
                .arg("-out")
                .arg(&output));
        } else {
            run(Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&self.private)
                .arg("-out")
                .arg(&output)
                .arg(&input));
        }
        b64(&std::fs::read(output).unwrap())
    }

    fn public_pem(&self) -> Vec<u8> {
        std::fs::read(&self.public).unwrap()
    }
}

fn sigstore_policy(key_field: &str, identity: Option<&str>) -> String {
    let identity = identity
        .map(|i| format!(r#","signedIdentity":{i}"#))
        .unwrap_or_default();
    format!(
        r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"":[{{"type":"sigstoreSigned",{key_field}{identity}}}]}}}}}}"#
    )
}

fn key_path_policy(key: &Key, identity: Option<&str>) -> String {
    sigstore_policy(
        &format!(r#""keyPath":"{}""#, key.public.display()),
        identity,
    )
}

/// Pushes a cosign signature manifest with `layers` (payload, annotation) as the `.sig`
/// tag of `digest` in `repo`.
async fn push_signatures(
    env: &Env,
    repo: &str,
    digest: &Digest,
    layers: &[(Vec<u8>, Option<String>)],
) {
    let mut descriptors = Vec::new();
    for (payload, signature) in layers {
        let mut descriptor = env.layout.write_blob(payload, SIMPLESIGNING).unwrap();
        if let Some(signature) = signature {
            descriptor.annotations = BTreeMap::from([(
                "dev.cosignproject.cosign/signature".to_string(),
                signature.clone(),
            )]);
        }
        descriptors.push(descriptor);
    }
    let config = env
        .layout
        .write_blob(
            br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#,
            "application/vnd.oci.image.config.v1+json",
        )
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": descriptors,
    });
    let manifest = env
        .layout
        .write_blob(&serde_json::to_vec(&manifest).unwrap(), OCI_MANIFEST)
        .unwrap();
    env.push_descriptor(&manifest, repo, &format!("sha256-{}.sig", digest.hex()))
        .await;
}

fn cosign_payload(digest: &Digest, identity: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{identity}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{COSIGN_TYPE}"}},"optional":null}}"#
    )
    .into_bytes()
}

async fn sign_and_push(env: &Env, key: &Key, repo: &str, digest: &Digest, identity: &str) {
    let payload = cosign_payload(digest, identity);
    let signature = key.sign(&payload);
    push_signatures(env, repo, digest, &[(payload, Some(signature))]).await;
}

#[tokio::test]
async fn cosign_accept_reject_table() {
    let env = Env::new();
    let key = Key::generate(env.dir.path(), "signer", "p256");
    let other = Key::generate(env.dir.path(), "other", "p256");
    let signed = env.push("cosigned", "cos/app", "v1").await;
    let identity = signed.reference.to_string();
    sign_and_push(&env, &key, "cos/app", &signed.digest, &identity).await;
    let unsigned = env.push("unsigned", "cos/unsigned", "v1").await;

    let right = policy(&key_path_policy(&key, None), &[]);
    check(&right, &signed.request()).await.unwrap();
    check(&right, &signed.by_digest().request()).await.unwrap();
    // keyData is base64 of the PEM, as containers/image reads it.
    let inline = policy(
        &sigstore_policy(&format!(r#""keyData":"{}""#, b64(&key.public_pem())), None),
        &[],
    );
    check(&inline, &signed.request()).await.unwrap();
    let both = policy(
        &sigstore_policy(
            &format!(
                r#""keyPaths":["{}","{}"]"#,
                other.public.display(),
                key.public.display()
            ),
            None,
        ),
        &[],
    );
    check(&both, &signed.request()).await.unwrap();

    let wrong = policy(&key_path_policy(&other, None), &[]);
    let err = check(&wrong, &signed.request()).await.unwrap_err();
    assert!(err.message.contains("not signed by a trusted key"), "{err}");
    let err = check(&right, &unsigned.request()).await.unwrap_err();
    assert!(err.message.contains("no signature exists"), "{err}");

    // A valid signature of another image, attached to this one.
    let elsewhere = env.push("elsewhere", "cos/elsewhere", "v1").await;
    let payload = cosign_payload(&signed.digest, &identity);
    let signature = key.sign(&payload);
    push_signatures(
        &env,
        "cos/elsewhere",
        &elsewhere.digest,
        &[(payload.clone(), Some(signature.clone()))],
    )
    .await;
    let err = check(&right, &elsewhere.request()).await.unwrap_err();
    assert!(err.message.contains("not for this image"), "{err}");

    // The tag moved to a changed manifest: no signature for it; the old one copied to it
    // does not cover it.
    let changed = env.push("changed", "cos/app", "v1").await;
    let err = check(&right, &changed.request()).await.unwrap_err();
    assert!(err.message.contains("no signature exists"), "{err}");
    push_signatures(
        &env,
        "cos/app",
        &changed.digest,
        &[(payload, Some(signature))],
    )
    .await;
    let err = check(&right, &changed.request()).await.unwrap_err();
    assert!(err.message.contains("not for this image"), "{err}");

    // A tampered payload, and a layer without its signature annotation.
    let tampered = cosign_payload(&signed.digest, &format!("{}/cos/app:v2", env.host()));
    push_signatures(
        &env,
        "cos/unsigned",
        &unsigned.digest,
        &[
            (tampered, Some(key.sign(b"something else"))),
            (
                cosign_payload(&unsigned.digest, &unsigned.reference.to_string()),
                None,
            ),
        ],
    )
    .await;
    let err = check(&right, &unsigned.request()).await.unwrap_err();
    assert!(err.message.contains("not signed by a trusted key"), "{err}");
    assert!(
        err.message
            .contains("no dev.cosignproject.cosign/signature annotation"),
        "{err}"
    );

    // A GPG-style payload type signed with the cosign key is not a cosign signature.
    let wrong_type = simple_payload(
        "atomic container signature",
        unsigned.digest.as_ref(),
        &unsigned.reference.to_string(),
    );
    let wrong_type_sig = key.sign(&wrong_type);
    push_signatures(
        &env,
        "cos/unsigned",
        &unsigned.digest,
        &[(wrong_type, Some(wrong_type_sig))],
    )
    .await;
    let err = check(&right, &unsigned.request()).await.unwrap_err();
    assert!(
        err.message
            .contains("expected \"cosign container image signature\""),
        "{err}"
    );
}

#[tokio::test]
async fn identities_are_checked_by_default() {
    let env = Env::new();
    let key = Key::generate(env.dir.path(), "signer", "p256");
    let image = env.push("ident", "ident/app", "v1").await;
    let other_tag = format!("{}/ident/app:v2", env.host());
    sign_and_push(&env, &key, "ident/app", &image.digest, &other_tag).await;
    // upstream image-rs skipped the identity check when signedIdentity was absent
    let default = policy(&key_path_policy(&key, None), &[]);
    let err = check(&default, &image.request()).await.unwrap_err();
    assert!(err.message.contains("identity"), "{err}");
    // by digest, any tag of the repository is fine (the digest binds the content)
    check(&default, &image.by_digest().request()).await.unwrap();
    let repository = policy(
        &key_path_policy(&key, Some(r#"{"type":"matchRepository"}"#)),
        &[],
    );
    check(&repository, &image.request()).await.unwrap();
    let exact = policy(
        &key_path_policy(
            &key,
            Some(&format!(
                r#"{{"type":"exactReference","dockerReference":"{other_tag}"}}"#
            )),
        ),
        &[],
    );
    check(&exact, &image.request()).await.unwrap();

    sign_and_push(
        &env,
        &key,
        "ident/app",
        &image.digest,
        "quay.io/someone/else:v1",
    )
    .await;
    let err = check(&repository, &image.request()).await.unwrap_err();
    assert!(err.message.contains("quay.io/someone/else:v1"), "{err}");
    let exact_repo = policy(
        &key_path_policy(
            &key,
            Some(r#"{"type":"exactRepository","dockerRepository":"quay.io/someone/else"}"#),
        ),
        &[],
    );
    check(&exact_repo, &image.request()).await.unwrap();
    let remap = policy(
        &key_path_policy(
            &key,
            Some(&format!(
                r#"{{"type":"remapIdentity","prefix":"{}/ident","signedPrefix":"quay.io/someone"}}"#,
                env.host()
            )),
        ),
        &[],
    );
    let renamed = image
        .as_reference(&format!("{}/ident/else:v1", env.host()))
        .await;
    // the signature is attached to ident/app; the renamed reference is judged under the
    // requested name but signatures are read where it was pulled from
    let request = PolicyRequest {
        requested: &renamed.reference,
        pulled: &image.reference,
        ..image.request()
    };
    let err = check(&remap, &request).await.unwrap_err();
    assert!(err.message.contains("pulled reference"), "{err}");
    let remap_any = policy(
        &format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{host}/ident/else":[{{"type":"sigstoreSigned","keyPath":"{key}","signedIdentity":{{"type":"remapIdentity","prefix":"{host}/ident","signedPrefix":"quay.io/someone"}}}}],"{host}/ident/app":[{{"type":"sigstoreSigned","keyPath":"{key}","signedIdentity":{{"type":"matchRepository"}}}}]}}}}}}"#,
            host = env.host(),
            key = key.public.display()
        ),
        &[],
    );
    let err = check(&remap_any, &request).await.unwrap_err();
    assert!(
        err.message.contains("pulled reference") && err.message.contains("quay.io/someone/else:v1"),
        "{err}"
    );
    sign_and_push(
        &env,
        &key,
        "ident/app",
        &image.digest,
        &format!("{}/ident/app:v1", env.host()),
    )
    .await;
    let err = check(&remap_any, &request).await.unwrap_err();
    assert!(err.message.contains("requested reference"), "{err}");
}

#[tokio::test]
async fn every_key_type_verifies() {
    let env = Env::new();
    for kind in ["p256", "p384", "ed25519", "rsa"] {
        let key = Key::generate(env.dir.path(), kind, kind);
        let other = Key::generate(env.dir.path(), &format!("{kind}-other"), kind);
        let image = env.push(kind, &format!("keys/{kind}"), "v1").await;
        sign_and_push(
            &env,
            &key,
            &format!("keys/{kind}"),
            &image.digest,
            &image.reference.to_string(),
        )
        .await;
        check(&policy(&key_path_policy(&key, None), &[]), &image.request())
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let err = check(
            &policy(&key_path_policy(&other, None), &[]),
            &image.request(),
        )
        .await
        .unwrap_err();
        assert!(
            err.message.contains("not signed by a trusted key"),
            "{kind}: {err}"
        );
    }
}

#[tokio::test]
async fn index_signatures_cover_the_selected_manifest() {
    let env = Env::new();
    let key = Key::generate(env.dir.path(), "signer", "p256");
    let index = test_images::fixtures::write_multi_arch(&env.layout).unwrap();
    env.push_descriptor(&index, "multi/app", "v1").await;
    let top = env.fetch(&format!("{}/multi/app:v1", env.host())).await;
    let entries: serde_json::Value = serde_json::from_slice(&top.manifest).unwrap();
    let amd64_digest = entries["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let amd64 = env
        .fetch(&format!("{}/multi/app@{amd64_digest}", env.host()))
        .await;
    let p = policy(&key_path_policy(&key, None), &[]);
    let requested = top.reference.clone();
    let selected = PolicyRequest {
        requested: &requested,
        pulled: &requested,
        manifest_digest: &amd64.digest,
        index_digest: Some(&top.digest),
        manifest: &amd64.manifest,
        repository: &top.repository,
    };
    let err = check(&p, &selected).await.unwrap_err();
    assert!(err.message.contains("no signature exists"), "{err}");

    // cosign signs the digest the tag points to: the index
    sign_and_push(&env, &key, "multi/app", &top.digest, &requested.to_string()).await;
    check(&p, &selected).await.unwrap();
    // the index signature does not vouch for a manifest pulled without that index
    let direct = PolicyRequest {
        index_digest: None,
        ..selected
    };
    let err = check(&p, &direct).await.unwrap_err();
    assert!(err.message.contains("no signature exists"), "{err}");
    // a signature of the platform manifest itself is accepted too
    sign_and_push(
        &env,
        &key,
        "multi/app",
        &amd64.digest,
        &requested.to_string(),
    )
    .await;
    check(&p, &direct).await.unwrap();
}

/// The policy has no registry settings of its own: the cosign tag of an image on a TLS
/// registry with token auth is read with the pull's CA and auth.json credentials.
#[tokio::test]
async fn signatures_are_read_with_the_pulls_own_registry_access() {
    let env = Env::with_options(RegistryOptions {
        tls: true,
        token_auth: Some(("erin".into(), "signatures".into())),
        ..RegistryOptions::default()
    });
    let key = Key::generate(env.dir.path(), "signer", "p256");
    let signed = env.push("private-signed", "private/app", "v1").await;
    sign_and_push(
        &env,
        &key,
        "private/app",
        &signed.digest,
        &signed.reference.to_string(),
    )
    .await;
    let unsigned = env.push("private-unsigned", "private/other", "v1").await;

    let auth = env.path("auth.json");
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            env.host(),
            b64(b"erin:signatures")
        ),
    )
    .unwrap();
    let mut config = ImageConfig::with_work_dir(env.path("work"));
    config.extra_root_certificates = vec![env.registry.ca_pem().unwrap().to_string()];
    config.authenticated_registry_credentials_uri = Some(format!("file://{}", auth.display()));
    let client = ImageClient::new(config)
        .await
        .unwrap()
        .with_signature_policy(Arc::new(policy(&key_path_policy(&key, None), &[])));

    let pulled = client
        .pull_layers(&signed.reference.to_string(), &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, signed.digest);
    let err = client
        .pull_layers(&unsigned.reference.to_string(), &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PullError::PolicyDenied { message, .. } if message.contains("no signature exists")),
        "{err}"
    );
}

#[test]
fn keyless_policies_are_refused_at_load() {
    let keyless = r#"{"default":[{"type":"sigstoreSigned","fulcio":{"caPath":"/ca.pem","oidcIssuer":"https://issuer","subjectEmail":"a@b"},"rekorPublicKeyPath":"/rekor.pub"}]}"#;
    let err = ContainersPolicy::new(
        PolicyOptions::new(DocumentSource::Inline(keyless.into())),
        Arc::new(image_rs::LocalResources),
    )
    .unwrap_err();
    assert!(
        matches!(&err, PolicyLoadError::Policy { message, .. } if message.contains("keyless")),
        "{err}"
    );
}
