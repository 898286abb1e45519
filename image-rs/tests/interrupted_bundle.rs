//! A bundle half-made by a process killed between creating its rootfs and recording it:
//! the store's metadata names it as pending, so the next start (or the next pull into it,
//! or its removal) takes it down, and a pull into the same path succeeds with exactly the
//! image's content. A bundle path the store has no record of is never cleaned up.
//!
//! The kill is reproduced by leaving on disk what it leaves: `metadata.json` with the
//! pending record, a half-filled rootfs (or a live overlay on a scratch directory), a
//! truncated `config.json`. The tests run one at a time: the store's `flock` must not be
//! inherited by a child another test forks while a client is reopened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{assert_same_tree, listing, Env};
use image_rs::{
    mount_overlay, BundleError, ImageClient, PullError, PullOptions, SnapshotError, SnapshotterKind,
};
use test_images::fixtures;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options(snapshotter: SnapshotterKind) -> PullOptions {
    PullOptions {
        snapshotter: Some(snapshotter),
        ..PullOptions::default()
    }
}

fn snapshotter_name(kind: SnapshotterKind) -> &'static str {
    match kind {
        SnapshotterKind::Overlay => "overlayfs",
        SnapshotterKind::Flatten => "flatten",
    }
}

fn metadata(work: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(work.join("metadata.json")).unwrap()).unwrap()
}

/// Adds a pending record to the metadata file of a closed store, as `pull_image` writes
/// it before creating anything.
fn write_pending(
    work: &Path,
    bundle: &Path,
    image: &str,
    kind: SnapshotterKind,
    scratch: Option<&Path>,
) {
    let mut meta = metadata(work);
    meta["pending_bundles"][bundle.to_str().unwrap()] = serde_json::json!({
        "image": image,
        "snapshotter": snapshotter_name(kind),
        "scratch": scratch,
    });
    std::fs::write(work.join("metadata.json"), meta.to_string()).unwrap();
}

/// Mount points (field 5 of mountinfo) equal to `path`.
fn mounts_on(path: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
        .count()
}

/// Detaches whatever the test mounted should it fail before the code under test does.
struct Detach(Vec<PathBuf>);
impl Drop for Detach {
    fn drop(&mut self) {
        for path in &self.0 {
            while rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH).is_ok() {}
        }
    }
}

/// The published test image, its expected rootfs (umoci) and its layer directories in the
/// store of `<env>/work` (closed again when this returns).
async fn prepared(env: &Env) -> (String, String, PathBuf, Vec<PathBuf>) {
    let (reference, built) = env
        .publish(&fixtures::whiteouts_without_zstd(), "test/wh", "v1")
        .await;
    let expected = env.umoci_rootfs(&reference, "wh");
    let client = env.client("work").await;
    let pulled = client
        .pull_layers(&reference, &PullOptions::default())
        .await
        .unwrap();
    (
        reference,
        built.manifest.digest.to_string(),
        expected,
        pulled.layers,
    )
}

async fn reopen(env: &Env) -> ImageClient {
    env.client("work").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flattened_bundle_left_pending_is_taken_down_at_start_and_pulled_again() {
    let _serial = SERIAL.lock().await;
    let env = Env::plain();
    let (reference, digest, expected, layers) = prepared(&env).await;
    let work = env.dir.path().join("work");
    let bundle = env.dir.path().join("bundle");

    // What a kill in the middle of the copy leaves.
    std::fs::create_dir_all(bundle.join("rootfs/a")).unwrap();
    std::fs::copy(layers[0].join("a/kept"), bundle.join("rootfs/a/kept")).unwrap();
    std::fs::write(bundle.join("rootfs/stale-from-the-killed-pull"), b"x").unwrap();
    std::fs::write(bundle.join("config.json"), b"{\"ociVersion\": \"1.").unwrap();
    write_pending(&work, &bundle, &digest, SnapshotterKind::Flatten, None);

    let client = reopen(&env).await;
    assert!(!bundle.join("rootfs").exists(), "not taken down at start");
    assert!(!bundle.join("config.json").exists());
    assert_eq!(metadata(&work)["pending_bundles"], serde_json::json!({}));

    let report = client
        .pull_image(&reference, &bundle, &options(SnapshotterKind::Flatten))
        .await
        .unwrap();
    assert_eq!(report.image.manifest_digest.to_string(), digest);
    assert_same_tree(&bundle.join("rootfs"), &expected);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    let meta = metadata(&work);
    assert_eq!(meta["pending_bundles"], serde_json::json!({}));
    assert_eq!(meta["bundles"][bundle.to_str().unwrap()]["image"], digest);
    client.remove_bundle(&bundle).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_bundle_left_pending_is_unmounted_at_start_and_pulled_again() {
    let _serial = SERIAL.lock().await;
    if !common::is_root() {
        eprintln!("overlay mounts need root: skipped");
        return;
    }
    let env = Env::plain();
    let (reference, digest, expected, layers) = prepared(&env).await;
    let work = env.dir.path().join("work");
    let bundle = env.dir.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    let _detach = Detach(vec![rootfs.clone()]);

    // What a kill after the mount leaves: a live overlay, a file written through it, a
    // truncated config.json.
    let old_scratch = work.join("snapshots/killed-1");
    write_pending(
        &work,
        &bundle,
        &digest,
        SnapshotterKind::Overlay,
        Some(&old_scratch),
    );
    mount_overlay(&layers, &rootfs, &old_scratch).unwrap();
    std::fs::write(rootfs.join("stale-from-the-killed-pull"), b"x").unwrap();
    std::fs::write(bundle.join("config.json"), b"{").unwrap();
    assert_eq!(mounts_on(&rootfs), 1);

    let client = reopen(&env).await;
    assert_eq!(mounts_on(&rootfs), 0, "the stale overlay is still mounted");
    assert!(!old_scratch.exists());
    assert!(!bundle.join("config.json").exists());

    client
        .pull_image(&reference, &bundle, &options(SnapshotterKind::Overlay))
        .await
        .unwrap();
    assert_eq!(mounts_on(&rootfs), 1, "exactly one overlay on the rootfs");
    assert_same_tree(&rootfs, &expected);
    let meta = metadata(&work);
    assert_eq!(meta["pending_bundles"], serde_json::json!({}));
    let record = &meta["bundles"][bundle.to_str().unwrap()];
    assert_eq!(record["snapshotter"], "overlayfs");
    let scratch = PathBuf::from(record["scratch"].as_str().unwrap());
    assert_ne!(scratch, old_scratch);
    assert_eq!(
        std::fs::read_dir(work.join("snapshots")).unwrap().count(),
        1,
        "only the new bundle's scratch directory"
    );
    client.remove_bundle(&bundle).await.unwrap();
    assert_eq!(mounts_on(&rootfs), 0);
    assert!(!scratch.exists());
}

/// A pending bundle the start could not take down (here a mount that is not ours sits on
/// its rootfs) does not keep the client from starting; it stays pending, and the next pull
/// into it, or its removal, takes it down once it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_bundle_the_start_could_not_take_down_is_taken_down_by_a_pull_or_removal() {
    let _serial = SERIAL.lock().await;
    if !common::is_root() {
        eprintln!("mounts need root: skipped");
        return;
    }
    let env = Env::plain();
    let (reference, digest, expected, _) = prepared(&env).await;
    let work = env.dir.path().join("work");
    let pulled_into = env.dir.path().join("pulled-into");
    let removed = env.dir.path().join("removed");
    let _detach = Detach(vec![pulled_into.join("rootfs"), removed.join("rootfs")]);
    for (i, bundle) in [&pulled_into, &removed].into_iter().enumerate() {
        let scratch = work.join(format!("snapshots/killed-{i}"));
        std::fs::create_dir_all(scratch.join("upper")).unwrap();
        write_pending(
            &work,
            bundle,
            &digest,
            SnapshotterKind::Overlay,
            Some(&scratch),
        );
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        rustix::mount::mount(
            "tmpfs",
            bundle.join("rootfs"),
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        std::fs::write(bundle.join("config.json"), b"{").unwrap();
    }

    let client = reopen(&env).await;
    assert_eq!(
        metadata(&work)["pending_bundles"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    // Still in the way: the pull fails, and touches nothing below the foreign mount.
    let err = client
        .pull_image(&reference, &pulled_into, &options(SnapshotterKind::Overlay))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PullError::Snapshot(SnapshotError::Io { source, .. }) if source.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())),
        "{err}"
    );
    assert_eq!(mounts_on(&pulled_into.join("rootfs")), 1);

    for bundle in [&pulled_into, &removed] {
        rustix::mount::unmount(bundle.join("rootfs"), rustix::mount::UnmountFlags::empty())
            .unwrap();
    }
    client
        .pull_image(&reference, &pulled_into, &options(SnapshotterKind::Overlay))
        .await
        .unwrap();
    assert_eq!(mounts_on(&pulled_into.join("rootfs")), 1);
    assert_same_tree(&pulled_into.join("rootfs"), &expected);

    client.remove_bundle(&removed).await.unwrap();
    assert!(!removed.join("rootfs").exists());
    assert!(!removed.join("config.json").exists());
    assert!(!work.join("snapshots/killed-0").exists());
    assert!(!work.join("snapshots/killed-1").exists());
    assert_eq!(metadata(&work)["pending_bundles"], serde_json::json!({}));
    let err = client.remove_bundle(&removed).await.unwrap_err();
    assert!(matches!(err, PullError::UnknownBundle(_)), "{err}");
    client.remove_bundle(&pulled_into).await.unwrap();
}

/// Without a record, whatever is at the bundle path is someone else's: refused as before,
/// and left exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_path_with_content_but_no_record_is_refused_and_left_alone() {
    let _serial = SERIAL.lock().await;
    let env = Env::plain();
    let (reference, _, _, _) = prepared(&env).await;
    let work = env.dir.path().join("work");
    let client = reopen(&env).await;
    for kind in [SnapshotterKind::Flatten, SnapshotterKind::Overlay] {
        let with_rootfs = env.dir.path().join(format!("rootfs-{kind:?}"));
        std::fs::create_dir_all(with_rootfs.join("rootfs/theirs")).unwrap();
        std::fs::write(with_rootfs.join("rootfs/theirs/file"), b"keep").unwrap();
        let with_config = env.dir.path().join(format!("config-{kind:?}"));
        std::fs::create_dir_all(&with_config).unwrap();
        std::fs::write(with_config.join("config.json"), b"theirs").unwrap();
        for bundle in [&with_rootfs, &with_config] {
            let before = listing(bundle);
            let err = client
                .pull_image(&reference, bundle, &options(kind))
                .await
                .unwrap_err();
            if bundle == &with_rootfs {
                assert!(
                    matches!(&err, PullError::Snapshot(SnapshotError::RootfsNotEmpty(p)) if p == &bundle.join("rootfs")),
                    "{err}"
                );
            } else {
                assert!(
                    matches!(&err, PullError::Bundle(BundleError::Exists(p)) if p == &bundle.join("config.json")),
                    "{err}"
                );
            }
            assert_eq!(listing(bundle), before);
            let err = client.remove_bundle(bundle).await.unwrap_err();
            assert!(matches!(err, PullError::UnknownBundle(_)), "{err}");
            assert_eq!(listing(bundle), before);
        }
        assert_eq!(
            std::fs::read(with_rootfs.join("rootfs/theirs/file")).unwrap(),
            b"keep"
        );
        assert_eq!(
            std::fs::read(with_config.join("config.json")).unwrap(),
            b"theirs"
        );
    }
    let meta = metadata(&work);
    assert_eq!(meta["pending_bundles"], serde_json::json!({}));
    assert_eq!(meta["bundles"], serde_json::json!({}));
    assert_eq!(
        std::fs::read_dir(work.join("snapshots")).unwrap().count(),
        0
    );
}
