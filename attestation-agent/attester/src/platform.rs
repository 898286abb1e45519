//! The one door to the kernel's filesystems. Attesters and detection reach `/dev`, `/sys`,
//! configfs, `/run` and `/proc` only through a [`Platform`], so tests run the real code
//! against a fake tree and recorded evidence can be replayed.

use std::{
    fmt, io,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

/// The file operations on configfs (`/sys/kernel/config`). On a real kernel a `mkdir` there
/// creates the attribute files of a TSM report entry and a write to `inblob` regenerates
/// `outblob`; a plain directory cannot do that, so tests swap in an emulator of those
/// kernel side effects while the attesters keep doing the very same file operations.
pub trait ConfigFs: Send + Sync + fmt::Debug {
    /// `mkdir(path)`.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// `rmdir(path)`.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Reads a whole attribute.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Writes a whole attribute.
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
}

/// The kernel's configfs: plain file operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelConfigFs;

impl ConfigFs for KernelConfigFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // configfs binary attributes take the whole blob in one write
        std::fs::write(path, data)
    }
}

/// A root directory under which the kernel interfaces are looked up (`/` on a real guest),
/// and the configfs operations used below it.
#[derive(Debug, Clone)]
pub struct Platform {
    root: PathBuf,
    configfs: Arc<dyn ConfigFs>,
}

impl Default for Platform {
    fn default() -> Self {
        Self::new("/")
    }
}

impl PartialEq for Platform {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && Arc::ptr_eq(&self.configfs, &other.configfs)
    }
}

impl Eq for Platform {}

impl Platform {
    /// A platform rooted at `root` (a fake tree in tests), with the kernel's configfs.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            configfs: Arc::new(KernelConfigFs),
        }
    }

    /// The same root with other configfs operations (a test emulator of TSM reports).
    pub fn with_configfs(mut self, configfs: Arc<dyn ConfigFs>) -> Self {
        self.configfs = configfs;
        self
    }

    /// The configfs operations.
    pub fn configfs_ops(&self) -> &dyn ConfigFs {
        self.configfs.as_ref()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` (absolute as on a real guest, e.g. `/dev/tdx_guest`) resolved under the root.
    /// Only normal components are kept, so `..`, `.` and the leading `/` can never lead
    /// outside the root.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let mut resolved = self.root.clone();
        for component in path.as_ref().components() {
            if let Component::Normal(part) = component {
                resolved.push(part);
            }
        }
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_real_root() {
        let p = Platform::default();
        assert_eq!(p.root(), Path::new("/"));
        assert_eq!(p.path("/dev/tdx_guest"), PathBuf::from("/dev/tdx_guest"));
    }

    #[test]
    fn paths_stay_under_a_fake_root() {
        let p = Platform::new("/tmp/fake");
        assert_eq!(
            p.path("/sys/kernel/config/tsm/report"),
            PathBuf::from("/tmp/fake/sys/kernel/config/tsm/report")
        );
        // relative and hostile paths cannot climb out of the root
        assert_eq!(
            p.path("dev/sev-guest"),
            PathBuf::from("/tmp/fake/dev/sev-guest")
        );
        assert_eq!(
            p.path("/../../etc/shadow"),
            PathBuf::from("/tmp/fake/etc/shadow")
        );
        assert_eq!(p.path("/dev/./../x"), PathBuf::from("/tmp/fake/dev/x"));
        assert_eq!(p.path(""), PathBuf::from("/tmp/fake"));
    }
}
