//! Trustee's admin API for resources: `POST /kbs/v0/resource/<repo>/<type>/<tag>` with the
//! resource bytes as the body (`Content-Type: application/octet-stream`) and
//! `Authorization: Bearer <admin token>`; trustee answers 200 with an empty body, or 401
//! (`AdminAuthAccess`) when no configured admin key verifies the token.
//!
//! The caller brings the token (coco-keyprovider signs an EdDSA JWT with the admin key), so
//! this crate stays free of admin key material. The transport is the client's: the same
//! TLS roots, timeouts and retries of transient failures.

use std::time::Duration;

use tracing::debug;

use crate::error::{Error, Result};
use crate::http::{RetryPolicy, Transport};
use crate::resource_uri::ResourceUri;
use crate::KbsClientConfig;

/// Writes resources into a KBS through its admin API.
#[derive(Debug, Clone)]
pub struct KbsAdminClient {
    transport: Transport,
    retry: RetryPolicy,
}

impl KbsAdminClient {
    /// A client for the KBS at `url` (`http://` or `https://`, optional path prefix),
    /// trusting the public roots and `extra_root_certs_pem`.
    pub fn new(url: &str, extra_root_certs_pem: &[String]) -> Result<Self> {
        let config = KbsClientConfig::new(url)?;
        Self::with_config(&config, extra_root_certs_pem)
    }

    fn with_config(config: &KbsClientConfig, extra_root_certs_pem: &[String]) -> Result<Self> {
        Ok(Self {
            transport: Transport::new(
                &config.url,
                extra_root_certs_pem,
                config.request_timeout,
                config.connect_timeout,
            )?,
            retry: config.retry,
        })
    }

    /// Shorter timeouts and fewer tries (tests).
    pub fn with_timeouts(
        url: &str,
        extra_root_certs_pem: &[String],
        request_timeout: Duration,
        max_attempts: u32,
    ) -> Result<Self> {
        let mut config = KbsClientConfig::new(url)?;
        config.request_timeout = request_timeout;
        config.connect_timeout = request_timeout;
        config.retry.max_attempts = max_attempts.max(1);
        Self::with_config(&config, extra_root_certs_pem)
    }

    /// Stores `data` as the resource `uri` (`kbs:///<repo>/<type>/<tag>`), authorized by
    /// `admin_token`. Any answer but 2xx is an error carrying the KBS's ErrorInformation.
    pub async fn set_resource(
        &self,
        uri: &ResourceUri,
        data: &[u8],
        admin_token: &str,
    ) -> Result<()> {
        if uri.repo_type_tag().is_none() || uri.query().is_some() {
            return Err(Error::InvalidResourcePath {
                path: uri.to_string(),
                reason: "only kbs:///<repository>/<type>/<tag> resources can be stored".into(),
            });
        }
        let path = uri.kbs_path();
        let reply = self
            .retry
            .run("storing a KBS resource", || {
                self.transport.send(
                    self.transport
                        .post_octets(&path, data.to_vec(), admin_token),
                )
            })
            .await?;
        if (200..300).contains(&reply.status) {
            debug!(resource = %uri, "resource stored in the KBS");
            return Ok(());
        }
        let (info, body) = reply.error_parts();
        Err(Error::AdminRejected {
            path: uri.to_string(),
            status: reply.status,
            info,
            body,
        })
    }
}
