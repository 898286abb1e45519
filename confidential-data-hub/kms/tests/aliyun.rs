//! Provider `aliyun` against testkit's Alibaba Cloud KMS (`testkit::kms::aliyun`), which
//! checks signatures, time and credentials as the service does: the three credential
//! kinds, their files, and the service's refusals as the provider reports them.

#![cfg(feature = "aliyun")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod common;

use common::{decrypt_err, encrypt, object, round_trip, secret};
use kms::{AliyunNetwork, Annotations, KmsError, KmsProviders, ProviderSettings};
use serde_json::json;
use testkit::kms::aliyun::AliyunKms;

const INSTANCE: &str = "kst-hzz0123456789";

struct Setup {
    server: AliyunKms,
    dir: tempfile::TempDir,
    kms: KmsProviders,
}

impl Setup {
    async fn new() -> Self {
        let server = AliyunKms::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("aliyun")).unwrap();
        std::fs::write(
            dir.path()
                .join(format!("aliyun/PrivateKmsCA_{INSTANCE}.pem")),
            server.ca_pem(),
        )
        .unwrap();
        let kms = KmsProviders::new(dir.path()).with_aliyun_network(AliyunNetwork {
            resolve: Some(server.addr()),
            extra_root_pems: vec![server.ca_pem().to_string()],
            metadata_url: Some(server.metadata_url()),
        });
        Self { server, dir, kms }
    }

    fn key_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("aliyun")
    }

    /// A client key of the server, provisioned in the credential directory.
    fn client_key(&self) -> ProviderSettings {
        let key = self.server.new_client_key();
        self.write_client_key(&key.id, &key.json, &key.password);
        object(json!({
            "client_type": "client_key",
            "client_key_id": key.id,
            "kms_instance_id": INSTANCE,
        }))
    }

    /// Why decrypting `ciphertext` with the key `key-1` and the credential files as they are
    /// now fails.
    async fn decrypt_err(
        &self,
        settings: &ProviderSettings,
        ciphertext: &[u8],
        annotations: &Annotations,
    ) -> KmsError {
        decrypt_err(
            &self.kms,
            "aliyun",
            settings,
            ciphertext,
            "key-1",
            annotations,
        )
        .await
    }

    fn write_client_key(&self, id: &str, json: &str, password: &str) {
        std::fs::write(self.key_dir().join(format!("clientKey_{id}.json")), json).unwrap();
        std::fs::write(
            self.key_dir().join(format!("password_{id}.json")),
            format!("{password}\n"),
        )
        .unwrap();
    }
}

fn iv_of(annotations: &Annotations) -> &str {
    annotations["iv"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_encrypt_decrypt_and_read_secrets() {
    let setup = Setup::new().await;
    setup.server.add_key("key-1");
    setup.server.put_secret("db-password", "v1", "hunter2");
    setup
        .server
        .put_secret("db-password", "v2", "correct horse");
    setup
        .server
        .put_binary_secret("tls-key", "v1", &[0, 1, 2, 255]);
    let settings = setup.client_key();

    let (ciphertext, annotations) =
        round_trip(&setup.kms, "aliyun", &settings, "key-1", b"data key").await;
    assert_eq!(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            iv_of(&annotations)
        )
        .unwrap()
        .len(),
        12
    );

    let getter = setup.kms.getter("aliyun", &settings).await.unwrap();
    let none = Annotations::new();
    assert_eq!(
        secret(&*getter, "db-password", &none).await,
        b"correct horse"
    );
    for annotations in [
        json!({"version_stage": "ACSPrevious"}),
        json!({"version_id": "v1", "version_stage": ""}),
    ] {
        let annotations = object(annotations);
        assert_eq!(
            secret(&*getter, "db-password", &annotations).await,
            b"hunter2"
        );
    }
    assert_eq!(secret(&*getter, "tls-key", &none).await, [0, 1, 2, 255]);
    assert_eq!(
        setup.server.calls(),
        [
            "Encrypt",
            "Decrypt",
            "GetSecretValue",
            "GetSecretValue",
            "GetSecretValue",
            "GetSecretValue"
        ]
    );

    // what the service does not hold, and what it cannot decrypt
    let err = getter.get_secret("absent", &none).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        err.to_string(),
        "KMS provider `aliyun` has no secret `absent`"
    );
    let err = decrypt_err(
        &setup.kms,
        "aliyun",
        &settings,
        &ciphertext,
        "key-2",
        &annotations,
    )
    .await;
    assert!(err.is_not_found(), "{err}");
    let mut tampered = ciphertext.clone();
    tampered[0] ^= 1;
    let err = setup.decrypt_err(&settings, &tampered, &annotations).await;
    assert!(matches!(err, KmsError::Service { .. }), "{err}");
    assert!(err.to_string().contains("InvalidParameter"), "{err}");
    for bad in [json!({}), json!({"iv": 5}), json!({"iv": "***"})] {
        let err = setup
            .decrypt_err(&settings, &ciphertext, &object(bad))
            .await;
        assert!(err.is_invalid_request(), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_refuses_bad_signatures_skewed_clocks_and_unknown_keys() {
    let setup = Setup::new().await;
    setup.server.add_key("key-1");
    let settings = setup.client_key();
    let (ciphertext, annotations) = encrypt(&setup.kms, "aliyun", &settings, b"x", "key-1").await;

    // another client key's private key under this key's id: a wrong signature
    let id = settings["client_key_id"].as_str().unwrap().to_string();
    let other = setup.server.new_client_key();
    setup.write_client_key(&id, &other.json.replace(&other.id, &id), &other.password);
    let err = setup
        .decrypt_err(&settings, &ciphertext, &annotations)
        .await;
    assert!(err.is_denied(), "{err}");
    assert!(err.to_string().contains("SignatureNotMatch"), "{err}");
    assert!(err.to_string().contains("HTTP 401"), "{err}");

    // the right key, but the service's clock is 20 minutes ahead
    let fresh = setup.client_key();
    setup.server.set_clock_skew(20 * 60);
    let err = setup.decrypt_err(&fresh, &ciphertext, &annotations).await;
    assert!(err.is_denied(), "{err}");
    assert!(err.to_string().contains("RequestTimeTooSkewed"), "{err}");
    setup.server.set_clock_skew(0);

    // a client key the instance does not know
    let unknown = AliyunKms::start().await.unwrap().new_client_key();
    setup.write_client_key(&unknown.id, &unknown.json, &unknown.password);
    let mut settings = fresh.clone();
    settings.insert("client_key_id".into(), json!(unknown.id));
    let err = setup
        .decrypt_err(&settings, &ciphertext, &annotations)
        .await;
    assert!(err.is_denied(), "{err}");
    assert!(
        err.to_string().contains("InvalidAccessKeyId.NotFound"),
        "{err}"
    );

    // an instance CA that did not issue the server's certificate
    let stranger = AliyunKms::start().await.unwrap();
    std::fs::write(
        setup.key_dir().join(format!("PrivateKmsCA_{INSTANCE}.pem")),
        stranger.ca_pem(),
    )
    .unwrap();
    let err = setup.decrypt_err(&fresh, &ciphertext, &annotations).await;
    assert!(matches!(err, KmsError::Service { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(setup.server.calls(), ["Encrypt"]);
}

#[tokio::test]
async fn client_key_files_are_checked() {
    let setup = Setup::new().await;
    let settings = setup.client_key();
    let id = settings["client_key_id"].as_str().unwrap().to_string();
    let key_file = setup.key_dir().join(format!("clientKey_{id}.json"));
    let good = std::fs::read_to_string(&key_file).unwrap();
    let password_file = setup.key_dir().join(format!("password_{id}.json"));
    let cases: Vec<(&Path, Vec<u8>)> = vec![
        (&key_file, b"{\"KeyId\":".to_vec()),
        (&key_file, b"[1,2]".to_vec()),
        (&key_file, vec![b' '; 70_000]),
        (
            &key_file,
            good.replace(&id, "KAAP.someone-else").into_bytes(),
        ),
        (&password_file, b"wrong password".to_vec()),
        (&password_file, vec![0xff, 0xfe]),
    ];
    for (path, contents) in cases {
        let saved = std::fs::read(path).unwrap();
        std::fs::write(path, &contents).unwrap();
        let err = setup.kms.decrypter("aliyun", &settings).await.unwrap_err();
        assert!(matches!(err, KmsError::Credential { .. }), "{err}");
        assert!(!err.to_string().contains("PrivateKeyData\":\"MII"), "{err}");
        std::fs::write(path, saved).unwrap();
    }
    std::fs::remove_file(setup.key_dir().join(format!("PrivateKmsCA_{INSTANCE}.pem"))).unwrap();
    let err = setup.kms.decrypter("aliyun", &settings).await.unwrap_err();
    assert!(err.to_string().contains("PrivateKmsCA_"), "{err}");
    std::fs::write(
        setup.key_dir().join(format!("PrivateKmsCA_{INSTANCE}.pem")),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(setup.kms.decrypter("aliyun", &settings).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_tokens_read_secrets_and_expire() {
    let setup = Setup::new().await;
    setup
        .server
        .put_secret("app/token", "v1", "from secrets manager");
    let (ak, sk, token) = setup.server.new_sts_credentials(3600);
    std::fs::write(setup.key_dir().join("sts"), format!("{ak}:{sk}:{token}\n")).unwrap();
    let settings = object(json!({
        "client_type": "sts_token",
        "token_path": "sts",
        "region_id": "cn-hangzhou",
    }));
    let none = Annotations::new();
    let getter = setup.kms.getter("aliyun", &settings).await.unwrap();
    assert_eq!(
        secret(&*getter, "app/token", &none).await,
        b"from secrets manager"
    );
    let err = getter.get_secret("absent", &none).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // upstream's absolute token_path, inside the credential directory
    let mut absolute = settings.clone();
    absolute.insert(
        "token_path".into(),
        json!(setup.key_dir().join("sts").to_str().unwrap()),
    );
    assert!(setup.kms.getter("aliyun", &absolute).await.is_ok());

    // envelopes need a client key
    let err = setup
        .kms
        .decrypter("aliyun", &settings)
        .await
        .unwrap()
        .decrypt(b"c", "k", &none)
        .await
        .unwrap_err();
    assert!(err.is_invalid_request(), "{err}");

    let refused = |contents: String, code: &'static str| {
        let setup = &setup;
        let settings = settings.clone();
        async move {
            std::fs::write(setup.key_dir().join("sts"), contents).unwrap();
            let err = setup
                .kms
                .getter("aliyun", &settings)
                .await
                .unwrap()
                .get_secret("app/token", &Annotations::new())
                .await
                .unwrap_err();
            assert!(err.is_denied(), "{code}: {err}");
            assert!(err.to_string().contains(code), "{err}");
        }
    };
    let (ak2, sk2, token2) = setup.server.new_sts_credentials(-60);
    refused(
        format!("{ak2}:{sk2}:{token2}"),
        "InvalidSecurityToken.Expired",
    )
    .await;
    refused(
        format!("{ak}:wrong-secret:{token}"),
        "SignatureDoesNotMatch",
    )
    .await;
    refused(
        format!("{ak}:{sk}:{token2}"),
        "InvalidSecurityToken.Mismatch",
    )
    .await;
    refused(
        format!("STS.unknown:{sk}:{token}"),
        "InvalidAccessKeyId.NotFound",
    )
    .await;
    setup.server.set_clock_skew(-20 * 60);
    refused(format!("{ak}:{sk}:{token}"), "InvalidTimeStamp.Expired").await;
    assert_eq!(setup.server.calls(), ["GetSecretValue", "GetSecretValue"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_ram_roles_get_credentials_from_the_metadata_server() {
    let setup = Setup::new().await;
    setup
        .server
        .put_secret("app/role-secret", "v1", "via the RAM role");
    setup.server.attach_ram_role("cdh-role", 3600);
    std::fs::write(
        setup.key_dir().join("ecsRamRole.json"),
        r#"{"ecs_ram_role_name":"cdh-role","region_id":"cn-shanghai"}"#,
    )
    .unwrap();
    let settings = object(json!({"client_type": "ecs_ram_role"}));
    let none = Annotations::new();
    assert_eq!(
        setup
            .kms
            .getter("aliyun", &settings)
            .await
            .unwrap()
            .get_secret("app/role-secret", &none)
            .await
            .unwrap()
            .as_slice(),
        b"via the RAM role"
    );

    // a role this instance does not have, and a role whose credentials expired
    for (role, code) in [
        ("other-role", "HTTP 404"),
        ("stale-role", "InvalidSecurityToken.Expired"),
    ] {
        setup.server.attach_ram_role("stale-role", -60);
        std::fs::write(
            setup.key_dir().join("ecsRamRole.json"),
            format!(r#"{{"ecs_ram_role_name":"{role}","region_id":"cn-shanghai"}}"#),
        )
        .unwrap();
        let err = setup
            .kms
            .getter("aliyun", &settings)
            .await
            .unwrap()
            .get_secret("app/role-secret", &none)
            .await
            .unwrap_err();
        assert!(err.is_denied(), "{role}: {err}");
        assert!(err.to_string().contains(code), "{err}");
    }
}
