//! The test KBS speaks raw HTTP exactly as trustee does and is never more lenient: version
//! semantics, one use per nonce, session cookie shape, token sources, plugin routing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use kbs_protocol::primary_report_data;
use kbs_protocol::wire::{
    Attestation, Challenge, CompositeEvidence, ErrorInformation, RuntimeData,
};
use kbs_protocol::{HashAlgorithm, TeeKeyAlgorithm, TeeKeyPair};
use serde_json::{json, Value};
use testkit::kbs::{KbsConfig, TestKbs};

struct Session {
    cookie: String,
    challenge: Challenge,
}

async fn auth(kbs: &TestKbs, body: Value) -> (u16, Option<Session>, Value) {
    let reply = raw_http()
        .post(format!("{}/kbs/v0/auth", kbs.url()))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let cookie = reply
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    let session = cookie.map(|cookie| Session {
        cookie,
        challenge: serde_json::from_value(body.clone()).unwrap(),
    });
    (status, session, body)
}

fn request(version: &str) -> Value {
    json!({"version": version, "tee": "sample", "extra-params": {"supported-hash-algorithms": ["sha384"]}})
}

fn attestation_for(nonce: &str, key: &TeeKeyPair) -> Attestation {
    let tee_pubkey = key.public_jwk();
    let report_data = primary_report_data(HashAlgorithm::Sha384, nonce, &tee_pubkey, "").unwrap();
    Attestation {
        init_data: None,
        runtime_data: RuntimeData {
            nonce: nonce.to_string(),
            tee_pubkey,
        },
        tee_evidence: CompositeEvidence {
            primary_evidence: json!({"svn": "1", "report_data": STANDARD.encode(report_data)}),
            additional_evidence: String::new(),
        },
    }
}

async fn attest(kbs: &TestKbs, cookie: &str, attestation: &Attestation) -> (u16, Value) {
    let pair = cookie.split(';').next().unwrap();
    let reply = raw_http()
        .post(format!("{}/kbs/v0/attest", kbs.url()))
        .header("cookie", pair)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(attestation).unwrap())
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (
        status,
        serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap(),
    )
}

async fn json_body(reply: reqwest::Response) -> Value {
    serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap()
}

fn kind(body: &Value) -> String {
    serde_json::from_value::<ErrorInformation>(body.clone())
        .unwrap()
        .kind()
        .to_string()
}

#[tokio::test]
async fn version_is_a_semver_equality_requirement() {
    let kbs = start_kbs(KbsConfig::default()).await;
    assert_eq!(auth(&kbs, request("0.4.0")).await.0, 200);
    assert_eq!(auth(&kbs, request("0.4.0+build.7")).await.0, 200);
    for bad in ["0.4.1", "0.3.0", "1.0.0", "0.4.0-rc1", "0.4", "v0.4.0", ""] {
        let (status, session, body) = auth(&kbs, request(bad)).await;
        assert_eq!(status, 401, "{bad}");
        assert!(session.is_none());
        assert_eq!(kind(&body), "AttestationError");
    }
    let (status, _, _) = auth(
        &kbs,
        json!({"version": "0.4.0", "tee": "nosuchtee", "extra-params": ""}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = auth(&kbs, json!({"version": "0.4.0", "tee": "sample"})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn challenge_and_cookie_have_trustee_shape_and_fresh_nonces() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let (_, first, body) = auth(&kbs, request("0.4.0")).await;
    let (_, second, _) = auth(&kbs, request("0.4.0")).await;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(body["extra-params"], json!(""));
    assert_eq!(STANDARD.decode(&first.challenge.nonce).unwrap().len(), 32);
    assert_ne!(first.challenge.nonce, second.challenge.nonce);
    let (pair, attributes) = first.cookie.split_once("; ").unwrap();
    let id = pair.strip_prefix("kbs-session-id=").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(attributes.starts_with("Expires=") && attributes.ends_with(" GMT"));
    assert!(!first.cookie.contains("Path"));
}

#[tokio::test]
async fn a_nonce_is_usable_once_and_only_in_its_session() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let (_, session, _) = auth(&kbs, request("0.4.0")).await;
    let session = session.unwrap();
    let attestation = attestation_for(&session.challenge.nonce, &key);
    let (status, body) = attest(&kbs, &session.cookie, &attestation).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string());

    // Same session again: refused (trustee would replay the old token; we are stricter).
    let (status, body) = attest(&kbs, &session.cookie, &attestation).await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("already used"));

    // Replayed into a new session: the nonce does not match.
    let (_, other, _) = auth(&kbs, request("0.4.0")).await;
    let (status, body) = attest(&kbs, &other.unwrap().cookie, &attestation).await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("nonce"));

    // A failed attempt spends the nonce too.
    let (_, third, _) = auth(&kbs, request("0.4.0")).await;
    let third = third.unwrap();
    let mut wrong = attestation_for(&third.challenge.nonce, &key);
    wrong.tee_evidence.primary_evidence["svn"] = json!(1);
    assert_eq!(attest(&kbs, &third.cookie, &wrong).await.0, 401);
    let right = attestation_for(&third.challenge.nonce, &key);
    assert_eq!(attest(&kbs, &third.cookie, &right).await.0, 401);

    // No cookie / unknown cookie.
    assert_eq!(attest(&kbs, "kbs-session-id=00", &right).await.0, 401);
    assert_eq!(kbs.counters().attest_ok, 1);
}

#[tokio::test]
async fn sessions_expire() {
    let kbs = start_kbs(KbsConfig {
        session_lifetime: std::time::Duration::from_millis(50),
        ..KbsConfig::default()
    })
    .await;
    let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let (_, session, _) = auth(&kbs, request("0.4.0")).await;
    let session = session.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, body) = attest(
        &kbs,
        &session.cookie,
        &attestation_for(&session.challenge.nonce, &key),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn resource_reads_need_a_valid_token_and_route_like_trustee() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let http = raw_http();
    let get = |path: &str, bearer: Option<&str>| {
        let mut request = http.get(format!("{}{path}", kbs.url()));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let reply = get("/kbs/v0/resource/default/key/1", None).await.unwrap();
    assert_eq!(reply.status().as_u16(), 401);
    assert_eq!(kind(&json_body(reply).await), "TokenNotFound");

    let reply = get("/kbs/v0/resource/default/key/1", Some("a.b.c"))
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 401);
    assert_eq!(kind(&json_body(reply).await), "TokenVerifierError");

    let (token, _) = client(&kbs).get_token().await.unwrap();
    let reply = get("/kbs/v0/resource/default/key/1", Some(token.as_str()))
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let jwe: Value = json_body(reply).await;
    let mut members: Vec<_> = jwe.as_object().unwrap().keys().cloned().collect();
    members.sort();
    assert_eq!(
        members,
        ["ciphertext", "encrypted_key", "iv", "protected", "tag"]
    );

    let reply = get("/kbs/v0/resource/default/key", Some(token.as_str()))
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 401);
    assert_eq!(kind(&json_body(reply).await), "PluginInternalError");

    let reply = get("/kbs/v0/auth", None).await.unwrap();
    assert_eq!(reply.status().as_u16(), 404);
    assert_eq!(kind(&json_body(reply).await), "PluginNotFound");

    let reply = get("/kbs/v0/other-plugin/x", Some(token.as_str()))
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 404);

    let reply = http
        .delete(format!("{}/kbs/v0/resource/default/key/1", kbs.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 405);
}
