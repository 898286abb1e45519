//! `GetToken("coco_as")`: the primary attester's evidence over empty report data, posted to
//! a CoCo attestation service as
//! `{"verification_requests":[{"tee":"<tee>","evidence":"<base64url-nopad(JSON)>"}],"policy_ids":[]}`
//! at `{url}/attestation`; the service's reply body is the token (upstream behaviour).

use std::time::Duration;

use attester::{AttesterError, Detected, Tee};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use http_client::error_chain;
use serde::Serialize;
use tokio::sync::OnceCell;
use tracing::debug;
use url::Url;
use zeroize::Zeroizing;

use crate::config::CocoAsConfig;

/// Attestation service replies larger than this are refused (tokens are a few KiB).
pub(crate) const MAX_REPLY_BYTES: usize = 1024 * 1024;
/// How much of an error body is kept in error messages.
const MAX_ERROR_BODY_CHARS: usize = 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("attestation-agent/", env!("CARGO_PKG_VERSION"));

/// Why the attestation service gave no token.
#[derive(Debug, thiserror::Error)]
pub enum CocoAsError {
    /// The primary attester failed.
    #[error("getting {tee} evidence for the attestation service: {source}")]
    Evidence {
        /// the attester's TEE
        tee: Tee,
        /// the cause
        source: AttesterError,
    },
    /// The request could not be serialized.
    #[error("encoding the attestation request failed: {0}")]
    Encode(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client for the attestation service failed: {0}")]
    HttpClient(String),
    /// No reply (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the attestation service at {url}: {message}")]
    Transport {
        /// the endpoint
        url: String,
        /// the error chain
        message: String,
    },
    /// The service refused the evidence.
    #[error("the attestation service at {url} answered {status}: {body}")]
    Rejected {
        /// the endpoint
        url: String,
        /// the HTTP status
        status: u16,
        /// (a prefix of) the reply body
        body: String,
    },
    /// The reply is larger than `MAX_REPLY_BYTES` (1 MiB).
    #[error("the attestation service at {url} replied with more than {MAX_REPLY_BYTES} bytes")]
    TooLarge {
        /// the endpoint
        url: String,
    },
    /// A 200 reply without a token.
    #[error("the attestation service at {url} replied 200 with an empty body instead of a token")]
    EmptyToken {
        /// the endpoint
        url: String,
    },
}

#[derive(Serialize)]
struct AttestationRequest {
    verification_requests: Vec<VerificationRequest>,
    policy_ids: Vec<String>,
}

#[derive(Serialize)]
struct VerificationRequest {
    tee: String,
    evidence: String,
}

/// The request body for `evidence` of `tee`.
fn request_body(tee: Tee, evidence: &serde_json::Value) -> Result<Vec<u8>, CocoAsError> {
    let request = AttestationRequest {
        verification_requests: vec![VerificationRequest {
            tee: tee.to_string(),
            evidence: URL_SAFE_NO_PAD.encode(evidence.to_string()),
        }],
        policy_ids: Vec::new(),
    };
    serde_json::to_vec(&request).map_err(|e| CocoAsError::Encode(e.to_string()))
}

/// `{url}/attestation` (a trailing `/` of the configured URL is not doubled).
pub(crate) fn endpoint(url: &Url) -> String {
    format!("{}/attestation", url.as_str().trim_end_matches('/'))
}

fn http_client() -> Result<reqwest::Client, CocoAsError> {
    http_client::ClientBuilder::new()
        .user_agent(USER_AGENT)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| CocoAsError::HttpClient(e.to_string()))
}

/// The agent's attestation-service token source (one HTTP client, created on first use).
#[derive(Debug, Default)]
pub(crate) struct CocoAsTokens {
    http: OnceCell<reqwest::Client>,
}

impl CocoAsTokens {
    /// A token from the attestation service: the reply body as it came.
    pub(crate) async fn token(
        &self,
        config: &CocoAsConfig,
        attesters: &Detected,
    ) -> Result<Zeroizing<Vec<u8>>, CocoAsError> {
        let tee = attesters.primary.tee();
        let evidence = attesters
            .primary
            .get_evidence(&[])
            .await
            .map_err(|source| CocoAsError::Evidence { tee, source })?;
        let body = request_body(tee, &evidence)?;
        let url = endpoint(&config.url);
        let http = self
            .http
            .get_or_try_init(|| async { http_client() })
            .await?;
        debug!(%url, %tee, "posting evidence to the attestation service");
        let transport = |e: reqwest::Error| CocoAsError::Transport {
            url: url.clone(),
            message: error_chain(&e),
        };
        let mut response = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let mut reply = Zeroizing::new(Vec::new());
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(CocoAsError::TooLarge { url });
            }
            reply.extend_from_slice(&chunk);
        }
        if status != 200 {
            return Err(CocoAsError::Rejected {
                url,
                status,
                body: String::from_utf8_lossy(&reply)
                    .chars()
                    .take(MAX_ERROR_BODY_CHARS)
                    .collect(),
            });
        }
        if reply.is_empty() {
            return Err(CocoAsError::EmptyToken { url });
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_body_is_upstreams_shape() {
        let evidence = json!({"svn": "1", "report_data": ""});
        let body = String::from_utf8(request_body(Tee::Sample, &evidence).unwrap()).unwrap();
        let encoded = URL_SAFE_NO_PAD.encode(evidence.to_string());
        assert_eq!(
            body,
            format!(
                r#"{{"verification_requests":[{{"tee":"sample","evidence":"{encoded}"}}],"policy_ids":[]}}"#
            )
        );
        assert!(!encoded.contains('='));
    }

    #[test]
    fn endpoint_joins_without_double_slashes() {
        for (url, expected) in [
            ("http://127.0.0.1:8000", "http://127.0.0.1:8000/attestation"),
            (
                "http://127.0.0.1:8000/",
                "http://127.0.0.1:8000/attestation",
            ),
            (
                "https://as.example/api/",
                "https://as.example/api/attestation",
            ),
        ] {
            assert_eq!(endpoint(&url.parse().unwrap()), expected);
        }
    }
}
