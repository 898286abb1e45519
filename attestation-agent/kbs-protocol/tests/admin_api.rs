//! [`KbsAdminClient`] against the test KBS's admin endpoint: refusals carry trustee's
//! status and error kind; only `kbs:///<repo>/<type>/<tag>` resources are written.
//! (Writes with a valid admin token: coco-keyprovider's tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use kbs_protocol::{Error, KbsAdminClient};
use testkit::kbs::KbsConfig;

#[tokio::test]
async fn a_token_the_kbs_cannot_verify_is_refused_with_401_admin_auth_access() {
    let kbs = start_kbs(KbsConfig::default()).await;
    let admin = KbsAdminClient::with_timeouts(&kbs.url(), &[], Duration::from_secs(5), 1).unwrap();
    let err = admin
        .set_resource(
            &uri("kbs:///default/key/new"),
            b"kek",
            "aGVhZGVy.cGF5bG9hZA.c2ln",
        )
        .await
        .unwrap_err();
    let Error::AdminRejected { status, info, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 401);
    assert_eq!(info.as_ref().unwrap().kind(), "AdminAuthAccess");
    assert!(err.to_string().contains("admin key"), "{err}");
    assert_eq!(kbs.resource("default/key/new"), None);
    assert_eq!(kbs.counters().resource_post, 1);
    assert_eq!(kbs.counters().resource_post_ok, 0);

    for not_a_resource in ["kbs+pkcs11:///a/b/c", "kbs:///a/b", "kbs:///a/b/c?x=1"] {
        let err = admin
            .set_resource(&uri(not_a_resource), b"kek", "t")
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidResourcePath { .. }),
            "{not_a_resource}: {err:?}"
        );
    }
    assert_eq!(kbs.counters().resource_post, 1);
}

#[tokio::test]
async fn an_unreachable_kbs_is_a_transport_error() {
    let port = testkit::process::free_port().unwrap();
    let admin = KbsAdminClient::with_timeouts(
        &format!("http://127.0.0.1:{port}"),
        &[],
        Duration::from_secs(2),
        1,
    )
    .unwrap();
    let err = admin
        .set_resource(&uri("kbs:///default/key/x"), b"kek", "t")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(matches!(
        KbsAdminClient::new("ftp://kbs", &[]),
        Err(Error::InvalidUrl { .. })
    ));
}
