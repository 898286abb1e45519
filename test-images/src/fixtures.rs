//! The named test images. Each is small (a few KiB) except [`large`].

use std::collections::BTreeMap;

use crate::error::Result;
use crate::layout::{
    linux, BuiltImage, Compression, ConfigSpec, Descriptor, ImageSpec, LayerSpec, ManifestFormat,
    OciLayout,
};
use crate::push::{push_image, PushTarget};
use crate::synthetic;
use crate::tarball::Entry;

fn base_config() -> ConfigSpec {
    ConfigSpec {
        cmd: vec!["/bin/cat".into(), "/hello.txt".into()],
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
        working_dir: Some("/".into()),
        ..ConfigSpec::default()
    }
}

/// One gzip layer: a few files and directories.
pub fn plain() -> ImageSpec {
    ImageSpec::new(vec![LayerSpec::new(
        Compression::Gzip,
        vec![
            Entry::dir("etc/"),
            Entry::file("etc/hostname", "plain\n"),
            Entry::dir("bin/"),
            Entry::file("bin/hello", "#!/bin/sh\necho hello\n").mode(0o755),
            Entry::file("hello.txt", "hello coco\n"),
        ],
    )])
    .config(base_config())
}

/// Three layers, one per compression (gzip, zstd, plain tar); upper layers replace a file
/// of the lower ones.
pub fn multi_layer() -> ImageSpec {
    ImageSpec::new(vec![
        LayerSpec::new(
            Compression::Gzip,
            vec![
                Entry::file("hello.txt", "hello from layer 1\n"),
                Entry::dir("etc/"),
                Entry::file("etc/layer1.conf", "one\n"),
            ],
        ),
        LayerSpec::new(
            Compression::Zstd,
            vec![
                Entry::dir("etc/"),
                Entry::file("etc/layer2.conf", "second layer (zstd)\n"),
                Entry::file("hello.txt", "hello from layer 2\n"),
            ],
        ),
        LayerSpec::new(
            Compression::None,
            vec![
                Entry::dir("data/"),
                Entry::file("data/layer3.txt", "third layer (uncompressed)\n"),
            ],
        ),
    ])
    .config(base_config())
}

/// Whiteouts and opaque directories over a lower layer, and type changes (file→dir,
/// dir→file, symlink→file).
pub fn whiteouts() -> ImageSpec {
    ImageSpec::new(vec![
        LayerSpec::new(
            Compression::Gzip,
            vec![
                Entry::dir("a/"),
                Entry::file("a/removed", "gone in layer 2\n"),
                Entry::file("a/kept", "still here\n"),
                Entry::dir("b/"),
                Entry::dir("b/sub/"),
                Entry::file("b/sub/deep", "whole dir removed\n"),
                Entry::dir("c/"),
                Entry::file("c/hidden-by-opaque", "lower content\n"),
                Entry::dir("c/lowerdir/"),
                Entry::file("c/lowerdir/x", "lower\n"),
                Entry::file("e", "a file that becomes a directory\n"),
                Entry::dir("f/"),
                Entry::file("f/child", "a directory that becomes a file\n"),
                Entry::symlink("g", "a/kept"),
                Entry::file("readded", "old content\n"),
            ],
        ),
        LayerSpec::new(
            Compression::Gzip,
            vec![
                Entry::dir("a/"),
                Entry::whiteout("a", "removed"),
                Entry::whiteout("", "b"),
                Entry::dir("c/"),
                Entry::opaque("c"),
                Entry::file("c/new", "only this survives in c\n"),
                Entry::whiteout("", "e"),
                Entry::dir("e/"),
                Entry::file("e/inside", "now a directory\n"),
                Entry::whiteout("", "f"),
                Entry::file("f", "now a file\n"),
                Entry::file("g", "symlink replaced by a file\n"),
            ],
        ),
        LayerSpec::new(
            Compression::Zstd,
            vec![
                Entry::whiteout("", "readded"),
                Entry::file("readded", "new content\n"),
            ],
        ),
    ])
    .config(base_config())
}

/// [`whiteouts`] with gzip instead of zstd (for tools without zstd, such as umoci 0.4).
pub fn whiteouts_without_zstd() -> ImageSpec {
    let mut image = whiteouts();
    for layer in &mut image.layers {
        if layer.compression == Compression::Zstd {
            layer.compression = Compression::Gzip;
        }
    }
    image
}

/// Symlinks (relative, absolute, dangling, to directories), hard links and a fifo.
pub fn links() -> ImageSpec {
    ImageSpec::new(vec![
        LayerSpec::new(
            Compression::Gzip,
            vec![
                Entry::dir("dir/"),
                Entry::file("dir/target.txt", "link target\n").mode(0o640),
                Entry::symlink("rel-link", "dir/target.txt"),
                Entry::symlink("abs-link", "/dir/target.txt"),
                Entry::symlink("dangling", "/does/not/exist"),
                Entry::symlink("dir-link", "dir"),
                Entry::symlink("up-link", "../../../../etc/passwd"),
                Entry::hardlink("hard1", "dir/target.txt"),
                Entry::dir("other/"),
                Entry::hardlink("other/hard2", "dir/target.txt"),
                Entry::fifo("pipe"),
            ],
        ),
        LayerSpec::new(
            Compression::Gzip,
            vec![
                Entry::file("upper.txt", "upper\n"),
                Entry::hardlink("upper-hard", "upper.txt"),
            ],
        ),
    ])
    .config(base_config())
}

/// Users and groups in `/etc/passwd` and `/etc/group`, owners, special modes, an xattr,
/// and a config naming a user.
pub fn users() -> ImageSpec {
    let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                  daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                  app:x:1000:1000:App User:/home/app:/bin/sh\n\
                  svc:x:1001:1001::/srv:/bin/sh\n";
    let group = "root:x:0:\n\
                 daemon:x:1:\n\
                 app:x:1000:\n\
                 svc:x:1001:\n\
                 staff:x:50:app,svc\n\
                 audio:x:29:app\n";
    let mut labels = BTreeMap::new();
    labels.insert("org.example.role".to_string(), "test".to_string());
    labels.insert(
        "org.opencontainers.image.title".to_string(),
        "users".to_string(),
    );
    ImageSpec::new(vec![LayerSpec::new(
        Compression::Gzip,
        vec![
            Entry::dir("etc/"),
            Entry::file("etc/passwd", passwd),
            Entry::file("etc/group", group),
            Entry::dir("home/"),
            Entry::dir("home/app/").owner(1000, 1000).mode(0o700),
            Entry::file("home/app/.profile", "export X=1\n")
                .owner(1000, 1000)
                .mode(0o600)
                .mtime(1_600_000_000),
            Entry::dir("srv/").owner(1001, 50).mode(0o2775),
            Entry::dir("tmp/").mode(0o1777),
            Entry::dir("usr/"),
            Entry::dir("usr/bin/"),
            Entry::file("usr/bin/suid-tool", "#!/bin/sh\n").mode(0o4755),
            Entry::file("usr/bin/sgid-tool", "#!/bin/sh\n")
                .mode(0o2755)
                .owner(0, 50),
            Entry::file("attrs.txt", "has an xattr\n").xattr("user.coco.test", "value"),
        ],
    )])
    .config(ConfigSpec {
        entrypoint: vec!["/usr/bin/suid-tool".into()],
        cmd: vec!["--flag".into()],
        env: vec!["PATH=/usr/bin:/bin".into(), "HOME=/home/app".into()],
        user: Some("app".into()),
        working_dir: Some("/home/app".into()),
        labels,
        stop_signal: Some("SIGINT".into()),
        exposed_ports: vec!["8080/tcp".into()],
        volumes: vec!["/data".into()],
    })
}

/// The per-architecture images of [`write_multi_arch`]: `/arch` names the architecture.
pub fn arch_image(architecture: &str, variant: Option<&str>) -> ImageSpec {
    ImageSpec::new(vec![LayerSpec::new(
        Compression::Gzip,
        vec![
            Entry::file("arch", format!("{architecture}\n")),
            Entry::file("hello.txt", "hello multi-arch\n"),
        ],
    )])
    .platform(linux(architecture, variant))
    .config(base_config())
}

/// The same image as Docker v2 schema 2 (manifest, config and layer media types).
pub fn docker_format() -> ImageSpec {
    plain().format(ManifestFormat::Docker)
}

/// A manifest without its top-level `mediaType` (as skopeo writes some), so that a puller
/// must use the HTTP Content-Type.
pub fn without_manifest_media_type() -> ImageSpec {
    let mut image = plain();
    image.omit_manifest_media_type = true;
    image
}

/// A large image (see [`synthetic::large_image`]); `layers` gzip layers.
pub fn large(total_bytes: u64, layers: usize) -> ImageSpec {
    synthetic::large_image(total_bytes, layers, Compression::Gzip)
}

/// Writes a multi-arch index (linux/amd64 and linux/arm64/v8) and returns it.
pub fn write_multi_arch(layout: &OciLayout) -> Result<Descriptor> {
    let amd64 = layout.write_image(&arch_image("amd64", None))?;
    let arm64 = layout.write_image(&arch_image("arm64", Some("v8")))?;
    layout.write_index(
        &[
            (amd64.manifest, linux("amd64", None)),
            (arm64.manifest, linux("arm64", Some("v8"))),
        ],
        ManifestFormat::Oci,
    )
}

/// Writes `image` into `layout`, tags it `tag` there, and pushes it as `repo:tag`.
pub async fn publish(
    layout: &OciLayout,
    target: &PushTarget,
    image: &ImageSpec,
    repo: &str,
    tag: &str,
) -> Result<BuiltImage> {
    let built = layout.write_image(image)?;
    layout.tag(tag, &built.manifest)?;
    push_image(layout, &built.manifest, target, repo, tag).await?;
    Ok(built)
}

/// The named fixtures (without the large one), as `(repository, image)`.
pub fn all() -> Vec<(&'static str, ImageSpec)> {
    vec![
        ("test/plain", plain()),
        ("test/multi-layer", multi_layer()),
        ("test/whiteouts", whiteouts()),
        ("test/links", links()),
        ("test/users", users()),
        ("test/docker-format", docker_format()),
        ("test/no-media-type", without_manifest_media_type()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::check_ordinary;

    #[test]
    fn every_fixture_is_an_ordinary_image() {
        for (name, image) in all() {
            for layer in &image.layers {
                check_ordinary(layer.entries()).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    #[test]
    fn fixtures_write_into_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        for (name, image) in all() {
            let built = layout.write_image(&image).unwrap();
            assert_eq!(built.layers.len(), image.layers.len(), "{name}");
        }
        let index = write_multi_arch(&layout).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&layout.read_blob(index.digest.as_str()).unwrap()).unwrap();
        let arches: Vec<&str> = json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap())
            .collect();
        assert_eq!(arches, ["amd64", "arm64"]);
        assert_eq!(json["manifests"][1]["platform"]["variant"], "v8");
    }
}
