//! `-d/--daemon`: the service goes on in the background, its output and pid in the run
//! directory (upstream's `/run/confidential-containers/coco_keyprovider.{out,err,pid}`).
//!
//! Upstream forks inside the async runtime (daemonize); here the program starts itself again
//! as a detached child (its own process group, stdin closed, stdout/stderr into the run
//! directory) before any runtime exists. The child writes the pid file once it listens
//! ([`announce`]); the parent waits for that, prints the pid and exits 0 — or exits 1 with
//! the child's error output when the child cannot start, so that a bad flag or a busy port
//! is reported where it was typed.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Upstream's run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/confidential-containers";
/// Set in the child so that it serves instead of starting another child.
pub const CHILD_MARKER: &str = "COCO_KEYPROVIDER_DAEMON_CHILD";
/// How long the parent waits for the child's socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The files of a daemon in `run_dir`.
#[derive(Debug, Clone)]
pub struct DaemonFiles {
    /// `coco_keyprovider.out`
    pub stdout: PathBuf,
    /// `coco_keyprovider.err`
    pub stderr: PathBuf,
    /// `coco_keyprovider.pid`
    pub pid: PathBuf,
}

impl DaemonFiles {
    /// The files in `run_dir`.
    pub fn in_dir(run_dir: &Path) -> Self {
        Self {
            stdout: run_dir.join("coco_keyprovider.out"),
            stderr: run_dir.join("coco_keyprovider.err"),
            pid: run_dir.join("coco_keyprovider.pid"),
        }
    }
}

/// Whether this process is the daemon's child.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

/// In the daemon's child, once it listens: writes the pid file the parent waits for.
pub fn announce(run_dir: &Path) -> std::io::Result<()> {
    let files = DaemonFiles::in_dir(run_dir);
    let partial = files.pid.with_extension("pid.partial");
    std::fs::write(&partial, format!("{}\n", std::process::id()))?;
    std::fs::rename(partial, files.pid)
}

/// Starts this program again (same arguments) as a detached daemon; returns its pid once
/// it serves (it has written the pid file).
pub fn spawn(run_dir: &Path) -> std::io::Result<u32> {
    std::fs::create_dir_all(run_dir)?;
    let files = DaemonFiles::in_dir(run_dir);
    match std::fs::remove_file(&files.pid) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_MARKER, "1")
        .stdin(Stdio::null())
        .stdout(File::create(&files.stdout)?)
        .stderr(File::create(&files.stderr)?)
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let announced = std::fs::read_to_string(&files.pid).unwrap_or_default();
        if announced.trim() == pid.to_string() {
            return Ok(pid);
        }
        if let Some(status) = child.try_wait()? {
            let stderr = std::fs::read_to_string(&files.stderr).unwrap_or_default();
            return Err(std::io::Error::other(format!(
                "the daemon exited with {status} before it served:\n{}",
                stderr.trim_end()
            )));
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "the daemon (pid {pid}) is not serving after {START_TIMEOUT:?}; see {}",
                files.stderr.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
