//! Test peers: small ttRPC attestation agent and CDH servers built from `protos` that answer
//! fixed data and count their calls, the real router on 127.0.0.1:0, and a raw HTTP/1
//! client over a `TcpStream`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use api_server_rest::{serve, BackendConfig, Backends, Features, Router};
use protos::{
    api::{GetResourceRequest, GetResourceResponse},
    api_ttrpc::{create_get_resource_service, GetResourceService},
    attestation_agent::{
        ExtendRuntimeMeasurementRequest, ExtendRuntimeMeasurementResponse,
        GetAdditionalEvidenceRequest, GetAdditionalTeesRequest, GetAdditionalTeesResponse,
        GetEvidenceRequest, GetEvidenceResponse, GetTeeTypeRequest, GetTeeTypeResponse,
        GetTokenRequest, GetTokenResponse, RuntimeMeasurementResult,
    },
    attestation_agent_ttrpc::{create_attestation_agent_service, AttestationAgentService},
    server::RunningServer,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};
use ttrpc::r#async::TtrpcContext;

/// A daemon status message that must never reach an HTTP client.
pub(crate) const INTERNAL_DETAIL: &str = "secret-internal-detail /var/lib/kbs/private.key";

/// Runtime data that makes the fake agent wait this long before answering.
pub(crate) const SLOW_RUNTIME_DATA: &str = "slow";
pub(crate) const SLOW_DELAY: Duration = Duration::from_millis(600);

fn status(code: ttrpc::Code, message: &str) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.to_string()))
}

/// The JWT in the fake agent's `kbs` token reply.
pub(crate) const KBS_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTl9.c2lnbmF0dXJl";
/// The TEE private key in the fake agent's `kbs` token reply.
pub(crate) const TEE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTEEKEY\n-----END PRIVATE KEY-----\n";
/// The fake agent's `coco_as` token.
pub(crate) const COCO_AS_TOKEN: &[u8] = b"coco-as token \x00\xff";

/// The fake agent's `kbs` token reply: upstream's shape, private key included.
pub(crate) fn kbs_token_reply() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"token": KBS_TOKEN, "tee_keypair": TEE_KEY_PEM}))
        .unwrap()
}

/// The message the fake agent refuses the event domain [`REFUSED_DOMAIN`] with.
pub(crate) const REFUSED_MESSAGE: &str =
    "ExtendRuntimeMeasurement failed: the event domain contains whitespace at byte 2";
/// Event domains that make the fake agent answer other than OK.
pub(crate) const NOT_ENABLED_DOMAIN: &str = "not-enabled";
pub(crate) const NOT_SUPPORTED_DOMAIN: &str = "not-supported";
pub(crate) const REFUSED_DOMAIN: &str = "refused";
pub(crate) const FAILING_DOMAIN: &str = "fail";
pub(crate) const UNKNOWN_RESULT_DOMAIN: &str = "unknown-result";
/// A result value the protocol does not define.
pub(crate) const UNKNOWN_RESULT: i32 = 7;

/// Every ExtendRuntimeMeasurement request a fake agent received.
pub(crate) type Extends = Arc<std::sync::Mutex<Vec<ExtendRuntimeMeasurementRequest>>>;

/// Attestation agent answering fixed data derived from the request.
#[derive(Default)]
pub(crate) struct FakeAa {
    pub calls: Arc<AtomicUsize>,
    /// every ExtendRuntimeMeasurement request, as received
    pub extends: Extends,
    /// GetTeeType fails with INTERNAL when set
    pub broken_tee: bool,
    /// answered to GetToken("kbs") instead of [`kbs_token_reply`]
    pub kbs_reply: Option<Vec<u8>>,
}

#[async_trait::async_trait]
impl AttestationAgentService for FakeAa {
    async fn get_evidence(
        &self,
        _ctx: &TtrpcContext,
        req: GetEvidenceRequest,
    ) -> ttrpc::Result<GetEvidenceResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if req.RuntimeData == SLOW_RUNTIME_DATA.as_bytes() {
            tokio::time::sleep(SLOW_DELAY).await;
        }
        if req.RuntimeData == b"fail" {
            return Err(status(ttrpc::Code::INTERNAL, INTERNAL_DETAIL));
        }
        let mut evidence = b"evidence:".to_vec();
        evidence.extend_from_slice(&req.RuntimeData);
        Ok(GetEvidenceResponse {
            Evidence: evidence,
            ..Default::default()
        })
    }

    async fn get_additional_evidence(
        &self,
        _ctx: &TtrpcContext,
        req: GetAdditionalEvidenceRequest,
    ) -> ttrpc::Result<GetEvidenceResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // no additional devices for "none"
        let evidence = if req.RuntimeData == b"none" {
            Vec::new()
        } else {
            let mut evidence = b"additional:".to_vec();
            evidence.extend_from_slice(&req.RuntimeData);
            evidence
        };
        Ok(GetEvidenceResponse {
            Evidence: evidence,
            ..Default::default()
        })
    }

    async fn get_token(
        &self,
        _ctx: &TtrpcContext,
        req: GetTokenRequest,
    ) -> ttrpc::Result<GetTokenResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let token = match req.TokenType.as_str() {
            "kbs" => self.kbs_reply.clone().unwrap_or_else(kbs_token_reply),
            "coco_as" => COCO_AS_TOKEN.to_vec(),
            _ => return Err(status(ttrpc::Code::INTERNAL, INTERNAL_DETAIL)),
        };
        Ok(GetTokenResponse {
            Token: token,
            ..Default::default()
        })
    }

    async fn extend_runtime_measurement(
        &self,
        _ctx: &TtrpcContext,
        req: ExtendRuntimeMeasurementRequest,
    ) -> ttrpc::Result<ExtendRuntimeMeasurementResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.extends.lock().unwrap().push(req.clone());
        let result = match req.Domain.as_str() {
            SLOW_RUNTIME_DATA => {
                tokio::time::sleep(SLOW_DELAY).await;
                RuntimeMeasurementResult::OK.into()
            }
            NOT_ENABLED_DOMAIN => RuntimeMeasurementResult::NOT_ENABLED.into(),
            NOT_SUPPORTED_DOMAIN => RuntimeMeasurementResult::NOT_SUPPORTED.into(),
            REFUSED_DOMAIN => return Err(status(ttrpc::Code::INVALID_ARGUMENT, REFUSED_MESSAGE)),
            FAILING_DOMAIN => return Err(status(ttrpc::Code::INTERNAL, INTERNAL_DETAIL)),
            UNKNOWN_RESULT_DOMAIN => protobuf::EnumOrUnknown::from_i32(UNKNOWN_RESULT),
            _ => RuntimeMeasurementResult::OK.into(),
        };
        Ok(ExtendRuntimeMeasurementResponse {
            Result: result,
            ..Default::default()
        })
    }

    async fn get_tee_type(
        &self,
        _ctx: &TtrpcContext,
        _req: GetTeeTypeRequest,
    ) -> ttrpc::Result<GetTeeTypeResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.broken_tee {
            return Err(status(ttrpc::Code::INTERNAL, INTERNAL_DETAIL));
        }
        Ok(GetTeeTypeResponse {
            tee: "sample".into(),
            ..Default::default()
        })
    }

    async fn get_additional_tees(
        &self,
        _ctx: &TtrpcContext,
        _req: GetAdditionalTeesRequest,
    ) -> ttrpc::Result<GetAdditionalTeesResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(GetAdditionalTeesResponse {
            additional_tees: vec!["nvidia".into(), "tpm".into()],
            ..Default::default()
        })
    }
}

/// CDH knowing `kbs:///default/key/1`, failing internally for `.../internal`, NOT_FOUND
/// for anything else.
#[derive(Default)]
pub(crate) struct FakeCdh {
    pub calls: Arc<AtomicUsize>,
    /// every ResourcePath asked for
    pub asked: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl GetResourceService for FakeCdh {
    async fn get_resource(
        &self,
        _ctx: &TtrpcContext,
        req: GetResourceRequest,
    ) -> ttrpc::Result<GetResourceResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push(req.ResourcePath.clone());
        match req.ResourcePath.as_str() {
            "kbs:///default/key/1" => Ok(GetResourceResponse {
                Resource: b"secret-1\x00\xff".to_vec(),
                ..Default::default()
            }),
            "kbs:///my%20repo/key/t%3F" => Ok(GetResourceResponse {
                Resource: b"spaced".to_vec(),
                ..Default::default()
            }),
            "kbs:///default/key/internal" => Err(status(ttrpc::Code::INTERNAL, INTERNAL_DETAIL)),
            _ => Err(status(ttrpc::Code::NOT_FOUND, "no such resource")),
        }
    }
}

pub(crate) fn socket_addr(dir: &Path, name: &str) -> String {
    format!("unix://{}/{name}.sock", dir.display())
}

pub(crate) async fn start_aa(addr: &str, aa: FakeAa) -> RunningServer {
    protos::server::start(addr, [create_attestation_agent_service(Arc::new(aa))])
        .await
        .unwrap()
}

pub(crate) async fn start_cdh(addr: &str, cdh: FakeCdh) -> RunningServer {
    protos::server::start(addr, [create_get_resource_service(Arc::new(cdh))])
        .await
        .unwrap()
}

/// Both fake daemons on sockets in a temporary directory, with their counters.
pub(crate) struct Daemons {
    pub dir: tempfile::TempDir,
    pub aa_addr: String,
    pub cdh_addr: String,
    pub aa: Option<RunningServer>,
    pub cdh: Option<RunningServer>,
    pub aa_calls: Arc<AtomicUsize>,
    pub cdh_calls: Arc<AtomicUsize>,
    pub cdh_asked: Arc<std::sync::Mutex<Vec<String>>>,
    pub aa_extends: Extends,
}

impl Daemons {
    pub(crate) async fn start() -> Self {
        Self::start_with(FakeAa::default()).await
    }

    pub(crate) async fn start_with(aa: FakeAa) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let aa_addr = socket_addr(dir.path(), "aa");
        let cdh_addr = socket_addr(dir.path(), "cdh");
        let cdh = FakeCdh::default();
        let (aa_calls, cdh_calls, cdh_asked, aa_extends) = (
            aa.calls.clone(),
            cdh.calls.clone(),
            cdh.asked.clone(),
            aa.extends.clone(),
        );
        Self {
            aa: Some(start_aa(&aa_addr, aa).await),
            cdh: Some(start_cdh(&cdh_addr, cdh).await),
            dir,
            aa_addr,
            cdh_addr,
            aa_calls,
            cdh_calls,
            cdh_asked,
            aa_extends,
        }
    }

    pub(crate) fn config(&self) -> BackendConfig {
        BackendConfig {
            aa_addr: self.aa_addr.clone(),
            cdh_addr: self.cdh_addr.clone(),
            timeout: Duration::from_secs(10),
        }
    }

    pub(crate) fn calls(&self) -> (usize, usize) {
        (
            self.aa_calls.load(Ordering::SeqCst),
            self.cdh_calls.load(Ordering::SeqCst),
        )
    }
}

/// The real router served on 127.0.0.1:0.
pub(crate) struct Shim {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Shim {
    pub(crate) async fn start(features: Features, config: BackendConfig) -> Self {
        Self::start_router(Router::new(features, Backends::new(config))).await
    }

    pub(crate) async fn start_router(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Arc::new(router);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) async fn get(&self, target: &str) -> HttpResponse {
        request(self.addr, "GET", target).await
    }

    /// `POST` with a JSON body.
    pub(crate) async fn post_json(&self, target: &str, body: &[u8]) -> HttpResponse {
        post(self.addr, target, Some("application/json"), body).await
    }

    /// Signals the stop and waits until `serve` returned.
    pub(crate) async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task.take().unwrap())
            .await
            .expect("serve did not return after the stop signal")
            .unwrap();
    }
}

#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body is exactly as long as announced.
    pub(crate) fn check_length(&self) {
        if let Some(length) = self.header("content-length") {
            assert_eq!(length.parse::<usize>().unwrap(), self.body.len());
        }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// One HTTP/1.1 request on a fresh connection, exactly as `target` is written.
pub(crate) async fn request(addr: SocketAddr, method: &str, target: &str) -> HttpResponse {
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let response = raw_request_unchecked(addr, head.as_bytes()).await;
    // a response to HEAD announces the length of a body it does not carry
    if method != "HEAD" {
        response.check_length();
    }
    response
}

/// One HTTP/1.1 `POST` with a `Content-Length` body on a fresh connection.
pub(crate) async fn post(
    addr: SocketAddr,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let mut bytes = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(content_type) = content_type {
        bytes.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    raw_request(addr, &bytes).await
}

/// Writes `bytes` and parses the response (the server closes after it).
pub(crate) async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let response = raw_request_unchecked(addr, bytes).await;
    response.check_length();
    response
}

async fn raw_request_unchecked(addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("no complete response")
        .unwrap();
    parse_response(&raw)
}

pub(crate) fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let body = raw[split + 4..].to_vec();
    HttpResponse {
        status,
        headers,
        body,
    }
}
