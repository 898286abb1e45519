//! Provider `kbs`: vault secrets are KBS resources, fetched through the process's KBC
//! (`cc_kbc` with its cached token, or `offline_fs_kbc`); the secret name is the resource
//! URI (`kbs:///<repo>/<type>/<tag>`).

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use kbs_protocol::ResourceUri;
use zeroize::Zeroizing;

use crate::{Annotations, Getter, Kbc, KmsError, KBS_PROVIDER};

/// The `kbs` [`Getter`].
#[derive(Clone)]
pub(crate) struct KbsGetter {
    kbc: Arc<dyn Kbc>,
}

impl fmt::Debug for KbsGetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KbsGetter").finish_non_exhaustive()
    }
}

impl KbsGetter {
    /// A getter fetching through `kbc`.
    pub(crate) fn new(kbc: Arc<dyn Kbc>) -> Self {
        Self { kbc }
    }
}

#[async_trait]
impl Getter for KbsGetter {
    /// `name` must be a resource URI; annotations are not used.
    async fn get_secret(
        &self,
        name: &str,
        _annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let uri = ResourceUri::parse(name).map_err(|e| KmsError::InvalidRequest {
            provider: KBS_PROVIDER.into(),
            reason: format!(
                "secret name `{}` is not a resource URI: {e}",
                name.chars().take(200).collect::<String>()
            ),
        })?;
        Ok(self.kbc.get_resource(&uri).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KbcError;

    #[derive(Debug)]
    struct EchoKbc;

    #[async_trait]
    impl Kbc for EchoKbc {
        async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
            Ok(Zeroizing::new(uri.kbs_path().into_bytes()))
        }
    }

    #[tokio::test]
    async fn the_name_is_a_resource_uri() {
        let getter = KbsGetter::new(Arc::new(EchoKbc));
        let got = getter
            .get_secret("kbs:///one/2/trois", &Annotations::new())
            .await
            .unwrap();
        assert_eq!(got.as_slice(), b"resource/one/2/trois");

        for bad in [
            "xxx",
            "",
            "http://one/2/trois",
            "kbs:///a/../../b",
            "kbs://",
        ] {
            let err = getter
                .get_secret(bad, &Annotations::new())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, KmsError::InvalidRequest { reason, .. } if reason.contains("is not a resource URI")),
                "{bad}: {err}"
            );
        }
    }
}
