//! Pull benchmark: a 1 GiB, 8-layer gzip image from a local docker-registry, pulled by the
//! `image-pull` binary (a child process, so its peak RSS is its own) into an overlay
//! bundle (flatten when not root), against `skopeo copy docker://… oci:…` + `umoci unpack`
//! of the same image. Prints:
//!
//! ```text
//! bench pull_mbps: <unpacked MB per second> MB/s
//! bench pull_peak_rss_mib: <VmHWM of the pulling process> MiB
//! bench pull_vs_skopeo_umoci: <their time / our time> x
//! ```
//!
//! `PULL_BENCH_MIB` changes the image size (default 1024). The built image is cached
//! under the target directory between runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_images::fixtures;
use test_images::OciLayout;
use test_images::{Registry, RegistryOptions};

const LAYERS: usize = 8;

fn cache_dir(mib: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join(format!("bench-cache/pull-{mib}mib-{LAYERS}layers-v1"))
}

/// Builds the image once (about 20 s of gzip) and reuses it afterwards.
fn image_layout(mib: u64) -> (OciLayout, test_images::Descriptor, u64) {
    let dir = cache_dir(mib);
    let done = dir.join("complete");
    let spec = fixtures::large(mib << 20, LAYERS);
    let file_bytes: u64 = spec
        .layers
        .iter()
        .flat_map(|l| l.entries())
        .map(|e| e.data_len())
        .sum();
    if done.exists() {
        let layout = OciLayout::create(dir.join("oci")).unwrap();
        if let Ok(manifest) = layout.resolve_tag("large") {
            return (layout, manifest, file_bytes);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "building the {mib} MiB benchmark image (cached in {})",
        dir.display()
    );
    let layout = OciLayout::create(dir.join("oci")).unwrap();
    let built = layout.write_image(&spec).unwrap();
    layout.tag("large", &built.manifest).unwrap();
    std::fs::write(&done, b"").unwrap();
    (layout, built.manifest, file_bytes)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds of a process so far (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs `cmd`, returning its wall time and the highest VmHWM seen while it ran.
fn run_measured(mut cmd: Command) -> (Duration, u64) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let mut cpu = 0.0;
    loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(seconds) = cpu_seconds(pid) {
            cpu = seconds;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let elapsed = start.elapsed();
            eprintln!(
                "pulling process: {cpu:.2} s of CPU (user + system) in {:.2} s",
                elapsed.as_secs_f64()
            );
            if !status.success() {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("{cmd:?} failed: {err}");
            }
            return (elapsed, peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sync() {
    run(&mut Command::new("sync"));
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn remove(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let mib: u64 = std::env::var("PULL_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let (layout, manifest, file_bytes) = image_layout(mib);
    let registry = Registry::start(RegistryOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(test_images::push_image(
            &layout,
            &manifest,
            &registry.target(),
            "bench/large",
            "v1",
        ))
        .unwrap();
    let reference = format!("{}/bench/large:v1", registry.host());
    let scratch = tempfile::Builder::new()
        .prefix("pull-bench-")
        .tempdir()
        .unwrap();

    // Ours.
    sync();
    let work = scratch.path().join("work");
    let bundle = scratch.path().join("bundle");
    let snapshotter = if is_root() { "overlayfs" } else { "flatten" };
    let mut ours = Command::new(env!("CARGO_BIN_EXE_image-pull"));
    ours.arg("--work-dir")
        .arg(&work)
        .arg("--bundle")
        .arg(&bundle)
        .arg("--snapshotter")
        .arg(snapshotter)
        .arg("--insecure-registry")
        .arg(registry.host())
        .arg(&reference);
    let (our_time, our_peak_kib) = run_measured(ours);
    assert!(
        bundle.join("rootfs/data0").is_dir(),
        "the bundle rootfs is incomplete"
    );
    if snapshotter == "overlayfs" {
        run(Command::new("umount").arg(bundle.join("rootfs")));
    }
    remove(&work);
    remove(&bundle);
    sync();

    // skopeo + umoci.
    let oci = scratch.path().join("skopeo-oci");
    let umoci_bundle = scratch.path().join("umoci-bundle");
    let start = Instant::now();
    run(Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:t", oci.display())));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:t", oci.display()))
        .arg(&umoci_bundle));
    let their_time = start.elapsed();
    remove(&oci);
    remove(&umoci_bundle);
    registry.stop().unwrap();

    let mbps = file_bytes as f64 / 1e6 / our_time.as_secs_f64();
    eprintln!(
        "image-rs ({snapshotter}): {:.2} s for {:.0} MB; skopeo+umoci: {:.2} s",
        our_time.as_secs_f64(),
        file_bytes as f64 / 1e6,
        their_time.as_secs_f64()
    );
    println!("bench pull_mbps: {mbps:.1} MB/s");
    println!(
        "bench pull_peak_rss_mib: {:.1} MiB",
        our_peak_kib as f64 / 1024.0
    );
    println!(
        "bench pull_vs_skopeo_umoci: {:.2} x",
        their_time.as_secs_f64() / our_time.as_secs_f64()
    );
}
