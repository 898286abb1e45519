//! Loop devices over sparse files, for tests of block-device code (needs root).

use std::{
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

/// A loop device over a sparse file, detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`
    pub device: PathBuf,
    /// the backing file
    pub file: PathBuf,
}

impl LoopDevice {
    /// A loop device over a new `mib` MiB file in `dir` (`losetup --find --show`).
    pub fn new(dir: &Path, mib: u64) -> io::Result<Self> {
        let file = dir.join(format!("loop-backing-{mib}mib"));
        std::fs::File::create(&file)?.set_len(mib << 20)?;
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "losetup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(Self { device, file })
    }

    /// Its `MAJOR:MINOR`, as kata-agent passes it in `deviceId`.
    pub fn id(&self) -> io::Result<String> {
        let rdev = std::fs::metadata(&self.device)?.rdev();
        // Linux's dev_t split (glibc `major`/`minor`)
        let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
        let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
        Ok(format!("{major}:{minor}"))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// Whether this process runs as root (loop devices and mounts need it).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Whether the kernel has device-mapper (`/proc/misc` lists it).
pub fn kernel_has_device_mapper() -> bool {
    std::fs::read_to_string("/proc/misc")
        .map(|misc| {
            misc.lines()
                .any(|line| line.split_whitespace().nth(1) == Some("device-mapper"))
        })
        .unwrap_or(false)
}
