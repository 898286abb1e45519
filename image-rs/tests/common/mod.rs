//! Shared by the integration tests: a real registry with the test images, clients that
//! reach it, and a file-by-file comparison against `umoci unpack`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use image_rs::RegistryEntry;
use image_rs::{ImageClient, ImageConfig, RegistryConfig};
use sha2::{Digest as _, Sha256};
use test_images::{BuiltImage, ImageSpec, OciLayout};
use test_images::{Registry, RegistryOptions};

/// A registry with a layout to build images in, and a scratch directory.
pub(crate) struct Env {
    pub registry: Registry,
    pub layout: OciLayout,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new(options: RegistryOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path().join("oci")).unwrap();
        let registry = Registry::start(options).unwrap();
        Self {
            registry,
            layout,
            dir,
        }
    }

    pub(crate) fn plain() -> Self {
        Self::new(RegistryOptions::default())
    }

    /// Builds `image` and pushes it as `<registry>/<repo>:<tag>`; returns the reference.
    pub(crate) async fn publish(
        &self,
        image: &ImageSpec,
        repo: &str,
        tag: &str,
    ) -> (String, BuiltImage) {
        let built =
            test_images::fixtures::publish(&self.layout, &self.registry.target(), image, repo, tag)
                .await
                .unwrap();
        (format!("{}/{repo}:{tag}", self.registry.host()), built)
    }

    /// A registries.conf that marks this registry insecure (plain HTTP).
    pub(crate) fn registries(&self) -> RegistryConfig {
        RegistryConfig {
            registry: vec![RegistryEntry {
                location: self.registry.host(),
                insecure: !self.registry.url().starts_with("https"),
                ..RegistryEntry::default()
            }],
            ..RegistryConfig::default()
        }
    }

    /// An image config with a fresh work directory reaching this registry.
    pub(crate) fn config(&self, name: &str) -> ImageConfig {
        let mut config = ImageConfig::with_work_dir(self.dir.path().join(name));
        config.registry_config = Some(self.registries());
        if let Some(ca) = self.registry.ca_pem() {
            config.extra_root_certificates = vec![ca.to_string()];
        }
        config
    }

    pub(crate) async fn client(&self, name: &str) -> ImageClient {
        ImageClient::new(self.config(name)).await.unwrap()
    }

    /// `skopeo copy` + `umoci unpack` of a reference; returns the rootfs.
    pub(crate) fn umoci_rootfs(&self, reference: &str, name: &str) -> PathBuf {
        let oci = self.dir.path().join(format!("umoci-{name}-oci"));
        let bundle = self.dir.path().join(format!("umoci-{name}-bundle"));
        let mut copy = Command::new("skopeo");
        copy.args(["copy", "-q", "--src-tls-verify=false"]);
        if let Some((u, p)) = self.registry.credentials() {
            copy.arg("--src-creds").arg(format!("{u}:{p}"));
        }
        copy.arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:t", oci.display()));
        run(&mut copy);
        let mut unpack = Command::new("umoci");
        unpack.arg("unpack");
        if !is_root() {
            unpack.arg("--rootless");
        }
        unpack
            .arg("--image")
            .arg(format!("{}:t", oci.display()))
            .arg(&bundle);
        run(&mut unpack);
        bundle.join("rootfs")
    }
}

pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One file as the comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Option<String>,
    pub link: Option<String>,
    pub rdev: u64,
    pub mtime: Option<i64>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

fn user_xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names) else {
        return out;
    };
    for name in names[..n]
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"user."))
    {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name.as_str(), &mut value) {
            out.insert(name, value[..len].to_vec());
        }
    }
    out
}

/// Every path below `root` with its type, mode, owner, content hash, link target and the
/// groups of hard-linked paths.
pub(crate) fn snapshot_tree(root: &Path) -> (BTreeMap<String, Node>, BTreeSet<Vec<String>>) {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let rel_path = rel.join(entry.file_name());
            let path = root.join(&rel_path);
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else {
                "other"
            };
            let content = ft
                .is_file()
                .then(|| hex::encode(Sha256::digest(std::fs::read(&path).unwrap())));
            let link = ft.is_symlink().then(|| {
                std::fs::read_link(&path)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            });
            let key = rel_path.to_string_lossy().into_owned();
            if ft.is_file() {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(key.clone());
            }
            nodes.insert(
                key,
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    content,
                    link,
                    rdev: meta.rdev(),
                    mtime: (!ft.is_dir()).then(|| meta.mtime()),
                    xattrs: user_xattrs(&path),
                },
            );
            if ft.is_dir() {
                stack.push(rel_path);
            }
        }
    }
    let links = inodes
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    (nodes, links)
}

/// Asserts that two rootfs trees are the same file by file.
pub(crate) fn assert_same_tree(ours: &Path, reference: &Path) {
    let (a, a_links) = snapshot_tree(ours);
    let (b, b_links) = snapshot_tree(reference);
    let a_keys: BTreeSet<_> = a.keys().collect();
    let b_keys: BTreeSet<_> = b.keys().collect();
    assert_eq!(a_keys, b_keys, "different paths (ours vs reference)");
    for (path, node) in &a {
        let mut expected = b[path].clone();
        if !is_root() {
            // umoci --rootless cannot chown
            expected.uid = node.uid;
            expected.gid = node.gid;
        }
        assert_eq!(node, &expected, "{path} differs (ours vs reference)");
    }
    assert_eq!(a_links, b_links, "different hard links");
}

/// Everything below `dir` (relative paths), to prove nothing was written there.
pub(crate) fn listing(dir: &Path) -> BTreeSet<PathBuf> {
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

/// Number of committed layer directories in a work directory.
pub(crate) fn stored_layers(work_dir: &Path) -> usize {
    std::fs::read_dir(work_dir.join("layers"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Number of staging directories in a work directory.
pub(crate) fn staging_dirs(work_dir: &Path) -> usize {
    std::fs::read_dir(work_dir.join("staging"))
        .map(|d| d.count())
        .unwrap_or(0)
}
