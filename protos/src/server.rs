//! Serving the generated services on a `unix://` address, the way every daemon of the suite
//! does it: parent directory created, a stale socket file replaced, the socket file shown
//! only once it listens, graceful stop on a signal, socket file removed afterwards.

use std::{
    collections::HashMap,
    io,
    os::unix::{ffi::OsStrExt, fs::FileTypeExt, net::UnixListener},
    path::{Path, PathBuf},
};

use ttrpc::r#async::{transport::Listener, Server, Service};

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

/// The longest path a unix socket address holds (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Creates the socket's parent directory. A socket file already there (a stale one left by a
/// previous run) is for [`bind_listening`] to replace; anything else is refused, not deleted.
fn prepare_socket(path: &Path) -> Result<(), ServeError> {
    let prepare = |source| ServeError::Prepare {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(prepare)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(()),
        Ok(_) => Err(ServeError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(prepare(e)),
    }
}

/// Where the socket is bound before it takes its name: beside it, named after this process.
fn staging_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let mut staged = b".".to_vec();
    staged.extend_from_slice(std::process::id().to_string().as_bytes());
    staged.push(b'.');
    staged.extend_from_slice(name.as_bytes());
    let staged = path.with_file_name(std::ffi::OsStr::from_bytes(&staged));
    (staged.as_os_str().len() <= MAX_SOCKET_PATH).then_some(staged)
}

/// A listening socket at `path`, replacing a stale one. The file appears at bind(2), before
/// listen(2), so the socket is bound and listening under a staging name and then renamed
/// over `path`: a client that waits for the file (kata-agent does) can never find it and be
/// refused. Where the staging name would be too long, `path` is bound in place.
fn bind_listening(path: &Path) -> Result<UnixListener, ServeError> {
    let prepare = |source| ServeError::Prepare {
        path: path.to_path_buf(),
        source,
    };
    let remove = |file: &Path| match std::fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    let Some(staged) = staging_path(path) else {
        remove(path).map_err(prepare)?;
        return UnixListener::bind(path).map_err(prepare);
    };
    // a staging file of a previous run that had this pid
    remove(&staged).map_err(prepare)?;
    let listener = UnixListener::bind(&staged).map_err(prepare)?;
    if let Err(e) = std::fs::rename(&staged, path) {
        // best effort: the error that matters is the rename's
        let _ = remove(&staged);
        return Err(prepare(e));
    }
    Ok(listener)
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
    let listener = bind_listening(&path)?;
    let listener = Listener::try_from(listener).map_err(|e| ServeError::Prepare {
        path: path.clone(),
        source: e,
    })?;
    let mut server = Server::new().add_listener(listener);
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
    use std::os::unix::fs::MetadataExt;

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
    fn a_file_in_the_way_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sub/a.sock");
        prepare_socket(&sock).unwrap();
        assert!(sock.parent().unwrap().is_dir());
        std::fs::write(&sock, b"data").unwrap();
        assert!(matches!(
            prepare_socket(&sock),
            Err(ServeError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&sock).unwrap(), b"data");
    }

    /// The names in `dir`.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A byte sent by a client of `sock` reaches `listener`.
    fn reaches(sock: &Path, listener: &UnixListener) {
        use std::io::{Read, Write};
        let mut client = std::os::unix::net::UnixStream::connect(sock).unwrap();
        client.write_all(b"x").unwrap();
        let mut byte = [0];
        listener.accept().unwrap().0.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
    }

    #[test]
    fn the_socket_takes_its_name_once_it_listens() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("a.sock");
        let staged = staging_path(&sock).unwrap();
        assert_eq!(staged.parent(), sock.parent());
        assert_eq!(
            staged.file_name().unwrap().to_string_lossy(),
            format!(".{}.a.sock", std::process::id())
        );
        // a stale socket, and a staging file left by an earlier process with this pid
        drop(UnixListener::bind(&sock).unwrap());
        let stale_inode = std::fs::metadata(&sock).unwrap().ino();
        drop(UnixListener::bind(&staged).unwrap());

        let listener = bind_listening(&sock).unwrap();
        assert_ne!(std::fs::metadata(&sock).unwrap().ino(), stale_inode);
        reaches(&sock, &listener);
        assert_eq!(names(dir.path()), ["a.sock"]);
    }

    #[test]
    fn a_path_too_long_to_stage_is_bound_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let room = MAX_SOCKET_PATH - dir.path().as_os_str().len() - 1;
        let sock = dir.path().join("a.sock");
        let sock = sock.with_file_name(format!("{}a.sock", "x".repeat(room - 6)));
        assert_eq!(sock.as_os_str().len(), MAX_SOCKET_PATH);
        assert_eq!(staging_path(&sock), None);
        drop(UnixListener::bind(&sock).unwrap());
        let listener = bind_listening(&sock).unwrap();
        reaches(&sock, &listener);
        assert_eq!(names(dir.path()).len(), 1);
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
