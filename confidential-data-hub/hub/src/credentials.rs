//! Credential files: KBS resources written at startup to files under one directory
//! (`/run/confidential-containers/cdh/kbs`, guest memory), for workloads and kata-agent.

use std::{
    fs::{DirBuilder, Permissions},
    io::{self, Write},
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

/// Checks that `path` is an absolute file path strictly inside `base` without `.` or `..`
/// segments; the error says what is wrong with it.
pub(crate) fn check_credential_path(path: &Path, base: &Path) -> Result<(), String> {
    let shown = path.display();
    if !path.is_absolute() {
        return Err(format!("`{shown}` is not an absolute path"));
    }
    let bytes = path.as_os_str().as_bytes();
    if bytes.split(|b| *b == b'/').any(|s| s == b"." || s == b"..") {
        return Err(format!("`{shown}` contains a `.` or `..` segment"));
    }
    if bytes.ends_with(b"/") {
        return Err(format!("`{shown}` names a directory, not a file"));
    }
    if path == base || !path.starts_with(base) {
        return Err(format!(
            "`{shown}` is not inside the credentials directory {}",
            base.display()
        ));
    }
    Ok(())
}

/// Why a credential file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteCredentialError {
    /// A directory or file operation failed.
    #[error("writing credential {path}: {source}")]
    Io {
        /// the credential file
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// A symbolic link leads the path out of the credentials directory.
    #[error("credential {path} resolves to {resolved}, outside the credentials directory {base}")]
    OutsideBase {
        /// the credential file
        path: PathBuf,
        /// where its directory really is
        resolved: PathBuf,
        /// the credentials directory
        base: PathBuf,
    },
}

/// Writes `contents` to `path` (already checked by [`check_credential_path`]) atomically:
/// a temporary file in the same directory, mode 0600, synced, then renamed over `path`.
/// Missing directories are created with mode 0700.
pub(crate) fn write_credential(
    base: &Path,
    path: &Path,
    contents: &[u8],
) -> Result<(), WriteCredentialError> {
    let io_err = |source| WriteCredentialError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        )));
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(io_err)?;
    let real_parent = parent.canonicalize().map_err(io_err)?;
    let real_base = base.canonicalize().map_err(io_err)?;
    if !real_parent.starts_with(&real_base) {
        return Err(WriteCredentialError::OutsideBase {
            path: path.to_path_buf(),
            resolved: real_parent,
            base: real_base,
        });
    }
    let mut staged = tempfile::Builder::new()
        .prefix(".credential-")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(&real_parent)
        .map_err(io_err)?;
    staged.write_all(contents).map_err(io_err)?;
    staged.as_file().sync_all().map_err(io_err)?;
    staged
        .persist(real_parent.join(name))
        .map_err(|e| io_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const BASE: &str = "/run/confidential-containers/cdh/kbs";

    #[test]
    fn accepts_files_inside_the_base() {
        for ok in [
            "/run/confidential-containers/cdh/kbs/key",
            "/run/confidential-containers/cdh/kbs/sub/dir/key.pem",
            "/run/confidential-containers/cdh/kbs/..hidden",
        ] {
            assert_eq!(
                check_credential_path(Path::new(ok), Path::new(BASE)),
                Ok(()),
                "{ok}"
            );
        }
    }

    #[test]
    fn refuses_hostile_paths() {
        for (bad, why) in [
            (
                "/run/confidential-containers/cdh/kbs/../../../etc/passwd",
                "`..`",
            ),
            ("/run/confidential-containers/cdh/kbs/./key", "`..`"),
            ("/run/confidential-containers/cdh/kbs/a/..", "`..`"),
            ("/run/confidential-containers/cdh/kbs", "not inside"),
            ("/run/confidential-containers/cdh/kbs/", "directory"),
            ("/run/confidential-containers/cdh/kbsx/key", "not inside"),
            ("/etc/passwd", "not inside"),
            ("/run/confidential-containers/cdh/key", "not inside"),
            ("run/confidential-containers/cdh/kbs/key", "absolute"),
            ("", "absolute"),
        ] {
            let err = check_credential_path(Path::new(bad), Path::new(BASE)).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn writes_atomically_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("kbs");
        let path = base.join("a/b/key");
        write_credential(&base, &path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(base.join("a")).unwrap().mode() & 0o777,
            0o700
        );
        // replaced, and no staging file left behind
        write_credential(&base, &path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(base.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["key"]);
    }

    #[test]
    fn a_symlink_cannot_lead_outside() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("kbs");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
        let err = write_credential(&base, &base.join("link/key"), b"x").unwrap_err();
        assert!(
            matches!(err, WriteCredentialError::OutsideBase { .. }),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_in_the_way_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("kbs");
        std::fs::create_dir_all(base.join("key")).unwrap();
        let err = write_credential(&base, &base.join("key"), b"x").unwrap_err();
        assert!(matches!(err, WriteCredentialError::Io { .. }), "{err}");
    }
}
