//! The hub: one configuration and one KBC for the life of the process, and the ttRPC
//! services kata-agent and image-rs call.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use kbs_protocol::resource_uri::{ResourceUri, ResourceUriError};
use kms::{Kbc, KbcError};
use protos::{api, api_ttrpc, keyprovider_ttrpc};
use tracing::{error, info, warn};
use ttrpc::r#async::{Service, TtrpcContext};
use zeroize::Zeroizing;

use crate::{
    config::Config,
    credentials::{write_credential, WriteCredentialError},
};

/// Prefix of every error message the CDH returns over ttRPC (upstream's wording).
pub const ERROR_PREFIX: &str = "[CDH] [ERROR]: ";

/// Why a resource could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum GetResourceError {
    /// `ResourcePath` is not a resource URI.
    #[error("ResourcePath is not a valid resource URI: {0}")]
    InvalidUri(#[from] ResourceUriError),
    /// The KBC failed or does not hold the resource.
    #[error("getting resource failed: {0}")]
    Kbc(#[from] KbcError),
}

/// Why a credential file was not provisioned.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The resource could not be fetched.
    #[error("fetching {uri}: {source}")]
    Fetch {
        /// the resource
        uri: String,
        /// the cause
        source: KbcError,
    },
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] WriteCredentialError),
    /// The blocking writer task died.
    #[error("credential writer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The confidential data hub.
pub struct Hub {
    config: Config,
    kbc: Box<dyn Kbc>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub serving `config` with `kbc` (built once, from `config.kbc`).
    pub fn new(config: Config, kbc: Box<dyn Kbc>) -> Self {
        Self { config, kbc }
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The resource named by `resource_path`, a `kbs://` URI.
    pub async fn get_resource(
        &self,
        resource_path: &str,
    ) -> Result<Zeroizing<Vec<u8>>, GetResourceError> {
        let uri = ResourceUri::parse(resource_path)?;
        Ok(self.kbc.get_resource(&uri).await?)
    }

    /// Fetches every configured credential and writes it to its file, in order. Failures
    /// are logged and skipped (a KBS that is down must not stop the hub); returns the
    /// failures.
    pub async fn provision_credentials(&self) -> Vec<CredentialError> {
        let mut failures = Vec::new();
        for credential in &self.config.credentials {
            match self
                .provision(&credential.resource_uri, &credential.path)
                .await
            {
                Ok(()) => info!(
                    resource = %credential.resource_uri,
                    path = %credential.path.display(),
                    "credential written"
                ),
                Err(e) => {
                    error!(
                        resource = %credential.resource_uri,
                        path = %credential.path.display(),
                        "credential not provisioned: {e}"
                    );
                    failures.push(e);
                }
            }
        }
        failures
    }

    async fn provision(
        &self,
        uri: &ResourceUri,
        path: &std::path::Path,
    ) -> Result<(), CredentialError> {
        let contents =
            self.kbc
                .get_resource(uri)
                .await
                .map_err(|source| CredentialError::Fetch {
                    uri: uri.to_string(),
                    source,
                })?;
        let base = self.config.credentials_dir.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || write_credential(&base, &path, &contents)).await??;
        Ok(())
    }

    /// The ttRPC services to serve. `GetResourceService` is implemented; the other CDH
    /// services are registered without overriding any method, so their methods answer the
    /// codegen's `NOT_FOUND "… is not supported"` (as upstream's unimplemented methods do)
    /// instead of ttRPC's `INVALID_ARGUMENT "service does not exist"`.
    pub fn ttrpc_services(self: &Arc<Self>) -> Vec<HashMap<String, Service>> {
        vec![
            api_ttrpc::create_get_resource_service(self.clone()),
            api_ttrpc::create_sealed_secret_service(self.clone()),
            api_ttrpc::create_secure_mount_service(self.clone()),
            api_ttrpc::create_image_pull_service(self.clone()),
            keyprovider_ttrpc::create_key_provider_service(self.clone()),
        ]
    }
}

/// The ttRPC status for a failed GetResource: INVALID_ARGUMENT for a bad URI, NOT_FOUND when
/// the KBC has no such resource (KBS 404), PERMISSION_DENIED when the KBS refuses it to a
/// freshly attested guest (policy denial, or trustee's 401 for a missing resource), INTERNAL
/// otherwise. The message says what failed, never what the resource holds.
fn get_resource_status(e: &GetResourceError) -> ttrpc::Error {
    let code = match e {
        GetResourceError::InvalidUri(_) => ttrpc::Code::INVALID_ARGUMENT,
        GetResourceError::Kbc(KbcError::NotFound(_)) => ttrpc::Code::NOT_FOUND,
        #[cfg(feature = "kbs")]
        GetResourceError::Kbc(KbcError::Denied { .. }) => ttrpc::Code::PERMISSION_DENIED,
        GetResourceError::Kbc(_) => ttrpc::Code::INTERNAL,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, format!("{ERROR_PREFIX}{e}")))
}

#[async_trait]
impl api_ttrpc::GetResourceService for Hub {
    async fn get_resource(
        &self,
        _ctx: &TtrpcContext,
        req: api::GetResourceRequest,
    ) -> ttrpc::Result<api::GetResourceResponse> {
        match Hub::get_resource(self, &req.ResourcePath).await {
            Ok(resource) => Ok(api::GetResourceResponse {
                Resource: resource.to_vec(),
                ..Default::default()
            }),
            Err(e) => {
                warn!("GetResource failed: {e}");
                Err(get_resource_status(&e))
            }
        }
    }
}

// Registered so their methods answer NOT_FOUND; implemented by later work.
impl api_ttrpc::SealedSecretService for Hub {}
impl api_ttrpc::SecureMountService for Hub {}
impl api_ttrpc::ImagePullService for Hub {}
impl keyprovider_ttrpc::KeyProviderService for Hub {}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Credential, LoadOptions};

    /// Serves `default/key/1`, has no `default/key/2`, fails on anything else.
    struct FixedKbc;

    #[async_trait]
    impl Kbc for FixedKbc {
        async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
            match uri.repo_type_tag() {
                Some(("default", "key", "1")) => Ok(Zeroizing::new(b"top secret".to_vec())),
                Some(("default", "key", "2")) => Err(KbcError::NotFound(uri.to_string())),
                #[cfg(feature = "kbs")]
                Some(("default", "key", "denied")) => Err(KbcError::Denied {
                    uri: uri.to_string(),
                    source: Box::new(kbs_protocol::Error::Unauthorized {
                        path: "resource/default/key/denied".into(),
                        info: None,
                        body: String::new(),
                    }),
                }),
                _ => Err(KbcError::NotCompiled("cc_kbc".into())),
            }
        }
    }

    fn hub_in(dir: &std::path::Path, credentials: Vec<(&str, PathBuf)>) -> Hub {
        let mut options = LoadOptions::new(None, crate::Environment::default());
        options.kernel_cmdline = dir.join("cmdline");
        options.credentials_dir = dir.join("kbs");
        let mut config = crate::Config::load(&options).unwrap().config;
        config.credentials = credentials
            .into_iter()
            .map(|(uri, path)| Credential {
                resource_uri: ResourceUri::parse(uri).unwrap(),
                path,
            })
            .collect();
        Hub::new(config, Box::new(FixedKbc))
    }

    fn status(e: &GetResourceError) -> (ttrpc::Code, String) {
        match get_resource_status(e) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn get_resource_and_its_error_codes() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub_in(dir.path(), vec![]);
        assert_eq!(
            hub.get_resource("kbs:///default/key/1")
                .await
                .unwrap()
                .as_slice(),
            b"top secret"
        );

        let e = hub
            .get_resource("kbs:///default/../../etc/passwd")
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            GetResourceError::InvalidUri(ResourceUriError::DotSegment(_))
        ));
        let (code, message) = status(&e);
        assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
        assert!(
            message.starts_with("[CDH] [ERROR]: ResourcePath is not a valid resource URI"),
            "{message}"
        );

        let e = hub.get_resource("kbs:///default/key/2").await.unwrap_err();
        let (code, message) = status(&e);
        assert_eq!(code, ttrpc::Code::NOT_FOUND);
        assert_eq!(
            message,
            "[CDH] [ERROR]: getting resource failed: resource kbs:///default/key/2 not found"
        );

        #[cfg(feature = "kbs")]
        {
            let e = hub
                .get_resource("kbs:///default/key/denied")
                .await
                .unwrap_err();
            let (code, message) = status(&e);
            assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
            assert!(
                message.starts_with(
                    "[CDH] [ERROR]: getting resource failed: access to resource kbs:///default/key/denied denied: "
                ),
                "{message}"
            );
        }

        let e = hub.get_resource("kbs:///other/key/3").await.unwrap_err();
        let (code, message) = status(&e);
        assert_eq!(code, ttrpc::Code::INTERNAL);
        assert!(
            message.starts_with("[CDH] [ERROR]: getting resource failed: KBC `cc_kbc`"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn credentials_are_provisioned_and_failures_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let kbs = dir.path().join("kbs");
        let hub = hub_in(
            dir.path(),
            vec![
                ("kbs:///default/key/2", kbs.join("missing")),
                ("kbs:///default/key/1", kbs.join("sub/one")),
            ],
        );
        let failures = hub.provision_credentials().await;
        assert_eq!(failures.len(), 1);
        assert!(matches!(
            &failures[0],
            CredentialError::Fetch { uri, source: KbcError::NotFound(_) } if uri == "kbs:///default/key/2"
        ));
        assert_eq!(std::fs::read(kbs.join("sub/one")).unwrap(), b"top secret");
        assert!(!kbs.join("missing").exists());
    }

    #[test]
    fn debug_does_not_show_the_kbc() {
        let dir = tempfile::tempdir().unwrap();
        let debug = format!("{:?}", hub_in(dir.path(), vec![]));
        assert!(debug.starts_with("Hub { config: Config {"), "{debug}");
    }
}
