//! Azure Instance Metadata Service (IMDS, `http://169.254.169.254`): the VCEK of the SNP
//! host, and TD quotes for TDREPORTs. Behind [`Imds`] so tests replay recorded answers and
//! never reach the network.

use std::{fmt, net::SocketAddr, time::Duration};

use async_trait::async_trait;
use base64::{
    alphabet,
    engine::{
        general_purpose::URL_SAFE_NO_PAD, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig,
    },
    Engine,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Bytes, Method, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// The VCEK endpoint (THIM).
pub(crate) const VCEK_PATH: &str = "/metadata/THIM/amd/certification";
/// The TD quote endpoint.
pub(crate) const TD_QUOTE_PATH: &str = "/acc/tdquote";
/// IMDS answers are small; anything bigger is refused.
const MAX_RESPONSE: usize = 1 << 20;

/// Base64url that accepts padded and unpadded input.
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an IMDS request failed.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// Connecting, sending or receiving failed.
    #[error("IMDS request to {path} failed: {reason}")]
    Http {
        /// the endpoint
        path: &'static str,
        /// what failed
        reason: String,
    },
    /// IMDS answered with an error status.
    #[error("IMDS answered {status} for {path}: {body}")]
    Status {
        /// the endpoint
        path: &'static str,
        /// HTTP status
        status: u16,
        /// the start of the body
        body: String,
    },
    /// The answer is not what the endpoint documents.
    #[error("IMDS answer from {path} is malformed: {reason}")]
    Malformed {
        /// the endpoint
        path: &'static str,
        /// what is wrong
        reason: String,
    },
}

/// The IMDS calls the Azure attesters make.
#[async_trait]
pub trait Imds: Send + Sync + fmt::Debug {
    /// The VCEK certificate of this SNP host, PEM.
    async fn vcek_pem(&self) -> Result<String, ImdsError>;
    /// A TD quote for a TDREPORT.
    async fn td_quote(&self, td_report: &[u8]) -> Result<Vec<u8>, ImdsError>;
}

/// The real IMDS over HTTP.
#[derive(Debug, Clone)]
pub(crate) struct AzureImds {
    address: SocketAddr,
    timeout: Duration,
}

impl Default for AzureImds {
    /// IMDS as every Azure VM sees it: `169.254.169.254:80`.
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([169, 254, 169, 254], 80)),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
struct Certificates {
    #[serde(rename = "vcekCert")]
    vcek_cert: String,
}

#[derive(Deserialize)]
struct QuoteResponse {
    quote: String,
}

impl AzureImds {
    async fn request(
        &self,
        method: Method,
        path: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ImdsError> {
        let http = |reason: String| ImdsError::Http { path, reason };
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(self.address)
                .await
                .map_err(|e| http(format!("connect {}: {e}", self.address)))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| http(e.to_string()))?;
            tokio::spawn(connection);
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, "169.254.169.254")
                .header("Metadata", "true");
            if body.is_some() {
                request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            let request = request
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| http(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| http(e.to_string()))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| http(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_string();
                return Err(ImdsError::Status {
                    path,
                    status: status.as_u16(),
                    body: text,
                });
            }
            Ok(bytes.to_vec())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| http(format!("no answer within {:?}", self.timeout)))?
    }
}

#[async_trait]
impl Imds for AzureImds {
    async fn vcek_pem(&self) -> Result<String, ImdsError> {
        let body = self.request(Method::GET, VCEK_PATH, None).await?;
        let certificates: Certificates =
            serde_json::from_slice(&body).map_err(|e| ImdsError::Malformed {
                path: VCEK_PATH,
                reason: e.to_string(),
            })?;
        Ok(certificates.vcek_cert)
    }

    async fn td_quote(&self, td_report: &[u8]) -> Result<Vec<u8>, ImdsError> {
        let request = serde_json::json!({ "report": URL_SAFE_NO_PAD.encode(td_report) });
        let body = self
            .request(
                Method::POST,
                TD_QUOTE_PATH,
                Some(request.to_string().into_bytes()),
            )
            .await?;
        let response: QuoteResponse =
            serde_json::from_slice(&body).map_err(|e| ImdsError::Malformed {
                path: TD_QUOTE_PATH,
                reason: e.to_string(),
            })?;
        URL_SAFE_ANY_PADDING
            .decode(response.quote.trim())
            .map_err(|e| ImdsError::Malformed {
                path: TD_QUOTE_PATH,
                reason: format!("quote is not base64url: {e}"),
            })
    }
}

/// The DER of the first CERTIFICATE in PEM text.
pub(crate) fn pem_certificate_der(pem: &str) -> Result<Vec<u8>, String> {
    let begin = pem
        .find("-----BEGIN CERTIFICATE-----")
        .ok_or("no PEM CERTIFICATE block")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = pem[begin..]
        .find(end_marker)
        .map(|at| begin + at + end_marker.len())
        .ok_or("unterminated PEM CERTIFICATE block")?;
    let (label, der) = pem_rfc7468::decode_vec(&pem.as_bytes()[begin..end])
        .map_err(|e| format!("bad PEM: {e}"))?;
    if label != "CERTIFICATE" {
        return Err(format!("PEM label is {label}, not CERTIFICATE"));
    }
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_certificates_decode_to_der() {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/evidence/az-snp-vtpm/vcek.pem"
        ))
        .unwrap();
        let der = pem_certificate_der(&pem).unwrap();
        assert_eq!(der[0], 0x30, "a DER SEQUENCE");
        assert!(der.len() > 1000);
        assert!(pem_certificate_der("junk").is_err());
        assert!(pem_certificate_der("-----BEGIN CERTIFICATE-----\nAAAA").is_err());
        assert!(pem_certificate_der(
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"
        )
        .is_err());
    }

    #[test]
    fn quotes_decode_with_or_without_padding() {
        assert_eq!(
            URL_SAFE_ANY_PADDING.decode("_-8=").unwrap(),
            vec![0xff, 0xef]
        );
        assert_eq!(
            URL_SAFE_ANY_PADDING.decode("_-8").unwrap(),
            vec![0xff, 0xef]
        );
    }

    /// A local HTTP server standing in for IMDS (loopback only; no network).
    async fn serve_once(
        status: u16,
        body: &'static str,
    ) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 8192];
            let n = socket.read(&mut request).await.unwrap();
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..n]).to_string()
        });
        (address, task)
    }

    #[tokio::test]
    async fn the_http_client_speaks_the_documented_endpoints() {
        let (address, request) =
            serve_once(200, r#"{"vcekCert":"PEM","certificateChain":"x"}"#).await;
        let imds = AzureImds {
            address,
            timeout: Duration::from_secs(5),
        };
        assert_eq!(imds.vcek_pem().await.unwrap(), "PEM");
        let request = request.await.unwrap();
        assert!(
            request.starts_with("GET /metadata/THIM/amd/certification HTTP/1.1"),
            "{request}"
        );
        assert!(
            request.to_lowercase().contains("metadata: true"),
            "{request}"
        );

        let (address, request) = serve_once(200, r#"{"quote":"AQID"}"#).await;
        let imds = AzureImds {
            address,
            timeout: Duration::from_secs(5),
        };
        assert_eq!(imds.td_quote(&[0xfb, 0xff]).await.unwrap(), vec![1, 2, 3]);
        let request = request.await.unwrap();
        assert!(
            request.starts_with("POST /acc/tdquote HTTP/1.1"),
            "{request}"
        );
        assert!(request.ends_with(r#"{"report":"-_8"}"#), "{request}");

        let (address, _) = serve_once(404, "nope").await;
        let imds = AzureImds {
            address,
            timeout: Duration::from_secs(5),
        };
        let err = imds.vcek_pem().await.unwrap_err();
        assert!(
            matches!(err, ImdsError::Status { status: 404, .. }),
            "{err}"
        );
        let (address, _) = serve_once(200, "not json").await;
        let imds = AzureImds {
            address,
            timeout: Duration::from_secs(5),
        };
        let err = imds.td_quote(&[1]).await.unwrap_err();
        assert!(matches!(err, ImdsError::Malformed { .. }), "{err}");
    }
}
