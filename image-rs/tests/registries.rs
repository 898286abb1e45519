//! Registry access against real docker-registry instances: htpasswd auth (explicit
//! credentials and auth.json), TLS with an extra root CA, mirrors and blocked registries
//! from registries.conf.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::{stored_layers, Env};
use image_rs::Digest;
use image_rs::ManifestKind;
use image_rs::Reference;
use image_rs::{ClientSettings, RegistryClient, RegistryError, ResolveError, SourceKind};
use image_rs::{Credentials, ImageClient, PullError, PullOptions, RegistryConfig};
use image_rs::{MirrorConfig, RegistryEntry};
use test_images::fixtures;
use test_images::RegistryOptions;

fn auth_options() -> RegistryOptions {
    RegistryOptions {
        credentials: Some(("alice".into(), "wonderland".into())),
        ..RegistryOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_needs_credentials_from_options_or_auth_json() {
    let env = Env::new(auth_options());
    let (reference, built) = env.publish(&fixtures::plain(), "private/plain", "v1").await;

    // Anonymous: refused with a typed error, nothing stored.
    let anonymous = env.client("anon").await;
    let err = anonymous
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PullError::Registry {
                source: RegistryError::Unauthorized { status: 401, .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(stored_layers(&env.dir.path().join("anon")), 0);

    // Wrong password: refused too.
    let wrong = PullOptions {
        credentials: Some(Credentials::new("alice", "bad")),
        ..PullOptions::default()
    };
    let err = anonymous.pull_layers(&reference, &wrong).await.unwrap_err();
    assert!(
        matches!(
            err,
            PullError::Registry {
                source: RegistryError::Unauthorized { .. },
                ..
            }
        ),
        "{err}"
    );

    // Explicit credentials.
    let right = PullOptions {
        credentials: Some(Credentials::new("alice", "wonderland")),
        ..PullOptions::default()
    };
    let pulled = anonymous.pull_layers(&reference, &right).await.unwrap();
    assert_eq!(pulled.manifest_digest.to_string(), built.manifest.digest);

    // auth.json through authenticated_registry_credentials_uri (file://).
    let auth_path = env.dir.path().join("auth.json");
    let token = base64::engine::general_purpose::STANDARD.encode("alice:wonderland\n");
    std::fs::write(
        &auth_path,
        format!(
            r#"{{"auths":{{"{}/private":{{"auth":"{token}"}}}}}}"#,
            env.registry.host()
        ),
    )
    .unwrap();
    let mut config = env.config("authjson");
    config.authenticated_registry_credentials_uri = Some(format!("file://{}", auth_path.display()));
    let client = ImageClient::new(config).await.unwrap();
    let bundle = env.dir.path().join("bundle");
    let report = client
        .pull_image(&reference, &bundle, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
        "hello coco\n"
    );
    client.remove_bundle(&bundle).await.unwrap();
    assert_eq!(report.image.layers_fetched, 1);

    // A kbs:// auth.json without a resource provider is a clear error.
    let mut config = env.config("kbs");
    config.authenticated_registry_credentials_uri = Some("kbs:///default/credential/test".into());
    let client = ImageClient::new(config).await.unwrap();
    let err = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PullError::Resource(image_rs::ResourceError::NoProvider(_))
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_registry_with_an_extra_root_ca_and_basic_auth() {
    let env = Env::new(RegistryOptions {
        credentials: Some(("bob".into(), "builder".into())),
        tls: true,
        token_auth: None,
    });
    let (reference, _) = env
        .publish(&fixtures::multi_layer(), "tls/multi", "v1")
        .await;
    let creds = PullOptions {
        credentials: Some(Credentials::new("bob", "builder")),
        ..PullOptions::default()
    };
    // Verified TLS with the CA (the registry is not marked insecure).
    let mut config = env.config("tls");
    config.registry_config = None;
    let client = ImageClient::new(config).await.unwrap();
    let pulled = client.pull_layers(&reference, &creds).await.unwrap();
    assert_eq!(pulled.layers_fetched, 3);

    // Without the CA: the certificate is refused.
    let mut config = env.config("noca");
    config.registry_config = None;
    config.extra_root_certificates.clear();
    let client = ImageClient::new(config).await.unwrap();
    let err = client.pull_layers(&reference, &creds).await.unwrap_err();
    assert!(
        matches!(err, PullError::Registry { source: RegistryError::Transport { ref message, .. }, .. } if message.contains("certificate") || message.contains("Unknown")),
        "{err}"
    );

    // Marked insecure: HTTPS without verification works without the CA.
    let mut config = env.config("insecure");
    config.extra_root_certificates.clear();
    let mut registries = env.registries();
    registries.registry[0].insecure = true;
    config.registry_config = Some(registries);
    let client = ImageClient::new(config).await.unwrap();
    assert_eq!(
        client
            .pull_layers(&reference, &creds)
            .await
            .unwrap()
            .layers_fetched,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_in_order_and_remapping_works() {
    let env = Env::plain();
    let (_, built) = env
        .publish(&fixtures::plain(), "mirror/test/plain", "v1")
        .await;
    let dead = format!("127.0.0.1:{}", testkit::process::free_port().unwrap());
    let mut config = env.config("work");
    config.registry_config = Some(RegistryConfig {
        registry: vec![RegistryEntry {
            prefix: "origin.invalid/test".into(),
            mirror: vec![
                MirrorConfig {
                    location: format!("{dead}/dead"),
                    insecure: true,
                },
                MirrorConfig {
                    location: format!("{}/mirror/test", env.registry.host()),
                    insecure: true,
                },
            ],
            ..RegistryEntry::default()
        }],
        ..RegistryConfig::default()
    });
    let client = ImageClient::new(config).await.unwrap();
    let pulled = client
        .pull_layers("origin.invalid/test/plain:v1", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest.to_string(), built.manifest.digest);
    assert_eq!(
        pulled.pulled.to_string(),
        format!("{}/mirror/test/plain:v1", env.registry.host())
    );

    // All sources failing lists every attempt.
    let err = client
        .pull_layers("origin.invalid/test/absent:v1", &PullOptions::default())
        .await
        .unwrap_err();
    let PullError::AllSourcesFailed { attempts } = err else {
        panic!("expected AllSourcesFailed, got {err}");
    };
    assert_eq!(attempts.len(), 3);
    assert!(attempts[0].0.starts_with(&dead));
    assert!(matches!(
        attempts[1].1,
        PullError::Registry {
            source: RegistryError::NotFound { .. },
            ..
        }
    ));
    assert!(attempts[2].0.starts_with("origin.invalid/"));

    // A location rewrite (no mirror).
    let mut config = env.config("remap");
    config.registry_config = Some(RegistryConfig {
        registry: vec![RegistryEntry {
            prefix: "internal.invalid".into(),
            location: format!("{}/mirror", env.registry.host()),
            insecure: true,
            ..RegistryEntry::default()
        }],
        ..RegistryConfig::default()
    });
    let resolved = image_rs::resolve(
        &image_rs::Reference::parse("internal.invalid/test/plain:v1").unwrap(),
        config.registry_config.as_ref().unwrap(),
    )
    .unwrap();
    assert_eq!(resolved[0].kind, SourceKind::Remapped);
    let client = ImageClient::new(config).await.unwrap();
    let pulled = client
        .pull_layers("internal.invalid/test/plain:v1", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest.to_string(), built.manifest.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_registry_is_refused_before_any_request() {
    let env = Env::plain();
    let (reference, _) = env.publish(&fixtures::plain(), "test/plain", "v1").await;
    let mut config = env.config("work");
    let mut registries = env.registries();
    registries.registry.push(RegistryEntry {
        prefix: format!("{}/test", env.registry.host()),
        blocked: true,
        ..RegistryEntry::default()
    });
    config.registry_config = Some(registries);
    let client = ImageClient::new(config).await.unwrap();
    let err = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::Resolve(ResolveError::Blocked { .. })),
        "{err}"
    );
    assert_eq!(stored_layers(&env.dir.path().join("work")), 0);
    // Another repository of the same registry is not blocked.
    let (other, _) = env.publish(&fixtures::plain(), "other/plain", "v1").await;
    assert!(client
        .pull_layers(&other, &PullOptions::default())
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_auth_through_the_token_endpoint() {
    let env = Env::new(RegistryOptions {
        token_auth: Some(("carol".into(), "tokens".into())),
        ..RegistryOptions::default()
    });
    let (reference, built) = env
        .publish(&fixtures::multi_layer(), "bearer/multi", "v1")
        .await;
    let client = env.client("work").await;

    // Anonymous: the registry challenges, the token endpoint refuses.
    let err = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::Registry { source: RegistryError::Unauthorized { status: 401, ref message, .. }, .. } if message.contains("token endpoint")),
        "{err}"
    );
    let wrong = PullOptions {
        credentials: Some(Credentials::new("carol", "nope")),
        ..PullOptions::default()
    };
    assert!(client.pull_layers(&reference, &wrong).await.is_err());
    assert_eq!(stored_layers(&env.dir.path().join("work")), 0);

    // With credentials: a token for repository:bearer/multi:pull, then every request.
    let right = PullOptions {
        credentials: Some(Credentials::new("carol", "tokens")),
        ..PullOptions::default()
    };
    let bundle = env.dir.path().join("bundle");
    let report = client
        .pull_image(&reference, &bundle, &right)
        .await
        .unwrap();
    assert_eq!(
        report.image.manifest_digest.to_string(),
        built.manifest.digest
    );
    assert_eq!(report.image.layers_fetched, 3);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/layer2.conf")).unwrap(),
        "second layer (zstd)\n"
    );
    client.remove_bundle(&bundle).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_get_and_small_blobs_through_a_repository_session() {
    let env = Env::new(RegistryOptions {
        token_auth: Some(("dave".into(), "sessions".into())),
        ..RegistryOptions::default()
    });
    let (reference, _) = env.publish(&fixtures::plain(), "session/app", "v1").await;
    let reference = Reference::parse(&reference).unwrap();
    let client = RegistryClient::new(&ClientSettings::default()).unwrap();

    // Anonymous: the token endpoint refuses, for any path.
    let mut anonymous = client.repository(&reference, true, None).await.unwrap();
    assert!(matches!(
        anonymous
            .get("/v2/", "registry API root")
            .await
            .unwrap_err(),
        RegistryError::Unauthorized { status: 401, .. }
    ));

    // With credentials: a token, then any registry path with it.
    let credentials = Credentials::new("dave", "sessions");
    let mut repository = client
        .repository(&reference, true, Some(credentials))
        .await
        .unwrap();
    assert_eq!(
        repository.name(),
        format!("{}/session/app", env.registry.host())
    );
    assert_eq!(repository.registry(), env.registry.host());
    assert_eq!(repository.repository(), "session/app");
    let root = repository.get("/v2/", "registry API root").await.unwrap();
    assert_eq!(
        root.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    assert_eq!(root.url(), format!("{}/v2/", env.registry.url()));
    let tags = repository
        .get("/v2/session/app/tags/list", "tag list")
        .await
        .unwrap()
        .body("tag list", 4096)
        .await
        .unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&tags).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    // A body over the caller's limit is refused, named as the caller named it.
    let err = repository
        .get("/v2/session/app/tags/list", "tag list")
        .await
        .unwrap()
        .body("tag list", 8)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::TooLarge {
                what: "tag list",
                limit: 8,
                ..
            }
        ),
        "{err}"
    );
    let err = repository
        .get("/v2/session/app/manifests/missing", "signature manifest")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::NotFound { what: "signature manifest", url } if url.ends_with("/manifests/missing")),
        "{err}"
    );
    for bad in ["v2/", "", "@evil.example/v2/"] {
        assert!(
            matches!(
                repository.get(bad, "path").await.unwrap_err(),
                RegistryError::InvalidRequest { .. }
            ),
            "{bad:?}"
        );
    }

    // Small blobs: the size limit names what was fetched and where.
    let manifest = repository
        .fetch_manifest(&reference.manifest_reference(), None)
        .await
        .unwrap();
    let ManifestKind::Image(manifest) = manifest.kind else {
        panic!("an image manifest was pushed")
    };
    let err = repository
        .fetch_blob(&manifest.config, "image config", 16)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::TooLarge { what: "image config", url, limit: 16 } if url.ends_with(&format!("/blobs/{}", manifest.config.digest))),
        "{err}"
    );
    assert!(err.to_string().starts_with("image config from "), "{err}");
    let config = repository
        .fetch_blob(&manifest.config, "image config", 1 << 20)
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&config), manifest.config.digest);

    // URLs outside the registry API: no credentials are sent, other schemes are refused.
    let url = |path: &str| url::Url::parse(&format!("{}{path}", env.registry.url())).unwrap();
    let err = client
        .fetch_url(&url("/v2/"), "lookaside", 4096)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 401, .. }),
        "{err}"
    );
    let err = client
        .fetch_url(&url("/nowhere"), "lookaside signature", 4096)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::NotFound {
                what: "lookaside signature",
                ..
            }
        ),
        "{err}"
    );
    let file = url::Url::parse("file:///etc/passwd").unwrap();
    assert!(matches!(
        client
            .fetch_url(&file, "lookaside", 4096)
            .await
            .unwrap_err(),
        RegistryError::InvalidRequest { .. }
    ));
}

/// A minimal forward proxy for plain-HTTP requests: counts connections, rewrites the first
/// request line to origin form and relays the connection to the origin.
async fn start_proxy() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let (line, rest) = text.split_once("\r\n").unwrap();
                let mut parts = line.splitn(3, ' ');
                let (method, uri, version) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let without_scheme = uri.strip_prefix("http://").unwrap();
                let (authority, path) = without_scheme
                    .split_at(without_scheme.find('/').unwrap_or(without_scheme.len()));
                let mut origin = tokio::net::TcpStream::connect(authority).await.unwrap();
                origin
                    .write_all(format!("{method} {path} {version}\r\n{rest}").as_bytes())
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_go_through_the_configured_proxy_unless_no_proxy_matches() {
    let env = Env::plain();
    let (reference, _) = env.publish(&fixtures::plain(), "proxied/plain", "v1").await;
    let (proxy, connections) = start_proxy().await;

    let mut config = env.config("proxied");
    config.image_pull_proxy = Some(image_rs::ProxyConfig {
        http_proxy: Some(format!("http://{proxy}")),
        ..image_rs::ProxyConfig::default()
    });
    let client = ImageClient::new(config).await.unwrap();
    let pulled = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.layers_fetched, 1);
    let through_proxy = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(through_proxy > 0, "the proxy saw no connection");

    let mut config = env.config("bypass");
    config.image_pull_proxy = Some(image_rs::ProxyConfig {
        http_proxy: Some(format!("http://{proxy}")),
        no_proxy: Some("localhost,127.0.0.1".into()),
        ..image_rs::ProxyConfig::default()
    });
    let client = ImageClient::new(config).await.unwrap();
    client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        through_proxy,
        "no_proxy was ignored"
    );
}
