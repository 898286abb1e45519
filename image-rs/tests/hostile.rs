//! The hostile-layer corpus: every case is pulled from a real registry and must be refused
//! with a typed error, leave nothing in the store (no layer, no staging directory) and
//! write nothing outside the layer root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::Env;
use image_rs::layer::{LayerError, UnpackError, UnpackLimits};
use image_rs::registry::RegistryError;
use image_rs::{ImageClient, PullError, PullOptions};
use test_images::hashing::sha256_digest;
use test_images::layout::{Compression, ImageSpec, LayerSpec};
use test_images::tarball::{tar_bytes, Entry, TarWriter};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Everything below `dir` (relative paths), to prove nothing was written there.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out
}

type Check = fn(&PullError) -> bool;

fn unpack_error(e: &PullError) -> Option<&UnpackError> {
    match e {
        PullError::Layer(LayerError::Unpack { source, .. }) => Some(source),
        _ => None,
    }
}

struct Case {
    name: &'static str,
    image: ImageSpec,
    limits: Option<UnpackLimits>,
    check: Check,
}

fn layer(entries: Vec<Entry>) -> ImageSpec {
    ImageSpec::new(vec![LayerSpec::new(Compression::Gzip, entries)])
}

/// A layer of exactly `blob`, recorded with the diff_id of `tar` (the tar inside it).
fn raw_layer(blob: Vec<u8>, tar: &[u8], media_type: &str) -> ImageSpec {
    ImageSpec::new(vec![LayerSpec::raw(
        Compression::Gzip,
        blob,
        sha256_digest(tar),
    )
    .media_type(media_type)])
}

fn cases(outside: &Path) -> Vec<Case> {
    let out = |rel: &str| outside.join(rel).to_string_lossy().into_owned();
    let gzip_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    let ok_tar = tar_bytes(&[Entry::file("a", "x".repeat(100_000))]).unwrap();
    let ok_gz = gzip(&ok_tar);
    // A tar cut inside an entry's data (valid gzip around it).
    let mut truncated_tar = TarWriter::new(Vec::new());
    truncated_tar
        .append(&Entry::file("big", vec![7u8; 10_000]))
        .unwrap();
    let mut cut = truncated_tar.into_inner();
    cut.truncate(3000);
    let tight = UnpackLimits {
        max_layer_bytes: 64 * 1024,
        ..UnpackLimits::default()
    };
    let few = UnpackLimits {
        max_entries: 10,
        ..UnpackLimits::default()
    };
    let mut wrong_diff_id = layer(vec![Entry::file("f", "content")]);
    wrong_diff_id.diff_ids_override = Some(vec![sha256_digest(b"something else")]);

    vec![
        Case {
            name: "dotdot",
            image: layer(vec![Entry::file("../escape", "x")]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTraversal { .. })),
        },
        Case {
            name: "nested-dotdot",
            image: layer(vec![Entry::dir("a/"), Entry::file("a/../../escape", "x")]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTraversal { .. })),
        },
        Case {
            name: "absolute-path",
            image: layer(vec![Entry::file(&out("abs-file"), "x")]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::AbsolutePath { .. })),
        },
        Case {
            name: "symlink-then-write",
            image: layer(vec![
                Entry::symlink("link", &out("")),
                Entry::file("link/evil", "x"),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "relative-symlink-then-write",
            image: layer(vec![
                Entry::symlink("up", "../../../../../../../.."),
                Entry::file("up/tmp/evil", "x"),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "symlink-then-mkdir",
            image: layer(vec![Entry::symlink("dl", &out("")), Entry::dir("dl/sub/")]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "symlinked-parent-deep",
            image: layer(vec![
                Entry::dir("a/"),
                Entry::symlink("a/b", &out("")),
                Entry::file("a/b/c/d", "x"),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "hardlink-outside-relative",
            image: layer(vec![Entry::hardlink("hl", "../../../outside/secret")]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTraversal { .. })),
        },
        Case {
            name: "hardlink-outside-absolute",
            image: layer(vec![Entry::hardlink("hl", &out("secret"))]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::AbsolutePath { .. })),
        },
        Case {
            name: "hardlink-through-symlink",
            image: layer(vec![
                Entry::symlink("sl", &out("")),
                Entry::hardlink("x", "sl/secret"),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "hardlink-to-directory",
            image: layer(vec![Entry::dir("d/"), Entry::hardlink("x", "d")]),
            limits: None,
            check: |e| {
                matches!(
                    unpack_error(e),
                    Some(UnpackError::HardlinkToDirectory { .. })
                )
            },
        },
        Case {
            name: "hardlink-to-missing",
            image: layer(vec![Entry::hardlink("x", "nothing-here")]),
            limits: None,
            check: |e| {
                matches!(
                    unpack_error(e),
                    Some(UnpackError::HardlinkTargetMissing { .. })
                )
            },
        },
        Case {
            name: "whiteout-of-dotdot",
            image: layer(vec![Entry::dir("a/"), Entry::file("a/.wh...", "")]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::InvalidWhiteout { .. })),
        },
        Case {
            name: "whiteout-without-name",
            image: layer(vec![Entry::file(".wh.", "")]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::InvalidWhiteout { .. })),
        },
        Case {
            name: "char-device",
            image: layer(vec![
                Entry::dir("dev/"),
                Entry::char_device("dev/mem", 1, 1),
            ]),
            limits: None,
            check: |e| {
                matches!(
                    unpack_error(e),
                    Some(UnpackError::DeviceNotAllowed {
                        kind: "character",
                        ..
                    })
                )
            },
        },
        Case {
            name: "block-device",
            image: layer(vec![Entry::block_device("sda", 8, 0)]),
            limits: None,
            check: |e| {
                matches!(
                    unpack_error(e),
                    Some(UnpackError::DeviceNotAllowed { kind: "block", .. })
                )
            },
        },
        Case {
            name: "huge-entry",
            image: layer(vec![Entry::file("huge", "tiny").declared_size(1 << 40)]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::EntryTooLarge { size, .. }) if *size == 1 << 40),
        },
        Case {
            name: "layer-over-limit",
            image: layer(vec![Entry::file("a", vec![1u8; 100_000])]),
            limits: Some(tight),
            check: |e| matches!(unpack_error(e), Some(UnpackError::LayerTooLarge { .. })),
        },
        Case {
            name: "too-many-entries",
            image: layer(
                (0..20)
                    .map(|i| Entry::file(&format!("f{i}"), "x"))
                    .collect(),
            ),
            limits: Some(few),
            check: |e| {
                matches!(
                    unpack_error(e),
                    Some(UnpackError::TooManyEntries { limit: 10 })
                )
            },
        },
        Case {
            name: "path-too-deep",
            image: layer(vec![Entry::file(
                "d/".repeat(300).trim_end_matches('/'),
                "x",
            )]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTooDeep { .. })),
        },
        Case {
            name: "overlay-xattr-injection",
            image: layer(vec![Entry::dir("d/").xattr("trusted.overlay.opaque", "y")]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::ForbiddenXattr { .. })),
        },
        Case {
            name: "truncated-gzip",
            image: raw_layer(ok_gz[..ok_gz.len() / 2].to_vec(), &ok_tar, gzip_type),
            limits: None,
            check: |e| {
                matches!(
                    e,
                    PullError::Layer(LayerError::Decompress { format: "gzip", .. })
                )
            },
        },
        Case {
            name: "not-gzip",
            image: raw_layer(
                b"this is not a gzip stream at all".repeat(10),
                &ok_tar,
                gzip_type,
            ),
            limits: None,
            check: |e| {
                matches!(
                    e,
                    PullError::Layer(LayerError::Decompress { format: "gzip", .. })
                )
            },
        },
        Case {
            name: "truncated-tar",
            image: raw_layer(gzip(&cut), &cut, gzip_type),
            limits: None,
            check: |e| {
                matches!(
                    unpack_error(e),
                    Some(UnpackError::TruncatedEntry {
                        expected: 10_000,
                        ..
                    })
                )
            },
        },
        Case {
            name: "wrong-diff-id",
            image: wrong_diff_id,
            limits: None,
            check: |e| matches!(e, PullError::Layer(LayerError::DiffIdMismatch { .. })),
        },
        Case {
            name: "unsupported-media-type",
            image: raw_layer(
                ok_gz.clone(),
                &ok_tar,
                "application/vnd.oci.image.layer.v1.tar+bzip2",
            ),
            limits: None,
            check: |e| matches!(e, PullError::Layer(LayerError::UnsupportedMediaType { .. })),
        },
    ]
}

async fn assert_refused(
    env: &Env,
    outside: &Path,
    name: &str,
    reference: &str,
    limits: Option<UnpackLimits>,
    check: Check,
) {
    let before = listing(outside);
    let mut config = env.config(&format!("work-{name}"));
    if let Some(limits) = limits {
        config.unpack_limits = limits;
    }
    let work = config.work_dir.clone();
    let client = ImageClient::new(config).await.unwrap();
    let bundle = env.dir.path().join(format!("bundle-{name}"));
    let err = client
        .pull_image(reference, &bundle, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(check(&err), "{name}: unexpected error {err:?}");
    // Nothing in the store, nothing half-written, no bundle.
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
    assert!(!bundle.join("rootfs").exists(), "{name}: rootfs made");
    let top: BTreeSet<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        top.iter().all(
            |n| [".lock", "layers", "staging", "snapshots", "metadata.json"].contains(&n.as_str())
        ),
        "{name}: {top:?}"
    );
    // Nothing outside.
    assert_eq!(
        listing(outside),
        before,
        "{name}: wrote outside the layer root"
    );
    assert!(
        !env.dir.path().join("escape").exists() && !work.join("escape").exists(),
        "{name}: escaped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_layers_are_refused_with_typed_errors_and_leave_nothing() {
    let env = Env::plain();
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "do not touch").unwrap();
    let all = cases(&outside);
    assert!(all.len() >= 25);
    for case in all {
        let (reference, _) = env
            .publish(&case.image, &format!("hostile/{}", case.name), "v1")
            .await;
        assert_refused(
            &env,
            &outside,
            case.name,
            &reference,
            case.limits,
            case.check,
        )
        .await;
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "do not touch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_substituted_blob_is_refused_as_such() {
    let env = Env::plain();
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // Last byte flipped (the gzip trailer): only the digest tells.
    let (reference, built) = env
        .publish(
            &layer(vec![Entry::file("f", "x".repeat(50_000))]),
            "hostile/tampered-end",
            "v1",
        )
        .await;
    env.registry
        .tamper_blob(&built.layers[0].digest, |d| {
            let last = d.len() - 1;
            d[last] ^= 1;
        })
        .unwrap();
    assert_refused(&env, &outside, "tampered-end", &reference, None, |e| {
        matches!(e, PullError::Layer(LayerError::DigestMismatch { .. }))
    })
    .await;
    // A byte in the middle: the inflater fails first, the digest is still what is reported.
    let (reference, built) = env
        .publish(
            &layer(vec![Entry::file("f", "y".repeat(50_000))]),
            "hostile/tampered-middle",
            "v1",
        )
        .await;
    env.registry
        .tamper_blob(&built.layers[0].digest, |d| {
            let mid = d.len() / 2;
            d[mid] ^= 0xff;
        })
        .unwrap();
    assert_refused(&env, &outside, "tampered-middle", &reference, None, |e| {
        matches!(e, PullError::Layer(LayerError::DigestMismatch { .. }))
    })
    .await;
    // A different (valid) layer served under the digest: a substituted blob.
    let (reference, built) = env
        .publish(
            &layer(vec![Entry::file("f", "original")]),
            "hostile/substituted",
            "v1",
        )
        .await;
    let other = gzip(&tar_bytes(&[Entry::file("f", "evil!!!!")]).unwrap());
    env.registry
        .tamper_blob(&built.layers[0].digest, move |d| {
            d.clear();
            d.extend_from_slice(&other);
        })
        .unwrap();
    assert_refused(&env, &outside, "substituted", &reference, None, |e| {
        matches!(
            e,
            PullError::Layer(LayerError::DigestMismatch { .. } | LayerError::SizeMismatch { .. })
                | PullError::Registry {
                    source: RegistryError::SizeMismatch { .. },
                    ..
                }
        )
    })
    .await;
}
