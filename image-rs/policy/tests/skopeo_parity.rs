//! The same policies judged by us and by `skopeo --policy … copy` (containers/image, the
//! reference implementation) on the same registry, lookaside store and signatures: scope
//! precedence, and every `signedIdentity` type. Each case also has its expected verdict
//! written down, so a case where both implementations go wrong still fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;

/// skopeo's verdict on pulling `reference` under `policy_json`.
fn skopeo_allows(
    env: &Env,
    policy_json: &str,
    registries_d: &std::path::Path,
    reference: &str,
    case: usize,
) -> bool {
    let policy_path = env.path(&format!("skopeo-policy-{case}.json"));
    std::fs::write(&policy_path, policy_json).unwrap();
    let destination = env.path(&format!("skopeo-copy-{case}"));
    let output = Command::new("skopeo")
        .arg("--policy")
        .arg(&policy_path)
        .arg("--registries.d")
        .arg(registries_d)
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", destination.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // a refusal must be a policy refusal, not a failure to reach the image
        assert!(
            stderr.contains("rejected")
                || stderr.contains("Source image rejected")
                || stderr.contains("not accepted"),
            "case {case}: skopeo failed for another reason: {stderr}"
        );
    }
    output.status.success()
}

#[tokio::test]
async fn scope_precedence_matches_skopeo() {
    let env = Env::new();
    let host = env.host();
    for repo in ["scope/app", "scope/other", "else/x"] {
        env.push("scope", repo, "v1").await;
        env.push("scope", repo, "v2").await;
    }
    let registries_d = env.path("registries.d");
    std::fs::create_dir_all(&registries_d).unwrap();
    let accept = r#"[{"type":"insecureAcceptAnything"}]"#;
    let reject = r#"[{"type":"reject"}]"#;
    let policy_with = |scopes: &[(&str, &str)], default: &str| {
        let scopes: Vec<String> = scopes
            .iter()
            .map(|(k, v)| format!(r#""{k}":{v}"#))
            .collect();
        format!(
            r#"{{"default":{default},"transports":{{"docker":{{{}}}}}}}"#,
            scopes.join(",")
        )
    };
    let full = policy_with(
        &[
            (&format!("{host}/scope/app:v1"), accept),
            (&format!("{host}/scope/app"), reject),
            (&format!("{host}/scope"), accept),
            (&host, reject),
            ("*.0.0.1", accept),
            ("", accept),
        ],
        reject,
    );
    let wildcard = policy_with(
        &[
            (&format!("{host}/scope"), reject),
            ("*.0.0.1", accept),
            ("", reject),
        ],
        reject,
    );
    let wildcard_short = policy_with(&[("*.1", reject), ("", accept)], accept);
    let transport_default =
        policy_with(&[(&format!("{host}/scope"), reject), ("", accept)], reject);
    let global_default = policy_with(&[(&format!("{host}/scope"), accept)], reject);
    let other_registry = policy_with(&[("quay.io", reject), ("", accept)], reject);
    let cases: Vec<(&str, String, bool)> = vec![
        (&full, format!("{host}/scope/app:v1"), true),
        (&full, format!("{host}/scope/app:v2"), false),
        (&full, format!("{host}/scope/other:v1"), true),
        (&full, format!("{host}/else/x:v1"), false),
        (&wildcard, format!("{host}/else/x:v1"), true),
        (&wildcard, format!("{host}/scope/app:v1"), false),
        (&wildcard_short, format!("{host}/else/x:v1"), false),
        (&transport_default, format!("{host}/else/x:v2"), true),
        (&transport_default, format!("{host}/scope/other:v2"), false),
        (&global_default, format!("{host}/else/x:v1"), false),
        (&global_default, format!("{host}/scope/app:v1"), true),
        (&other_registry, format!("{host}/scope/app:v1"), true),
    ];
    for (number, (policy_json, reference, expected)) in cases.into_iter().enumerate() {
        let pushed = env.fetch(&reference).await;
        let ours = check(&policy(policy_json, &[]), &pushed.request()).await;
        let skopeo = skopeo_allows(&env, policy_json, &registries_d, &reference, number);
        assert_eq!(
            ours.is_ok(),
            expected,
            "case {number} {reference}: ours {ours:?}\n{policy_json}"
        );
        assert_eq!(
            skopeo, expected,
            "case {number} {reference}: skopeo disagrees with the expectation\n{policy_json}"
        );
    }
}

#[tokio::test]
async fn signed_identities_match_skopeo() {
    let env = Env::new();
    let host = env.host();
    let signer = Gpg::generate("parity", KeyKind::Rsa);
    let key = signer.write_public_key(env.dir.path(), "parity.gpg");
    let app_v1 = env.push("parity", "parity/app", "v1").await;
    env.push("parity", "parity/app", "v2").await;
    let store = env.path("sigstore");
    let (registries_d, yaml) =
        env.registries_d("registries.d", &format!("file://{}", store.display()));
    let digest = app_v1.digest.clone();
    let by_digest = format!("{host}/parity/app@{digest}");
    let app = |tag: &str| format!("{host}/parity/app:{tag}");

    // (identity the signature claims, signedIdentity, reference pulled, expected verdict)
    let cases: Vec<(String, Option<String>, String, bool)> = vec![
        (app("v1"), None, app("v1"), true),
        (app("v1"), None, app("v2"), false),
        (app("v1"), None, by_digest.clone(), true),
        (
            app("v1"),
            Some(r#"{"type":"matchRepoDigestOrExact"}"#.into()),
            app("v2"),
            false,
        ),
        (
            app("v1"),
            Some(r#"{"type":"matchExact"}"#.into()),
            app("v1"),
            true,
        ),
        (
            app("v1"),
            Some(r#"{"type":"matchExact"}"#.into()),
            by_digest.clone(),
            false,
        ),
        (
            format!("{host}/parity/app@{digest}"),
            Some(r#"{"type":"matchExact"}"#.into()),
            by_digest.clone(),
            true,
        ),
        (
            app("v2"),
            Some(r#"{"type":"matchRepository"}"#.into()),
            app("v1"),
            true,
        ),
        (
            format!("{host}/parity/other:v1"),
            Some(r#"{"type":"matchRepository"}"#.into()),
            app("v1"),
            false,
        ),
        (
            format!("{host}/parity/other:v1"),
            Some(format!(
                r#"{{"type":"exactReference","dockerReference":"{host}/parity/other:v1"}}"#
            )),
            app("v1"),
            true,
        ),
        (
            format!("{host}/parity/other:v9"),
            Some(format!(
                r#"{{"type":"exactReference","dockerReference":"{host}/parity/other:v1"}}"#
            )),
            app("v1"),
            false,
        ),
        (
            format!("{host}/parity/other:v9"),
            Some(format!(
                r#"{{"type":"exactRepository","dockerRepository":"{host}/parity/other"}}"#
            )),
            app("v1"),
            true,
        ),
        (
            "quay.io/parity/app:v1".into(),
            Some(format!(
                r#"{{"type":"remapIdentity","prefix":"{host}/parity","signedPrefix":"quay.io/parity"}}"#
            )),
            app("v1"),
            true,
        ),
        (
            "quay.io/parity/app:v1".into(),
            Some(format!(
                r#"{{"type":"remapIdentity","prefix":"{host}/parity","signedPrefix":"quay.io/parity"}}"#
            )),
            app("v2"),
            false,
        ),
        (
            "quay.io/parity/app:v1".into(),
            Some(format!(
                r#"{{"type":"remapIdentity","prefix":"{host}/par","signedPrefix":"quay.io/par"}}"#
            )),
            app("v1"),
            false,
        ),
        (
            "docker.io/library/busybox:v1".into(),
            Some(format!(
                r#"{{"type":"remapIdentity","prefix":"{host}/parity/app","signedPrefix":"docker.io/library/busybox"}}"#
            )),
            app("v1"),
            true,
        ),
        (
            "busybox:v1".into(),
            Some(format!(
                r#"{{"type":"remapIdentity","prefix":"{host}/parity/app","signedPrefix":"docker.io/library/busybox"}}"#
            )),
            app("v1"),
            true,
        ),
        (
            "docker.io/library/app:v1".into(),
            Some(format!(
                r#"{{"type":"remapIdentity","prefix":"{host}/parity","signedPrefix":"docker.io"}}"#
            )),
            app("v1"),
            false,
        ),
    ];
    let mut signatures: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let signature_path = Env::signature_path(&store, "parity/app", &digest, 1);
    std::fs::create_dir_all(signature_path.parent().unwrap()).unwrap();
    for (number, (claimed, identity, reference, expected)) in cases.into_iter().enumerate() {
        let signature = signatures
            .entry(claimed.clone())
            .or_insert_with(|| signer.standalone_sign(&app_v1.manifest, &claimed))
            .clone();
        std::fs::write(&signature_path, signature).unwrap();
        let identity = identity
            .map(|i| format!(r#","signedIdentity":{i}"#))
            .unwrap_or_default();
        let policy_json = format!(
            r#"{{"default":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"{identity}}}]}}"#,
            key.display()
        );
        let pushed = env.fetch(&reference).await;
        let ours = check(&policy(&policy_json, &[&yaml]), &pushed.request()).await;
        let skopeo = skopeo_allows(&env, &policy_json, &registries_d, &reference, number);
        assert_eq!(
            ours.is_ok(),
            expected,
            "case {number}: {claimed} as {reference}: ours {ours:?}\n{policy_json}"
        );
        assert_eq!(
            skopeo, expected,
            "case {number}: {claimed} as {reference}: skopeo disagrees\n{policy_json}"
        );
    }
}
