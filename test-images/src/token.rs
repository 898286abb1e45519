//! A bearer-token server for the registry's `auth: token` mode (the docker token
//! protocol): `GET /token?service=…&scope=repository:<name>:<actions>` with HTTP basic
//! credentials returns `{"token": <JWT>}`, an ES256 JWT whose `x5c` certificate chains to
//! the CA the registry trusts (`rootcertbundle`). Runs on its own thread until dropped.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;

use crate::error::{Error, Result};

/// Issuer name written into tokens and the registry config.
pub(crate) const ISSUER: &str = "test-images-token-issuer";
/// Service name of the registry.
pub(crate) const SERVICE: &str = "test-images-registry";

struct Signing {
    key: p256::ecdsa::SigningKey,
    leaf_der_b64: String,
    user: String,
    password: String,
}

/// A running token server; stopped when dropped.
#[derive(Debug)]
pub(crate) struct TokenServer {
    addr: SocketAddr,
    ca_pem: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signing {
    fn token(&self, scope: Option<&str>) -> String {
        let access: Vec<serde_json::Value> = scope
            .and_then(|s| {
                let rest = s.strip_prefix("repository:")?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(json!({"type": "repository", "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .into_iter()
            .collect();
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [self.leaf_der_b64]});
        let t = now();
        let claims = json!({
            "iss": ISSUER, "sub": self.user, "aud": SERVICE,
            "exp": t + 300, "nbf": t.saturating_sub(60), "iat": t,
            "jti": format!("{t}-{}", access.len()), "access": access,
        });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature: p256::ecdsa::Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64url(&signature.to_bytes()))
    }

    fn authorized(&self, header: Option<&str>) -> bool {
        let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        decoded == format!("{}:{}", self.user, self.password).as_bytes()
    }
}

fn handle(signing: &Signing, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let auth = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if request.uri().path() != "/token" || !signing.authorized(auth) {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
        )));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let scope = request
        .uri()
        .query()
        .and_then(|q| url_decode_param(q, "scope"));
    let token = signing.token(scope.as_deref());
    let body = json!({"token": token, "access_token": token, "expires_in": 300});
    Response::new(Full::new(Bytes::from(body.to_string())))
}

fn url_decode_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl TokenServer {
    /// Starts a token server on a free loopback port for `user`/`password`.
    pub(crate) fn start(user: &str, password: &str) -> Result<Self> {
        let err = |e: rcgen::Error| Error::Certificate(e.to_string());
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test-images token CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().map_err(err)?;
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "test-images token signer");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&leaf_key.serialize_der())
            .map_err(|e| Error::Certificate(format!("token signing key: {e}")))?;
        let signing = std::sync::Arc::new(Signing {
            key,
            leaf_der_b64: base64::engine::general_purpose::STANDARD.encode(leaf.der()),
            user: user.to_string(),
            password: password.to_string(),
        });

        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let signing = signing.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |request| {
                                    let response = handle(&signing, &request);
                                    async move { Ok::<_, std::convert::Infallible>(response) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        Ok(Self {
            addr,
            ca_pem: ca_cert.pem(),
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/token`
    pub(crate) fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The CA the registry must trust for tokens.
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parameters_are_url_decoded() {
        assert_eq!(
            url_decode_param(
                "service=x&scope=repository%3Atest%2Fplain%3Apull%2Cpush",
                "scope"
            )
            .as_deref(),
            Some("repository:test/plain:pull,push")
        );
        assert_eq!(url_decode_param("a=1", "scope"), None);
    }
}
