//! HTTP(S) transport to the KBS: `http-client` (rustls, aws-lc-rs), the configured extra root CA,
//! bounded bodies, and retries with exponential backoff and jitter for transient failures.

use std::time::Duration;

use http_client::{error_chain, is_tls_failure};
use rand_core::{OsRng, RngCore};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::wire::{ErrorInformation, KBS_PATH_PREFIX};

/// KBS replies are small (challenges, tokens, wrapped secrets): refuse anything larger.
pub(crate) const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error body is kept in error messages.
const MAX_ERROR_BODY_CHARS: usize = 1024;
const USER_AGENT: &str = concat!("attestation-agent-kbs-client/", env!("CARGO_PKG_VERSION"));

/// Retries of transient failures (network errors, timeouts, 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first one included (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    /// Delay before try `attempt + 1`: exponential, capped, with jitter in [d/2, d].
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jitter = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(OsRng.next_u64() % (jitter_ms + 1))
        };
        half + jitter
    }

    /// Runs `op` until it succeeds, fails permanently, or the tries are used up.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_retryable() && attempt < self.max_attempts => {
                    let delay = self.backoff(attempt);
                    warn!(%e, attempt, ?delay, "{what} failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// A fully read reply.
#[derive(Debug)]
pub(crate) struct Reply {
    pub url: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The KBS's ErrorInformation if the body is one, and the body text for messages.
    pub(crate) fn error_parts(&self) -> (Option<ErrorInformation>, String) {
        let info = serde_json::from_slice::<ErrorInformation>(&self.body).ok();
        let text: String = String::from_utf8_lossy(&self.body)
            .chars()
            .take(MAX_ERROR_BODY_CHARS)
            .collect();
        (info, text)
    }
}

/// The HTTP side of the client.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl Transport {
    pub(crate) fn new(
        base: &url::Url,
        extra_root_pems: &[String],
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let http = http_client::ClientBuilder::new()
            .extra_roots(extra_root_pems)
            .user_agent(USER_AGENT)
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| {
                if e.is_certificate() {
                    Error::InvalidCertificate(e.to_string())
                } else {
                    Error::HttpClient(e.to_string())
                }
            })?;
        Ok(Self {
            http,
            base: base.as_str().trim_end_matches('/').to_string(),
            timeout,
        })
    }

    /// `{base}/kbs/v0/{path}`.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}/{KBS_PATH_PREFIX}/{path}", self.base)
    }

    fn transport_error(&self, url: &str, err: reqwest::Error) -> Error {
        if err.is_timeout() {
            Error::Timeout {
                url: url.to_string(),
                timeout_ms: self.timeout.as_millis(),
            }
        } else if is_tls_failure(&err) {
            Error::Tls {
                url: url.to_string(),
                message: error_chain(&err),
            }
        } else {
            Error::Transport {
                url: url.to_string(),
                message: error_chain(&err),
            }
        }
    }

    /// Sends one request and reads the reply; a 5xx becomes a (retryable) `ServerError`.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply> {
        let request = request
            .build()
            .map_err(|e| Error::HttpClient(error_chain(&e)))?;
        let url = request.url().to_string();
        debug!(method = %request.method(), %url, "KBS request");
        let mut response = self
            .http
            .execute(request)
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|len| len > MAX_REPLY_BYTES as u64)
        {
            return Err(Error::Protocol {
                url,
                reason: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&url, e))?
        {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(Error::Protocol {
                    url,
                    reason: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let reply = Reply {
            url,
            status,
            headers,
            body,
        };
        if status >= 500 {
            let (info, body) = reply.error_parts();
            return Err(Error::ServerError {
                url: reply.url,
                status,
                info,
                body,
            });
        }
        Ok(reply)
    }

    pub(crate) fn post_json(&self, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.http
            .post(self.endpoint(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// `POST {base}/kbs/v0/{path}` of `body` as `application/octet-stream`, authorized by
    /// `bearer` (the admin API).
    pub(crate) fn post_octets(
        &self,
        path: &str,
        body: Vec<u8>,
        bearer: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(self.endpoint(path))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .bearer_auth(bearer)
            .body(body)
    }

    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.endpoint(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let capped = policy.backoff(30);
            assert!(capped >= Duration::from_millis(400) && capped <= Duration::from_millis(800));
        }
    }

    #[test]
    fn bad_root_certificates_are_refused() {
        let base = url::Url::parse("https://kbs.example").unwrap();
        for bad in [
            "",
            "garbage",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        ] {
            let err = Transport::new(
                &base,
                &[bad.to_string()],
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .unwrap_err();
            assert!(
                matches!(err, Error::InvalidCertificate(_)),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn endpoint_joins_without_double_slashes() {
        let base = url::Url::parse("http://127.0.0.1:8080/").unwrap();
        let transport =
            Transport::new(&base, &[], Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        assert_eq!(
            transport.endpoint("resource/default/key/1"),
            "http://127.0.0.1:8080/kbs/v0/resource/default/key/1"
        );
        let prefixed = url::Url::parse("https://proxy.example/tenant-a/").unwrap();
        let transport = Transport::new(
            &prefixed,
            &[],
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            transport.endpoint("auth"),
            "https://proxy.example/tenant-a/kbs/v0/auth"
        );
    }
}
