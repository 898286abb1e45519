//! The policy plugged into image-rs's `ImageClient`: judged on every pull, also when every
//! layer is already in the store, and for the requested as well as the pulled (remapped)
//! reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use image_policy::{ContainersPolicy, DocumentSource, PolicyOptions};
use image_rs::RegistryEntry;
use image_rs::{ImageClient, ImageConfig, PullError, PullOptions, RegistryConfig};

const ACCEPT: &str = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;
const REJECT: &str = r#"{"default":[{"type":"reject"}]}"#;

#[tokio::test]
async fn a_cached_image_is_judged_again_on_every_pull() {
    let env = Env::new();
    let pushed = env.push("cached", "pull/cached", "v1").await;
    let policy_file = env.path("policy.json");
    std::fs::write(&policy_file, ACCEPT).unwrap();
    let mut options = PolicyOptions::new(DocumentSource::Uri(format!(
        "file://{}",
        policy_file.display()
    )));
    options.resource_ttl = Duration::ZERO;
    let policy = ContainersPolicy::new(options, Arc::new(image_rs::LocalResources)).unwrap();

    let mut config = ImageConfig::with_work_dir(env.path("work"));
    config.registry_config = Some(RegistryConfig {
        registry: vec![RegistryEntry {
            location: env.host(),
            insecure: true,
            ..RegistryEntry::default()
        }],
        ..RegistryConfig::default()
    });
    let client = ImageClient::new(config)
        .await
        .unwrap()
        .with_signature_policy(Arc::new(policy));
    let reference = pushed.reference.to_string();
    let first = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(first.manifest_digest, pushed.digest);
    assert_eq!(first.layers_fetched, 1);

    std::fs::write(&policy_file, REJECT).unwrap();
    let err = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PullError::PolicyDenied { message, .. } if message.contains("rejects")),
        "{err}"
    );

    std::fs::write(&policy_file, ACCEPT).unwrap();
    let again = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(again.layers_fetched, 0);
    assert_eq!(again.layers_reused, 1);
}

#[tokio::test]
async fn the_requested_and_the_pulled_reference_must_both_be_accepted() {
    let env = Env::new();
    env.push("remapped", "mirror/app", "v1").await;
    let host = env.host();
    let config = |name: &str| {
        let mut config = ImageConfig::with_work_dir(env.path(name));
        config.registry_config = Some(RegistryConfig {
            registry: vec![RegistryEntry {
                prefix: "quay.io/team".into(),
                location: format!("{host}/mirror"),
                insecure: true,
                ..RegistryEntry::default()
            }],
            ..RegistryConfig::default()
        });
        config
    };
    let with_scopes = |scopes: &str| {
        format!(r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{{scopes}}}}}}}"#)
    };
    let accept = r#"[{"type":"insecureAcceptAnything"}]"#;
    let cases = [
        (
            with_scopes(&format!(r#""quay.io/team":{accept}"#)),
            Some("pulled reference"),
        ),
        (
            with_scopes(&format!(r#""{host}/mirror":{accept}"#)),
            Some("requested reference"),
        ),
        (
            with_scopes(&format!(
                r#""quay.io/team":{accept},"{host}/mirror":{accept}"#
            )),
            None,
        ),
    ];
    for (number, (policy_json, refused_for)) in cases.into_iter().enumerate() {
        let client = ImageClient::new(config(&format!("work-{number}")))
            .await
            .unwrap()
            .with_signature_policy(Arc::new(policy(&policy_json, &[])));
        let result = client
            .pull_layers("quay.io/team/app:v1", &PullOptions::default())
            .await;
        match refused_for {
            None => {
                let pulled = result.unwrap();
                assert_eq!(pulled.pulled.to_string(), format!("{host}/mirror/app:v1"));
            }
            Some(role) => {
                let err = result.unwrap_err();
                assert!(
                    matches!(&err, PullError::PolicyDenied { message, .. } if message.contains(role)),
                    "{number}: {err}"
                );
            }
        }
    }
}
