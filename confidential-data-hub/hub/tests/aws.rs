//! Sealed secrets with provider `aws` end to end against a local AWS emulator
//! (`moto_server` from PyPI `moto[server]`): the `secret` tool seals an envelope with AWS
//! KMS, the real `confidential-data-hub` unseals it over ttRPC, and a vault secret comes
//! from Secrets Manager. Both reach the emulator through the endpoint override.

#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
};

use common::*;
use protos::api_ttrpc;
use testkit::kms::moto::Moto;

/// Calls an AWS JSON API of the emulator (which does not check signatures).
fn aws_call(port: u16, service: &str, target: &str, body: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Target: {target}\r\n\
         Content-Type: application/x-amz-json-1.1\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIATEST/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_envelope_and_vault_secrets_unseal_over_ttrpc() {
    let moto = Moto::start().unwrap();
    let guest = Guest::new();
    let (port, endpoint) = (moto.port(), moto.endpoint());
    let key_id = aws_call(port, "kms", "TrentService.CreateKey", "{}")["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    aws_call(
        port,
        "secretsmanager",
        "secretsmanager.CreateSecret",
        r#"{"Name":"app/db-password","SecretString":"from secrets manager"}"#,
    );

    std::fs::create_dir_all(guest.kms_dir().join("aws")).unwrap();
    std::fs::write(
        guest.kms_dir().join("aws/credential.json"),
        r#"{"access_key_id":"AKIATEST","secret_access_key":"not-checked-by-the-emulator"}"#,
    )
    .unwrap();
    let key = guest.signing_key("aws-test");
    let region = r#"{"region":"us-east-1"}"#;
    let envelope = guest.seal_envelope(
        &key,
        "aws-test",
        b"sealed with AWS KMS",
        &key_id,
        ["aws", region],
        &["--aws-endpoint-url", &endpoint],
    );
    let vault = key.seal_vault("aws-test", "app/db-password", ["aws", region]);
    let payload = envelope.split('.').nth(2).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["provider"], "aws");
    assert_eq!(payload["provider_settings"]["region"], "us-east-1");

    let mut cmd = guest.cdh_command("[kbc]\nname = \"offline_fs_kbc\"\n");
    cmd.arg("--aws-endpoint-url").arg(&endpoint);
    let cdh = guest.spawn_cdh(cmd);
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&guest.cdh_addr()).await);
    for (sealed, expected) in [
        (&envelope, &b"sealed with AWS KMS"[..]),
        (&vault, b"from secrets manager"),
    ] {
        assert_eq!(unseal(&client, sealed.as_bytes()).await.unwrap(), expected);
    }

    // a secret Secrets Manager does not hold is NOT_FOUND
    let missing = key.seal_vault("aws-test", "app/absent", ["aws", region]);
    let (code, message) = status_of(unseal(&client, missing.as_bytes()).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{message}");
    drop(client);
    assert!(cdh.stop().unwrap().success());

    // the envelope unsealed by a newly started hub
    let unseal_envelope = || async {
        let client = api_ttrpc::SealedSecretServiceClient::new(connect(&guest.cdh_addr()).await);
        unseal(&client, envelope.as_bytes()).await.unwrap()
    };
    let credential = std::fs::read(guest.kms_dir().join("aws/credential.json")).unwrap();
    std::fs::remove_file(guest.kms_dir().join("aws/credential.json")).unwrap();

    // upstream's AWS_IN_GUEST_KEY_PATH names the directory of credential.json
    let elsewhere = guest.path("aws-keys");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("credential.json"), &credential).unwrap();
    let mut cmd = guest.cdh_command("[kbc]\nname = \"offline_fs_kbc\"\n");
    cmd.arg("--aws-endpoint-url")
        .arg(&endpoint)
        .env("AWS_IN_GUEST_KEY_PATH", &elsewhere);
    let cdh = guest.spawn_cdh(cmd);
    assert_eq!(unseal_envelope().await, b"sealed with AWS KMS");
    assert!(
        cdh.stderr().contains("AWS_IN_GUEST_KEY_PATH"),
        "{}",
        cdh.stderr()
    );
    assert!(cdh.stop().unwrap().success());

    // without it, upstream's place inside the credentials directory, where a
    // [[credentials]] entry provisions it from the KBS at start
    guest.set_resources(&[("default/aws/credential", &credential)]);
    let kbs = guest.path("kbs");
    let config = format!(
        "[kbc]\nname = \"offline_fs_kbc\"\n[[credentials]]\nresource_uri = \"kbs:///default/aws/credential\"\n\
         path = \"{}/kms-credential/aws/credential.json\"\n",
        kbs.display()
    );
    let mut cmd = guest.cdh_command_with_kms_dir(&config, &kbs.join("kms-credential"));
    cmd.arg("--aws-endpoint-url").arg(&endpoint);
    let cdh = guest.spawn_cdh(cmd);
    wait_for_file(&kbs.join("kms-credential/aws/credential.json"), &cdh).await;
    assert_eq!(unseal_envelope().await, b"sealed with AWS KMS");
    assert!(cdh.stop().unwrap().success());
}
