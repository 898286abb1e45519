//! A hostile registry: a real `docker-registry` behind testkit's fault-injecting front,
//! which answers chosen requests with what a real registry would not send (oversized
//! manifests and indexes, corrupted blobs, decompression bombs, bodies that never end or
//! trickle, cut connections, redirect loops, 401 storms, token realms elsewhere). Each
//! pull must fail with an error naming what was wrong, within bounded time and bytes,
//! and leave nothing in the store (no layer, no staging directory, no bundle).
//!
//! Per-case figures (time to failure, bytes the front sent before the client gave up)
//! are printed as `figure …` lines and `bench registry_fault_worst_ms` (run with
//! `--nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::listing;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use common::Env;
use image_rs::RegistryEntry;
use image_rs::RegistryError;
use image_rs::{Credentials, Digest, ImageClient, ImageConfig, PullError, PullOptions};
use image_rs::{LayerError, RATIO_FREE_BYTES};
use test_images::Entry;
use test_images::{BuiltImage, Compression, ImageSpec, LayerSpec};
use testkit::registry_faults::{Fault, FaultFront};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A real registry, the front before it, and the figures of the cases run.
struct Hostile {
    env: Env,
    front: FaultFront,
    figures: Vec<(String, Duration, u64)>,
}

impl Hostile {
    async fn start() -> Self {
        let env = Env::plain();
        let upstream = env.registry.host().parse().unwrap();
        let front = FaultFront::start(upstream).await.unwrap();
        Self {
            env,
            front,
            figures: Vec::new(),
        }
    }

    /// Publishes `image` as `repo:v1` in the registry; the reference through the front.
    async fn publish(&self, image: &ImageSpec, repo: &str) -> (String, BuiltImage) {
        let (_, built) = self.env.publish(image, repo, "v1").await;
        (format!("{}/{repo}:v1", self.front.host()), built)
    }

    /// A config reaching the registry and the front (both plain HTTP).
    fn config(&self, name: &str) -> ImageConfig {
        let mut config = self.env.config(name);
        if let Some(registries) = config.registry_config.as_mut() {
            registries.registry.push(RegistryEntry {
                location: self.front.host(),
                insecure: true,
                ..RegistryEntry::default()
            });
        }
        config
    }

    /// Pulls `reference` with `config`, expects a refusal that `check` accepts, and
    /// checks that nothing was kept; records the figures under `name`.
    async fn refused(
        &mut self,
        name: &str,
        reference: &str,
        config: ImageConfig,
        options: PullOptions,
        pattern: &str,
        check: impl Fn(&PullError) -> bool,
    ) -> PullError {
        let work = config.work_dir.clone();
        let client = ImageClient::new(config).await.unwrap();
        let bundle = self.env.dir.path().join(format!("bundle-{name}"));
        self.front.reset_seen();
        let started = Instant::now();
        let pulled = tokio::time::timeout(
            Duration::from_secs(60),
            client.pull_image(reference, &bundle, &options),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: the pull did not fail within 60 s"));
        let elapsed = started.elapsed();
        let err = pulled.expect_err(name);
        assert!(check(&err), "{name}: unexpected error {err:?}");
        drop(client);
        assert_eq!(
            listing(&work.join("layers")),
            BTreeSet::new(),
            "{name}: layers left"
        );
        assert_eq!(
            listing(&work.join("staging")),
            BTreeSet::new(),
            "{name}: staging left"
        );
        assert!(!bundle.exists(), "{name}: bundle made");
        let metadata = std::fs::read_to_string(work.join("metadata.json")).unwrap_or_default();
        assert!(
            !metadata.contains("sha256:"),
            "{name}: something recorded: {metadata}"
        );
        // the front records what it sent when its connection ends
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = self.front.sent(pattern);
        println!(
            "figure {name}: failed after {} ms, {sent} bytes sent by the front; error: {err}",
            elapsed.as_millis()
        );
        self.figures.push((name.to_string(), elapsed, sent));
        err
    }
}

fn registry_error(e: &PullError) -> Option<&RegistryError> {
    match e {
        PullError::Registry { source, .. } => Some(source),
        _ => None,
    }
}

fn download_error(e: &PullError) -> Option<&RegistryError> {
    match e {
        PullError::Layer(LayerError::Download { source, .. }) => Some(source),
        _ => None,
    }
}

fn small_image(tag: &str) -> ImageSpec {
    ImageSpec::new(vec![LayerSpec::new(
        Compression::Gzip,
        vec![Entry::generated(&format!("data-{tag}"), 256 << 10, 3)],
    )])
}

/// `count` gzip members of 16 MiB of zeros after a tar header for one file of them all
/// (multi-member gzip is a valid layer): ~1030:1, as far as deflate goes.
fn gzip_bomb(count: u64) -> (Vec<u8>, u64) {
    let chunk = 16u64 << 20;
    let gz = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    let mut header = tar::Header::new_ustar();
    header.set_path("zeros").unwrap();
    header.set_size(chunk * count);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let zeros = gz(&vec![0u8; chunk as usize]);
    let mut blob = gz(header.as_bytes());
    for _ in 0..count {
        blob.extend_from_slice(&zeros);
    }
    blob.extend_from_slice(&gz(&[0u8; 1024]));
    (blob, 512 + chunk * count + 1024)
}

/// The same with zstd frames (zstd goes far beyond deflate's ratio).
fn zstd_bomb(count: u64) -> (Vec<u8>, u64) {
    let chunk = 16u64 << 20;
    let mut header = tar::Header::new_ustar();
    header.set_path("zeros").unwrap();
    header.set_size(chunk * count);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let zeros = zstd::encode_all(&vec![0u8; chunk as usize][..], 19).unwrap();
    let mut blob = zstd::encode_all(&header.as_bytes()[..], 3).unwrap();
    for _ in 0..count {
        blob.extend_from_slice(&zeros);
    }
    blob.extend_from_slice(&zstd::encode_all(&[0u8; 1024][..], 3).unwrap());
    (blob, 512 + chunk * count + 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_registry_is_refused_with_the_reason_and_leaves_nothing() {
    let mut h = Hostile::start().await;
    let (reference, built) = h.publish(&small_image("a"), "hostile/small").await;
    let layer = built.layers[0].digest.clone();
    let config_digest = built.config.digest.clone();

    // --- manifests and indexes over the size limit ---
    h.front.set(
        "/manifests/",
        Fault::Reply {
            status: 200,
            headers: vec![("Content-Type".into(), OCI_MANIFEST.into())],
            body: vec![b' '; 5 << 20],
        },
    );
    h.refused(
        "manifest-over-limit",
        &reference,
        h.config("w1"),
        PullOptions::default(),
        "/manifests/",
        |e| {
            matches!(
                registry_error(e),
                Some(RegistryError::TooLarge {
                    what: "manifest",
                    limit: 4194304,
                    ..
                })
            )
        },
    )
    .await;
    h.front.clear();
    h.front.set("/manifests/", Fault::Endless);
    h.refused(
        "manifest-endless",
        &reference,
        h.config("w2"),
        PullOptions::default(),
        "/manifests/",
        |e| {
            matches!(
                registry_error(e),
                Some(RegistryError::TooLarge {
                    what: "manifest",
                    ..
                })
            )
        },
    )
    .await;
    h.front.clear();
    h.front.set(
        "/manifests/",
        Fault::Reply {
            status: 200,
            headers: vec![("Content-Type".into(), OCI_INDEX.into())],
            body: vec![b' '; 5 << 20],
        },
    );
    h.refused(
        "index-over-limit",
        &reference,
        h.config("w3"),
        PullOptions::default(),
        "/manifests/",
        |e| {
            matches!(
                registry_error(e),
                Some(RegistryError::TooLarge {
                    what: "manifest",
                    ..
                })
            )
        },
    )
    .await;
    // A manifest whose config claims 1 GiB: refused before the config is fetched.
    h.front.clear();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 1u64 << 30},
        "layers": [{"mediaType": built.layers[0].media_type, "digest": layer, "size": built.layers[0].size}],
    });
    h.front.set(
        "/manifests/",
        Fault::Reply {
            status: 200,
            headers: vec![("Content-Type".into(), OCI_MANIFEST.into())],
            body: serde_json::to_vec(&manifest).unwrap(),
        },
    );
    h.refused(
        "config-over-limit",
        &reference,
        h.config("w4"),
        PullOptions::default(),
        "/blobs/",
        |e| {
            matches!(
                registry_error(e),
                Some(RegistryError::TooLarge {
                    what: "image config",
                    ..
                })
            )
        },
    )
    .await;
    assert_eq!(h.front.gets("/blobs/"), 0, "the config was fetched anyway");

    // --- blobs that do not have their digest ---
    h.front.clear();
    h.front.set(&format!("/blobs/{layer}"), Fault::Corrupt);
    h.refused(
        "layer-digest-mismatch",
        &reference,
        h.config("w5"),
        PullOptions::default(),
        "/blobs/",
        |e| matches!(e, PullError::Layer(LayerError::DigestMismatch { .. })),
    )
    .await;
    h.front.clear();
    h.front
        .set(&format!("/blobs/{config_digest}"), Fault::Corrupt);
    h.refused(
        "config-digest-mismatch",
        &reference,
        h.config("w6"),
        PullOptions::default(),
        "/blobs/",
        |e| {
            matches!(
                registry_error(e),
                Some(RegistryError::DigestMismatch {
                    what: "image config",
                    ..
                })
            )
        },
    )
    .await;

    // --- layers that never end ---
    h.front.clear();
    h.front.set(&format!("/blobs/{layer}"), Fault::Endless);
    h.refused(
        "layer-endless",
        &reference,
        h.config("w7"),
        PullOptions::default(),
        "/blobs/",
        |e| matches!(e, PullError::Layer(LayerError::SizeMismatch { expected, actual, .. }) if actual > expected),
    )
    .await;
    h.front.clear();
    h.front.set(
        &format!("/blobs/{layer}"),
        Fault::Trickle(Duration::from_millis(50)),
    );
    let mut slow = h.config("w8");
    slow.low_speed_limit = 1000;
    slow.low_speed_time_secs = 2;
    h.refused(
        "layer-trickle",
        &reference,
        slow,
        PullOptions::default(),
        "/blobs/",
        |e| {
            matches!(
                download_error(e),
                Some(RegistryError::TooSlow {
                    limit: 1000,
                    seconds: 2,
                    ..
                })
            )
        },
    )
    .await;
    h.front.clear();
    h.front
        .set("/manifests/", Fault::Trickle(Duration::from_millis(50)));
    let mut slow = h.config("w9");
    slow.low_speed_limit = 1000;
    slow.low_speed_time_secs = 2;
    h.refused(
        "manifest-trickle",
        &reference,
        slow,
        PullOptions::default(),
        "/manifests/",
        |e| matches!(registry_error(e), Some(RegistryError::TooSlow { .. })),
    )
    .await;
    for (name, pattern) in [
        ("manifest-stall", "/manifests/".to_string()),
        ("layer-stall", format!("/blobs/{layer}")),
    ] {
        h.front.clear();
        h.front.set(&pattern, Fault::Stall);
        let mut slow = h.config(&format!("w-{name}"));
        slow.low_speed_limit = 1000;
        slow.low_speed_time_secs = 2;
        h.refused(
            name,
            &reference,
            slow,
            PullOptions::default(),
            &pattern,
            |e| {
                matches!(
                    registry_error(e),
                    Some(RegistryError::TooSlow { bytes: 0, .. })
                )
            },
        )
        .await;
    }
    h.front.clear();
    h.front.set(
        &format!("/blobs/{layer}"),
        Fault::CutAfter(built.layers[0].size / 2),
    );
    h.refused(
        "layer-cut-mid-body",
        &reference,
        h.config("w10"),
        PullOptions::default(),
        "/blobs/",
        |e| {
            matches!(
                e,
                PullError::Layer(LayerError::Download { .. } | LayerError::SizeMismatch { .. })
            )
        },
    )
    .await;

    // --- redirect loops ---
    h.front.clear();
    let manifest_url = format!("http://{}/v2/hostile/small/manifests/v1", h.front.host());
    h.front.set("/manifests/", Fault::Redirect(manifest_url));
    let err = h
        .refused(
            "manifest-redirect-loop",
            &reference,
            h.config("w11"),
            PullOptions::default(),
            "/manifests/",
            |e| matches!(registry_error(e), Some(RegistryError::Transport { .. })),
        )
        .await;
    assert!(err.to_string().contains("redirect"), "{err}");
    assert!(h.front.gets("/manifests/") <= 12, "{:?}", h.front.seen());
    h.front.clear();
    let blob_url = format!("http://{}/v2/hostile/small/blobs/{layer}", h.front.host());
    h.front
        .set(&format!("/blobs/{layer}"), Fault::Redirect(blob_url));
    let err = h
        .refused(
            "blob-redirect-loop",
            &reference,
            h.config("w12"),
            PullOptions::default(),
            "/blobs/",
            |e| matches!(registry_error(e), Some(RegistryError::Transport { .. })),
        )
        .await;
    assert!(err.to_string().contains("redirect"), "{err}");

    // --- errors and 401 storms: bounded retries ---
    h.front.clear();
    h.front.set(
        "/v2/",
        Fault::Reply {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), "Basic realm=\"storm\"".into())],
            body: b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".to_vec(),
        },
    );
    let options = PullOptions {
        credentials: Some(Credentials::new("user", "wrong")),
        ..PullOptions::default()
    };
    h.refused(
        "401-storm",
        &reference,
        h.config("w13"),
        options,
        "/v2/",
        |e| {
            matches!(
                registry_error(e),
                Some(RegistryError::Unauthorized { status: 401, .. })
            )
        },
    )
    .await;
    let requests = h.front.seen().len();
    assert!(requests <= 3, "{requests} requests for one refused pull");
    h.front.clear();
    h.front.set(
        "/manifests/",
        Fault::Reply {
            status: 500,
            headers: vec![],
            body: b"boom".to_vec(),
        },
    );
    h.refused(
        "manifest-500",
        &reference,
        h.config("w14"),
        PullOptions::default(),
        "/manifests/",
        |e| {
            matches!(
                registry_error(e),
                Some(RegistryError::Status { status: 500, message, .. }) if message == "boom"
            )
        },
    )
    .await;
    h.front.clear();

    // --- decompression bombs (published in the real registry) ---
    let (bomb, inflated) = gzip_bomb(64);
    let spec = ImageSpec::new(vec![LayerSpec::raw(
        Compression::Gzip,
        bomb.clone(),
        Digest::sha256_of(b"never reached: refused before the diff_id").to_string(),
    )]);
    let (bomb_ref, _) = h.publish(&spec, "hostile/gzip-bomb").await;
    let err = h
        .refused(
            "gzip-bomb",
            &bomb_ref,
            h.config("w15"),
            PullOptions::default(),
            "/blobs/",
            |e| {
                matches!(
                    e,
                    PullError::Layer(LayerError::CompressionRatio { ratio: 256, .. })
                )
            },
        )
        .await;
    if let PullError::Layer(LayerError::CompressionRatio {
        compressed,
        uncompressed,
        ..
    }) = err
    {
        println!(
            "figure gzip-bomb: {} bytes blob inflating to {inflated} (ratio {}:1) refused after {uncompressed} bytes inflated from {compressed}; limit 256:1 beyond {RATIO_FREE_BYTES} bytes",
            bomb.len(),
            inflated / bomb.len() as u64
        );
        assert!(uncompressed < 64 << 20, "{uncompressed} inflated");
    }
    let (bomb, inflated) = zstd_bomb(64);
    let spec = ImageSpec::new(vec![LayerSpec::raw(
        Compression::Zstd,
        bomb.clone(),
        Digest::sha256_of(b"never reached").to_string(),
    )]);
    let (bomb_ref, _) = h.publish(&spec, "hostile/zstd-bomb").await;
    let err = h
        .refused(
            "zstd-bomb",
            &bomb_ref,
            h.config("w16"),
            PullOptions::default(),
            "/blobs/",
            |e| matches!(e, PullError::Layer(LayerError::CompressionRatio { .. })),
        )
        .await;
    if let PullError::Layer(LayerError::CompressionRatio { uncompressed, .. }) = err {
        println!(
            "figure zstd-bomb: {} bytes blob inflating to {inflated} (ratio {}:1) refused after {uncompressed} bytes",
            bomb.len(),
            inflated / bomb.len() as u64
        );
        assert!(uncompressed < 64 << 20, "{uncompressed} inflated");
    }

    // The same registry serves the image fine without faults (the cases are real).
    let config = h.config("w-ok");
    let client = ImageClient::new(config).await.unwrap();
    let bundle = h.env.dir.path().join("bundle-ok");
    client
        .pull_image(&reference, &bundle, &PullOptions::default())
        .await
        .unwrap();

    let (worst, time, _) = h
        .figures
        .iter()
        .max_by_key(|(_, t, _)| *t)
        .cloned()
        .unwrap();
    println!("worst case: {worst}");
    println!("bench registry_fault_worst_ms: {} ms", time.as_millis());
    assert!(time < Duration::from_secs(30), "{worst} took {time:?}");
}

/// A 401 whose bearer realm is on another host: the credentials are not sent there over
/// plain HTTP (refused, naming the realm); an anonymous pull still asks that realm for a
/// token, as upstream does, and never with an `Authorization` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_realm_elsewhere_never_gets_the_credentials_in_clear() {
    let mut h = Hostile::start().await;
    let (reference, _) = h.publish(&small_image("b"), "hostile/realm").await;
    // The collector: another loopback address, so another host.
    let collector = FaultFront::start_on([127, 0, 0, 2].into(), None)
        .await
        .unwrap();
    let realm = format!("http://{}/token", collector.host());
    h.front.set(
        "/v2/",
        Fault::Reply {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                format!("Bearer realm=\"{realm}\",service=\"elsewhere\""),
            )],
            body: Vec::new(),
        },
    );
    let options = PullOptions {
        credentials: Some(Credentials::new("alice", "realm-secret-pw")),
        ..PullOptions::default()
    };
    let err = h
        .refused(
            "realm-elsewhere-with-credentials",
            &reference,
            h.config("r1"),
            options,
            "/v2/",
            |e| matches!(registry_error(e), Some(RegistryError::RealmRefused { realm: r, .. }) if r.starts_with("http://127.0.0.2:")),
        )
        .await;
    assert!(err.to_string().contains("clear text"), "{err}");
    assert_eq!(collector.seen(), Vec::new(), "the realm was contacted");
    // Anonymous: the realm is asked, without credentials; its 404 is the reason.
    h.refused(
        "realm-elsewhere-anonymous",
        &reference,
        h.config("r2"),
        PullOptions::default(),
        "/v2/",
        |e| matches!(registry_error(e), Some(RegistryError::Token { message, .. }) if message.contains("404")),
    )
    .await;
    let asked = collector.seen();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].path.starts_with("/token?"), "{asked:?}");
    assert_eq!(asked[0].authorization, None);
    for seen in h.front.seen() {
        assert!(
            seen.authorization.is_none(),
            "credentials sent anyway: {seen:?}"
        );
    }
}
