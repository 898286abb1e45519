//! The client against a hostile KBS (testkit's fault switches): every fault ends in a typed
//! error or a recovery, within a bounded number of requests and bounded time, and never in
//! a re-attestation loop (attestations are counted at the KBS).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use kbs_protocol::JweError;
use kbs_protocol::{Error, KbsClient, TeeKeyAlgorithm};
use testkit::kbs::{
    FaultTarget, Faults, JweCorruption, KbsConfig, NonceFault, ReplyFault, TestKbs,
};

const KEY: &str = "kbs:///default/key/1";

/// Runs `op`, asserts it took less than `limit`, returns its outcome.
async fn timed<T>(limit: Duration, op: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let outcome = op.await;
    let took = started.elapsed();
    assert!(took < limit, "took {took:?}, limit {limit:?}");
    outcome
}

async fn read(client: &KbsClient) -> Result<Vec<u8>, Error> {
    client.get_resource(&uri(KEY)).await.map(|s| s.to_vec())
}

/// A client with a token already (one attestation), and the KBS faulted after it.
async fn attested(kbs: &TestKbs) -> KbsClient {
    let client = client(kbs);
    assert_eq!(read(&client).await.unwrap(), SECRET);
    client
}

#[tokio::test]
async fn damaged_and_misaddressed_jwe_replies_are_final_typed_errors() {
    let kbs = start_kbs(KbsConfig::default()).await;
    for algorithm in [TeeKeyAlgorithm::EcP256, TeeKeyAlgorithm::Rsa2048] {
        let client = sample_client(config(&kbs, algorithm));
        client.get_token().await.unwrap();
        for (corruption, expected) in [
            (
                JweCorruption::WrongEnc,
                JweError::UnsupportedEnc("A128CBC-HS256".into()),
            ),
            (JweCorruption::TruncatedCiphertext, JweError::Decrypt),
            (JweCorruption::Tag, JweError::Decrypt),
            (JweCorruption::ForeignKey, JweError::KeyUnwrap),
        ] {
            // an RSA client gets a foreign P-256 reply: refused before any decryption
            let expected = match (algorithm, &expected, corruption) {
                (TeeKeyAlgorithm::Rsa2048, _, JweCorruption::ForeignKey) => JweError::KeyMismatch {
                    alg: "ECDH-ES+A256KW".into(),
                    key: "RSA",
                },
                _ => expected,
            };
            kbs.set_faults(Faults {
                corrupt_jwe: Some(corruption),
                ..Faults::default()
            });
            let before = kbs.counters();
            let err = timed(Duration::from_secs(2), read(&client))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::Jwe(e) if *e == expected),
                "{algorithm} {corruption:?}: {err:?}"
            );
            let after = kbs.counters();
            // one GET, no retry, no new attestation: a bad reply is not a bad token
            assert_eq!(
                after.resource_get - before.resource_get,
                1,
                "{corruption:?}"
            );
            assert_eq!(after.attest, before.attest, "{corruption:?}");
        }
        kbs.set_faults(Faults::default());
        assert_eq!(read(&client).await.unwrap(), SECRET);
    }
}

#[tokio::test]
async fn a_repeated_challenge_nonce_is_refused_without_a_retry() {
    let kbs = start_kbs(KbsConfig::default()).await;
    kbs.set_faults(Faults {
        nonce: NonceFault::Reused,
        ..Faults::default()
    });
    let client = client(&kbs);
    client.get_token().await.unwrap();
    let err = timed(Duration::from_secs(2), client.refresh_token())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("repeated a challenge nonce")),
        "{err:?}"
    );
    let counters = kbs.counters();
    // the second handshake stops at the challenge: no evidence is bound to the old nonce
    assert_eq!((counters.auth, counters.attest), (2, 1));

    kbs.set_faults(Faults::default());
    client.refresh_token().await.unwrap();
    assert_eq!(kbs.counters().attest_ok, 2);
}

#[tokio::test]
async fn malformed_challenge_nonces_are_protocol_errors_without_retries() {
    let kbs = start_kbs(KbsConfig::default()).await;
    for (fault, reason) in [
        (NonceFault::Empty, "empty"),
        (NonceFault::Oversized, "more than"),
        (NonceFault::NotAString, "challenge:"),
    ] {
        kbs.set_faults(Faults {
            nonce: fault,
            ..Faults::default()
        });
        let before = kbs.counters();
        let err = timed(Duration::from_secs(2), client(&kbs).get_token())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Protocol { reason: r, .. } if r.contains(reason)),
            "{fault:?}: {err:?}"
        );
        let after = kbs.counters();
        assert_eq!(after.auth - before.auth, 1, "{fault:?}");
        assert_eq!(after.attest, before.attest, "{fault:?}");
    }
}

#[tokio::test]
async fn a_500_storm_costs_the_configured_tries_only() {
    let kbs = start_kbs(KbsConfig::default()).await;
    for target in [FaultTarget::Auth, FaultTarget::Attest] {
        kbs.set_faults(Faults {
            target,
            fail_with_500: u32::MAX,
            ..Faults::default()
        });
        let before = kbs.counters();
        let err = timed(Duration::from_secs(2), client(&kbs).get_token())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::ServerError { status: 500, .. }),
            "{err:?}"
        );
        // three handshakes (the test config's tries), none more
        let after = kbs.counters();
        assert_eq!(after.auth - before.auth, 3, "{target:?}");
    }

    kbs.set_faults(Faults::default());
    let client = attested(&kbs).await;
    kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        fail_with_500: u32::MAX,
        ..Faults::default()
    });
    let before = kbs.counters();
    let err = timed(Duration::from_secs(2), read(&client))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ServerError { .. }), "{err:?}");
    let after = kbs.counters();
    assert_eq!(after.resource_get - before.resource_get, 3);
    assert_eq!(after.attest, before.attest);
}

#[tokio::test]
async fn a_401_storm_costs_one_reattestation_then_nothing() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = attested(&kbs).await;
    kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        fail_with_401: u32::MAX,
        ..Faults::default()
    });
    for _ in 0..10 {
        let err = timed(Duration::from_secs(2), read(&client))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    }
    let counters = kbs.counters();
    // the first refusal renews the token once; the renewed token's refusal is remembered
    assert_eq!(counters.attest_ok, 2);
    assert_eq!(counters.resource_get, 1 + 2 + 9);

    // refusals of the handshake itself are final at once
    for (target, auth, attest) in [(FaultTarget::Auth, 1, 0), (FaultTarget::Attest, 1, 1)] {
        kbs.set_faults(Faults {
            target,
            fail_with_401: u32::MAX,
            ..Faults::default()
        });
        let before = kbs.counters();
        let err = common::client(&kbs).get_token().await.unwrap_err();
        match target {
            FaultTarget::Auth => {
                assert!(
                    matches!(err, Error::AuthRejected { status: 401, .. }),
                    "{err:?}"
                )
            }
            _ => assert!(
                matches!(err, Error::AttestationRejected { status: 401, .. }),
                "{err:?}"
            ),
        }
        let after = kbs.counters();
        assert_eq!(
            (after.auth - before.auth, after.attest - before.attest),
            (auth, attest),
            "{target:?}"
        );
    }
}

#[tokio::test]
async fn replies_reset_mid_body_are_retried_then_a_transport_error() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = attested(&kbs).await;
    kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        broken_reply: Some(ReplyFault::ResetMidBody),
        ..Faults::default()
    });
    let before = kbs.counters();
    let err = timed(Duration::from_secs(2), read(&client))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let after = kbs.counters();
    assert_eq!(after.resource_get - before.resource_get, 3);
    assert_eq!(after.attest, before.attest);

    // during the handshake: whole handshakes are retried, a bounded number of times
    kbs.set_faults(Faults {
        target: FaultTarget::Attest,
        broken_reply: Some(ReplyFault::ResetMidBody),
        ..Faults::default()
    });
    let before = kbs.counters();
    let err = timed(Duration::from_secs(2), client.refresh_token())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let after = kbs.counters();
    assert_eq!(
        (after.auth - before.auth, after.attest - before.attest),
        (3, 3)
    );

    kbs.set_faults(Faults::default());
    assert_eq!(read(&client).await.unwrap(), SECRET);
}

#[tokio::test]
async fn a_never_ending_reply_is_cut_by_the_operation_deadline() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let mut config = config(&kbs, TeeKeyAlgorithm::EcP256);
    // a trickle never trips a per-read timeout; each try would last the request timeout
    config.request_timeout = Duration::from_secs(5);
    config.operation_timeout = Duration::from_millis(1500);
    let client = sample_client(config);
    client.get_token().await.unwrap();
    for target in [FaultTarget::Resource, FaultTarget::Auth] {
        kbs.set_faults(Faults {
            target,
            broken_reply: Some(ReplyFault::NeverEnding),
            ..Faults::default()
        });
        let started = Instant::now();
        let err = match target {
            FaultTarget::Resource => read(&client).await.unwrap_err(),
            _ => client.refresh_token().await.unwrap_err(),
        };
        let took = started.elapsed();
        assert!(matches!(err, Error::Timeout { .. }), "{target:?}: {err:?}");
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
            "{target:?}: {took:?}"
        );
    }
    assert_eq!(kbs.counters().attest_ok, 1);
}

#[tokio::test]
async fn oversized_replies_are_refused_at_the_limit_without_retries() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let client = attested(&kbs).await;
    for fault in [ReplyFault::Oversized, ReplyFault::OversizedDeclared] {
        kbs.set_faults(Faults {
            target: FaultTarget::Resource,
            broken_reply: Some(fault),
            ..Faults::default()
        });
        let before = kbs.counters();
        let err = timed(Duration::from_secs(5), read(&client))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Protocol { reason, .. } if reason.contains("reply larger than")),
            "{fault:?}: {err:?}"
        );
        let after = kbs.counters();
        assert_eq!(after.resource_get - before.resource_get, 1, "{fault:?}");
        assert_eq!(after.attest, before.attest);
    }
}

#[tokio::test]
async fn a_kbs_restarted_between_handshake_and_resource() {
    // sessions lost, token key kept: the Bearer token still works, no new attestation
    let mut kbs = start_kbs(KbsConfig::default()).await;
    let client = client(&kbs);
    client.get_token().await.unwrap();
    kbs.restart().await.unwrap();
    assert_eq!(read(&client).await.unwrap(), SECRET);
    assert_eq!(kbs.counters().attest_ok, 1);

    // an ephemeral token key (trustee's default): exactly one new attestation
    client.refresh_token().await.unwrap();
    kbs.revoke_tokens();
    kbs.restart().await.unwrap();
    assert_eq!(read(&client).await.unwrap(), SECRET);
    assert_eq!(read(&client).await.unwrap(), SECRET);
    assert_eq!(kbs.counters().attest_ok, 3);

    // down while the client holds a token: transport errors, then recovery when it is back
    let addr = kbs.addr();
    kbs.stop().await;
    let err = timed(Duration::from_secs(2), read(&client))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let kbs = start_kbs(KbsConfig {
        port: addr.port(),
        ..KbsConfig::default()
    })
    .await;
    // a new KBS instance has a new token key: one attestation, then the read
    assert_eq!(read(&client).await.unwrap(), SECRET);
    assert_eq!(kbs.counters().attest_ok, 1);
}

#[tokio::test]
async fn clock_skew_does_not_make_every_read_attest() {
    for offset in [-86_400i64, 86_400] {
        let kbs = start_kbs(KbsConfig::default()).await;
        kbs.set_faults(Faults {
            clock_offset_secs: offset,
            ..Faults::default()
        });
        let client = client(&kbs);
        for _ in 0..5 {
            assert_eq!(read(&client).await.unwrap(), SECRET, "offset {offset}");
        }
        let counters = kbs.counters();
        assert_eq!(
            (
                counters.attest_ok,
                counters.resource_get,
                counters.resource_ok
            ),
            (1, 5, 5),
            "offset {offset}"
        );
    }
}

#[tokio::test]
async fn a_skewed_kbs_token_is_renewed_by_its_lifetime_before_the_kbs_refuses_it() {
    // the KBS's clock is a day ahead: by this host's clock its 3 s tokens last a day
    let kbs = start_kbs(KbsConfig {
        token_lifetime: Duration::from_secs(3),
        ..KbsConfig::default()
    })
    .await;
    kbs.set_faults(Faults {
        clock_offset_secs: 86_400,
        ..Faults::default()
    });
    let mut config = config(&kbs, TeeKeyAlgorithm::EcP256);
    config.token_refresh_margin = Duration::from_secs(1);
    let client = sample_client(config);
    assert_eq!(read(&client).await.unwrap(), SECRET);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(read(&client).await.unwrap(), SECRET);
    let counters = kbs.counters();
    // renewed ahead of time: no read was refused
    assert_eq!(counters.attest_ok, 2);
    assert_eq!(counters.resource_get, counters.resource_ok);
}

#[tokio::test]
async fn a_token_refused_in_a_401_storm_is_replaced_after_the_backoff() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let mut config = config(&kbs, TeeKeyAlgorithm::EcP256);
    config.token_refusal_backoff = Duration::from_millis(500);
    let client = sample_client(config);
    assert_eq!(read(&client).await.unwrap(), SECRET);
    kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        fail_with_401: u32::MAX,
        ..Faults::default()
    });
    for _ in 0..5 {
        assert!(matches!(
            read(&client).await.unwrap_err(),
            Error::Unauthorized { .. }
        ));
    }
    assert_eq!(kbs.counters().attest_ok, 2);
    // the storm ends with the token key replaced: the refused token must not stick
    kbs.set_faults(Faults::default());
    kbs.revoke_tokens();
    assert!(read(&client).await.is_err(), "within the backoff");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(read(&client).await.unwrap(), SECRET);
    assert_eq!(kbs.counters().attest_ok, 3);
}
