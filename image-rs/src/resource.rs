//! Where configuration documents named by URI come from (`authenticated_registry_credentials_uri`,
//! `registry_configuration_uri`). The CDH plugs its KBS client in through
//! [`ResourceProvider`]; the default, [`LocalResources`], reads `file://` URIs and absolute
//! paths and refuses `kbs://` (upstream instead dialed a hard-coded CDH socket).

use std::path::PathBuf;

/// Largest resource read.
pub(crate) const MAX_RESOURCE_BYTES: u64 = 16 << 20;

/// Why a resource could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// a `kbs://` URI and no provider for it
    #[error("{0}: KBS resources need a resource provider (the CDH supplies one)")]
    NoProvider(String),
    /// a URI scheme nobody handles
    #[error(
        "{0}: unsupported resource URI (file://, an absolute path, or kbs:// with a provider)"
    )]
    Unsupported(String),
    /// reading the file failed
    #[error("{uri}: {source}")]
    Read {
        /// the URI
        uri: String,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// the resource is too large
    #[error("{0}: larger than 16 MiB")]
    TooLarge(String),
    /// the provider failed
    #[error("{uri}: {message}")]
    Provider {
        /// the URI
        uri: String,
        /// the provider's message
        message: String,
    },
}

/// Fetches configuration resources by URI.
#[async_trait::async_trait]
pub trait ResourceProvider: Send + Sync + std::fmt::Debug {
    /// The bytes of `uri`.
    async fn get_resource(&self, uri: &str) -> Result<Vec<u8>, ResourceError>;
}

/// Local files only.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalResources;

fn local_path(uri: &str) -> Result<PathBuf, ResourceError> {
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(PathBuf::from(path));
    }
    if uri.starts_with("kbs://") || uri.starts_with("kbs+") {
        return Err(ResourceError::NoProvider(uri.to_string()));
    }
    if uri.starts_with('/') {
        return Ok(PathBuf::from(uri));
    }
    Err(ResourceError::Unsupported(uri.to_string()))
}

#[async_trait::async_trait]
impl ResourceProvider for LocalResources {
    async fn get_resource(&self, uri: &str) -> Result<Vec<u8>, ResourceError> {
        use tokio::io::AsyncReadExt;
        let path = local_path(uri)?;
        let read_err = |source| ResourceError::Read {
            uri: uri.to_string(),
            source,
        };
        let file = tokio::fs::File::open(&path).await.map_err(read_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_RESOURCE_BYTES + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_RESOURCE_BYTES {
            return Err(ResourceError::TooLarge(uri.to_string()));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_resources_read_files_and_refuse_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(&file, b"{}").unwrap();
        let r = LocalResources;
        assert_eq!(
            r.get_resource(&format!("file://{}", file.display()))
                .await
                .unwrap(),
            b"{}"
        );
        assert_eq!(r.get_resource(file.to_str().unwrap()).await.unwrap(), b"{}");
        assert!(matches!(
            r.get_resource("kbs:///default/credential/test").await,
            Err(ResourceError::NoProvider(_))
        ));
        assert!(matches!(
            r.get_resource("relative/path").await,
            Err(ResourceError::Unsupported(_))
        ));
        assert!(matches!(
            r.get_resource("https://x/y").await,
            Err(ResourceError::Unsupported(_))
        ));
        assert!(matches!(
            r.get_resource("/does/not/exist").await,
            Err(ResourceError::Read { .. })
        ));
    }
}
