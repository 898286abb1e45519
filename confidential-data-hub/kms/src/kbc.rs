//! The KBC trait, its errors and the constructor registry.

#[cfg(feature = "kbs")]
use std::time::Duration;

use async_trait::async_trait;
use kbs_protocol::ResourceUri;
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
    /// `cc_kbc`: the KBS base URL (`[kbc] url`); the only KBS it talks to.
    pub kbs_url: String,
    /// `cc_kbc`: PEM root certificate of the KBS, if it is not publicly trusted.
    pub kbs_cert: Option<String>,
    /// `cc_kbc`: ttRPC address of the attestation agent (`[aa] aa_socket`).
    pub aa_socket: String,
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
    #[error("offline_fs_kbc: {0}")]
    OfflineFs(#[from] OfflineFsError),
    /// `cc_kbc` has no KBS address.
    #[cfg(feature = "kbs")]
    #[error("cc_kbc needs the KBS address: set `[kbc] url` (or aa_kbc_params `cc_kbc::<url>`)")]
    MissingKbsUrl,
    /// The KBS client could not be set up (bad URL or `kbs_cert`).
    #[cfg(feature = "kbs")]
    #[error("setting up cc_kbc: {0}")]
    Setup(Box<kbs_protocol::Error>),
    /// The KBS refused the resource to a freshly attested client: a policy denial, or (with
    /// trustee, which answers 401 for both) a resource it does not hold.
    #[cfg(feature = "kbs")]
    #[error("access to resource {uri} denied: {source}")]
    Denied {
        /// the resource
        uri: String,
        /// the KBS's answer
        source: Box<kbs_protocol::Error>,
    },
    /// Too many KBS requests were in flight for this one to start in time.
    #[cfg(feature = "kbs")]
    #[error("resource {uri}: the KBS is busy (no request slot within {waited:?}); try again")]
    Busy {
        /// the resource
        uri: String,
        /// how long the read waited
        waited: Duration,
    },
    /// Attestation, the attestation agent or the KBS failed.
    #[cfg(feature = "kbs")]
    #[error("fetching resource {uri} from the KBS failed: {source}")]
    Kbs {
        /// the resource
        uri: String,
        /// what failed
        source: Box<kbs_protocol::Error>,
    },
}

/// Builds the KBC called `name` (`[kbc] name` of the CDH config).
pub fn new_kbc(name: &str, params: &KbcParams) -> Result<Box<dyn Kbc>, KbcError> {
    match name {
        OFFLINE_FS_KBC => Ok(Box::new(OfflineFsKbc::load(&params.offline_fs)?)),
        #[cfg(feature = "kbs")]
        CC_KBC => Ok(Box::new(crate::cc_kbc::CcKbc::new(
            &params.kbs_url,
            params.kbs_cert.as_deref(),
            &params.aa_socket,
        )?)),
        #[cfg(not(feature = "kbs"))]
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
            ..Default::default()
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

    #[cfg(not(feature = "kbs"))]
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

    #[cfg(feature = "kbs")]
    #[test]
    fn cc_kbc_is_built_by_name_without_contacting_anything() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = params_in(dir.path());
        // nothing listens on either address: construction must not care
        params.kbs_url = "http://127.0.0.1:9".into();
        params.aa_socket = format!("unix://{}/aa.sock", dir.path().display());
        let kbc = new_kbc("cc_kbc", &params).unwrap();
        drop(kbc);

        params.kbs_url = String::new();
        let err = new_kbc("cc_kbc", &params).err().unwrap();
        assert!(matches!(err, KbcError::MissingKbsUrl), "{err}");
        assert!(err.to_string().contains("`[kbc] url`"), "{err}");

        for bad in ["kbs.example:8080", "ftp://kbs.example", "http://kbs?x=1"] {
            params.kbs_url = bad.into();
            let err = new_kbc("cc_kbc", &params).err().unwrap();
            assert!(
                matches!(&err, KbcError::Setup(e) if matches!(**e, kbs_protocol::Error::InvalidUrl { .. })),
                "{bad}: {err}"
            );
        }

        params.kbs_url = "https://kbs.example:8080".into();
        // upstream's example config writes `kbs_cert = ""`: no certificate
        for blank in ["", "  \n\t"] {
            params.kbs_cert = Some(blank.into());
            assert!(new_kbc("cc_kbc", &params).is_ok(), "{blank:?}");
        }
        params.kbs_cert =
            Some("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into());
        let err = new_kbc("cc_kbc", &params).err().unwrap();
        assert!(
            matches!(&err, KbcError::Setup(e) if matches!(**e, kbs_protocol::Error::InvalidCertificate(_))),
            "{err}"
        );
        assert!(err.to_string().starts_with("setting up cc_kbc: "), "{err}");
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
