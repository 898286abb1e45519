//! Launching the suite's real binaries (and other real peers) from tests: free loopback
//! ports, waiting for a unix socket or TCP port to accept, graceful stop with SIGTERM, and
//! the captured stderr of a daemon for assertions and failure reports.

use std::{
    fs::File,
    io,
    net::{SocketAddr, TcpStream},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// A free TCP port on 127.0.0.1 (bound, read, released).
///
/// The probe socket binds with SO_REUSEADDR and never listens: a copy of it inherited by a
/// child that another test thread forks at that moment then neither accepts the
/// connections meant for the daemon nor keeps the daemon from binding the port.
pub fn free_port() -> io::Result<u16> {
    Ok(port_probe()?.local_addr()?.port())
}

fn port_probe() -> io::Result<tokio::net::TcpSocket> {
    let probe = tokio::net::TcpSocket::new_v4()?;
    probe.set_reuseaddr(true)?;
    probe.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok(probe)
}

/// The path of a binary of this workspace built into the same target directory as the
/// running test (`cargo build --bins` must have run; `make test` does that).
pub fn workspace_bin(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| io::Error::other("test executable has no target directory"))?;
    let bin = profile_dir.join(name);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is not built: run `cargo build --bins` (make test does) before this test",
                bin.display()
            ),
        ))
    }
}

/// What a daemon must offer before it counts as started.
#[derive(Debug, Clone)]
pub enum Ready {
    /// a unix socket path that accepts connections
    Unix(PathBuf),
    /// a TCP address that accepts connections
    Tcp(SocketAddr),
}

/// Whether the unix socket at `path` accepts connections. A socket file can exist before its
/// owner listens (bind(2) makes it, listen(2) follows), so the file alone does not say so.
pub fn unix_socket_accepts(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

impl Ready {
    fn accepts(&self) -> bool {
        match self {
            Ready::Unix(path) => unix_socket_accepts(path),
            Ready::Tcp(addr) => {
                TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
            }
        }
    }
}

/// A running daemon; stopped with SIGTERM (then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with stdout discarded and stderr captured to `<log_dir>/<name>.stderr`,
    /// then waits up to `timeout` for `ready`. If the process exits or the time runs out,
    /// the error carries its stderr.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        log_dir: &Path,
        ready: Ready,
        timeout: Duration,
    ) -> io::Result<Daemon> {
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stderr = File::create(&stderr_path)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        let mut daemon = Daemon {
            name: name.to_string(),
            child: Some(child),
            stderr_path,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if ready.accepts() {
                return Ok(daemon);
            }
            if let Some(status) = daemon.try_wait()? {
                return Err(io::Error::other(format!(
                    "{name} exited with {status} before it was ready; stderr:\n{}",
                    daemon.stderr()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{name} was not ready after {timeout:?} ({ready:?}); stderr:\n{}",
                    daemon.stderr()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A `kB` figure of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in KiB.
    pub fn status_kib(&self, field: &str) -> io::Result<u64> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other(format!("{} is not running", self.name)))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {field} in /proc/{pid}/status")))
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// Sends `signal` (a `kill -s` name such as `TERM`) and waits up to `timeout` for exit.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> io::Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("{} was already reaped", self.name)))?;
        send_signal(child.id(), signal)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{} did not exit within {timeout:?} after SIG{signal}",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon with SIGTERM and returns its exit status.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        self.signal_and_wait("TERM", Duration::from_secs(10))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if send_signal(child.id(), "TERM").is_ok() {
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a signal with the `kill` utility (keeps this crate free of unsafe code).
pub fn send_signal(pid: u32, signal: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -s {signal} {pid} failed: {status}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// What a copy of the probe, alive in a child forked by another thread, would do.
    #[test]
    fn a_lingering_port_probe_neither_blocks_nor_takes_the_port() {
        let probe = port_probe().unwrap();
        let addr = probe.local_addr().unwrap();
        // std binds with SO_REUSEADDR, as tokio, Go and the daemons do
        let listener = TcpListener::bind(addr).unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop(probe);
    }

    #[test]
    fn a_daemon_that_exits_early_reports_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        let err = Daemon::spawn(
            "sh",
            cmd,
            dir.path(),
            Ready::Unix(dir.path().join("never.sock")),
            Duration::from_secs(5),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
    }

    #[test]
    fn a_tcp_daemon_is_ready_and_stops_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            &format!(
                "import socket,signal,sys\n\
                 signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n\
                 s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen()\n\
                 while True: s.accept()[0].close()"
            ),
        ]);
        let daemon = Daemon::spawn(
            "py",
            cmd,
            dir.path(),
            Ready::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(daemon.pid().is_some());
        assert!(daemon.stop().unwrap().success());
    }
}
