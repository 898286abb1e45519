//! Provider `aliyun` end to end against testkit's Alibaba Cloud KMS: the `secret` tool
//! seals an envelope with the KMS instance's `Encrypt`, the real `confidential-data-hub`
//! unseals it and vault secrets (client key, STS token) over ttRPC and unwraps a layer key
//! whose annotation packet names `aliyun`; a wrong signature and an expired STS token are
//! refused by the service and reported by the hub.

#![cfg(feature = "aliyun")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kms::AliyunNetwork;
use protos::{api_ttrpc, keyprovider, keyprovider_ttrpc};
use serde_json::json;
use testkit::kms::aliyun::AliyunKms;

const INSTANCE: &str = "kst-hzz0000000001";

fn write_client_key(dir: &std::path::Path, id: &str, json: &str, password: &str) {
    std::fs::write(dir.join(format!("clientKey_{id}.json")), json).unwrap();
    std::fs::write(dir.join(format!("password_{id}.json")), password).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_secrets_and_layer_keys_unseal_through_the_hub() {
    let server = AliyunKms::start().await.unwrap();
    server.add_key("alias/cdh-key");
    server.put_secret("app/db-password", "v1", "from the KMS instance");
    server.put_secret("app/sts-secret", "v1", "with an STS token");
    let guest = Guest::new();
    let key_dir = guest.kms_dir().join("aliyun");
    std::fs::create_dir_all(&key_dir).unwrap();
    std::fs::write(
        key_dir.join(format!("PrivateKmsCA_{INSTANCE}.pem")),
        server.ca_pem(),
    )
    .unwrap();
    let client_key = server.new_client_key();
    write_client_key(
        &key_dir,
        &client_key.id,
        &client_key.json,
        &client_key.password,
    );
    let (ak, sk, token) = server.new_sts_credentials(3600);
    std::fs::write(key_dir.join("sts-token"), format!("{ak}:{sk}:{token}")).unwrap();
    let ca_file = guest.path("aliyun-ca.pem");
    std::fs::write(&ca_file, server.ca_pem()).unwrap();

    let key = guest.signing_key("aliyun-test");
    let client_settings = json!({
        "client_type": "client_key",
        "client_key_id": client_key.id,
        "kms_instance_id": INSTANCE,
    })
    .to_string();
    let sts_settings =
        json!({"client_type": "sts_token", "token_path": "sts-token", "region_id": "cn-hangzhou"})
            .to_string();
    let resolve = server.addr().to_string();
    let envelope = guest.seal_envelope(
        &key,
        "aliyun-test",
        b"sealed with Alibaba Cloud KMS",
        "alias/cdh-key",
        ["aliyun", &client_settings],
        &["--aliyun-resolve", &resolve],
    );
    let vault =
        |name: &str, settings: &str| key.seal_vault("aliyun-test", name, ["aliyun", settings]);
    let client_vault = vault("app/db-password", &client_settings);
    let sts_vault = vault("app/sts-secret", &sts_settings);

    // a layer key wrapped by the KMS instance, in a v2 annotation packet naming aliyun
    let kms = kms::KmsProviders::new(guest.kms_dir()).with_aliyun_network(AliyunNetwork {
        resolve: Some(server.addr()),
        ..Default::default()
    });
    let settings: kms::ProviderSettings = serde_json::from_str(&client_settings).unwrap();
    let (wrapped, annotations) = kms
        .encrypter("aliyun", &settings)
        .await
        .unwrap()
        .encrypt(b"{\"private layer options\":1}", "alias/cdh-key")
        .await
        .unwrap();
    let packet = json!({
        "version": "0.1.0",
        "kid": "alias/cdh-key",
        "wrapped_data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &wrapped),
        "provider": "aliyun",
        "provider_settings": settings,
        "annotations": annotations,
    });
    let unwrap_request = json!({
        "op": "keyunwrap",
        "keyunwrapparams": {"annotation": base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            packet.to_string(),
        )},
    })
    .to_string();

    let mut cmd = guest.cdh_command("[kbc]\nname = \"offline_fs_kbc\"\n");
    cmd.arg("--aliyun-resolve")
        .arg(&resolve)
        .arg("--aliyun-ca-file")
        .arg(&ca_file)
        .arg("--aliyun-metadata-url")
        .arg(server.metadata_url());
    let cdh = guest.spawn_cdh(cmd);
    let connection = connect(&guest.cdh_addr()).await;
    let client = api_ttrpc::SealedSecretServiceClient::new(connection.clone());
    for (sealed, expected) in [
        (&envelope, &b"sealed with Alibaba Cloud KMS"[..]),
        (&client_vault, b"from the KMS instance"),
        (&sts_vault, b"with an STS token"),
    ] {
        assert_eq!(unseal(&client, sealed.as_bytes()).await.unwrap(), expected);
    }

    let keyprovider = keyprovider_ttrpc::KeyProviderServiceClient::new(connection);
    let req = keyprovider::KeyProviderKeyWrapProtocolInput {
        KeyProviderKeyWrapProtocolInput: unwrap_request.into_bytes(),
        ..Default::default()
    };
    let answer = keyprovider.un_wrap_key(ctx(), &req).await.unwrap();
    let answer: serde_json::Value =
        serde_json::from_slice(&answer.KeyProviderKeyWrapProtocolOutput).unwrap();
    let options: Vec<u8> =
        serde_json::from_value(answer["keyunwrapresults"]["optsdata"].clone()).unwrap();
    assert_eq!(options, b"{\"private layer options\":1}");

    // an expired STS token: the service refuses it, the hub says so
    let (ak, sk, token) = server.new_sts_credentials(-60);
    std::fs::write(key_dir.join("sts-token"), format!("{ak}:{sk}:{token}")).unwrap();
    let (code, message) = status_of(unseal(&client, sts_vault.as_bytes()).await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{message}");
    assert!(
        message.contains("InvalidSecurityToken.Expired"),
        "{message}"
    );

    // another key's private key under the client key's id: a wrong signature
    let other = server.new_client_key();
    write_client_key(
        &key_dir,
        &client_key.id,
        &other.json.replace(&other.id, &client_key.id),
        &other.password,
    );
    let (code, message) = status_of(unseal(&client, envelope.as_bytes()).await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{message}");
    assert!(message.contains("SignatureNotMatch"), "{message}");
    drop(client);
    drop(keyprovider);
    assert!(cdh.stop().unwrap().success());
}
