use std::path::PathBuf;

/// What went wrong while building, serving or pushing a test image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// a file operation failed
    #[error("{context} ({path}): {source}")]
    Io {
        /// what was being done
        context: &'static str,
        /// the file
        path: PathBuf,
        /// the cause
        #[source]
        source: std::io::Error,
    },
    /// an I/O error without a particular file
    #[error(transparent)]
    Stream(#[from] std::io::Error),
    /// JSON (de)serialisation failed
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// a layer entry cannot be written as asked
    #[error("invalid tar entry {path:?}: {reason}")]
    InvalidEntry {
        /// the entry path
        path: String,
        /// why
        reason: String,
    },
    /// an image description is inconsistent
    #[error("invalid image description: {0}")]
    InvalidImage(String),
    /// a blob or manifest is not in the layout
    #[error("{0} is not in the OCI layout")]
    MissingBlob(String),
    /// an external tool (htpasswd, docker-registry) failed
    #[error("{tool} failed: {message}")]
    Tool {
        /// the program
        tool: &'static str,
        /// its error output or the spawn error
        message: String,
    },
    /// certificate generation failed
    #[error("certificate generation: {0}")]
    Certificate(String),
    /// an HTTP exchange with the registry failed
    #[error("registry HTTP {method} {url}: {message}")]
    Http {
        /// request method
        method: &'static str,
        /// request URL
        url: String,
        /// status and body, or the transport error
        message: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            context,
            path,
            source,
        }
    }
}
