//! A process killed between mounting a bundle's overlay and recording the bundle: the
//! next start of the store cleans up. Its own test binary, because the store's `flock`
//! would be held for a moment by children other tests fork.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// A process killed between mounting a bundle's overlay and recording the bundle leaves
/// the overlay mounted on a snapshot directory no record names; the next start of the store
/// detaches it and removes the directory, and leaves recorded snapshots alone.
#[test]
fn an_overlay_mounted_but_never_recorded_is_detached_at_the_next_start() {
    use image_rs::{mount_overlay, LayerStore};
    if !common::is_root() {
        eprintln!("overlay mounts need root: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let lower = dir.path().join("lower");
    std::fs::create_dir_all(&lower).unwrap();
    std::fs::write(lower.join("file"), b"from the layer").unwrap();
    let rootfs = dir.path().join("bundle/rootfs");
    let mounted = |path: &std::path::Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
    };

    /// Detaches the overlay should the test fail before the store does.
    struct Detach<'a>(&'a std::path::Path);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }

    let store = LayerStore::open(&work).unwrap();
    let scratch = store.new_snapshot_dir();
    mount_overlay(std::slice::from_ref(&lower), &rootfs, &scratch).unwrap();
    let _detach = Detach(&rootfs);
    assert_eq!(
        std::fs::read(rootfs.join("file")).unwrap(),
        b"from the layer"
    );
    assert!(mounted(&rootfs));
    drop(store); // the "kill": no record, no unmount

    let store = LayerStore::open(&work).unwrap();
    assert!(!mounted(&rootfs), "the stale overlay is still mounted");
    assert!(!scratch.exists());
    assert!(!rootfs.join("file").exists());
    assert_eq!(
        std::fs::read(lower.join("file")).unwrap(),
        b"from the layer"
    );
    drop(store);
}
