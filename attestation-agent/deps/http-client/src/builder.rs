//! The reqwest client built on the rustls configuration.

use std::net::SocketAddr;
use std::time::Duration;

use crate::tls::{client_config, Trust};
use crate::{error_chain, Error};

/// Options of an HTTP(S) client. Unset limits are reqwest's (none); proxies from the
/// environment are used unless [`ClientBuilder::no_system_proxy`] is called.
#[derive(Debug, Default)]
#[must_use]
pub struct ClientBuilder {
    trust: Trust,
    user_agent: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    no_redirects: bool,
    https_only: bool,
    no_system_proxy: bool,
    proxies: Vec<reqwest::Proxy>,
    resolve: Vec<(String, SocketAddr)>,
    pool_max_idle_per_host: Option<usize>,
}

impl ClientBuilder {
    /// A client trusting Mozilla's roots.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts these PEM texts, each one or more `CERTIFICATE` blocks.
    pub fn extra_roots<S: AsRef<str>>(mut self, pems: impl IntoIterator<Item = S>) -> Self {
        self.trust
            .extra_roots
            .extend(pems.into_iter().map(|p| p.as_ref().to_string()));
        self
    }

    /// Trusts only the extra roots (a private CA), not Mozilla's.
    pub fn only_extra_roots(mut self) -> Self {
        self.trust.no_webpki = true;
        self
    }

    /// Accepts any server certificate (for registries the operator marked insecure); the
    /// handshake signatures are still checked.
    pub fn accept_any_certificate(mut self) -> Self {
        self.trust.accept_any = true;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, value: &str) -> Self {
        self.user_agent = Some(value.to_string());
        self
    }

    /// Limit of a whole request, connection and body included.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Limit for connecting (TCP and TLS).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// Limit between two reads of a response.
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = Some(limit);
        self
    }

    /// Redirects are returned to the caller instead of being followed.
    pub fn no_redirects(mut self) -> Self {
        self.no_redirects = true;
        self
    }

    /// Plain `http://` URLs are refused.
    pub fn https_only(mut self) -> Self {
        self.https_only = true;
        self
    }

    /// Ignores `HTTP(S)_PROXY` and `NO_PROXY` of the environment (only [`Self::proxy`]).
    pub fn no_system_proxy(mut self) -> Self {
        self.no_system_proxy = true;
        self
    }

    /// Sends matching requests through `proxy`.
    pub fn proxy(mut self, proxy: reqwest::Proxy) -> Self {
        self.proxies.push(proxy);
        self
    }

    /// Connects to `addr` for `host` (the certificate must still name `host`).
    pub fn resolve(mut self, host: &str, addr: SocketAddr) -> Self {
        self.resolve.push((host.to_string(), addr));
        self
    }

    /// Idle connections kept per host.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = Some(max);
        self
    }

    /// The client; fails on a bad root certificate or a configuration reqwest refuses.
    pub fn build(self) -> Result<reqwest::Client, Error> {
        let mut builder =
            reqwest::Client::builder().tls_backend_preconfigured(client_config(&self.trust)?);
        if let Some(agent) = &self.user_agent {
            builder = builder.user_agent(agent);
        }
        if let Some(limit) = self.timeout {
            builder = builder.timeout(limit);
        }
        if let Some(limit) = self.connect_timeout {
            builder = builder.connect_timeout(limit);
        }
        if let Some(limit) = self.read_timeout {
            builder = builder.read_timeout(limit);
        }
        if self.no_redirects {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        if self.https_only {
            builder = builder.https_only(true);
        }
        if self.no_system_proxy {
            builder = builder.no_proxy();
        }
        for proxy in self.proxies {
            builder = builder.proxy(proxy);
        }
        for (host, addr) in &self.resolve {
            builder = builder.resolve(host, *addr);
        }
        if let Some(max) = self.pool_max_idle_per_host {
            builder = builder.pool_max_idle_per_host(max);
        }
        builder.build().map_err(|e| Error::Client(error_chain(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_builds() {
        let client = ClientBuilder::new()
            .user_agent("test/1")
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(2))
            .no_redirects()
            .https_only()
            .no_system_proxy()
            .proxy(reqwest::Proxy::https("http://127.0.0.1:3128").unwrap())
            .resolve("kms.example", "127.0.0.1:443".parse().unwrap())
            .pool_max_idle_per_host(2)
            .accept_any_certificate()
            .build();
        assert!(client.is_ok(), "{client:?}");
    }

    #[test]
    fn a_bad_root_fails_the_build_with_its_kind() {
        let err = ClientBuilder::new()
            .extra_roots(["not a pem"])
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::NoCertificate { index: 0 }), "{err}");
        let err = ClientBuilder::new().only_extra_roots().build().unwrap_err();
        assert!(matches!(err, Error::NoRoots), "{err}");
        assert!(!Error::Client("x".into()).is_certificate());
    }

    #[tokio::test]
    async fn https_only_refuses_plain_http_before_connecting() {
        let client = ClientBuilder::new().https_only().build().unwrap();
        let err = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
        assert!(err.is_builder(), "{}", error_chain(&err));
    }
}
