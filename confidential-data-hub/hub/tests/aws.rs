//! Sealed secrets with provider `aws` end to end against a local AWS emulator
//! (`moto_server` from PyPI `moto[server]`): the `secret` tool seals an envelope with AWS
//! KMS, the real `confidential-data-hub` unseals it over ttRPC, and a vault secret comes
//! from Secrets Manager. Both reach the emulator through the endpoint override.

#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

use common::*;
use protos::{api, api_ttrpc};
use testkit::process::{free_port, Daemon, Ready};

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
    let found = Command::new("moto_server").arg("--help").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "moto_server is required by this test: pip install 'moto[server]'"
    );
    let guest = Guest::new();
    let port = free_port().unwrap();
    let mut moto = Command::new("moto_server");
    moto.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let _moto = Daemon::spawn(
        "moto",
        moto,
        guest.dir.path(),
        Ready::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
        Duration::from_secs(60),
    )
    .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
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
    let key = SigningKey::generate(guest.path("keys"), "aws-test");
    std::fs::write(guest.sealed_secret_dir().join("aws-test"), key.public_jwk()).unwrap();
    std::fs::write(guest.path("plain"), b"sealed with AWS KMS").unwrap();

    let seal = |kind: &[&str]| key.seal("aws-test", kind);
    let plain = guest.path("plain");
    let kms_dir = guest.kms_dir();
    let envelope = seal(&[
        "envelope",
        "--key-id",
        &key_id,
        "--file-path",
        path_str(&plain),
        "--provider",
        "aws",
        "--provider-settings",
        r#"{"region":"us-east-1"}"#,
        "--kms-credential-dir",
        path_str(&kms_dir),
        "--aws-endpoint-url",
        &endpoint,
    ]);
    let vault = seal(&[
        "vault",
        "--resource-uri",
        "app/db-password",
        "--provider",
        "aws",
        "--provider-settings",
        r#"{"region":"us-east-1"}"#,
    ]);
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
    let cdh = Daemon::spawn(
        "cdh",
        cmd,
        guest.dir.path(),
        Ready::Unix(guest.cdh_sock()),
        START,
    )
    .unwrap();
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&guest.cdh_addr()).await);
    for (sealed, expected) in [
        (&envelope, &b"sealed with AWS KMS"[..]),
        (&vault, b"from secrets manager"),
    ] {
        let req = api::UnsealSecretInput {
            secret: sealed.as_bytes().to_vec(),
            ..Default::default()
        };
        let plaintext = client.unseal_secret(ctx(), &req).await.unwrap().plaintext;
        assert_eq!(plaintext, expected);
    }

    // a secret Secrets Manager does not hold is NOT_FOUND
    let missing = seal(&[
        "vault",
        "--resource-uri",
        "app/absent",
        "--provider",
        "aws",
        "--provider-settings",
        r#"{"region":"us-east-1"}"#,
    ]);
    let req = api::UnsealSecretInput {
        secret: missing.into_bytes(),
        ..Default::default()
    };
    let (code, message) = status_of(client.unseal_secret(ctx(), &req).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{message}");
    drop(client);
    assert!(cdh.stop().unwrap().success());

    let unseal = |client: api_ttrpc::SealedSecretServiceClient| {
        let req = api::UnsealSecretInput {
            secret: envelope.as_bytes().to_vec(),
            ..Default::default()
        };
        async move { client.unseal_secret(ctx(), &req).await }
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
    let cdh = Daemon::spawn(
        "cdh",
        cmd,
        guest.dir.path(),
        Ready::Unix(guest.cdh_sock()),
        START,
    )
    .unwrap();
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&guest.cdh_addr()).await);
    assert_eq!(
        unseal(client).await.unwrap().plaintext,
        b"sealed with AWS KMS"
    );
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
    std::fs::write(
        guest.path("cdh.toml"),
        format!("socket = \"{}\"\n{config}", guest.cdh_addr()),
    )
    .unwrap();
    let mut cmd = Command::new(CDH);
    cmd.arg("-c")
        .arg(guest.path("cdh.toml"))
        .arg("--kernel-cmdline")
        .arg(guest.path("cmdline"))
        .arg("--credentials-dir")
        .arg(&kbs)
        .arg("--offline-fs-kbc-keys")
        .arg(guest.path("no-keys.json"))
        .arg("--offline-fs-kbc-resources")
        .arg(guest.path("resources.json"))
        .arg("--sealed-secret-dir")
        .arg(guest.sealed_secret_dir())
        .arg("--kms-credential-dir")
        .arg(kbs.join("kms-credential"))
        .arg("--aws-endpoint-url")
        .arg(&endpoint)
        .env_clear()
        .env("RUST_LOG", "debug");
    let cdh = Daemon::spawn(
        "cdh",
        cmd,
        guest.dir.path(),
        Ready::Unix(guest.cdh_sock()),
        START,
    )
    .unwrap();
    let provisioned = kbs.join("kms-credential/aws/credential.json");
    let deadline = std::time::Instant::now() + START;
    while !provisioned.exists() {
        assert!(std::time::Instant::now() < deadline, "{}", cdh.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&guest.cdh_addr()).await);
    assert_eq!(
        unseal(client).await.unwrap().plaintext,
        b"sealed with AWS KMS"
    );
    assert!(cdh.stop().unwrap().success());
}
