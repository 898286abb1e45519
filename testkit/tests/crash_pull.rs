//! `kill -9` of the data hub at random points of a `PullImage` (20 runs, a seeded RNG:
//! `CRASH_PULL_SEED` reproduces a run), through testkit's fault front over a real
//! `docker-registry`, slowed so that the kill lands mid-layer. After each kill: no layer
//! directory the metadata does not record survives the restart, no staging directory is
//! left, and the next pull completes with the right content while fetching none of the
//! layers that were committed before the kill (blob GETs counted at the front).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};

use protos::{api, api_ttrpc};
use sha2::Digest as _;
use test_images::{Compression, Entry, ImageSpec, LayerSpec, OciLayout, Registry, RegistryOptions};
use testkit::{
    process::Daemon,
    registry_faults::{Fault, FaultFront},
    suite::{KbcSetup, Suite},
};

const RUNS: usize = 20;
const LAYERS: u64 = 6;
/// The front serves each blob at this rate: ~0.7 s per 1 MiB layer.
const RATE: u64 = 1_500_000;

/// xorshift64*: a few lines, and the seed is all a failure report needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn image() -> ImageSpec {
    ImageSpec::new(
        (0..LAYERS)
            .map(|i| {
                LayerSpec::new(
                    Compression::Gzip,
                    vec![
                        Entry::file(&format!("layer{i}/name"), format!("layer {i}\n")),
                        Entry::generated(&format!("layer{i}/data"), 1 << 20, i + 1),
                    ],
                )
                .level(1)
            })
            .collect(),
    )
}

/// Path → sha256 of every regular file, and the set of directories, below `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let kind = e.file_type().unwrap();
            if kind.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(path);
            } else if kind.is_file() {
                let digest = sha2::Sha256::digest(std::fs::read(&path).unwrap());
                out.insert(rel, hex::encode(digest));
            }
        }
    }
    out
}

/// diff_ids the store's metadata records as committed.
fn committed(work: &Path) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(work.join("metadata.json")) else {
        return BTreeSet::new();
    };
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["layers"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn dir_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn pull(suite: &Suite, image: &str, bundle: &Path) -> Result<String, ttrpc::Error> {
    let client = ttrpc::r#async::Client::connect(&format!("unix://{}", suite.cdh_sock.display()))
        .await
        .unwrap();
    api_ttrpc::ImagePullServiceClient::new(client)
        .pull_image(
            ttrpc::context::with_timeout(120_000_000_000),
            &api::ImagePullRequest {
                image_url: image.to_string(),
                bundle_path: bundle.display().to_string(),
                ..Default::default()
            },
        )
        .await
        .map(|r| r.manifest_digest)
}

fn start_cdh(suite: &Suite) -> Daemon {
    tokio::task::block_in_place(|| suite.start_cdh()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_at_random_points_resumes_from_what_was_committed() {
    let seed: u64 = std::env::var("CRASH_PULL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0c0_2026_0017);
    println!("CRASH_PULL_SEED={seed}");
    let mut rng = Rng(seed | 1);

    let registry =
        tokio::task::block_in_place(|| Registry::start(RegistryOptions::default())).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(scratch.path().join("oci")).unwrap();
    let built =
        test_images::fixtures::publish(&layout, &registry.target(), &image(), "crash/big", "v1")
            .await
            .unwrap();
    let front = FaultFront::start(registry.host().parse().unwrap())
        .await
        .unwrap();
    front.set("/blobs/", Fault::Slow(RATE));
    let reference = format!("{}/crash/big:v1", front.host());
    let blob_of: BTreeMap<String, String> = built
        .diff_ids
        .iter()
        .cloned()
        .zip(built.layers.iter().map(|l| l.digest.to_string()))
        .collect();

    let suite = Suite::new(&KbcSetup::OfflineFs(Vec::new())).unwrap();
    let work = suite.path("image-work");
    let bundles = suite.path("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let mut config = std::fs::read_to_string(suite.path("cdh.toml")).unwrap();
    config.push_str(&format!(
        "[image]\nwork_dir = \"{}\"\nsnapshotter = \"flatten\"\n[image.registry_config]\n\
         [[image.registry_config.registry]]\nlocation = \"{}\"\ninsecure = true\n",
        work.display(),
        front.host()
    ));
    std::fs::write(suite.path("cdh.toml"), config).unwrap();

    // A full pull: the expected tree and how long a pull takes.
    let cdh = start_cdh(&suite);
    let started = Instant::now();
    let digest = pull(&suite, &reference, &bundles.join("reference"))
        .await
        .unwrap();
    let full = started.elapsed();
    assert_eq!(digest, built.manifest.digest);
    let expected = tree(&bundles.join("reference/rootfs"));
    assert!(expected.len() > LAYERS as usize * 2, "{expected:?}");
    tokio::task::block_in_place(|| cdh.stop()).unwrap();
    println!("figure crash_pull full pull: {} ms", full.as_millis());

    let mut mid_layer = 0;
    let mut partial = 0;
    let mut reused_total = 0;
    for run in 0..RUNS {
        std::fs::remove_dir_all(&work).ok();
        let mut cdh = start_cdh(&suite);
        // kills in the first 90% of a pull's time: some before the first layer, most
        // during the layers, a few after the last commit
        let delay = Duration::from_millis(rng.below(full.as_millis() as u64 * 9 / 10));
        let bundle = bundles.join(format!("killed-{run}"));
        let pulling = {
            let reference = reference.clone();
            let sock = suite.cdh_sock.clone();
            let bundle = bundle.clone();
            tokio::spawn(async move {
                let client = ttrpc::r#async::Client::connect(&format!("unix://{}", sock.display()))
                    .await
                    .unwrap();
                api_ttrpc::ImagePullServiceClient::new(client)
                    .pull_image(
                        ttrpc::context::with_timeout(120_000_000_000),
                        &api::ImagePullRequest {
                            image_url: reference,
                            bundle_path: bundle.display().to_string(),
                            ..Default::default()
                        },
                    )
                    .await
            })
        };
        tokio::time::sleep(delay).await;
        let staged = dir_names(&work.join("staging")).len();
        tokio::task::block_in_place(|| cdh.signal_and_wait("KILL", Duration::from_secs(10)))
            .unwrap();
        let killed_result = pulling.await.unwrap();
        let before = committed(&work);
        // what the metadata records was renamed into place before it was recorded
        for diff_id in &before {
            let dir = work.join("layers").join(diff_id.replacen(':', "-", 1));
            assert!(
                dir.is_dir(),
                "run {run}: {diff_id} recorded but not on disk"
            );
        }
        if staged > 0 {
            mid_layer += 1;
        }
        if !before.is_empty() && before.len() < LAYERS as usize {
            partial += 1;
        }

        // Restart: the next pull completes and fetches only what was not committed.
        front.reset_seen();
        let cdh = start_cdh(&suite);
        let retry = bundles.join(format!("retry-{run}"));
        let digest = pull(&suite, &reference, &retry).await.unwrap_or_else(|e| {
            panic!(
                "run {run} (seed {seed}): the pull after the kill failed: {e:?}\n{}",
                cdh.stderr()
            )
        });
        assert_eq!(digest, built.manifest.digest, "run {run}");
        assert_eq!(tree(&retry.join("rootfs")), expected, "run {run}");
        for (diff_id, blob) in &blob_of {
            let gets = front.gets(&format!("/blobs/{blob}"));
            if before.contains(diff_id) {
                assert_eq!(
                    gets, 0,
                    "run {run}: committed layer {diff_id} fetched again"
                );
                reused_total += 1;
            } else {
                assert_eq!(gets, 1, "run {run}: layer {diff_id} fetched {gets} times");
            }
        }
        // Nothing half-written survives: no staging, and the layer directories are
        // exactly the recorded layers.
        assert_eq!(
            dir_names(&work.join("staging")),
            BTreeSet::new(),
            "run {run}"
        );
        let recorded = committed(&work);
        assert_eq!(recorded.len(), LAYERS as usize, "run {run}");
        let on_disk: BTreeSet<String> = dir_names(&work.join("layers"))
            .into_iter()
            .map(|n| n.replacen('-', ":", 1))
            .collect();
        assert_eq!(on_disk, recorded, "run {run}");
        tokio::task::block_in_place(|| cdh.stop()).unwrap();
        println!(
            "run {run}: killed after {} ms ({}), {staged} staging dir(s), {} of {LAYERS} layers committed and reused",
            delay.as_millis(),
            if killed_result.is_ok() { "pull had already finished" } else { "mid-pull" },
            before.len()
        );
    }
    println!(
        "figure crash_pull: {RUNS} kills survived, {mid_layer} mid-layer, {partial} with some layers committed, {reused_total} committed layers reused"
    );
    // The seeded delays must really exercise mid-layer kills and partial stores.
    assert!(
        mid_layer >= RUNS / 4,
        "only {mid_layer} kills landed mid-layer"
    );
    assert!(partial >= 3, "only {partial} kills left a partial store");
}
