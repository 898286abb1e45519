//! Pulls from a real local docker-registry, compared file by file with `skopeo copy` +
//! `umoci unpack` of the same images.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{assert_same_tree, stored_layers, Env};
use image_rs::PlatformSpec;
use image_rs::{
    PolicyError, PolicyRequest, PullError, PullOptions, SignaturePolicy, SnapshotterKind,
};
use test_images::fixtures;
use test_images::Compression;

fn without_zstd(mut image: test_images::ImageSpec) -> test_images::ImageSpec {
    for layer in &mut image.layers {
        if layer.compression == Compression::Zstd {
            layer.compression = Compression::Gzip;
        }
    }
    image
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn options(snapshotter: SnapshotterKind) -> PullOptions {
    PullOptions {
        snapshotter: Some(snapshotter),
        ..PullOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_match_umoci_with_both_snapshotters() {
    let env = Env::plain();
    let client = env.client("work").await;
    let cases = [
        ("plain", fixtures::plain()),
        ("multi", fixtures::multi_layer()),
        ("whiteouts", fixtures::whiteouts()),
        ("links", fixtures::links()),
        ("users", fixtures::users()),
    ];
    for (name, image) in cases {
        let (reference, _) = env.publish(&image, &format!("test/{name}"), "v1").await;
        // umoci 0.4 has no zstd: it unpacks the same image with gzip instead.
        let (gzip_reference, _) = env
            .publish(&without_zstd(image), &format!("test/{name}-gz"), "v1")
            .await;
        let expected = env.umoci_rootfs(&gzip_reference, name);
        for snapshotter in [SnapshotterKind::Overlay, SnapshotterKind::Flatten] {
            let bundle = env
                .dir
                .path()
                .join(format!("bundle-{name}-{snapshotter:?}"));
            let report = client
                .pull_image(&reference, &bundle, &options(snapshotter))
                .await
                .unwrap();
            assert_eq!(report.snapshotter, snapshotter);
            assert_same_tree(&bundle.join("rootfs"), &expected);
            assert!(bundle.join("config.json").is_file());
            client.remove_bundle(&bundle).await.unwrap();
            assert!(!bundle.join("config.json").exists());
        }
    }
    // The whiteout fixture shows the overlay semantics explicitly too.
    let (reference, _) = env
        .publish(&fixtures::whiteouts(), "test/wh-check", "v1")
        .await;
    let bundle = env.dir.path().join("wh-check");
    client
        .pull_image(&reference, &bundle, &options(SnapshotterKind::Overlay))
        .await
        .unwrap();
    let rootfs = bundle.join("rootfs");
    assert!(!rootfs.join("a/removed").exists());
    assert_eq!(read(&rootfs.join("a/kept")), "still here\n");
    assert!(!rootfs.join("b").exists());
    assert!(!rootfs.join("c/hidden-by-opaque").exists());
    assert!(!rootfs.join("c/lowerdir").exists());
    assert_eq!(read(&rootfs.join("c/new")), "only this survives in c\n");
    assert_eq!(read(&rootfs.join("e/inside")), "now a directory\n");
    assert_eq!(read(&rootfs.join("f")), "now a file\n");
    assert_eq!(read(&rootfs.join("readded")), "new content\n");
    client.remove_bundle(&bundle).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_config_resolves_the_user_and_carries_the_image_config() {
    let env = Env::plain();
    let client = env.client("work").await;
    let (reference, built) = env.publish(&fixtures::users(), "test/users", "v1").await;
    let bundle = env.dir.path().join("bundle");
    let report = client
        .pull_image(&reference, &bundle, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report.image.manifest_digest.to_string(),
        built.manifest.digest
    );
    let spec: serde_json::Value = serde_json::from_str(&read(&bundle.join("config.json"))).unwrap();
    assert_eq!(
        spec["process"]["user"],
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [29, 50]})
    );
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!(["/usr/bin/suid-tool", "--flag"])
    );
    assert_eq!(spec["process"]["cwd"], "/home/app");
    assert_eq!(
        spec["process"]["env"],
        serde_json::json!(["PATH=/usr/bin:/bin", "HOME=/home/app"])
    );
    assert_eq!(
        spec["annotations"]["org.opencontainers.image.stopSignal"],
        "SIGINT"
    );
    assert_eq!(spec["annotations"]["org.example.role"], "test");
    assert_eq!(
        spec["annotations"]["org.opencontainers.image.exposedPorts"],
        "8080/tcp"
    );
    assert_eq!(spec["mounts"][0]["destination"], "/data");
    // A second bundle at the same place is refused, the first stays intact.
    let err = client
        .pull_image(&reference, &bundle, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::Bundle(image_rs::BundleError::Exists(_))),
        "{err}"
    );
    client.remove_bundle(&bundle).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_selects_the_platform() {
    let env = Env::plain();
    let client = env.client("work").await;
    let index = fixtures::write_multi_arch(&env.layout).unwrap();
    test_images::push_image(
        &env.layout,
        &index,
        &env.registry.target(),
        "test/multi-arch",
        "v1",
    )
    .await
    .unwrap();
    let reference = format!("{}/test/multi-arch:v1", env.registry.host());
    for (platform, arch) in [
        ("linux/amd64", "amd64"),
        ("linux/arm64/v8", "arm64"),
        ("linux/arm64", "arm64"),
    ] {
        let bundle = env
            .dir
            .path()
            .join(format!("bundle-{arch}-{}", platform.len()));
        let opts = PullOptions {
            platform: Some(PlatformSpec::parse(platform).unwrap()),
            ..PullOptions::default()
        };
        let report = client.pull_image(&reference, &bundle, &opts).await.unwrap();
        assert_eq!(report.image.index_digest.as_ref(), Some(&index.digest));
        assert_eq!(read(&bundle.join("rootfs/arch")), format!("{arch}\n"));
        client.remove_bundle(&bundle).await.unwrap();
    }
    // This machine's own platform is the default.
    let bundle = env.dir.path().join("bundle-default");
    client
        .pull_image(&reference, &bundle, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(
        read(&bundle.join("rootfs/arch")),
        format!("{}\n", PlatformSpec::current().architecture)
    );
    client.remove_bundle(&bundle).await.unwrap();
    let opts = PullOptions {
        platform: Some(PlatformSpec::parse("linux/s390x").unwrap()),
        ..PullOptions::default()
    };
    let err = client.pull_layers(&reference, &opts).await.unwrap_err();
    assert!(matches!(err, PullError::NoMatchingPlatform { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_media_types_and_manifests_without_media_type() {
    let env = Env::plain();
    let client = env.client("work").await;
    for (repo, image) in [
        ("test/docker", fixtures::docker_format()),
        ("test/no-mt", fixtures::without_manifest_media_type()),
    ] {
        let (reference, built) = env.publish(&image, repo, "v1").await;
        let pulled = client
            .pull_layers(&reference, &PullOptions::default())
            .await
            .unwrap();
        assert_eq!(pulled.manifest_digest.to_string(), built.manifest.digest);
        assert_eq!(read(&pulled.layers[0].join("hello.txt")), "hello coco\n");
    }
}

/// Counts calls and refuses images whose pulled reference contains `deny`.
#[derive(Debug, Default)]
struct RecordingPolicy {
    calls: AtomicUsize,
    /// requested, pulled, manifest digest, name of the repository session
    seen: Mutex<Vec<(String, String, String, String)>>,
}

#[async_trait::async_trait]
impl SignaturePolicy for RecordingPolicy {
    async fn check(&self, request: &PolicyRequest<'_>) -> Result<(), PolicyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push((
            request.requested.to_string(),
            request.pulled.to_string(),
            request.manifest_digest.to_string(),
            request.repository.name(),
        ));
        // The pull's own session reads the registry (here an insecure, plain-HTTP one).
        let mut repository = request.repository.clone();
        let fetched = repository
            .fetch_manifest(
                request.manifest_digest.as_str(),
                Some(request.manifest_digest),
            )
            .await
            .map_err(|e| PolicyError {
                message: e.to_string(),
            })?;
        assert_eq!(fetched.bytes, request.manifest);
        if request.pulled.repository().contains("deny") {
            return Err(PolicyError {
                message: "repository not allowed".into(),
            });
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_runs_before_layers_even_when_everything_is_cached() {
    let env = Env::plain();
    let policy = Arc::new(RecordingPolicy::default());
    let client = env
        .client("work")
        .await
        .with_signature_policy(policy.clone());
    let (reference, built) = env
        .publish(&fixtures::multi_layer(), "test/multi", "v1")
        .await;
    let first = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!((first.layers_fetched, first.layers_reused), (3, 0));
    let second = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!((second.layers_fetched, second.layers_reused), (0, 3));
    assert_eq!(
        policy.calls.load(Ordering::SeqCst),
        2,
        "a re-pull still asks the policy"
    );
    {
        let seen = policy.seen.lock().unwrap();
        assert_eq!(seen[1].2, built.manifest.digest);
        assert_eq!(format!("{}:v1", seen[1].3), reference);
    }

    // The same content under a refused name: denied although every layer is cached,
    // and nothing new lands in the store.
    let (denied, _) = env
        .publish(&fixtures::multi_layer(), "test/deny-me", "v1")
        .await;
    let layers_before = stored_layers(&env.dir.path().join("work"));
    let err = client
        .pull_layers(&denied, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::PolicyDenied { ref message, .. } if message.contains("not allowed")),
        "{err}"
    );
    assert_eq!(stored_layers(&env.dir.path().join("work")), layers_before);
    let bundle = env.dir.path().join("denied-bundle");
    assert!(client
        .pull_image(&denied, &bundle, &PullOptions::default())
        .await
        .is_err());
    assert!(!bundle.join("rootfs").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_fetch_a_shared_layer_once() {
    let env = Env::plain();
    let client = Arc::new(env.client("work").await);
    let (a, _) = env.publish(&fixtures::multi_layer(), "test/a", "v1").await;
    let (b, _) = env.publish(&fixtures::multi_layer(), "test/b", "v1").await;
    let (c, _) = env.publish(&fixtures::plain(), "test/c", "v1").await;
    let pulls = [a.clone(), b, c, a].map(|r| {
        let client = client.clone();
        tokio::spawn(async move { client.pull_layers(&r, &PullOptions::default()).await })
    });
    let mut fetched = 0;
    for pull in pulls {
        fetched += pull.await.unwrap().unwrap().layers_fetched;
    }
    assert_eq!(
        fetched, 4,
        "3 shared layers and 1 of the plain image, each fetched once"
    );
    assert_eq!(stored_layers(&env.dir.path().join("work")), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_layers_of_forgotten_images_only() {
    let env = Env::plain();
    let client = env.client("work").await;
    let (multi, _) = env
        .publish(&fixtures::multi_layer(), "test/multi", "v1")
        .await;
    let (plain, _) = env.publish(&fixtures::plain(), "test/plain", "v1").await;
    let bundle = env.dir.path().join("bundle");
    let report = client
        .pull_image(&multi, &bundle, &PullOptions::default())
        .await
        .unwrap();
    let plain_image = client
        .pull_layers(&plain, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(stored_layers(&env.dir.path().join("work")), 4);

    // In use by a bundle: cannot be forgotten.
    assert!(client
        .remove_image(&report.image.manifest_digest)
        .await
        .is_err());
    assert!(client.gc().await.unwrap().removed_layers.is_empty());
    client.remove_bundle(&bundle).await.unwrap();
    assert!(client
        .remove_image(&report.image.manifest_digest)
        .await
        .unwrap());
    let gc = client.gc().await.unwrap();
    assert_eq!(gc.removed_layers.len(), 3);
    assert_eq!(stored_layers(&env.dir.path().join("work")), 1);
    // The remaining image is intact and reusable.
    let again = client
        .pull_layers(&plain, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(again.layers_reused, 1);
    assert_eq!(again.layers, plain_image.layers);
}

#[test]
fn the_tree_comparison_notices_every_kind_of_difference() {
    use std::os::unix::fs::PermissionsExt;
    let make = |dir: &Path| {
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/f"), "content").unwrap();
        std::fs::hard_link(dir.join("d/f"), dir.join("h")).unwrap();
        std::os::unix::fs::symlink("d/f", dir.join("l")).unwrap();
    };
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    make(&a);
    make(&b);
    let times = |p: &Path| {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .unwrap();
    };
    for p in [a.join("d/f"), b.join("d/f")] {
        times(&p);
    }
    assert_same_tree(&a, &b);
    let differs = |change: &dyn Fn(&Path)| {
        let root = tempfile::tempdir().unwrap();
        let c = root.path().join("c");
        make(&c);
        times(&c.join("d/f"));
        change(&c);
        std::panic::catch_unwind(|| assert_same_tree(&a, &c)).is_err()
    };
    assert!(differs(
        &|c| std::fs::write(c.join("d/f"), "other!!").unwrap()
    ));
    assert!(differs(&|c| std::fs::set_permissions(
        c.join("d/f"),
        std::fs::Permissions::from_mode(0o600)
    )
    .unwrap()));
    assert!(differs(&|c| {
        std::fs::remove_file(c.join("l")).unwrap();
        std::os::unix::fs::symlink("elsewhere", c.join("l")).unwrap();
    }));
    assert!(differs(&|c| {
        std::fs::remove_file(c.join("h")).unwrap();
        std::fs::copy(c.join("d/f"), c.join("h")).unwrap();
        times(&c.join("h"));
    }));
    assert!(differs(&|c| std::fs::write(c.join("extra"), "").unwrap()));
    if common::is_root() {
        assert!(differs(&|c| std::os::unix::fs::chown(
            c.join("d/f"),
            Some(1),
            Some(1)
        )
        .unwrap()));
    }
}
