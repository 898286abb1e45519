//! Serving the generated services on a `unix://` address, the way every daemon of the suite
//! does it: parent directory created, a stale socket file replaced, graceful stop on a
//! signal, socket file removed afterwards.

use std::{
    collections::HashMap,
    io,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
};

use ttrpc::r#async::{Server, Service};

/// Why a ttRPC endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is not of the form `unix:///absolute/path`.
    #[error("ttRPC address `{0}` is not a unix:///<absolute path> address")]
    NotUnix(String),
    /// Something else than a socket sits at the socket path; it is left alone.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Creating the directory or removing the stale socket failed.
    #[error("preparing socket {path}: {source}")]
    Prepare {
        /// the socket path
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// ttRPC could not bind, start or stop.
    #[error("ttRPC server on {addr}: {source}")]
    Ttrpc {
        /// the address
        addr: String,
        /// the cause
        source: ttrpc::Error,
    },
}

/// The filesystem path of a `unix://` ttRPC address.
pub fn unix_socket_path(addr: &str) -> Result<PathBuf, ServeError> {
    match addr.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') && path.len() > 1 => Ok(PathBuf::from(path)),
        _ => Err(ServeError::NotUnix(addr.to_string())),
    }
}

/// Creates the socket's parent directory and removes a stale socket file left by a
/// previous run. Anything that is not a socket is refused rather than deleted.
fn prepare_socket(path: &Path) -> Result<(), ServeError> {
    let prepare = |source| ServeError::Prepare {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(prepare)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(prepare),
        Ok(_) => Err(ServeError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(prepare(e)),
    }
}

/// A started ttRPC server; [`RunningServer::stop`] stops it and removes its socket file.
pub struct RunningServer {
    server: Server,
    addr: String,
    path: PathBuf,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` and starts serving `services`; returns once the socket accepts connections,
/// so a caller that waits for the socket file (kata-agent does) finds a live server.
pub async fn start(
    addr: &str,
    services: impl IntoIterator<Item = HashMap<String, Service>>,
) -> Result<RunningServer, ServeError> {
    let path = unix_socket_path(addr)?;
    prepare_socket(&path)?;
    let ttrpc_err = |source| ServeError::Ttrpc {
        addr: addr.to_string(),
        source,
    };
    let mut server = Server::new().bind(addr).map_err(ttrpc_err)?;
    for service in services {
        server = server.register_service(service);
    }
    server.start().await.map_err(ttrpc_err)?;
    Ok(RunningServer {
        server,
        addr: addr.to_string(),
        path,
    })
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops accepting, lets in-flight requests finish, removes the socket file.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.server
            .shutdown()
            .await
            .map_err(|source| ServeError::Ttrpc {
                addr: self.addr.clone(),
                source,
            })?;
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ServeError::Prepare {
                path: self.path.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Resolves on SIGTERM, SIGINT or SIGHUP (kata-agent and systemd stop with SIGTERM; upstream
/// only handled SIGINT/SIGHUP).
pub async fn shutdown_signal() -> io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            unix_socket_path("unix:///run/a.sock").unwrap(),
            PathBuf::from("/run/a.sock")
        );
        for bad in [
            "/run/a.sock",
            "unix://rel.sock",
            "unix://",
            "unix:///",
            "vsock://3:1",
            "127.0.0.1:50000",
        ] {
            assert!(
                matches!(unix_socket_path(bad), Err(ServeError::NotUnix(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn stale_socket_is_replaced_but_a_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sub/a.sock");
        prepare_socket(&sock).unwrap();
        assert!(sock.parent().unwrap().is_dir());
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        prepare_socket(&sock).unwrap();
        assert!(!sock.exists());
        std::fs::write(&sock, b"data").unwrap();
        assert!(matches!(
            prepare_socket(&sock),
            Err(ServeError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&sock).unwrap(), b"data");
    }

    #[tokio::test]
    async fn serves_until_stopped_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix://{}/s.sock", dir.path().display());
        let path = unix_socket_path(&addr).unwrap();
        // a stale socket from a previous run
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let server = start(&addr, []).await.unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        server.stop().await.unwrap();
        assert!(!path.exists());
    }
}
