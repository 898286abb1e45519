//! PullImage concurrency through the real `confidential-data-hub` (release build): three
//! different images (about `PULL_CONCURRENT_MIB` MiB of files each, default 96, gzip
//! layers) on a local docker-registry. Each image is pulled alone by a freshly started hub
//! with a fresh work directory, then all three at once by another fresh hub. Prints
//!
//! ```text
//! bench pull_concurrent3_vs_slowest: <time of the three at once / slowest alone> x
//! bench pull_concurrent3_vs_slowest_<N>mibps_link: <the same through a throttled link> x
//! ```
//!
//! Near 1 means the pulls overlap; a hub that serializes pulls (upstream's mutex) scores
//! the sum of the three alone over the slowest, about 3 (printed on stderr for reference).
//! From a registry on the same machine a pull is CPU-bound (inflate, hashing, writing
//! files), so on a small machine three pulls cannot beat three times the work divided by
//! the cores: the hub's CPU time is printed next to each figure. The second figure puts a
//! proxy in front of the registry that sends each connection's answers at
//! `PULL_CONCURRENT_LINK_MIBPS` (default 25) MiB/s, as a remote registry would.
//!
//! Each figure is the best of `PULL_CONCURRENT_REPEAT` runs (default 3). The images are
//! built once and cached under the target directory. Needs root for the overlay rootfs
//! (the flatten snapshotter is used otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    net::SocketAddr,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use common::{Guest, START};
use confidential_data_hub::CdhClient;
use test_images::{
    Compression, ConfigSpec, Descriptor, Entry, ImageSpec, LayerSpec, OciLayout, Registry,
    RegistryOptions,
};
use testkit::process::{Daemon, Ready};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

const IMAGES: usize = 3;
const LAYERS: usize = 2;

/// Image `image`: `LAYERS` gzip layers of large files (256 KiB to 4 MiB) and a directory
/// of small ones (1 to 16 KiB), with content seeded per image so no layer is shared.
fn image_spec(image: usize, total_bytes: u64) -> ImageSpec {
    let per_layer = total_bytes / LAYERS as u64;
    let mut layers = Vec::new();
    for layer in 0..LAYERS {
        let seed = |index: u64| ((image as u64 + 1) << 48) | ((layer as u64) << 32) | index;
        // a fixed, seed-independent size sequence keeps the three images the same size
        let mut sizes = test_images::ContentGenerator::new(layer as u64 + 1);
        let mut entries = vec![
            Entry::dir(&format!("img{image}/")),
            Entry::dir(&format!("img{image}/layer{layer}/")),
            Entry::dir(&format!("img{image}/layer{layer}/small/")),
        ];
        let mut used = 0u64;
        let mut index = 0u64;
        while used < per_layer / 32 {
            let size = 1024 + sizes.next_u64() % (15 * 1024);
            entries.push(Entry::generated(
                &format!("img{image}/layer{layer}/small/f{index:05}"),
                size,
                seed(index),
            ));
            used += size;
            index += 1;
        }
        while used < per_layer {
            let size = (256 * 1024 + sizes.next_u64() % (3840 * 1024)).min(per_layer - used);
            entries.push(Entry::generated(
                &format!("img{image}/layer{layer}/blob{index:05}.bin"),
                size,
                seed(index),
            ));
            used += size;
            index += 1;
        }
        layers.push(LayerSpec::new(Compression::Gzip, entries));
    }
    ImageSpec::new(layers).config(ConfigSpec {
        cmd: vec!["/bin/true".into()],
        ..ConfigSpec::default()
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The three images, built once (a minute of gzip) and cached.
fn build_images(mib: u64) -> (OciLayout, Vec<Descriptor>) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join(format!(
        "bench-cache/cdh-pull-concurrent-{mib}mib-{IMAGES}x{LAYERS}-v1"
    ));
    let done = dir.join("complete");
    let layout_dir = dir.join("oci");
    if done.exists() {
        let layout = OciLayout::create(&layout_dir).unwrap();
        let manifests: Result<Vec<_>, _> = (0..IMAGES)
            .map(|i| layout.resolve_tag(&format!("image{i}")))
            .collect();
        if let Ok(manifests) = manifests {
            return (layout, manifests);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "building {IMAGES} images of {mib} MiB (cached in {})",
        dir.display()
    );
    let layout = OciLayout::create(&layout_dir).unwrap();
    let mut manifests = Vec::new();
    for i in 0..IMAGES {
        let built = layout.write_image(&image_spec(i, mib << 20)).unwrap();
        layout.tag(&format!("image{i}"), &built.manifest).unwrap();
        manifests.push(built.manifest);
    }
    std::fs::write(&done, b"").unwrap();
    (layout, manifests)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn sync() {
    let status = Command::new("sync").status().unwrap();
    assert!(status.success());
}

/// A hub with a fresh work directory pulling from `host` over plain HTTP.
fn start_hub(guest: &Guest, host: &str, snapshotter: &str) -> Daemon {
    let config = format!(
        "[aa]\naa_socket = \"unix://{}\"\n[kbc]\nname = \"offline_fs_kbc\"\n[log]\nlevel = \"warn\"\n\
         [image]\nwork_dir = \"{}\"\nsnapshotter = \"{snapshotter}\"\n\
         [image.registry_config]\n[[image.registry_config.registry]]\nlocation = \"{host}\"\ninsecure = true\n",
        guest.path("no-aa.sock").display(),
        guest.path("work").display(),
    );
    let mut command = guest.cdh_command(&config);
    command.env("RUST_LOG", "warn");
    Daemon::spawn(
        "cdh",
        command,
        guest.dir.path(),
        Ready::Unix(guest.cdh_sock()),
        START,
    )
    .unwrap()
}

/// User + system CPU seconds of process `pid` so far.
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<f64>() / 100.0
}

/// One measurement: the wall time from the first request to the last answer, and the
/// CPU time the hub spent meanwhile.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: Duration,
    hub_cpu: f64,
}

/// Pulls `repos` of `host` at once through a fresh hub.
async fn pull_at_once(
    host: &str,
    repos: &[String],
    manifests: &[&Descriptor],
    snapshotter: &str,
) -> Run {
    let guest = Guest::new();
    let hub = start_hub(&guest, host, snapshotter);
    let pid = hub.pid().unwrap();
    let client = CdhClient::connect(&guest.cdh_addr(), Duration::from_secs(600))
        .await
        .unwrap();
    let bundles: Vec<PathBuf> = (0..repos.len())
        .map(|i| guest.path(&format!("bundle{i}")))
        .collect();
    sync();
    let cpu_before = process_cpu_seconds(pid);
    let started = Instant::now();
    let pulls: Vec<_> = repos
        .iter()
        .zip(&bundles)
        .map(|(repo, bundle)| {
            let client = client.clone();
            let reference = format!("{host}/{repo}:v1");
            let bundle = bundle.display().to_string();
            tokio::spawn(async move { client.pull_image(&reference, &bundle).await })
        })
        .collect();
    let mut digests = Vec::new();
    for pull in pulls {
        digests.push(pull.await.unwrap().unwrap());
    }
    let run = Run {
        wall: started.elapsed(),
        hub_cpu: process_cpu_seconds(pid) - cpu_before,
    };
    for (digest, manifest) in digests.iter().zip(manifests) {
        assert_eq!(digest, &manifest.digest);
    }
    for bundle in &bundles {
        assert!(bundle.join("config.json").is_file());
        if snapshotter == "overlayfs" {
            let status = Command::new("umount")
                .arg(bundle.join("rootfs"))
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    assert!(hub.stop().unwrap().success());
    run
}

/// A TCP proxy in front of `upstream` that sends the answers of each connection at most
/// `bytes_per_second` (no burst credit): a registry reached over a network link.
async fn throttled_proxy(upstream: SocketAddr, bytes_per_second: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = async {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    let _ = server_write.shutdown().await;
                };
                let answers = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut next = tokio::time::Instant::now();
                    while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        // Keep to the schedule across timer rounding; only an idle gap
                        // (between requests) restarts it, so no credit builds up.
                        let now = tokio::time::Instant::now();
                        if now > next + Duration::from_millis(50) {
                            next = now;
                        }
                        next += Duration::from_secs_f64(n as f64 / bytes_per_second as f64);
                        tokio::time::sleep_until(next).await;
                    }
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(requests, answers);
            });
        }
    });
    addr
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Each image alone, then all at once (best of `repeat` each); the ratio.
fn measure(
    runtime: &tokio::runtime::Runtime,
    host: &str,
    repos: &[String],
    manifests: &[Descriptor],
    snapshotter: &str,
    repeat: u64,
) -> f64 {
    let best = |repos: &[String], manifests: &[&Descriptor]| {
        (0..repeat)
            .map(|_| runtime.block_on(pull_at_once(host, repos, manifests, snapshotter)))
            .min_by_key(|run| run.wall)
            .unwrap()
    };
    let mut alone = Vec::new();
    for (i, repo) in repos.iter().enumerate() {
        let run = best(std::slice::from_ref(repo), &[&manifests[i]]);
        eprintln!(
            "  image {i} alone: {}, hub CPU {:.2} s",
            seconds(run.wall),
            run.hub_cpu
        );
        alone.push(run);
    }
    let together = best(repos, &manifests.iter().collect::<Vec<_>>());
    let slowest = alone.iter().map(|r| r.wall).max().unwrap_or_default();
    let serial: Duration = alone.iter().map(|r| r.wall).sum();
    eprintln!(
        "  all {IMAGES} at once: {}, hub CPU {:.2} s; slowest alone {}; one after the other \
         (a hub that serializes pulls) would take {} ({:.2} x)",
        seconds(together.wall),
        together.hub_cpu,
        seconds(slowest),
        seconds(serial),
        serial.as_secs_f64() / slowest.as_secs_f64()
    );
    // The hub's CPU alone sets a floor: the three pulls' CPU spread over every core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let floor = together.hub_cpu / cores;
    eprintln!(
        "  {cores} cores: the hub CPU of all three needs at least {floor:.2} s of wall time, \
         a ratio of at least {:.2} x before any other process runs",
        floor / slowest.as_secs_f64()
    );
    together.wall.as_secs_f64() / slowest.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let mib = env_number("PULL_CONCURRENT_MIB", 96);
    let repeat = env_number("PULL_CONCURRENT_REPEAT", 3).max(1);
    let link_mibps = env_number("PULL_CONCURRENT_LINK_MIBPS", 25).max(1);
    let snapshotter = if is_root() { "overlayfs" } else { "flatten" };
    let (layout, manifests) = build_images(mib);
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let repos: Vec<String> = (0..IMAGES).map(|i| format!("bench/image{i}")).collect();
    runtime.block_on(async {
        for (repo, manifest) in repos.iter().zip(&manifests) {
            test_images::push_image(&layout, manifest, &registry.target(), repo, "v1")
                .await
                .unwrap();
        }
    });

    eprintln!("{IMAGES} different images of {mib} MiB, {LAYERS} gzip layers each, local registry:");
    let local = measure(
        &runtime,
        &registry.host(),
        &repos,
        &manifests,
        snapshotter,
        repeat,
    );
    println!("bench pull_concurrent3_vs_slowest: {local:.2} x");

    let upstream: SocketAddr = registry.host().parse().unwrap();
    let proxy = runtime.block_on(throttled_proxy(upstream, link_mibps << 20));
    eprintln!("the same through a {link_mibps} MiB/s-per-connection link:");
    let linked = measure(
        &runtime,
        &proxy.to_string(),
        &repos,
        &manifests,
        snapshotter,
        repeat,
    );
    println!("bench pull_concurrent3_vs_slowest_{link_mibps}mibps_link: {linked:.2} x");
    drop(registry);
}
