//! A pull killed in the middle of a layer (SIGKILL, no cleanup) leaves a staging directory;
//! the next start removes it, and pulling again succeeds with the right content: nothing
//! half-written is ever reused. A pull killed in the middle of flattening its bundle leaves
//! a pending bundle; the next start takes it down, and a pull into the same bundle
//! succeeds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_same_tree, staging_dirs, stored_layers, Env};
use test_images::Entry;
use test_images::{Compression, ImageSpec, LayerSpec};

fn big_image() -> ImageSpec {
    let small = LayerSpec::new(
        Compression::Gzip,
        vec![Entry::file("small.txt", "first layer\n")],
    );
    let big = LayerSpec::new(
        Compression::Gzip,
        (0..12)
            .map(|i| Entry::generated(&format!("data/blob{i:02}"), 1 << 20, i))
            .collect(),
    )
    .level(1);
    ImageSpec::new(vec![small, big])
}

/// Bytes of regular files under the staging directories.
fn staged_bytes(work: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![work.join("staging")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// `image-pull` of `reference` with the store in `work`, flattened into `bundle` (or the
/// layers only), output captured.
fn image_pull(env: &Env, work: &Path, reference: &str, bundle: Option<&Path>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_image-pull"));
    cmd.arg("--work-dir").arg(work);
    if let Some(bundle) = bundle {
        cmd.arg("--bundle").arg(bundle);
    }
    cmd.arg("--snapshotter")
        .arg("flatten")
        .arg("--insecure-registry")
        .arg(env.registry.host())
        .arg(reference)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a pull that must succeed; what it prints (the manifest digest).
fn run_to_success(mut pull: Command) -> String {
    let out = pull.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Polls `ready` every `every` for up to a minute and kills `child` as soon as it holds:
/// whether it did (false: the child ended first, or the minute ran out).
fn kill_when(child: &mut Child, every: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ready() {
            child.kill().unwrap();
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(every);
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_mid_layer_is_recovered_without_reusing_partial_data() {
    let env = Env::plain();
    let (reference, built) = env.publish(&big_image(), "test/big", "v1").await;
    let work = env.dir.path().join("work");
    let pull = |bundle: &Path| image_pull(&env, &work, &reference, Some(bundle));

    // Kill it as soon as part of the big layer is on disk.
    let mut killed_mid_layer = false;
    for attempt in 0..5 {
        let bundle = env.dir.path().join(format!("killed-{attempt}"));
        let mut child = pull(&bundle).spawn().unwrap();
        killed_mid_layer = kill_when(&mut child, Duration::from_millis(2), || {
            staged_bytes(&work) > 512 << 10
        });
        let status = child.wait().unwrap();
        if killed_mid_layer {
            assert!(!status.success());
            break;
        }
        // The pull won the race: start from scratch.
        std::fs::remove_dir_all(&work).ok();
        std::fs::remove_dir_all(&bundle).ok();
    }
    assert!(
        killed_mid_layer,
        "could not kill the pull in the middle of a layer"
    );
    // The killed process left its staging directory behind; the big layer is not committed.
    assert!(staging_dirs(&work) >= 1);
    assert!(stored_layers(&work) <= 1);

    // Restart: the leftovers go, the pull succeeds.
    let bundle = env.dir.path().join("bundle");
    assert_eq!(run_to_success(pull(&bundle)), built.manifest.digest);
    assert_eq!(staging_dirs(&work), 0);
    assert_eq!(stored_layers(&work), 2);
    let expected = env.umoci_rootfs(&reference, "big");
    assert_same_tree(&bundle.join("rootfs"), &expected);
}

/// Many files, so that flattening them takes long enough to be killed in the middle.
fn many_files_image() -> ImageSpec {
    ImageSpec::new(vec![LayerSpec::new(
        Compression::Gzip,
        (0..400)
            .map(|i| Entry::generated(&format!("files/f{i:03}"), 32 << 10, i))
            .collect(),
    )
    .level(1)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_mid_bundle_leaves_a_pending_bundle_the_next_pull_into_it_replaces() {
    let env = Env::plain();
    let (reference, built) = env.publish(&many_files_image(), "test/many", "v1").await;
    let work = env.dir.path().join("work");
    let pull = |bundle: Option<&Path>| image_pull(&env, &work, &reference, bundle);
    let pending = |bundle: &Path| {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(work.join("metadata.json")).unwrap()).unwrap();
        meta["pending_bundles"]
            .get(bundle.to_str().unwrap())
            .is_some()
    };
    // The layers first: the runs below go straight to the bundle.
    assert!(pull(None).output().unwrap().status.success());

    // Kill it once some files are flattened but before config.json is written.
    let mut killed = None;
    for attempt in 0..10 {
        let bundle = env.dir.path().join(format!("bundle-{attempt}"));
        let mut child = pull(Some(&bundle)).spawn().unwrap();
        let killed_here = kill_when(&mut child, Duration::from_millis(1), || {
            let started = std::fs::read_dir(bundle.join("rootfs/files"))
                .is_ok_and(|mut d| d.next().is_some());
            started && !bundle.join("config.json").exists()
        });
        let out = child.wait_with_output().unwrap();
        assert!(
            killed_here || out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Killed after the bundle was complete: the pull won the race, try again.
        if killed_here && pending(&bundle) {
            killed = Some(bundle);
            break;
        }
    }
    let bundle = killed.expect("could not kill the pull in the middle of its bundle");
    assert!(!bundle.join("config.json").exists());
    let left = std::fs::read_dir(bundle.join("rootfs/files")).map_or(0, |d| d.count());
    assert!(left > 0);
    println!("killed with {left} of 400 files flattened");

    // Restart into the same bundle: the half-made one is taken down, the pull succeeds.
    assert_eq!(run_to_success(pull(Some(&bundle))), built.manifest.digest);
    assert!(!pending(&bundle));
    let expected = env.umoci_rootfs(&reference, "many");
    assert_same_tree(&bundle.join("rootfs"), &expected);
}
