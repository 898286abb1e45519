//! AWS KMS and Secrets Manager: `moto_server` (PyPI `moto[server]`), a real emulator run as a
//! child process on 127.0.0.1. Unlike this module's siblings it checks no signatures.

use std::{io, net::SocketAddr, process::Command, time::Duration};

use crate::process::{free_port, Daemon, Ready};

/// A running `moto_server`, stopped when dropped.
#[derive(Debug)]
pub struct Moto {
    _daemon: Daemon,
    port: u16,
    // holds the emulator's captured stderr
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server` on a free port. A missing `moto_server` is an error that says
    /// what to install: these tests must never pass without their peer.
    pub fn start() -> io::Result<Self> {
        let found = Command::new("moto_server").arg("--help").output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "moto_server is required by this test: pip install 'moto[server]'",
            ));
        }
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let daemon = Daemon::spawn(
            "moto",
            cmd,
            dir.path(),
            Ready::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
            Duration::from_secs(60),
        )?;
        Ok(Self {
            _daemon: daemon,
            port,
            _dir: dir,
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL the AWS clients are pointed at.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
