//! GetToken("kbs") of the real agent binary against testkit's KBS: the reply decrypts a
//! resource fetched with `Authorization: Bearer`, tokens are reused, refreshed on request,
//! shared by concurrent callers, carry the initdata, and a KBS that is down costs an
//! INTERNAL error but never the socket.
#![cfg(feature = "kbs")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use common::*;
use kbs_protocol::{
    decode_aa_token_reply, KbsClient, KbsClientConfig, ProviderError, ResourceUri, TeeKeyPair,
    Token, TokenNeed, TokenProvider,
};
use testkit::kbs::{FaultTarget, Faults, KbsConfig, TestKbs};

const SECRET: &[u8] = b"resource for the agent's token \x00\xff";
const INITDATA: &str = "algorithm = \"sha256\"\nversion = \"0.1.0\"\n\n[data]\n\"policy.rego\" = '''\npackage agent_policy\n'''\n";
const CAPTURED_REPLY: &str = include_str!("../../../testdata/wire/aa-token-response.json");

async fn start_kbs(config: KbsConfig) -> TestKbs {
    let kbs = TestKbs::start(config).await.unwrap();
    kbs.put_resource("default/key/1", SECRET);
    kbs
}

/// `[token_configs.kbs]` for `kbs`, trusting its CA when `with_cert`.
fn kbs_section(url: &str, ca: Option<String>) -> String {
    let mut section = format!("[token_configs.kbs]\nurl = \"{url}\"\n");
    if let Some(ca) = ca {
        section.push_str(&format!("cert = '''\n{ca}'''\n"));
    }
    section
}

/// Hands out the token and key of one AA reply, as CDH's passport mode would.
struct ReplyTokens(Vec<u8>);

#[async_trait]
impl TokenProvider for ReplyTokens {
    async fn get_token(&self, _need: TokenNeed) -> Result<(Token, TeeKeyPair), ProviderError> {
        Ok(decode_aa_token_reply(&self.0)?)
    }
}

/// Fetches `default/key/1` with the token and key of `reply` (Bearer, no cookie).
async fn fetch_with(kbs: &TestKbs, reply: &[u8]) -> Vec<u8> {
    let mut config = KbsClientConfig::new(&kbs.url()).unwrap();
    config.extra_root_certs_pem.extend(kbs.ca_pem());
    let client = KbsClient::passport(config, Arc::new(ReplyTokens(reply.to_vec()))).unwrap();
    client
        .get_resource(&ResourceUri::parse("kbs:///default/key/1").unwrap())
        .await
        .unwrap()
        .to_vec()
}

fn token_of(reply: &[u8]) -> String {
    let (token, _) = decode_aa_token_reply(reply).unwrap();
    token.as_str().to_string()
}

/// The reply has the captured upstream reply's shape: exactly `token` and `tee_keypair`,
/// both strings, an EC key as PKCS#8 PEM.
fn assert_upstream_shape(reply: &[u8]) {
    let ours: serde_json::Value = serde_json::from_slice(reply).unwrap();
    let upstream: serde_json::Value = serde_json::from_str(CAPTURED_REPLY).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&ours), keys(&upstream));
    for key in ["token", "tee_keypair"] {
        assert!(ours[key].is_string(), "{key}");
    }
    let pem = ours["tee_keypair"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(upstream["tee_keypair"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(ours["token"].as_str().unwrap().split('.').count(), 3);
}

/// Nothing secret in the agent's log: neither token signatures nor key material.
fn assert_not_logged(stderr: &str, replies: &[&[u8]]) {
    for reply in replies {
        let value: serde_json::Value = serde_json::from_slice(reply).unwrap();
        let token = value["token"].as_str().unwrap();
        let signature = token.rsplit('.').next().unwrap();
        assert!(!stderr.contains(signature), "token signature logged");
        assert!(
            !stderr.contains(token.split('.').nth(1).unwrap()),
            "token claims logged"
        );
        let pem = value["tee_keypair"].as_str().unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!stderr.contains(line), "key material logged");
        }
        assert!(!stderr.contains("PRIVATE KEY"), "key logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_decrypts_a_resource_and_is_shared_reused_and_refreshed() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let agent = Agent::start(&kbs_section(&kbs.url(), None), Some(INITDATA)).await;
    let c = agent.client().await;

    // 20 concurrent first requests: one attestation, one token for all
    let requests = (0..20).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { get_token(&c, "kbs", false).await })
    });
    let replies: Vec<Vec<u8>> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(replies.iter().all(|r| r == &replies[0]));
    let first = replies[0].clone();
    assert_upstream_shape(&first);
    let counters = kbs.counters();
    assert_eq!((counters.auth, counters.attest_ok), (1, 1));

    // the initdata TOML given with -t arrived verbatim
    assert_eq!(
        kbs.last_init_data().unwrap(),
        serde_json::json!({"format": "toml", "body": INITDATA})
    );

    // the token and key decrypt a resource fetched with Bearer
    assert_eq!(fetch_with(&kbs, &first).await, SECRET);
    assert_eq!(kbs.counters().resource_ok, 1);

    // reused: no new attestation
    let again = get_token(&c, "kbs", false).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(kbs.counters().auth, 1);

    // forced refresh: a new attestation and a different token and key
    let refreshed = get_token(&c, "kbs", true).await.unwrap();
    assert_ne!(token_of(&refreshed), token_of(&first));
    let value = |r: &[u8]| serde_json::from_slice::<serde_json::Value>(r).unwrap();
    assert_ne!(
        value(&refreshed)["tee_keypair"],
        value(&first)["tee_keypair"]
    );
    assert_eq!(kbs.counters().auth, 2);
    assert_eq!(fetch_with(&kbs, &refreshed).await, SECRET);
    // the refreshed token is the cached one now
    assert_eq!(get_token(&c, "kbs", false).await.unwrap(), refreshed);
    assert_eq!(kbs.counters().auth, 2);

    // concurrent refreshes (arriving while the first of them attests) share one attestation
    kbs.set_faults(Faults {
        target: FaultTarget::Auth,
        delay: Duration::from_millis(500),
        ..Faults::default()
    });
    let requests = (0..10).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { get_token(&c, "kbs", true).await })
    });
    let replies: Vec<Vec<u8>> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(replies.iter().all(|r| r == &replies[0]));
    assert_ne!(token_of(&replies[0]), token_of(&refreshed));
    assert_eq!(kbs.counters().auth, 3);
    kbs.set_faults(Faults::default());

    drop(c);
    let stderr = agent.stop().await;
    assert!(stderr.contains("KBS client created"), "{stderr}");
    assert_not_logged(&stderr, &[&first, &refreshed, &replies[0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_configured_ca_and_refused_without_it() {
    let kbs = start_kbs(KbsConfig {
        tls: true,
        ..KbsConfig::default()
    })
    .await;
    assert!(kbs.url().starts_with("https://"));
    let agent = Agent::start(&kbs_section(&kbs.url(), kbs.ca_pem()), None).await;
    let c = agent.client().await;
    let reply = get_token(&c, "kbs", false).await.unwrap();
    assert_upstream_shape(&reply);
    assert_eq!(fetch_with(&kbs, &reply).await, SECRET);
    // no initdata given: none sent
    assert_eq!(kbs.last_init_data(), None);
    drop(c);
    agent.stop().await;

    // without the CA the TLS handshake fails: an INTERNAL error that says so
    let untrusting = Agent::start(&kbs_section(&kbs.url(), None), None).await;
    let c = untrusting.client().await;
    let message = internal_message(get_token(&c, "kbs", false).await);
    assert!(message.starts_with("GetToken failed: "), "{message}");
    assert!(message.contains("TLS"), "{message}");
    assert_serving(&c).await;
    assert_eq!(kbs.counters().auth, 1);
    drop(c);
    untrusting.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbs_down_is_an_internal_error_and_the_socket_stays_up() {
    let port = testkit::process::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    // Agent::start fails unless the socket appears within kata-agent's deadline.
    let agent = Agent::start(&kbs_section(&url, None), None).await;
    let c = agent.client().await;
    let message = internal_message(get_token(&c, "kbs", false).await);
    assert!(message.starts_with("GetToken failed: "), "{message}");
    assert!(message.contains("cannot reach the KBS"), "{message}");
    assert!(message.contains(&url), "{message}");
    assert_serving(&c).await;

    // the other token errors are clear too
    let message = internal_message(get_token(&c, "coco_as", false).await);
    let expected = if cfg!(feature = "coco_as") {
        "no [token_configs.coco_as] section"
    } else {
        "cargo feature `coco_as`"
    };
    assert!(message.contains(expected), "{message}");
    let message = internal_message(get_token(&c, "offline_fs_kbc", false).await);
    assert!(message.contains("unknown token type"), "{message}");

    // the failure is not cached: once the KBS is up, the next request attests
    let kbs = start_kbs(KbsConfig {
        port,
        ..KbsConfig::default()
    })
    .await;
    let reply = get_token(&c, "kbs", false).await.unwrap();
    assert_eq!(fetch_with(&kbs, &reply).await, SECRET);
    assert_eq!(kbs.counters().auth, 1);
    drop(c);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tee_key_algorithm_works_end_to_end() {
    let kbs = start_kbs(KbsConfig::default()).await;
    for (name, pem_header) in [
        ("ECDH-ES+A256KW-P521", "-----BEGIN PRIVATE KEY-----"),
        ("RSA-OAEP-256", "-----BEGIN RSA PRIVATE KEY-----"),
    ] {
        let config = format!(
            "{}tee_key_algorithm = \"{name}\"\n",
            kbs_section(&kbs.url(), None)
        );
        let agent = Agent::start(&config, None).await;
        let c = agent.client().await;
        let reply = get_token(&c, "kbs", false).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert!(
            value["tee_keypair"]
                .as_str()
                .unwrap()
                .starts_with(pem_header),
            "{name}"
        );
        assert_eq!(fetch_with(&kbs, &reply).await, SECRET, "{name}");
        drop(c);
        agent.stop().await;
    }
}
