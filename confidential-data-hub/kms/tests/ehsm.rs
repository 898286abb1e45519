//! Provider `ehsm` against testkit's eHSM-KMS (`testkit::kms::ehsm`), which checks the
//! HMAC signature, timestamp, replay and key ownership as eHSM's service does.

#![cfg(feature = "ehsm")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{decrypt_err, encrypt, object, round_trip, secret};
use kms::{Annotations, KmsError, KmsProviders, ProviderSettings};
use serde_json::json;
use testkit::kms::ehsm::EhsmKms;

struct Setup {
    server: EhsmKms,
    dir: tempfile::TempDir,
    kms: KmsProviders,
    app_id: String,
}

impl Setup {
    async fn new() -> Self {
        let server = EhsmKms::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ehsm")).unwrap();
        std::fs::write(dir.path().join("ehsm/ca.pem"), server.ca_pem()).unwrap();
        let (app_id, api_key) = server.enroll();
        std::fs::write(
            dir.path().join(format!("ehsm/credential_{app_id}.json")),
            json!({"AppId": app_id, "ApiKey": api_key}).to_string(),
        )
        .unwrap();
        let kms = KmsProviders::new(dir.path());
        Self {
            server,
            dir,
            kms,
            app_id,
        }
    }

    fn settings(&self) -> ProviderSettings {
        object(json!({"app_id": self.app_id, "endpoint": self.server.endpoint()}))
    }

    /// Why decrypting `ciphertext` with `key_id` and the credential files as they are now
    /// fails.
    async fn decrypt_err(
        &self,
        settings: &ProviderSettings,
        ciphertext: &[u8],
        key_id: &str,
    ) -> KmsError {
        decrypt_err(
            &self.kms,
            "ehsm",
            settings,
            ciphertext,
            key_id,
            &Annotations::new(),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehsm_encrypts_decrypts_and_serves_secrets() {
    let setup = Setup::new().await;
    let key_id = setup.server.create_key(&setup.app_id);
    setup
        .server
        .put_secret(&setup.app_id, "db-password", "hunter2");
    setup
        .server
        .put_secret(&setup.app_id, "db-password", "correct horse");
    let settings = setup.settings();
    let none = Annotations::new();

    let (ciphertext, annotations) =
        round_trip(&setup.kms, "ehsm", &settings, &key_id, b"data key").await;
    assert!(annotations.is_empty());
    // as upstream: the ciphertext is eHSM's base64 text
    assert!(ciphertext.iter().all(|b| b.is_ascii_graphic()));

    let getter = setup.kms.getter("ehsm", &settings).await.unwrap();
    assert_eq!(
        secret(&*getter, "db-password", &none).await,
        b"correct horse"
    );
    let first = object(json!({"version_id": 1}));
    assert_eq!(secret(&*getter, "db-password", &first).await, b"hunter2");
    assert!(getter
        .get_secret("db-password", &object(json!({"version_id": 7})))
        .await
        .unwrap_err()
        .is_not_found());
    assert!(getter
        .get_secret("db-password", &object(json!({"version_id": "1"})))
        .await
        .unwrap_err()
        .is_invalid_request());
    let err = getter.get_secret("absent", &none).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        setup.server.calls(),
        [
            "Encrypt",
            "Decrypt",
            "GetSecretValue",
            "GetSecretValue",
            "GetSecretValue"
        ]
    );

    let err = setup
        .decrypt_err(&settings, &ciphertext, "no-such-key")
        .await;
    assert!(err.is_not_found(), "{err}");
    let err = setup.decrypt_err(&settings, b"\xff binary", &key_id).await;
    assert!(err.is_invalid_request(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehsm_refuses_bad_signatures_old_timestamps_and_other_apps_keys() {
    let setup = Setup::new().await;
    let key_id = setup.server.create_key(&setup.app_id);
    let settings = setup.settings();
    let (ciphertext, _) = encrypt(&setup.kms, "ehsm", &settings, b"x", &key_id).await;

    // the service's clock is 11 minutes behind
    setup.server.set_clock_skew_ms(-11 * 60 * 1000);
    let err = setup.decrypt_err(&settings, &ciphertext, &key_id).await;
    assert!(err.is_denied(), "{err}");
    assert!(err.to_string().contains("Timestamp error"), "{err}");
    setup.server.set_clock_skew_ms(0);

    // a wrong API key
    let credential = setup
        .dir
        .path()
        .join(format!("ehsm/credential_{}.json", setup.app_id));
    let good = std::fs::read(&credential).unwrap();
    std::fs::write(
        &credential,
        json!({"AppId": setup.app_id, "ApiKey": "not-the-key"}).to_string(),
    )
    .unwrap();
    let err = setup.decrypt_err(&settings, &ciphertext, &key_id).await;
    assert!(err.is_denied(), "{err}");
    assert!(err.to_string().contains("sign error"), "{err}");
    std::fs::write(&credential, good).unwrap();

    // another app's key
    let (other_app, other_key) = setup.server.enroll();
    std::fs::write(
        setup
            .dir
            .path()
            .join(format!("ehsm/credential.{other_app}.json")),
        json!({"AppId": other_app, "ApiKey": other_key}).to_string(),
    )
    .unwrap();
    let other = object(json!({"app_id": other_app, "endpoint": setup.server.endpoint()}));
    let err = setup.decrypt_err(&other, &ciphertext, &key_id).await;
    assert!(err.is_denied(), "{err}");
    assert!(err.to_string().contains("appid error"), "{err}");

    // without the eHSM CA the server is not trusted
    std::fs::remove_file(setup.dir.path().join("ehsm/ca.pem")).unwrap();
    let err = setup.decrypt_err(&settings, &ciphertext, &key_id).await;
    assert!(matches!(err, KmsError::Service { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(setup.server.calls(), ["Encrypt"]);
}
