//! The KBC trait, its errors and the constructor registry.

use async_trait::async_trait;
use kbs_protocol::resource_uri::ResourceUri;
use zeroize::Zeroizing;

use crate::offline_fs::{OfflineFsError, OfflineFsKbc, OfflineFsSources};

/// Name of the KBC that serves resources from local JSON files.
pub const OFFLINE_FS_KBC: &str = "offline_fs_kbc";
/// Name of the KBC that fetches resources from a KBS after attestation.
pub const CC_KBC: &str = "cc_kbc";

/// Fetches KBS resources. One value serves the whole life of the process, so an
/// implementation may cache sessions and tokens.
#[async_trait]
pub trait Kbc: Send + Sync {
    /// The resource named by `uri`; the bytes are wiped from memory when dropped.
    async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError>;
}

/// What a KBC needs to be built.
#[derive(Debug, Clone, Default)]
pub struct KbcParams {
    /// Where `offline_fs_kbc` reads its resources from.
    pub offline_fs: OfflineFsSources,
}

/// Why a KBC could not be built or could not deliver a resource.
#[derive(Debug, thiserror::Error)]
pub enum KbcError {
    /// The KBC holds no resource under this URI.
    #[error("resource {0} not found")]
    NotFound(String),
    /// The KBC exists but this binary was built without it.
    #[error("KBC `{0}` is not compiled into this build; use a build that includes it or configure `offline_fs_kbc`")]
    NotCompiled(String),
    /// No KBC has this name.
    #[error("unknown KBC `{0}`; known KBCs: offline_fs_kbc, cc_kbc")]
    Unknown(String),
    /// The offline store could not be loaded.
    #[error(transparent)]
    OfflineFs(#[from] OfflineFsError),
}

/// Builds the KBC called `name` (`[kbc] name` of the CDH config).
pub fn new_kbc(name: &str, params: &KbcParams) -> Result<Box<dyn Kbc>, KbcError> {
    match name {
        OFFLINE_FS_KBC => Ok(Box::new(OfflineFsKbc::load(&params.offline_fs)?)),
        CC_KBC => Err(KbcError::NotCompiled(name.to_string())),
        _ => Err(KbcError::Unknown(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params_in(dir: &std::path::Path) -> KbcParams {
        KbcParams {
            offline_fs: OfflineFsSources {
                keys_file: dir.join("keys.json"),
                resources_file: dir.join("resources.json"),
                extra_files: Vec::new(),
            },
        }
    }

    #[tokio::test]
    async fn offline_fs_kbc_is_built_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("resources.json"),
            r#"{"default/key/1": "c2VjcmV0"}"#,
        )
        .unwrap();
        let kbc = new_kbc("offline_fs_kbc", &params_in(dir.path())).unwrap();
        let uri = ResourceUri::parse("kbs:///default/key/1").unwrap();
        assert_eq!(kbc.get_resource(&uri).await.unwrap().as_slice(), b"secret");
    }

    #[test]
    fn cc_kbc_is_not_compiled_in() {
        let dir = tempfile::tempdir().unwrap();
        let err = new_kbc("cc_kbc", &params_in(dir.path())).err().unwrap();
        assert!(matches!(&err, KbcError::NotCompiled(name) if name == "cc_kbc"));
        assert!(
            err.to_string().contains("not compiled into this build"),
            "{err}"
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["sample_kbc", "", "OFFLINE_FS_KBC", "offline_fs_kbc "] {
            let err = new_kbc(name, &params_in(dir.path())).err().unwrap();
            assert!(matches!(&err, KbcError::Unknown(n) if n == name), "{name}");
            assert!(err.to_string().contains("unknown KBC"), "{err}");
        }
    }

    #[test]
    fn a_broken_store_fails_construction() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keys.json"), "{").unwrap();
        let err = new_kbc("offline_fs_kbc", &params_in(dir.path()))
            .err()
            .unwrap();
        assert!(matches!(
            err,
            KbcError::OfflineFs(OfflineFsError::Json { .. })
        ));
    }
}
