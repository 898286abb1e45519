//! Provider `ehsm` end to end against testkit's eHSM-KMS: the `secret` tool seals an
//! envelope with eHSM's `Encrypt`, the real `confidential-data-hub` unseals it and a vault
//! secret over ttRPC; a wrong API key (wrong signature) is refused by the service and
//! reported by the hub.

#![cfg(feature = "ehsm")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use protos::api_ttrpc;
use serde_json::json;
use testkit::kms::ehsm::EhsmKms;

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

    let key = guest.signing_key("ehsm-test");
    let settings = json!({"app_id": app_id, "endpoint": server.endpoint()}).to_string();
    let envelope = guest.seal_envelope(
        &key,
        "ehsm-test",
        b"sealed with eHSM",
        &key_id,
        ["ehsm", &settings],
        &[],
    );
    let vault = key.seal_vault("ehsm-test", "app/db-password", ["ehsm", &settings]);

    let cdh = guest.start_cdh("");
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&guest.cdh_addr()).await);
    assert_eq!(
        unseal(&client, envelope.as_bytes()).await.unwrap(),
        b"sealed with eHSM"
    );
    assert_eq!(
        unseal(&client, vault.as_bytes()).await.unwrap(),
        b"from eHSM"
    );

    // a wrong API key signs wrongly: eHSM answers "sign error", the hub says so
    std::fs::write(
        &credential,
        json!({"AppId": app_id, "ApiKey": "wrong"}).to_string(),
    )
    .unwrap();
    let (code, message) = status_of(unseal(&client, envelope.as_bytes()).await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{message}");
    assert!(message.contains("sign error"), "{message}");
    drop(client);
    assert!(cdh.stop().unwrap().success());
}
