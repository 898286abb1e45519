//! The client against testkit's protocol-faithful KBS: every success and error path,
//! asserting error kinds and the KBS's request counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kbs_protocol::JweError;
use kbs_protocol::{Error, KbsClient, TeeKeyAlgorithm};
use testkit::kbs::{Access, FaultTarget, Faults, JweCorruption, KbsConfig, MissingResource};

#[tokio::test]
async fn full_handshake_and_fetch_for_each_key_algorithm() {
    let kbs = start_kbs(KbsConfig::default()).await;
    for algorithm in [
        TeeKeyAlgorithm::EcP256,
        TeeKeyAlgorithm::EcP521,
        TeeKeyAlgorithm::Rsa2048,
        TeeKeyAlgorithm::MlKem768,
    ] {
        let client = sample_client(config(&kbs, algorithm));
        let secret = client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap();
        assert_eq!(secret.as_slice(), SECRET, "{algorithm}");
        let (_, keypair) = client.get_token().await.unwrap();
        assert_eq!(keypair.algorithm(), algorithm);
    }
    let counters = kbs.counters();
    assert_eq!(
        (counters.auth, counters.attest, counters.attest_ok),
        (4, 4, 4)
    );
    assert_eq!((counters.resource_get, counters.resource_ok), (4, 4));
}

#[tokio::test]
async fn token_is_reused_across_fetches_and_get_token() {
    let kbs = start_kbs(KbsConfig::default()).await;
    kbs.put_resource("default/key/2", b"second".to_vec());
    let client = client(&kbs);
    let (token, _) = client.get_token().await.unwrap();
    assert_eq!(
        client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    assert_eq!(
        client
            .get_resource(&uri("kbs:///default/key/2"))
            .await
            .unwrap()
            .as_slice(),
        b"second"
    );
    let (again, _) = client.get_token().await.unwrap();
    assert_eq!(token.as_str(), again.as_str());
    let counters = kbs.counters();
    assert_eq!(
        (counters.auth, counters.attest, counters.resource_get),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn refresh_gives_a_new_token_and_concurrent_refreshes_share_one_attestation() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = client(&kbs);
    let (first, first_key) = client.get_token().await.unwrap();
    let (refreshed, refreshed_key) = client.refresh_token().await.unwrap();
    assert_ne!(first.as_str(), refreshed.as_str());
    assert_ne!(first_key.public_jwk(), refreshed_key.public_jwk());
    // the refreshed token is the cached one now
    let (cached, _) = client.get_token().await.unwrap();
    assert_eq!(cached.as_str(), refreshed.as_str());
    assert_eq!(kbs.counters().attest_ok, 2);

    // Slow /auth: every refresh arrives while the first one attests, so all of them get
    // the token obtained after they asked, from a single attestation.
    kbs.set_faults(Faults {
        target: FaultTarget::Auth,
        delay: Duration::from_millis(300),
        ..Faults::default()
    });
    let refreshes = (0..10).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.refresh_token().await })
    });
    let tokens: Vec<String> = futures::future::join_all(refreshes)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().0.as_str().to_string())
        .collect();
    assert!(tokens
        .iter()
        .all(|t| t == &tokens[0] && t != refreshed.as_str()));
    assert_eq!(kbs.counters().attest_ok, 3);
}

#[tokio::test]
async fn hundred_concurrent_fetches_make_one_attestation() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = client(&kbs);
    let fetches = (0..100).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.get_resource(&uri("kbs:///default/key/1")).await })
    });
    for fetch in futures::future::join_all(fetches).await {
        assert_eq!(fetch.unwrap().unwrap().as_slice(), SECRET);
    }
    let counters = kbs.counters();
    assert_eq!((counters.auth, counters.attest), (1, 1));
    assert_eq!(counters.resource_ok, 100);
}

#[tokio::test]
async fn concurrent_callers_share_one_failed_attestation() {
    let kbs = start_kbs(KbsConfig {
        version_requirement: "=0.5.0".into(),
        ..KbsConfig::default()
    })
    .await;
    // Slow /auth so that every caller is waiting while the one attempt runs.
    kbs.set_faults(Faults {
        target: FaultTarget::Auth,
        delay: Duration::from_millis(200),
        ..Faults::default()
    });
    let client = client(&kbs);
    let fetches = (0..20).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.get_resource(&uri("kbs:///default/key/1")).await })
    });
    for fetch in futures::future::join_all(fetches).await {
        assert!(matches!(
            fetch.unwrap(),
            Err(Error::AuthRejected { status: 401, .. })
        ));
    }
    assert_eq!(kbs.counters().auth, 1);
}

#[tokio::test]
async fn version_mismatch_is_an_auth_rejection_with_the_kbs_reason() {
    let kbs = start_kbs(KbsConfig {
        version_requirement: "=0.5.0".into(),
        ..KbsConfig::default()
    })
    .await;
    let err = client(&kbs)
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap_err();
    let Error::AuthRejected { status, info, .. } = &err else {
        panic!("expected AuthRejected, got {err:?}");
    };
    assert_eq!(*status, 401);
    let info = info.as_ref().unwrap();
    assert_eq!(info.kind(), "AttestationError");
    assert!(info.detail.contains("Version Mismatch"), "{}", info.detail);
    // 401 is not transient: no retries.
    assert_eq!((kbs.counters().auth, kbs.counters().attest), (1, 0));
}

type Tamper = fn(&[u8]) -> Vec<u8>;

#[tokio::test]
async fn tampered_report_data_is_refused_by_the_kbs() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let tamperings: [Tamper; 3] = [
        |rd| {
            let mut rd = rd.to_vec();
            rd[0] ^= 1;
            rd
        },
        // Zero-padding to 64 bytes (what hardware attesters do) is refused for `sample`.
        |rd| {
            let mut rd = rd.to_vec();
            rd.resize(64, 0);
            rd
        },
        |rd| rd[..32].to_vec(),
    ];
    for tamper in tamperings {
        let client = KbsClient::background_check(
            config(&kbs, TeeKeyAlgorithm::EcP256),
            Arc::new(TamperingProvider { tamper }),
        )
        .unwrap();
        let err = client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap_err();
        let Error::AttestationRejected {
            status: 401,
            info: Some(info),
            ..
        } = &err
        else {
            panic!("expected AttestationRejected, got {err:?}");
        };
        assert!(
            info.detail.contains("report data mismatch"),
            "{}",
            info.detail
        );
    }
    let counters = kbs.counters();
    assert_eq!(
        (counters.attest, counters.attest_ok, counters.resource_get),
        (3, 0, 0)
    );
}

#[tokio::test]
async fn device_evidence_is_bound_to_nonce_and_key() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let good = KbsClient::background_check(
        config(&kbs, TeeKeyAlgorithm::EcP256),
        Arc::new(WithDeviceProvider {
            wrong_binding: false,
        }),
    )
    .unwrap();
    assert_eq!(
        good.get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    let bad = KbsClient::background_check(
        config(&kbs, TeeKeyAlgorithm::EcP256),
        Arc::new(WithDeviceProvider {
            wrong_binding: true,
        }),
    )
    .unwrap();
    assert!(matches!(
        bad.get_resource(&uri("kbs:///default/key/1")).await,
        Err(Error::AttestationRejected { status: 401, .. })
    ));
}

#[tokio::test]
async fn selected_hash_algorithm_is_honoured_and_unknown_ones_refused() {
    let kbs = start_kbs(KbsConfig {
        selected_hash_algorithm: Some("SHA512".into()),
        ..KbsConfig::default()
    })
    .await;
    assert_eq!(
        client(&kbs)
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );

    let kbs = start_kbs(KbsConfig {
        selected_hash_algorithm: Some("sm3".into()),
        ..KbsConfig::default()
    })
    .await;
    let err = client(&kbs)
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Challenge(_)), "{err:?}");
    assert_eq!(kbs.counters().attest, 0);
}

#[tokio::test]
async fn initdata_is_sent_as_toml() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let mut config = config(&kbs, TeeKeyAlgorithm::EcP256);
    let toml = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n";
    config.initdata_toml = Some(toml.to_string());
    sample_client(config).get_token().await.unwrap();
    assert_eq!(
        kbs.last_init_data(),
        Some(serde_json::json!({"format": "toml", "body": toml}))
    );
}

#[tokio::test]
async fn tampered_jwe_replies_are_typed_errors() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = client(&kbs);
    for (corruption, expected) in [
        (JweCorruption::Tag, JweError::Decrypt),
        (JweCorruption::Ciphertext, JweError::Decrypt),
        (JweCorruption::Protected, JweError::Decrypt),
        (JweCorruption::EncryptedKey, JweError::KeyUnwrap),
    ] {
        kbs.set_faults(Faults {
            corrupt_jwe: Some(corruption),
            ..Faults::default()
        });
        let err = client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Jwe(e) if *e == expected),
            "{corruption:?}: {err:?}"
        );
    }
    kbs.set_faults(Faults::default());
    assert_eq!(
        client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    assert_eq!(kbs.counters().auth, 1);
}

#[tokio::test]
async fn revoked_token_costs_exactly_one_reattestation() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = client(&kbs);
    client
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap();
    kbs.revoke_tokens();
    assert_eq!(
        client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    let counters = kbs.counters();
    assert_eq!((counters.auth, counters.attest_ok), (2, 2));
    assert_eq!((counters.resource_get, counters.resource_ok), (3, 2));
}

#[tokio::test]
async fn token_is_renewed_before_it_expires_without_a_401() {
    let kbs = start_kbs(KbsConfig {
        token_lifetime: Duration::from_secs(2),
        ..KbsConfig::default()
    })
    .await;
    let client = client(&kbs);
    client
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap();
    client
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap();
    assert_eq!(kbs.counters().auth, 1);
    // The refresh margin is capped at half the lifetime (1 s here).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap();
    let counters = kbs.counters();
    assert_eq!(counters.auth, 2);
    assert_eq!(counters.resource_get, counters.resource_ok);
}

#[tokio::test]
async fn missing_resource_with_trustee_401_is_final_after_one_attestation() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = client(&kbs);
    let err = client
        .get_resource(&uri("kbs:///default/key/missing"))
        .await
        .unwrap_err();
    let Error::Unauthorized {
        info: Some(info), ..
    } = &err
    else {
        panic!("expected Unauthorized, got {err:?}");
    };
    assert_eq!(info.kind(), "PluginInternalError");
    assert_eq!((kbs.counters().auth, kbs.counters().resource_get), (1, 1));
}

#[tokio::test]
async fn policy_denial_is_final_and_not_a_reattestation_loop() {
    let kbs = start_kbs(KbsConfig::default()).await;
    kbs.put_resource("default/key/denied", b"no".to_vec());
    kbs.set_access("default/key/denied", Access::Deny);
    let client = client(&kbs);
    let err = client
        .get_resource(&uri("kbs:///default/key/denied"))
        .await
        .unwrap_err();
    let Error::Unauthorized {
        info: Some(info), ..
    } = &err
    else {
        panic!("expected Unauthorized, got {err:?}");
    };
    assert_eq!(info.kind(), "PolicyDeny");
    assert_eq!((kbs.counters().auth, kbs.counters().resource_get), (1, 1));
    // Asking again with the same (cached) token: known denied, no new attestation.
    assert!(matches!(
        client.get_resource(&uri("kbs:///default/key/denied")).await,
        Err(Error::Unauthorized { .. })
    ));
    assert_eq!((kbs.counters().auth, kbs.counters().resource_get), (1, 2));
    // The token still works for allowed resources.
    client
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap();
    assert_eq!(kbs.counters().auth, 1);
}

#[tokio::test]
async fn forbidden_and_not_found_are_final() {
    let kbs = start_kbs(KbsConfig {
        policy_deny_status: 403,
        missing_resource: MissingResource::NotFound,
        ..KbsConfig::default()
    })
    .await;
    kbs.put_resource("default/key/denied", b"no".to_vec());
    kbs.set_access("default/key/denied", Access::Deny);
    let client = client(&kbs);
    assert!(matches!(
        client.get_resource(&uri("kbs:///default/key/denied")).await,
        Err(Error::Forbidden { .. })
    ));
    let err = client
        .get_resource(&uri("kbs:///default/key/none"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { path, .. } if path == "resource/default/key/none"),
        "{err:?}"
    );
    // Unknown plugins are 404 PluginNotFound.
    let err = client
        .get_resource(&uri("kbs+nosuchplugin:///a/b"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { info: Some(i), .. } if i.kind() == "PluginNotFound"),
        "{err:?}"
    );
    assert_eq!(kbs.counters().auth, 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let kbs = start_kbs(KbsConfig::default()).await;
    kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        fail_with_500: 2,
        ..Faults::default()
    });
    let client = client(&kbs);
    assert_eq!(
        client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    assert_eq!(
        (kbs.counters().resource_get, kbs.counters().resource_ok),
        (3, 1)
    );

    // More failures than tries: the 500 surfaces with the KBS's error body.
    kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        fail_with_500: 10,
        ..Faults::default()
    });
    let err = client
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ServerError { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(kbs.counters().resource_get, 6);
}

#[tokio::test]
async fn dropped_connections_during_the_handshake_are_retried() {
    let kbs = start_kbs(KbsConfig::default()).await;
    kbs.set_faults(Faults {
        target: FaultTarget::Attest,
        drop_connections: 2,
        ..Faults::default()
    });
    let client = client(&kbs);
    assert_eq!(
        client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    let counters = kbs.counters();
    // A lost /attest reply restarts the whole handshake (the nonce may be spent).
    assert_eq!(
        (counters.auth, counters.attest, counters.attest_ok),
        (3, 3, 1)
    );
}

#[tokio::test]
async fn a_slow_kbs_times_out() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = client(&kbs);
    client.get_token().await.unwrap();
    kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        delay: Duration::from_secs(3),
        ..Faults::default()
    });
    let mut config = config(&kbs, TeeKeyAlgorithm::EcP256);
    config.request_timeout = Duration::from_millis(200);
    let impatient = sample_client(config);
    impatient.get_token().await.unwrap();
    let started = std::time::Instant::now();
    let err = impatient
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn unreachable_kbs_is_a_transport_error_after_bounded_retries() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let config = config(&kbs, TeeKeyAlgorithm::EcP256);
    kbs.stop().await;
    let err = sample_client(config).get_token().await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn restart_on_the_same_port_keeps_tokens_usable() {
    let mut kbs = start_kbs(KbsConfig::default()).await;
    let client = client(&kbs);
    client
        .get_resource(&uri("kbs:///default/key/1"))
        .await
        .unwrap();
    kbs.restart().await.unwrap();
    // The session cookie is unknown now; the Bearer token still authorizes.
    assert_eq!(
        client
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    assert_eq!(kbs.counters().auth, 1);
}

#[tokio::test]
async fn https_with_the_generated_ca_and_failure_without_it() {
    let kbs = start_kbs(KbsConfig {
        tls: true,
        ..KbsConfig::default()
    })
    .await;
    assert!(kbs.url().starts_with("https://127.0.0.1:"));
    assert_eq!(
        client(&kbs)
            .get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );

    let mut untrusting = config(&kbs, TeeKeyAlgorithm::EcP256);
    untrusting.extra_root_certs_pem.clear();
    let err = sample_client(untrusting).get_token().await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert_eq!(kbs.counters().auth, 1);
}

#[tokio::test]
async fn passport_mode_uses_the_provider_token_once_for_many_fetches() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let provider = Arc::new(AaLikeTokenProvider {
        aa: client(&kbs),
        calls: AtomicUsize::new(0),
    });
    let cdh = KbsClient::passport(config(&kbs, TeeKeyAlgorithm::EcP256), provider.clone()).unwrap();
    let fetches = (0..50).map(|_| {
        let cdh = cdh.clone();
        tokio::spawn(async move { cdh.get_resource(&uri("kbs:///default/key/1")).await })
    });
    for fetch in futures::future::join_all(fetches).await {
        assert_eq!(fetch.unwrap().unwrap().as_slice(), SECRET);
    }
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    assert_eq!(kbs.counters().auth, 1);

    // A revoked token: one new token from the provider (AA re-attests when it expires).
    kbs.revoke_tokens();
    provider.aa.invalidate_token().await;
    assert_eq!(
        cdh.get_resource(&uri("kbs:///default/key/1"))
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
}
