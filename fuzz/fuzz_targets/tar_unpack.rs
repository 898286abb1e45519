//! Layer tar streams unpacked into a fresh directory. Whatever the stream holds, nothing
//! may appear or change outside that directory: the work directory holds only the layer
//! root afterwards, and a sentinel file beside it keeps its contents, mode and link count.
#![no_main]

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use coco_fuzz::scratch;
use image_rs::{unpack, UnpackLimits, UnpackOptions};
use libfuzzer_sys::fuzz_target;

const SENTINEL: &[u8] = b"outside the layer\n";

struct Dirs {
    base: PathBuf,
    sentinel: PathBuf,
    sentinel_mode: u32,
    options: UnpackOptions,
}

fn dirs() -> &'static Dirs {
    static D: OnceLock<Dirs> = OnceLock::new();
    D.get_or_init(|| {
        let base = scratch().join("tar");
        let outside = base.join("outside");
        std::fs::create_dir_all(&outside).expect("outside dir");
        let sentinel = outside.join("sentinel");
        std::fs::write(&sentinel, SENTINEL).expect("sentinel");
        let sentinel_mode = std::fs::metadata(&sentinel).expect("sentinel").mode();
        // ownership is applied only where it can be (as root), as in the guest
        let root = std::fs::metadata(&base)
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let options = UnpackOptions {
            limits: UnpackLimits {
                max_layer_bytes: 16 << 20,
                max_entry_bytes: 4 << 20,
                max_entries: 10_000,
                ..UnpackLimits::default()
            },
            allow_device_nodes: false,
            preserve_ownership: root,
        };
        Dirs {
            base,
            sentinel,
            sentinel_mode,
            options,
        }
    })
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("listing a scratch directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Makes every directory under `dir` writable and searchable, so it can be removed.
fn open_up(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let path = entry.path();
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
                open_up(&path);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let d = dirs();
    let work = d.base.join("work");
    let root = work.join("root");
    std::fs::create_dir_all(&root).expect("layer root");

    let _ = unpack(data, &root, &d.options);

    assert_eq!(
        names(&d.base),
        BTreeSet::from(["outside".to_string(), "work".to_string()]),
        "an entry appeared beside the work directory"
    );
    assert_eq!(
        names(&work),
        BTreeSet::from(["root".to_string()]),
        "an entry appeared beside the layer root"
    );
    assert_eq!(
        names(&d.base.join("outside")),
        BTreeSet::from(["sentinel".to_string()]),
        "an entry appeared in a directory outside the layer"
    );
    let meta = std::fs::symlink_metadata(&d.sentinel).expect("sentinel metadata");
    assert!(meta.file_type().is_file(), "the sentinel was replaced");
    assert_eq!(
        meta.nlink(),
        1,
        "the sentinel was hard-linked into the layer"
    );
    assert_eq!(meta.mode(), d.sentinel_mode, "the sentinel's mode changed");
    assert_eq!(
        std::fs::read(&d.sentinel).expect("sentinel"),
        SENTINEL,
        "the sentinel was written"
    );

    let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700));
    open_up(&root);
    std::fs::remove_dir_all(&work).expect("removing the unpacked layer");
});
