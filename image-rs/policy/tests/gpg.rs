//! `signedBy` with real GPG simple signatures made by `skopeo copy --sign-by` on a local
//! registry: the accept/reject table over a `file://` and an `http://` lookaside, signing
//! subkeys, expired and revoked keys, the registry signature extension, keys from
//! `kbs://` resources and their bounded cache lifetime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use image_policy::{ContainersPolicy, DocumentSource, PolicyLoadError, PolicyOptions};

fn signed_by(key_path: &std::path::Path) -> String {
    format!(
        r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}]}}}}}}"#,
        key_path.display()
    )
}

/// The accept/reject table for one lookaside store, `lookaside` being its URL.
async fn table(
    env: &Env,
    store: &std::path::Path,
    lookaside: &str,
    signer: &Gpg,
    other: &Gpg,
    label: &str,
) {
    let (registries_dir, registries_yaml) = env.registries_d(
        &format!("registries-{label}"),
        &format!("file://{}", store.display()),
    );
    let repo = format!("{label}/signed");
    let signed = env
        .push_signed(signer, &registries_dir, "signed", &repo, "v1")
        .await;
    let unsigned = env
        .push(
            &format!("unsigned-{label}"),
            &format!("{label}/unsigned"),
            "v1",
        )
        .await;
    let elsewhere = env
        .push(
            &format!("elsewhere-{label}"),
            &format!("{label}/elsewhere"),
            "v1",
        )
        .await;
    assert!(
        Env::signature_path(store, &repo, &signed.digest, 1).is_file(),
        "skopeo wrote no signature"
    );

    // Reading goes through `lookaside`, which serves `store`.
    let read_yaml = format!("docker:\n  {}:\n    lookaside: {lookaside}\n", env.host());
    let _ = registries_yaml;
    let right_key = signer.write_public_key(env.dir.path(), &format!("{label}-right.gpg"));
    let wrong_key = other.write_public_key(env.dir.path(), &format!("{label}-wrong.gpg"));
    let right = policy(&signed_by(&right_key), &[&read_yaml]);
    let wrong = policy(&signed_by(&wrong_key), &[&read_yaml]);

    check(&right, &signed.request()).await.unwrap();
    check(&right, &signed.by_digest().request()).await.unwrap();
    let err = check(&wrong, &signed.request()).await.unwrap_err();
    assert!(err.message.contains("not trusted"), "{err}");
    let err = check(&right, &unsigned.request()).await.unwrap_err();
    assert!(err.message.contains("no signature exists"), "{err}");

    // The signature copied to another image's directory names the other digest.
    let copied = Env::signature_path(store, &format!("{label}/elsewhere"), &elsewhere.digest, 1);
    std::fs::create_dir_all(copied.parent().unwrap()).unwrap();
    std::fs::copy(
        Env::signature_path(store, &repo, &signed.digest, 1),
        &copied,
    )
    .unwrap();
    let err = check(&right, &elsewhere.request()).await.unwrap_err();
    assert!(err.message.contains("not for this image"), "{err}");

    // The tag now points to a changed manifest; the old signature copied next to it does
    // not cover it.
    let changed = env.push(&format!("changed-{label}"), &repo, "v1").await;
    assert_ne!(changed.digest, signed.digest);
    let err = check(&right, &changed.request()).await.unwrap_err();
    assert!(err.message.contains("no signature exists"), "{err}");
    let beside = Env::signature_path(store, &repo, &changed.digest, 1);
    std::fs::create_dir_all(beside.parent().unwrap()).unwrap();
    std::fs::copy(
        Env::signature_path(store, &repo, &signed.digest, 1),
        &beside,
    )
    .unwrap();
    let err = check(&right, &changed.request()).await.unwrap_err();
    assert!(err.message.contains("not for this image"), "{err}");

    // A valid signature for another repository does not vouch for this one.
    let renamed = env.push("signed", &format!("{label}/renamed"), "v1").await;
    assert_eq!(renamed.digest, signed.digest);
    let target = Env::signature_path(store, &format!("{label}/renamed"), &renamed.digest, 1);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(
        Env::signature_path(store, &repo, &signed.digest, 1),
        &target,
    )
    .unwrap();
    let err = check(&right, &renamed.request()).await.unwrap_err();
    assert!(err.message.contains("identity"), "{err}");

    // A second, bad signature does not spoil a good one.
    let second = Env::signature_path(store, &repo, &signed.digest, 2);
    std::fs::write(&second, b"not a signature").unwrap();
    check(&right, &signed.request()).await.unwrap();
}

#[tokio::test]
async fn skopeo_signatures_over_a_file_lookaside() {
    let env = Env::new();
    let signer = Gpg::generate("signer", KeyKind::Rsa);
    let other = Gpg::generate("other", KeyKind::Rsa);
    let store = env.path("sigstore-file");
    table(
        &env,
        &store,
        &format!("file://{}", store.display()),
        &signer,
        &other,
        "file",
    )
    .await;
}

#[tokio::test]
async fn skopeo_signatures_over_an_http_lookaside() {
    let env = Env::new();
    let signer = Gpg::generate("signer", KeyKind::Rsa);
    let other = Gpg::generate("other", KeyKind::Rsa);
    let store = env.path("sigstore-http");
    std::fs::create_dir_all(&store).unwrap();
    let server = HttpServer::serve_dir(store.clone()).await;
    table(
        &env,
        &store,
        &format!("{}/", server.url()),
        &signer,
        &other,
        "http",
    )
    .await;
    let fetched: Vec<String> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        fetched
            .iter()
            .any(|p| p.starts_with("/http/signed@sha256=") && p.ends_with("/signature-1")),
        "{fetched:?}"
    );

    // A lookaside server that fails is an error, not "no signature".
    let broken = HttpServer::start(|_| HttpResponse::status(500)).await;
    let pushed = env.fetch(&format!("{}/http/signed:v1", env.host())).await;
    let key = signer.write_public_key(env.dir.path(), "broken.gpg");
    let p = policy(
        &signed_by(&key),
        &[&format!("default-docker:\n  lookaside: {}\n", broken.url())],
    );
    let err = check(&p, &pushed.request()).await.unwrap_err();
    assert!(err.message.contains("500"), "{err}");
}

#[tokio::test]
async fn a_signing_subkey_is_accepted_and_armored_keys_load() {
    let env = Env::new();
    let signer = Gpg::generate("subkey", KeyKind::Ed25519WithSigningSubkey);
    let store = env.path("sigstore");
    let (registries_dir, yaml) =
        env.registries_d("registries", &format!("file://{}", store.display()));
    let signed = env
        .push_signed(&signer, &registries_dir, "subkey", "sub/app", "v1")
        .await;
    let armored = env.path("armored.asc");
    std::fs::write(&armored, signer.armored_public_key()).unwrap();
    check(&policy(&signed_by(&armored), &[&yaml]), &signed.request())
        .await
        .unwrap();
    let binary = signer.write_public_key(env.dir.path(), "sub.gpg");
    check(&policy(&signed_by(&binary), &[&yaml]), &signed.request())
        .await
        .unwrap();
    // keyData: the same key inline (base64), and a keyring of two keys via keyPaths.
    let other = Gpg::generate("other", KeyKind::Rsa);
    let inline = format!(
        r#"{{"default":[{{"type":"signedBy","keyType":"GPGKeys","keyData":"{}"}}]}}"#,
        b64(&signer.public_key())
    );
    check(&policy(&inline, &[&yaml]), &signed.request())
        .await
        .unwrap();
    let other_key = other.write_public_key(env.dir.path(), "other.gpg");
    let two = format!(
        r#"{{"default":[{{"type":"signedBy","keyType":"GPGKeys","keyPaths":["{}","{}"]}}]}}"#,
        other_key.display(),
        binary.display()
    );
    check(&policy(&two, &[&yaml]), &signed.request())
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_and_revoked_keys_are_refused() {
    let env = Env::new();
    let pushed = env.push("keys", "keys/app", "v1").await;
    let store = env.path("sigstore");
    let yaml = format!("default-docker:\n  lookaside: file://{}\n", store.display());
    let sig_path = Env::signature_path(&store, "keys/app", &pushed.digest, 1);
    std::fs::create_dir_all(sig_path.parent().unwrap()).unwrap();
    let identity = pushed.reference.to_string();
    let payload = simple_payload(
        "atomic container signature",
        pushed.digest.as_ref(),
        &identity,
    );

    let expired = Gpg::generate("expired", KeyKind::Expired);
    std::fs::write(
        &sig_path,
        expired.sign_payload(&payload, Some("20200201T000000")),
    )
    .unwrap();
    let key = expired.write_public_key(env.dir.path(), "expired.gpg");
    let err = check(&policy(&signed_by(&key), &[&yaml]), &pushed.request())
        .await
        .unwrap_err();
    assert!(err.message.contains("expired"), "{err}");

    let revoked = Gpg::generate("revoked", KeyKind::Rsa);
    std::fs::write(&sig_path, revoked.sign_payload(&payload, None)).unwrap();
    let key = revoked.write_public_key(env.dir.path(), "before.gpg");
    check(&policy(&signed_by(&key), &[&yaml]), &pushed.request())
        .await
        .unwrap();
    revoked.revoke();
    let key = revoked.write_public_key(env.dir.path(), "revoked.gpg");
    let err = check(&policy(&signed_by(&key), &[&yaml]), &pushed.request())
        .await
        .unwrap_err();
    assert!(err.message.contains("revoked"), "{err}");

    // A payload of the wrong type, signed by a trusted key, is refused.
    let good = Gpg::generate("good", KeyKind::Rsa);
    let cosign_typed = simple_payload(
        "cosign container image signature",
        pushed.digest.as_ref(),
        &identity,
    );
    std::fs::write(&sig_path, good.sign_payload(&cosign_typed, None)).unwrap();
    let key = good.write_public_key(env.dir.path(), "good.gpg");
    let err = check(&policy(&signed_by(&key), &[&yaml]), &pushed.request())
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("expected \"atomic container signature\""),
        "{err}"
    );
}

#[tokio::test]
async fn signatures_from_the_registry_extension() {
    let env = Env::new();
    let signer = Gpg::generate("xrss", KeyKind::Rsa);
    let image = env.push("xrss", "xrss/app", "v1").await;
    let signature = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let served = signature.clone();
    let manifest_digest = image.digest.to_string();
    // A registry front that announces the extension and wants a bearer token for it.
    let server = HttpServer::start(move |request| {
        let path = request.path.as_str();
        if path == "/v2/" {
            return HttpResponse::ok(b"{}".to_vec()).header("X-Registry-Supports-Signatures", "1");
        }
        if path.starts_with("/token?") {
            if !path.contains("scope=repository%3Axrss%2Fapp%3Apull") {
                return HttpResponse::status(403);
            }
            return HttpResponse::ok(br#"{"token":"t0k3n"}"#.to_vec());
        }
        if path == format!("/extensions/v2/xrss/app/signatures/{manifest_digest}") {
            if request.headers.get("authorization").map(String::as_str) != Some("Bearer t0k3n") {
                let realm = format!("http://{}/token", request.headers.get("host").cloned().unwrap_or_default());
                return HttpResponse::status(401).header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\",service=\"reg\""));
            }
            let content = b64(&served.lock().unwrap());
            let body = format!(
                r#"{{"signatures":[{{"schemaVersion":2,"type":"atomic","name":"{manifest_digest}@one","content":"{content}"}},{{"schemaVersion":2,"type":"other","name":"x","content":"AAAA"}}]}}"#
            );
            return HttpResponse::ok(body.into_bytes());
        }
        HttpResponse::status(404)
    })
    .await;
    let front = format!("127.0.0.1:{}", server.addr.port());
    let pulled = image.as_reference(&format!("{front}/xrss/app:v1")).await;
    *signature.lock().unwrap() =
        signer.standalone_sign(&image.manifest, &pulled.reference.to_string());
    let key = signer.write_public_key(env.dir.path(), "xrss.gpg");
    check(&policy(&signed_by(&key), &[]), &pulled.request())
        .await
        .unwrap();
    let paths: Vec<String> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(paths.iter().any(|p| p.starts_with("/token?")), "{paths:?}");
    // Another key: refused although the extension served a signature.
    let other = Gpg::generate("other", KeyKind::Rsa);
    let other_key = other.write_public_key(env.dir.path(), "other.gpg");
    let err = check(&policy(&signed_by(&other_key), &[]), &pulled.request())
        .await
        .unwrap_err();
    assert!(err.message.contains("not trusted"), "{err}");
}

#[tokio::test]
async fn keys_and_configuration_from_kbs_are_cached_for_the_ttl_only() {
    let env = Env::new();
    let signer = Gpg::generate("kbs", KeyKind::Rsa);
    let store = env.path("sigstore");
    let (registries_dir, yaml) =
        env.registries_d("registries", &format!("file://{}", store.display()));
    let signed = env
        .push_signed(&signer, &registries_dir, "kbs", "kbs/app", "v1")
        .await;

    let resources = Arc::new(MemoryResources::default());
    let policy_uri = "kbs:///default/security-policy/test";
    let key_uri = "kbs:///default/gpg-public-key/signer";
    let sigstore_uri = "kbs:///default/sigstore-config/test";
    resources.insert(
        policy_uri,
        format!(
            r#"{{"default":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{key_uri}"}}]}}"#
        )
        .into_bytes(),
    );
    resources.insert(key_uri, signer.public_key());
    resources.insert(sigstore_uri, yaml.into_bytes());

    let options = |ttl| {
        let mut o = PolicyOptions::new(DocumentSource::Uri(policy_uri.into()));
        o.registries_d = vec![DocumentSource::Uri(sigstore_uri.into())];
        o.resource_ttl = ttl;
        o
    };
    let cached =
        ContainersPolicy::new(options(Duration::from_secs(3600)), resources.clone()).unwrap();
    cached.preload().await.unwrap();
    for _ in 0..3 {
        check(&cached, &signed.request()).await.unwrap();
    }
    assert_eq!(resources.fetch_count(policy_uri), 1);
    assert_eq!(resources.fetch_count(key_uri), 1);
    assert_eq!(resources.fetch_count(sigstore_uri), 1);

    let short =
        ContainersPolicy::new(options(Duration::from_millis(300)), resources.clone()).unwrap();
    check(&short, &signed.request()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The key was rotated in the KBS: once the TTL is over, the new key is the one used.
    let rotated = Gpg::generate("rotated", KeyKind::Rsa);
    resources.insert(key_uri, rotated.public_key());
    let err = check(&short, &signed.request()).await.unwrap_err();
    assert!(err.message.contains("not trusted"), "{err}");
    assert_eq!(resources.fetch_count(key_uri), 3);

    // A resource that cannot be fetched denies the pull with the reason.
    resources.resources.lock().unwrap().remove(key_uri);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = check(&short, &signed.request()).await.unwrap_err();
    assert!(
        err.message.contains(key_uri) && err.message.contains("no such resource"),
        "{err}"
    );

    // preload reports bad documents and keys as load errors.
    resources.insert(key_uri, b"not a key".to_vec());
    let bad = ContainersPolicy::new(options(Duration::ZERO), resources.clone()).unwrap();
    assert!(matches!(
        bad.preload().await.unwrap_err(),
        PolicyLoadError::Key { .. }
    ));
    resources.insert(policy_uri, br#"{"default":[]}"#.to_vec());
    assert!(matches!(
        bad.preload().await.unwrap_err(),
        PolicyLoadError::Policy { .. }
    ));
    let err = check(&bad, &signed.request()).await.unwrap_err();
    assert!(err.message.contains("must not be empty"), "{err}");
}
