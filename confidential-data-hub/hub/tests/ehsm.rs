//! Provider `ehsm` end to end against testkit's eHSM-KMS: the `secret` tool seals an
//! envelope with eHSM's `Encrypt`, the real `confidential-data-hub` unseals it and a vault
//! secret over ttRPC; a wrong API key (wrong signature) is refused by the service and
//! reported by the hub.

#![cfg(feature = "ehsm")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use protos::{api, api_ttrpc};
use serde_json::json;
use testkit::{kms::ehsm::EhsmKms, process::Daemon, process::Ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehsm_secrets_unseal_through_the_hub() {
    let server = EhsmKms::start().await.unwrap();
    let (app_id, api_key) = server.enroll();
    let key_id = server.create_key(&app_id);
    server.put_secret(&app_id, "app/db-password", "from eHSM");
    let guest = Guest::new();
    let key_dir = guest.kms_dir().join("ehsm");
    std::fs::create_dir_all(&key_dir).unwrap();
    std::fs::write(key_dir.join("ca.pem"), server.ca_pem()).unwrap();
    let credential = key_dir.join(format!("credential_{app_id}.json"));
    std::fs::write(
        &credential,
        json!({"AppId": app_id, "ApiKey": api_key}).to_string(),
    )
    .unwrap();

    let key = SigningKey::generate(guest.path("keys"), "ehsm-test");
    std::fs::write(
        guest.sealed_secret_dir().join("ehsm-test"),
        key.public_jwk(),
    )
    .unwrap();
    std::fs::write(guest.path("plain"), b"sealed with eHSM").unwrap();
    let settings = json!({"app_id": app_id, "endpoint": server.endpoint()}).to_string();
    let seal = |kind: &[&str]| key.seal("ehsm-test", kind);
    let plain = guest.path("plain");
    let kms_dir = guest.kms_dir();
    let envelope = seal(&[
        "envelope",
        "--key-id",
        &key_id,
        "--file-path",
        path_str(&plain),
        "--provider",
        "ehsm",
        "--provider-settings",
        &settings,
        "--kms-credential-dir",
        path_str(&kms_dir),
    ]);
    let vault = seal(&[
        "vault",
        "--resource-uri",
        "app/db-password",
        "--provider",
        "ehsm",
        "--provider-settings",
        &settings,
    ]);

    let cmd = guest.cdh_command("[kbc]\nname = \"offline_fs_kbc\"\n");
    let cdh = Daemon::spawn(
        "cdh",
        cmd,
        guest.dir.path(),
        Ready::Unix(guest.cdh_sock()),
        START,
    )
    .unwrap();
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&guest.cdh_addr()).await);
    let unseal = |sealed: &String| {
        let req = api::UnsealSecretInput {
            secret: sealed.as_bytes().to_vec(),
            ..Default::default()
        };
        let client = client.clone();
        async move { client.unseal_secret(ctx(), &req).await }
    };
    assert_eq!(
        unseal(&envelope).await.unwrap().plaintext,
        b"sealed with eHSM"
    );
    assert_eq!(unseal(&vault).await.unwrap().plaintext, b"from eHSM");

    // a wrong API key signs wrongly: eHSM answers "sign error", the hub says so
    std::fs::write(
        &credential,
        json!({"AppId": app_id, "ApiKey": "wrong"}).to_string(),
    )
    .unwrap();
    let (code, message) = status_of(unseal(&envelope).await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{message}");
    assert!(message.contains("sign error"), "{message}");
    drop(client);
    assert!(cdh.stop().unwrap().success());
}
