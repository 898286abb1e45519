//! The hostile-layer corpus: every case is pulled from a real registry and must be refused
//! with a typed error, leave nothing in the store (no layer, no staging directory) and
//! write nothing outside the layer root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::listing;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::Env;
use image_rs::RegistryError;
use image_rs::{Digest, ImageClient, PullError, PullOptions};
use image_rs::{LayerError, UnpackError, UnpackLimits};
use test_images::{tar_bytes, Entry, TarWriter};
use test_images::{Compression, ImageSpec, LayerSpec};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A raw ustar header block: `name` and `link` as given (no validation, `..` and
/// absolute paths included), so that archives the writer refuses can be built.
fn raw_header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// `data` as tar entry content: the data and its padding to a block.
fn padded(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(data.len().div_ceil(512) * 512, 0);
    out
}

/// A tar of raw pieces and the end-of-archive marker.
fn raw_tar(pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = pieces.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A PAX extended header (`x`) carrying `records`, then the entry header it applies to.
fn pax_entry(records: &[(&str, &str)], header: [u8; 512]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
    }
    let mut out = raw_header(b"PaxHeaders/x", b'x', body.len() as u64, b"").to_vec();
    out.extend_from_slice(&padded(&body));
    out.extend_from_slice(&header);
    out
}

/// A GNU long-name (`L`) entry naming the next header `name`.
fn gnu_long_name(name: &str, header: [u8; 512]) -> Vec<u8> {
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    let mut out = raw_header(b"././@LongLink", b'L', data.len() as u64, b"").to_vec();
    out.extend_from_slice(&padded(&data));
    out.extend_from_slice(&header);
    out
}

/// A gzip layer of exactly `tar`.
fn raw_tar_layer(tar: Vec<u8>) -> ImageSpec {
    raw_layer(
        gzip(&tar),
        &tar,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    )
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
        Digest::sha256_of(tar).to_string(),
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
    wrong_diff_id.diff_ids_override = Some(vec![Digest::sha256_of(b"something else").to_string()]);

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
        // --- more routes out of the root ---
        Case {
            name: "pax-path-override-dotdot",
            image: raw_tar_layer(raw_tar(&[
                pax_entry(
                    &[("path", "../pax-escape")],
                    raw_header(b"benign", b'0', 1, b""),
                ),
                padded(b"x"),
            ])),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTraversal { .. })),
        },
        Case {
            name: "pax-path-override-absolute",
            image: raw_tar_layer(raw_tar(&[
                pax_entry(
                    &[("path", &out("pax-abs"))],
                    raw_header(b"benign", b'0', 1, b""),
                ),
                padded(b"x"),
            ])),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::AbsolutePath { .. })),
        },
        Case {
            name: "pax-linkpath-override-hardlink",
            image: raw_tar_layer(raw_tar(&[pax_entry(
                &[("linkpath", "../../../outside/secret")],
                raw_header(b"hl", b'1', 0, b"benign"),
            )])),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTraversal { .. })),
        },
        Case {
            name: "gnu-long-name-dotdot",
            image: raw_tar_layer(raw_tar(&[
                gnu_long_name(
                    &format!("{}/../../../../gnu-escape", "d".repeat(150)),
                    raw_header(b"benign", b'0', 1, b""),
                ),
                padded(b"x"),
            ])),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTraversal { .. })),
        },
        Case {
            name: "long-pax-name-dotdot",
            image: layer(vec![Entry::file(
                &format!("{}/{}escape", "a".repeat(120), "../".repeat(3)),
                "x",
            )]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTraversal { .. })),
        },
        Case {
            name: "symlink-chain-then-write",
            image: layer(vec![
                Entry::symlink("b", &out("")),
                Entry::symlink("a", "b"),
                Entry::file("a/evil", "x"),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "dir-replaced-by-symlink-then-write",
            image: layer(vec![
                Entry::dir("d/"),
                Entry::file("d/ok", "x"),
                Entry::symlink("d", &out("")),
                Entry::file("d/evil", "x"),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "whiteout-through-symlink",
            image: layer(vec![
                Entry::symlink("l", &out("")),
                Entry::file("l/.wh.secret", ""),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "opaque-through-symlink",
            image: layer(vec![
                Entry::symlink("l", &out("")),
                Entry::file("l/.wh..wh..opq", ""),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "whiteout-with-dotdot",
            image: layer(vec![
                Entry::dir("a/"),
                Entry::file("a/../../.wh.secret", ""),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::PathTraversal { .. })),
        },
        Case {
            name: "whiteout-absolute",
            image: raw_tar_layer(raw_tar(&[raw_header(
                out(".wh.secret").as_bytes(),
                b'0',
                0,
                b"",
            )
            .to_vec()])),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::AbsolutePath { .. })),
        },
        Case {
            name: "hardlink-chain-through-symlink",
            image: layer(vec![
                Entry::dir("d/"),
                Entry::symlink("d/s", &out("")),
                Entry::hardlink("h1", "d/s/secret"),
            ]),
            limits: None,
            check: |e| matches!(unpack_error(e), Some(UnpackError::SymlinkInPath { .. })),
        },
        Case {
            name: "char-device-in-deep-dir",
            image: layer(vec![Entry::char_device("a/b/c/kmsg", 1, 11)]),
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
    assert!(all.len() >= 39);
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
        .tamper_blob(built.layers[0].digest.as_str(), |d| {
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
        .tamper_blob(built.layers[0].digest.as_str(), |d| {
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
        .tamper_blob(built.layers[0].digest.as_str(), move |d| {
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

/// Writing onto a symlink leaf, or hard-linking a symlink, never goes through it: the
/// link is replaced (or linked) and nothing outside the root changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_onto_symlink_leaves_replace_the_link() {
    let env = Env::plain();
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, "do not touch").unwrap();
    let target = secret.to_string_lossy().into_owned();
    let image = layer(vec![
        Entry::symlink("f", &target),
        Entry::file("f", "replaced"),
        Entry::symlink("s", &target),
        Entry::hardlink("h", "s"),
    ]);
    let (reference, _) = env.publish(&image, "hostile/symlink-leaf", "v1").await;
    let client = env.client("work-leaf").await;
    let bundle = env.dir.path().join("bundle-leaf");
    let options = PullOptions {
        snapshotter: Some(image_rs::SnapshotterKind::Flatten),
        ..PullOptions::default()
    };
    client
        .pull_image(&reference, &bundle, &options)
        .await
        .unwrap();
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("f")).unwrap(),
        "replaced"
    );
    assert!(!rootfs.join("f").is_symlink());
    assert!(std::fs::symlink_metadata(rootfs.join("h"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "do not touch");
    assert_eq!(listing(&outside), BTreeSet::from([PathBuf::from("secret")]));
}
