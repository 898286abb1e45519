//! Sealed secrets made by the real `secret` tool, unsealed over ttRPC by the real
//! `confidential-data-hub` binary: verification keys as a KBS resource (offline_fs_kbc) and
//! as a file, vault and envelope secrets, the tampering table with its distinct errors and
//! codes, and the loud skip-verification mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use common::*;
use protos::api_ttrpc;
use ttrpc::Code;

const SIGNING_URI: &str = "kbs:///default/signing-key/1";
const VAULT_SECRET: &[u8] = b"vault secret \x00\x01\xff";
const ENVELOPE_SECRET: &[u8] = b"envelope secret: hunter2\n";

/// A guest whose KBC holds the public signing key and a vault secret, whose sealed-secret
/// directory holds the same key as `file-key`, and whose offline KMS holds `sealing-key`.
struct Fixture {
    guest: Guest,
    key: SigningKey,
}

fn fixture() -> Fixture {
    let guest = Guest::new();
    let key = SigningKey::generate(guest.path("keys"), SIGNING_URI);
    let public = key.public_jwk();
    guest.set_resources(&[
        ("default/signing-key/1", &public),
        ("default/app/secret", VAULT_SECRET),
    ]);
    std::fs::write(guest.sealed_secret_dir().join("file-key"), &public).unwrap();
    std::fs::write(
        guest.kms_dir().join("offline_fs/keys.json"),
        r#"{"sealing-key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}"#,
    )
    .unwrap();
    std::fs::write(guest.path("secret.txt"), ENVELOPE_SECRET).unwrap();
    Fixture { guest, key }
}

impl Fixture {
    fn seal(&self, kid: &str, kind: &[&str]) -> String {
        self.key.seal(kid, kind)
    }

    fn seal_vault(&self, kid: &str) -> String {
        self.seal(
            kid,
            &[
                "vault",
                "--resource-uri",
                "kbs:///default/app/secret",
                "--provider",
                "kbs",
            ],
        )
    }

    fn seal_envelope(&self, kid: &str, wrap_type: &str) -> String {
        let file = self.guest.path("secret.txt");
        let kms = self.guest.kms_dir();
        self.seal(
            kid,
            &[
                "envelope",
                "--key-id",
                "sealing-key",
                "--file-path",
                path_str(&file),
                "--provider",
                "offline_fs",
                "--wrap-type",
                wrap_type,
                "--kms-credential-dir",
                path_str(&kms),
            ],
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_sealed_by_the_tool_unseal_over_ttrpc() {
    let f = fixture();
    let cdh = f.guest.start_cdh("");
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&f.guest.cdh_addr()).await);

    for kid in [SIGNING_URI, "file-key"] {
        let vault = f.seal_vault(kid);
        assert!(vault.starts_with("sealed."), "{vault}");
        assert_eq!(
            unseal(&client, vault.as_bytes()).await.unwrap(),
            VAULT_SECRET,
            "{kid}"
        );
        for wrap_type in ["A256GCM", "A256CTR"] {
            let envelope = f.seal_envelope(kid, wrap_type);
            assert_eq!(
                unseal(&client, envelope.as_bytes()).await.unwrap(),
                ENVELOPE_SECRET,
                "{kid} {wrap_type}"
            );
        }
    }

    // `secret unseal` gives the same plaintext in process
    let sealed_file = f.guest.path("sealed.txt");
    std::fs::write(&sealed_file, f.seal_envelope("file-key", "A256GCM")).unwrap();
    let plaintext = run_ok(
        SECRET,
        &[
            "unseal",
            "-f",
            path_str(&sealed_file),
            "--sealed-secret-dir",
            path_str(&f.guest.sealed_secret_dir()),
            "--kms-credential-dir",
            path_str(&f.guest.kms_dir()),
        ],
    );
    assert_eq!(plaintext, ENVELOPE_SECRET);

    assert!(!cdh.stderr().contains("NOT VERIFIED"), "{}", cdh.stderr());
    assert!(cdh.stop().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_secrets_give_distinct_errors_over_ttrpc() {
    let f = fixture();
    let _cdh = f.guest.start_cdh("");
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&f.guest.cdh_addr()).await);

    let good = f.seal_vault(SIGNING_URI);
    let parts: Vec<&str> = good.split('.').collect();
    let (header, payload, signature) = (parts[1], parts[2], parts[3]);
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let unsigned = |header_json: &str, payload_json: &str| {
        format!(
            "sealed.{}.{}.{signature}",
            b64(header_json),
            b64(payload_json)
        )
    };
    let altered_payload = b64(
        r#"{"version":"0.1.0","type":"vault","name":"kbs:///default/app/other","provider":"kbs"}"#,
    );
    let other_guest = Guest::new();
    let foreign = SigningKey::generate(other_guest.path("k"), "x").seal(
        SIGNING_URI,
        &[
            "vault",
            "--resource-uri",
            "kbs:///default/app/secret",
            "--provider",
            "kbs",
        ],
    );
    // payloads the tool would never write, signed with the same key through the library
    let key = confidential_data_hub::signing_key_from_jwk(
        &std::fs::read(f.key.private_jwk_path()).unwrap(),
    )
    .unwrap();
    let signed = |payload: &str| {
        confidential_data_hub::sign_sealed_secret(payload.as_bytes(), &key, "file-key").unwrap()
    };
    let wrong_version = signed(r#"{"version":"1.0.0","type":"vault","name":"n","provider":"kbs"}"#);
    let unknown_type = signed(r#"{"version":"0.1.0","type":"hsm"}"#);
    let unknown_provider = f.seal(
        SIGNING_URI,
        &["vault", "--resource-uri", "x", "--provider", "vaultwarden"],
    );
    let missing_secret = f.seal(
        SIGNING_URI,
        &[
            "vault",
            "--resource-uri",
            "kbs:///default/app/absent",
            "--provider",
            "kbs",
        ],
    );

    let table: Vec<(&str, String, Code, &str)> = vec![
        (
            "missing prefix",
            good["sealed.".len()..].to_string(),
            Code::INVALID_ARGUMENT,
            "does not start with `sealed.`",
        ),
        (
            "3 parts",
            format!("sealed.{header}.{payload}"),
            Code::INVALID_ARGUMENT,
            "has 3 dot-separated parts",
        ),
        (
            "5 parts",
            format!("{good}.x"),
            Code::INVALID_ARGUMENT,
            "has 5 dot-separated parts",
        ),
        (
            "bad header base64",
            format!("sealed.{header}*.{payload}.{signature}"),
            Code::INVALID_ARGUMENT,
            "header is not unpadded base64url",
        ),
        (
            "bad payload base64",
            format!("sealed.{header}.{payload}+.{signature}"),
            Code::INVALID_ARGUMENT,
            "payload is not unpadded base64url",
        ),
        (
            "bad signature base64",
            format!("sealed.{header}.{payload}.{signature}="),
            Code::INVALID_ARGUMENT,
            "signature is not unpadded base64url",
        ),
        (
            "wrong alg",
            unsigned(r#"{"alg":"RS256","kid":"file-key"}"#, "{}"),
            Code::INVALID_ARGUMENT,
            "signed with `RS256`",
        ),
        (
            "missing alg",
            unsigned(r#"{"kid":"file-key"}"#, "{}"),
            Code::INVALID_ARGUMENT,
            "has no `alg`",
        ),
        (
            "missing kid",
            unsigned(r#"{"alg":"ES256"}"#, "{}"),
            Code::INVALID_ARGUMENT,
            "has no `kid`",
        ),
        (
            "hostile kid",
            unsigned(r#"{"alg":"ES256","kid":"../../etc/passwd"}"#, "{}"),
            Code::INVALID_ARGUMENT,
            "not a file name inside the sealed-secret directory",
        ),
        (
            "unknown kid",
            unsigned(r#"{"alg":"ES256","kid":"nobody"}"#, "{}"),
            Code::NOT_FOUND,
            "no verification key `nobody`",
        ),
        (
            "short signature",
            format!("sealed.{header}.{payload}.{}", &signature[..20]),
            Code::INVALID_ARGUMENT,
            "ES256 needs 64",
        ),
        (
            "altered payload",
            format!("sealed.{header}.{altered_payload}.{signature}"),
            Code::PERMISSION_DENIED,
            "does not verify",
        ),
        (
            "another signer",
            foreign,
            Code::PERMISSION_DENIED,
            "does not verify",
        ),
        (
            "unknown provider",
            unknown_provider,
            Code::INVALID_ARGUMENT,
            "unknown KMS provider `vaultwarden`",
        ),
        (
            "missing secret",
            missing_secret,
            Code::NOT_FOUND,
            "resource kbs:///default/app/absent not found",
        ),
        (
            "2 parts",
            "sealed.\u{0}".to_string(),
            Code::INVALID_ARGUMENT,
            "has 2 dot-separated parts",
        ),
        (
            "wrong version",
            wrong_version,
            Code::INVALID_ARGUMENT,
            "version is 1.0.0; only 0.1.0",
        ),
        (
            "unknown type",
            unknown_type,
            Code::INVALID_ARGUMENT,
            "type is `hsm`; expected vault or envelope",
        ),
    ];
    let mut messages = std::collections::HashSet::new();
    for (name, input, code, text) in &table {
        let (got_code, message) = status_of(unseal(&client, input.as_bytes()).await);
        assert_eq!(got_code, *code, "{name}: {message}");
        assert!(message.starts_with("[CDH] [ERROR]: "), "{name}: {message}");
        assert!(message.contains(text), "{name}: {message}");
        messages.insert(message);
    }
    assert!(messages.len() >= table.len() - 2, "{messages:#?}");

    let (code, message) = status_of(unseal(&client, b"sealed.\xff.a.b").await);
    assert_eq!(code, Code::INVALID_ARGUMENT);
    assert!(message.contains("not UTF-8"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_verification_is_configured_and_loud() {
    let f = fixture();
    let cdh = f
        .guest
        .start_cdh("skip_sealed_secret_verification = true\n");
    let client = api_ttrpc::SealedSecretServiceClient::new(connect(&f.guest.cdh_addr()).await);
    let fake = format!(
        "sealed.fakejwsheader.{}.fakesignature",
        URL_SAFE_NO_PAD.encode(
            r#"{"version":"0.1.0","type":"vault","name":"kbs:///default/app/secret","provider":"kbs","provider_settings":{},"annotations":{}}"#
        )
    );
    assert_eq!(
        unseal(&client, fake.as_bytes()).await.unwrap(),
        VAULT_SECRET
    );
    // the payload is still checked
    for (payload, expected) in [
        (r#"{"version":"0.2.0","type":"vault"}"#, "version is 0.2.0"),
        (r#"{"version":"0.1.0","type":"kms"}"#, "type is `kms`"),
    ] {
        let secret = format!("sealed.h.{}.s", URL_SAFE_NO_PAD.encode(payload));
        let (code, message) = status_of(unseal(&client, secret.as_bytes()).await);
        assert_eq!(code, Code::INVALID_ARGUMENT);
        assert!(message.contains(expected), "{message}");
    }

    let stderr = cdh.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.contains("SEALED SECRET SIGNATURES ARE NOT VERIFIED"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(warning.contains("WARN"), "{warning}");
}
