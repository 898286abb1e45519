//! Local stand-ins for cloud KMS services, written from their public API references and
//! checking each request the way the service does (signatures, time windows, replay,
//! credentials), never more leniently: a request the real service refuses is refused here
//! with the service's error code and body.
//!
//! - [`aliyun::AliyunKms`]: Alibaba Cloud KMS (a KMS instance's API, the regional
//!   OpenAPI's `GetSecretValue`, the ECS metadata server's RAM role credentials).
//! - [`ehsm::EhsmKms`]: Intel eHSM-KMS.
//!
//! And a launcher of a real emulator: [`moto::Moto`] for AWS KMS and Secrets Manager.

pub mod aliyun;
pub mod ehsm;
pub mod moto;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{body::Bytes, Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::{net::TcpListener, task::JoinHandle};

/// Largest request body read.
const MAX_BODY: usize = 1024 * 1024;

/// One request as a handler sees it.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub method: hyper::Method,
    pub uri: hyper::Uri,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Incoming {
    /// A header's value, if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A reply: status, content type, body.
pub(crate) type Reply = (u16, &'static str, Vec<u8>);

pub(crate) type Handler = Arc<dyn Fn(Incoming) -> Reply + Send + Sync>;

/// Locks `mutex`, whether or not a panicking test poisoned it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A throw-away CA and a server config for `names` (DNS names, wildcards, IP addresses).
pub(crate) fn tls(
    names: &[&str],
    ca_name: &str,
) -> Result<(String, Arc<rustls::ServerConfig>), String> {
    let err = |e: &dyn std::fmt::Display| format!("generating test certificates: {e}");
    let ca_key = KeyPair::generate().map_err(|e| err(&e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&e))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| err(&e))?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().map_err(|e| err(&e))?;
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&e))?;
    for name in names {
        leaf_params.subject_alt_names.push(match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().map_err(|e| err(&e))?),
        });
    }
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| err(&e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| err(&e))?;
    Ok((ca_cert.pem(), Arc::new(config)))
}

/// Serves `handler` on 127.0.0.1 (HTTPS with `tls`, else plain HTTP) until aborted.
pub(crate) async fn spawn(
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(async move {
        // dropping the set (when this task is aborted) aborts every connection
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let handler = handler.clone();
                    let acceptor = acceptor.clone();
                    connections.spawn(async move {
                        match acceptor {
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    serve_connection(TokioIo::new(stream), handler).await;
                                }
                            }
                            None => serve_connection(TokioIo::new(stream), handler).await,
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Ok((addr, task))
}

async fn serve_connection<I>(io: I, handler: Handler)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = req.into_parts();
            let (status, content_type, body) = match Limited::new(body, MAX_BODY).collect().await {
                Ok(body) => handler(Incoming {
                    method: parts.method,
                    uri: parts.uri,
                    headers: parts.headers,
                    body: body.to_bytes().to_vec(),
                }),
                Err(_) => (413, "text/plain", b"request too large".to_vec()),
            };
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = hyper::StatusCode::from_u16(status)
                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// Percent-decodes `text` (`+` stays `+`, as the OpenAPI encodes spaces as `%20`).
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Seconds since the epoch of a `YYYY-MM-DDTHH:MM:SS[.fff]Z` UTC timestamp.
pub(crate) fn parse_iso8601(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let time = time.split('.').next()?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || *ss > 60 {
        return None;
    }
    // days-from-civil (Howard Hinnant)
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Seconds since the epoch now, shifted by `skew`.
pub(crate) fn now_secs(skew: i64) -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        + skew
}

/// A fresh random hex id.
pub(crate) fn random_hex(bytes: usize) -> String {
    use rand_core::RngCore as _;
    let mut buf = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_parses_as_date_does() {
        // `date -u -d 2024-03-05T09:08:07Z +%s`
        assert_eq!(parse_iso8601("2024-03-05T09:08:07Z"), Some(1_709_629_687));
        assert_eq!(
            parse_iso8601("2024-03-05T09:08:07.123Z"),
            Some(1_709_629_687)
        );
        assert_eq!(parse_iso8601("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2024-03-05T09:08:07",
            "2024-13-05T09:08:07Z",
            "x",
            "2024-03-05 09:08:07Z",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2A~").as_deref(), Some("a b*~"));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%ZZ"), None);
    }
}
