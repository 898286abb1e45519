//! Unsealing end to end in process: signatures, key lookup, providers, and the tampering
//! table with its distinct errors and ttRPC codes.

use std::collections::HashMap;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kms::{Annotations, ProviderSettings};

use super::*;
use crate::unseal_code;

const TEST_KEY: &[u8] = include_bytes!("../../tests/data/test-key.json");
const TEST_KEY_2: &[u8] = include_bytes!("../../tests/data/test-key-2.json");
const SIGNING_URI: &str = "kbs:///default/signing-key/1";

/// Resources by `repo/type/tag`.
#[derive(Debug, Default)]
struct MapKbc(HashMap<String, Vec<u8>>);

#[async_trait]
impl Kbc for MapKbc {
    async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
        uri.repo_type_tag()
            .and_then(|(r, t, g)| self.0.get(&format!("{r}/{t}/{g}")))
            .map(|v| Zeroizing::new(v.clone()))
            .ok_or_else(|| KbcError::NotFound(uri.to_string()))
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    unsealer: Unsealer,
}

fn fixture_with(verification: Verification) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sealed_dir = dir.path().join("sealed-secret");
    std::fs::create_dir_all(&sealed_dir).unwrap();
    std::fs::write(sealed_dir.join("test-key"), TEST_KEY).unwrap();
    std::fs::write(sealed_dir.join("not-a-jwk"), b"hello").unwrap();
    std::fs::create_dir_all(sealed_dir.join("sub")).unwrap();
    std::fs::write(dir.path().join("outside-key"), TEST_KEY).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside-key"), sealed_dir.join("escape")).unwrap();

    let offline_fs = dir.path().join("kms/offline_fs");
    std::fs::create_dir_all(&offline_fs).unwrap();
    std::fs::write(
        offline_fs.join("keys.json"),
        r#"{"sealing-key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}"#,
    )
    .unwrap();
    std::fs::write(
        offline_fs.join("secrets.json"),
        r#"{"db-password": "aHVudGVyMg=="}"#,
    )
    .unwrap();

    let mut resources = HashMap::new();
    resources.insert("one/2/trois".to_string(), b"vault secret".to_vec());
    resources.insert("default/sealed-secret/test".to_string(), b"fake".to_vec());
    resources.insert("default/signing-key/1".to_string(), TEST_KEY.to_vec());
    resources.insert("default/signing-key/bad".to_string(), b"{}".to_vec());
    let kbc: Arc<dyn Kbc> = Arc::new(MapKbc(resources));
    let kms = KmsProviders::new(dir.path().join("kms")).with_kbc(kbc.clone());
    let unsealer = Unsealer::new(kbc, kms)
        .with_sealed_secret_dir(&sealed_dir)
        .with_verification(verification);
    Fixture { dir, unsealer }
}

fn fixture() -> Fixture {
    fixture_with(Verification::Required)
}

impl Fixture {
    /// The plaintext of `secret`, which must unseal.
    async fn unsealed(&self, secret: &str) -> Vec<u8> {
        self.unsealer
            .unseal(secret.as_bytes())
            .await
            .unwrap()
            .to_vec()
    }
}

fn vault(name: &str, provider: &str) -> SecretPayload {
    SecretPayload::new(SecretContent::Vault(VaultSecret {
        name: name.into(),
        provider: provider.into(),
        provider_settings: ProviderSettings::new(),
        annotations: Annotations::new(),
    }))
}

fn sealed(payload: &SecretPayload, kid: &str) -> String {
    seal(payload, TEST_KEY, kid).unwrap()
}

/// A secret signed with the test key over an arbitrary header and payload.
fn signed_raw(header: &str, payload: &[u8]) -> String {
    use p256::ecdsa::signature::Signer as _;
    let key = signing_key_from_jwk(TEST_KEY).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!(
        "sealed.{input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

#[tokio::test]
async fn vault_secrets_unseal_with_file_and_uri_kids() {
    let f = fixture();
    for kid in ["test-key", SIGNING_URI] {
        let secret = sealed(&vault("kbs:///one/2/trois", "kbs"), kid);
        assert!(secret.starts_with("sealed."));
        assert_eq!(f.unsealed(&secret).await, b"vault secret", "{kid}");
    }
    let secret = sealed(&vault("db-password", "offline_fs"), "test-key");
    assert_eq!(f.unsealed(&secret).await, b"hunter2");
    // a trailing newline (a secret read from a file) is not part of it
    let secret = format!(
        "{}\n",
        sealed(&vault("kbs:///one/2/trois", "kbs"), "test-key")
    );
    assert!(f.unsealer.unseal(secret.as_bytes()).await.is_ok());
}

#[tokio::test]
async fn envelope_secrets_unseal_with_both_wraps() {
    let f = fixture();
    for wrap_type in [WrapType::A256Gcm, WrapType::A256Ctr] {
        let kms = KmsProviders::new(f.dir.path().join("kms"));
        let envelope = envelope(
            &kms,
            "offline_fs",
            ProviderSettings::new(),
            "sealing-key",
            b"envelope plaintext \x00\xff",
            wrap_type,
        )
        .await
        .unwrap();
        assert_eq!(envelope.wrap_type, wrap_type.name());
        let secret = sealed(
            &SecretPayload::new(SecretContent::Envelope(envelope)),
            "test-key",
        );
        assert_eq!(f.unsealed(&secret).await, b"envelope plaintext \x00\xff");
    }
}

#[tokio::test]
async fn skip_mode_ignores_header_and_signature() {
    let f = fixture_with(Verification::Skipped);
    // upstream's documented example: a fake header and signature
    let upstream = "sealed.fakejwsheader.ewogICAgInZlcnNpb24iOiAiMC4xLjAiLAogICAgInR5cGUiOiAidmF1bHQiLAogICAgIm5hbWUiOiAia2JzOi8vL2RlZmF1bHQvc2VhbGVkLXNlY3JldC90ZXN0IiwKICAgICJwcm92aWRlciI6ICJrYnMiLAogICAgInByb3ZpZGVyX3NldHRpbmdzIjoge30sCiAgICAiYW5ub3RhdGlvbnMiOiB7fQp9Cg.fakesignature";
    assert_eq!(f.unsealed(upstream).await, b"fake");
    // the same secret is refused when verification is on
    let err = fixture()
        .unsealer
        .unseal(upstream.as_bytes())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UnsealError::BadBase64 {
                part: JwsPart::Header,
                ..
            }
        ),
        "{err}"
    );
    // structure and payload are still checked
    for (input, check) in [
        ("fakejwsheader.e30.x", "prefix"),
        ("sealed.a.e30", "parts"),
        ("sealed.a.!!.b", "base64"),
    ] {
        let err = f.unsealer.unseal(input.as_bytes()).await.unwrap_err();
        let ok = match check {
            "prefix" => matches!(err, UnsealError::MissingPrefix),
            "parts" => matches!(err, UnsealError::PartCount { found: 3 }),
            _ => matches!(
                err,
                UnsealError::BadBase64 {
                    part: JwsPart::Payload,
                    ..
                }
            ),
        };
        assert!(ok, "{input}: {err}");
    }
}

/// One row of the tampering table: the input, the error it must give, its ttRPC code.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    expect: fn(&UnsealError) -> bool,
    code: ttrpc::Code,
}

#[tokio::test]
async fn every_malformed_part_has_its_own_error_and_code() {
    use ttrpc::Code;
    let f = fixture();
    let good = sealed(&vault("kbs:///one/2/trois", "kbs"), "test-key");
    let parts: Vec<&str> = good.split('.').collect();
    let (header, payload, signature) = (parts[1], parts[2], parts[3]);
    let replace_payload = |payload_b64: &str| format!("sealed.{header}.{payload_b64}.{signature}");
    let other_key_signed =
        seal(&vault("kbs:///one/2/trois", "kbs"), TEST_KEY_2, "test-key").unwrap();
    let header_kid = |kid: &str| format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#);
    let payload_json =
        br#"{"version":"0.1.0","type":"vault","name":"kbs:///one/2/trois","provider":"kbs"}"#;

    let cases = vec![
        Case { name: "not UTF-8", input: b"sealed.\xff.a.b".to_vec(),
               expect: |e| matches!(e, UnsealError::NotUtf8), code: Code::INVALID_ARGUMENT },
        Case { name: "too large", input: vec![b'a'; MAX_SEALED_SECRET_LEN + 1],
               expect: |e| matches!(e, UnsealError::TooLarge { .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "missing prefix", input: good.as_bytes()["sealed.".len()..].to_vec(),
               expect: |e| matches!(e, UnsealError::MissingPrefix), code: Code::INVALID_ARGUMENT },
        Case { name: "empty", input: Vec::new(),
               expect: |e| matches!(e, UnsealError::MissingPrefix), code: Code::INVALID_ARGUMENT },
        Case { name: "3 parts", input: format!("sealed.{header}.{payload}").into_bytes(),
               expect: |e| matches!(e, UnsealError::PartCount { found: 3 }), code: Code::INVALID_ARGUMENT },
        Case { name: "5 parts", input: format!("{good}.extra").into_bytes(),
               expect: |e| matches!(e, UnsealError::PartCount { found: 5 }), code: Code::INVALID_ARGUMENT },
        Case { name: "header not base64url", input: format!("sealed.{header}=.{payload}.{signature}").into_bytes(),
               expect: |e| matches!(e, UnsealError::BadBase64 { part: JwsPart::Header, .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "payload not base64url", input: replace_payload("a+b/").into_bytes(),
               expect: |e| matches!(e, UnsealError::BadBase64 { part: JwsPart::Payload, .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "signature not base64url", input: format!("sealed.{header}.{payload}.%%").into_bytes(),
               expect: |e| matches!(e, UnsealError::BadBase64 { part: JwsPart::Signature, .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "header not JSON", input: signed_raw("alg=ES256", payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidHeader(_)), code: Code::INVALID_ARGUMENT },
        Case { name: "no alg", input: signed_raw(r#"{"kid":"test-key"}"#, payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::MissingAlg), code: Code::INVALID_ARGUMENT },
        Case { name: "wrong alg", input: signed_raw(r#"{"alg":"HS256","kid":"test-key"}"#, payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::UnsupportedAlg(a) if a == "HS256"), code: Code::INVALID_ARGUMENT },
        Case { name: "alg none", input: signed_raw(r#"{"alg":"none","kid":"test-key"}"#, payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::UnsupportedAlg(a) if a == "none"), code: Code::INVALID_ARGUMENT },
        Case { name: "no kid", input: signed_raw(r#"{"alg":"ES256"}"#, payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::MissingKid), code: Code::INVALID_ARGUMENT },
        Case { name: "kid a bad URI", input: signed_raw(&header_kid("kbs:///a/../b"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidKidUri { .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "kid with ..", input: signed_raw(&header_kid("../outside-key"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidKidPath { .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "kid absolute", input: signed_raw(&header_kid("/etc/passwd"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidKidPath { .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "kid symlink out", input: signed_raw(&header_kid("escape"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidKidPath { reason, .. } if reason.contains("outside")), code: Code::INVALID_ARGUMENT },
        Case { name: "kid a directory", input: signed_raw(&header_kid("sub"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidKidPath { .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "kid unknown file", input: signed_raw(&header_kid("nobody"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::VerificationKeyNotFound { .. }), code: Code::NOT_FOUND },
        Case { name: "kid unknown resource", input: signed_raw(&header_kid("kbs:///default/signing-key/2"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::VerificationKeyNotFound { .. }), code: Code::NOT_FOUND },
        Case { name: "kid not a JWK", input: signed_raw(&header_kid("not-a-jwk"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidVerificationKey { .. }), code: Code::INTERNAL },
        Case { name: "kid resource not a JWK", input: signed_raw(&header_kid("kbs:///default/signing-key/bad"), payload_json).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidVerificationKey { source: JwkError::Missing("kty"), .. }), code: Code::INTERNAL },
        Case { name: "signature too short", input: format!("sealed.{header}.{payload}.{}", &signature[..40]).into_bytes(),
               expect: |e| matches!(e, UnsealError::SignatureEncoding { len: 30 }), code: Code::INVALID_ARGUMENT },
        Case { name: "payload altered", input: replace_payload(&URL_SAFE_NO_PAD.encode(br#"{"version":"0.1.0","type":"vault","name":"kbs:///one/2/quatre","provider":"kbs"}"#)).into_bytes(),
               expect: |e| matches!(e, UnsealError::BadSignature), code: Code::PERMISSION_DENIED },
        Case { name: "signed by another key", input: other_key_signed.into_bytes(),
               expect: |e| matches!(e, UnsealError::BadSignature), code: Code::PERMISSION_DENIED },
        Case { name: "payload not JSON", input: signed_raw(&header_kid("test-key"), b"not json").into_bytes(),
               expect: |e| matches!(e, UnsealError::PayloadNotJson(_)), code: Code::INVALID_ARGUMENT },
        Case { name: "no version", input: signed_raw(&header_kid("test-key"), br#"{"type":"vault"}"#).into_bytes(),
               expect: |e| matches!(e, UnsealError::MissingVersion), code: Code::INVALID_ARGUMENT },
        Case { name: "wrong version", input: signed_raw(&header_kid("test-key"), br#"{"version":"0.2.0","type":"vault","name":"n","provider":"kbs"}"#).into_bytes(),
               expect: |e| matches!(e, UnsealError::UnsupportedVersion(v) if v == "0.2.0"), code: Code::INVALID_ARGUMENT },
        Case { name: "no type", input: signed_raw(&header_kid("test-key"), br#"{"version":"0.1.0"}"#).into_bytes(),
               expect: |e| matches!(e, UnsealError::MissingType), code: Code::INVALID_ARGUMENT },
        Case { name: "unknown type", input: signed_raw(&header_kid("test-key"), br#"{"version":"0.1.0","type":"hsm"}"#).into_bytes(),
               expect: |e| matches!(e, UnsealError::UnknownType(t) if t == "hsm"), code: Code::INVALID_ARGUMENT },
        Case { name: "vault without name", input: signed_raw(&header_kid("test-key"), br#"{"version":"0.1.0","type":"vault","provider":"kbs"}"#).into_bytes(),
               expect: |e| matches!(e, UnsealError::InvalidPayload { .. }), code: Code::INVALID_ARGUMENT },
        Case { name: "unknown provider", input: sealed(&vault("x", "vaultwarden"), "test-key").into_bytes(),
               expect: |e| matches!(e, UnsealError::Provider(KmsError::UnknownProvider(p)) if p == "vaultwarden"), code: Code::INVALID_ARGUMENT },
        Case { name: "missing secret", input: sealed(&vault("kbs:///one/2/absent", "kbs"), "test-key").into_bytes(),
               expect: |e| matches!(e, UnsealError::Provider(KmsError::Kbc(KbcError::NotFound(_)))), code: Code::NOT_FOUND },
        Case { name: "missing offline secret", input: sealed(&vault("absent", "offline_fs"), "test-key").into_bytes(),
               expect: |e| matches!(e, UnsealError::Provider(KmsError::NotFound { .. })), code: Code::NOT_FOUND },
        Case { name: "kbs name not a URI", input: sealed(&vault("plain-name", "kbs"), "test-key").into_bytes(),
               expect: |e| matches!(e, UnsealError::Provider(KmsError::InvalidRequest { .. })), code: Code::INVALID_ARGUMENT },
    ];

    let mut seen = std::collections::HashSet::new();
    for case in cases {
        let err = f.unsealer.unseal(&case.input).await.unwrap_err();
        assert!((case.expect)(&err), "{}: got {err:?}", case.name);
        assert_eq!(unseal_code(&err), case.code, "{}: {err}", case.name);
        seen.insert(err.to_string());
    }
    // the messages tell the malformed parts apart
    assert!(seen.len() >= 30, "{seen:#?}");
}

#[tokio::test]
async fn malformed_envelopes_have_their_own_errors() {
    use ttrpc::Code;
    let f = fixture();
    let kms = KmsProviders::new(f.dir.path().join("kms"));
    let good = envelope(
        &kms,
        "offline_fs",
        ProviderSettings::new(),
        "sealing-key",
        b"x",
        WrapType::A256Gcm,
    )
    .await
    .unwrap();
    let with = |change: &dyn Fn(&mut EnvelopeSecret)| {
        let mut envelope = good.clone();
        change(&mut envelope);
        sealed(
            &SecretPayload::new(SecretContent::Envelope(envelope)),
            "test-key",
        )
    };
    type Row = (String, fn(&UnsealError) -> bool, Code);
    let cases: Vec<Row> = vec![
        (
            with(&|e| e.wrap_type = "A128GCM".into()),
            |e| matches!(e, UnsealError::UnsupportedWrapType(_)),
            Code::INVALID_ARGUMENT,
        ),
        (
            with(&|e| e.encrypted_key = "!!".into()),
            |e| {
                matches!(
                    e,
                    UnsealError::InvalidEnvelopeField {
                        field: "encrypted_key",
                        ..
                    }
                )
            },
            Code::INVALID_ARGUMENT,
        ),
        (
            with(&|e| e.encrypted_data = "a-b_".into()),
            |e| {
                matches!(
                    e,
                    UnsealError::InvalidEnvelopeField {
                        field: "encrypted_data",
                        ..
                    }
                )
            },
            Code::INVALID_ARGUMENT,
        ),
        (
            with(&|e| e.iv = "www".into()),
            |e| matches!(e, UnsealError::InvalidEnvelopeField { field: "iv", .. }),
            Code::INVALID_ARGUMENT,
        ),
        (
            with(&|e| e.iv = "AAAA".into()),
            |e| matches!(e, UnsealError::EnvelopeDecrypt(WrapError::IvLength { .. })),
            Code::INVALID_ARGUMENT,
        ),
        (
            with(&|e| e.encrypted_data = "AAAAAAAAAAAAAAAAAAAAAAAA".into()),
            |e| matches!(e, UnsealError::EnvelopeDecrypt(WrapError::Authentication)),
            Code::INTERNAL,
        ),
        (
            with(&|e| e.key_id = "other-key".into()),
            |e| matches!(e, UnsealError::Provider(KmsError::NotFound { .. })),
            Code::NOT_FOUND,
        ),
        (
            with(&|e| e.provider = "kbs".into()),
            |e| matches!(e, UnsealError::Provider(KmsError::Unsupported { .. })),
            Code::INVALID_ARGUMENT,
        ),
        (
            with(&|e| e.provider = "aws".into()),
            |e| {
                if cfg!(feature = "aws") {
                    matches!(e, UnsealError::Provider(_))
                } else {
                    matches!(e, UnsealError::Provider(KmsError::NotCompiled { .. }))
                }
            },
            if cfg!(feature = "aws") {
                Code::INVALID_ARGUMENT
            } else {
                Code::UNIMPLEMENTED
            },
        ),
    ];
    for (input, expect, code) in cases {
        let err = f.unsealer.unseal(input.as_bytes()).await.unwrap_err();
        assert!(expect(&err), "{err:?}");
        assert_eq!(unseal_code(&err), code, "{err}");
    }
}

#[tokio::test]
async fn the_verification_key_lookup_reads_no_file_for_uri_kids() {
    // a kid that looks like a URI is never looked up as a file, even if one exists
    let f = fixture();
    let dir = f.dir.path().join("sealed-secret");
    std::fs::create_dir_all(dir.join("kbs:")).unwrap();
    let err = f
        .unsealer
        .unseal(signed_raw(r#"{"alg":"ES256","kid":"kbs://x"}"#, b"{}").as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, UnsealError::InvalidKidUri { .. }), "{err}");
}
