//! Provider `aws` against a local AWS emulator: `moto_server` (PyPI `moto[server]`) on
//! 127.0.0.1, reached through the provider's endpoint override. KMS Encrypt/Decrypt (with and
//! without an encryption context) and Secrets Manager GetSecretValue (string, binary,
//! versions), and the provider's errors.

#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use aws_sdk_kms::{
    config::{BehaviorVersion, Credentials, Region},
    primitives::Blob,
};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use common::{decrypt_err, object, round_trip, secret};
use kms::{Annotations, KmsError, KmsProviders, ProviderSettings};
use serde_json::json;
use testkit::kms::moto::Moto;

mod common;

const REGION: &str = "us-east-1";

fn credentials() -> Credentials {
    Credentials::new("AKIATESTTESTTEST", "test-secret-key", None, None, "test")
}

/// SDK clients for setting up the emulator, independent of the provider under test.
fn admin(url: &str) -> (aws_sdk_kms::Client, aws_sdk_secretsmanager::Client) {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    let kms = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials())
        .http_client(http.clone())
        .endpoint_url(url)
        .build();
    let secrets = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials())
        .http_client(http)
        .endpoint_url(url)
        .build();
    (
        aws_sdk_kms::Client::from_conf(kms),
        aws_sdk_secretsmanager::Client::from_conf(secrets),
    )
}

fn region() -> ProviderSettings {
    object(json!({ "region": REGION }))
}

/// Providers reading `credential.json` from a temporary directory, sending to `url`.
fn providers(url: &str) -> (tempfile::TempDir, KmsProviders) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("aws")).unwrap();
    std::fs::write(
        dir.path().join("aws/credential.json"),
        r#"{"access_key_id":"AKIATESTTESTTEST","secret_access_key":"test-secret-key","session_token":null}"#,
    )
    .unwrap();
    let kms = KmsProviders::new(dir.path()).with_aws_endpoint_url(url);
    (dir, kms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_encrypts_and_decrypts_data_keys() {
    let moto = Moto::start().unwrap();
    let (admin_kms, _) = admin(&moto.endpoint());
    let key_id = admin_kms
        .create_key()
        .description("cdh test key")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let (_dir, kms) = providers(&moto.endpoint());
    let data_key = [0x5au8; 32];
    let none = Annotations::new();

    let (ciphertext, annotations) = round_trip(&kms, "aws", &region(), &key_id, &data_key).await;
    assert!(annotations.is_empty());
    let decrypter = kms.decrypter("aws", &region()).await.unwrap();

    // a data key encrypted with an encryption context needs it back
    let context: HashMap<String, String> = [("purpose".to_string(), "cdh".to_string())].into();
    let with_context = admin_kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"contextual".to_vec()))
        .set_encryption_context(Some(context))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    let annotations = object(json!({"encryption_context": {"purpose": "cdh"}}));
    assert_eq!(
        decrypter
            .decrypt(&with_context, &key_id, &annotations)
            .await
            .unwrap()
            .as_slice(),
        b"contextual"
    );
    let wrong = object(json!({"encryption_context": {"purpose": "other"}}));
    let err = decrypter
        .decrypt(&with_context, &key_id, &wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Service { .. }), "{err}");

    // a tampered ciphertext, an unknown key, a malformed annotation
    let mut tampered = ciphertext.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let err = decrypter
        .decrypt(&tampered, &key_id, &none)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Service { .. }), "{err}");
    let encrypter = kms.encrypter("aws", &region()).await.unwrap();
    let err = encrypter
        .encrypt(b"x", "00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = decrypter
        .decrypt(
            &ciphertext,
            &key_id,
            &object(json!({"encryption_context": "x"})),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_serves_vault_secrets() {
    let moto = Moto::start().unwrap();
    let (_, admin_secrets) = admin(&moto.endpoint());
    admin_secrets
        .create_secret()
        .name("db-password")
        .secret_string("hunter2")
        .send()
        .await
        .unwrap();
    admin_secrets
        .create_secret()
        .name("tls-key")
        .secret_binary(Blob::new(vec![0u8, 1, 2, 255]))
        .send()
        .await
        .unwrap();
    admin_secrets
        .put_secret_value()
        .secret_id("db-password")
        .secret_string("correct horse")
        .send()
        .await
        .unwrap();

    let (_dir, kms) = providers(&moto.endpoint());
    let getter = kms.getter("aws", &region()).await.unwrap();
    let none = Annotations::new();
    assert_eq!(
        secret(&*getter, "db-password", &none).await,
        b"correct horse"
    );
    let previous = object(json!({"version_stage": "AWSPREVIOUS"}));
    assert_eq!(secret(&*getter, "db-password", &previous).await, b"hunter2");
    assert_eq!(secret(&*getter, "tls-key", &none).await, [0u8, 1, 2, 255]);
    let err = getter.get_secret("absent", &none).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.to_string(), "KMS provider `aws` has no secret `absent`");
}

#[tokio::test]
async fn settings_and_credentials_are_checked_before_any_request() {
    // nothing listens here: these fail before a request is sent
    let (dir, kms) = providers("http://127.0.0.1:9");
    let err = kms
        .getter("aws", &ProviderSettings::new())
        .await
        .unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
    assert!(err.to_string().contains("region"), "{err}");

    std::fs::remove_file(dir.path().join("aws/credential.json")).unwrap();
    let err = kms.decrypter("aws", &region()).await.unwrap_err();
    assert!(matches!(err, KmsError::Credential { .. }), "{err}");
    assert!(err.to_string().contains("aws/credential.json"), "{err}");

    // a dead endpoint is a service error, not a hang
    std::fs::write(
        dir.path().join("aws/credential.json"),
        r#"{"access_key_id":"A","secret_access_key":"B"}"#,
    )
    .unwrap();
    let none = Annotations::new();
    let err = decrypt_err(&kms, "aws", &region(), b"ciphertext", "key", &none).await;
    assert!(matches!(err, KmsError::Service { .. }), "{err}");
}
