//! `POST /aa/aael`: what reaches the attestation agent, how its answers map to HTTP, and
//! every request refused before it is asked — against the in-test ttRPC agent of
//! `common`, and end to end against the real `attestation-agent` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{net::SocketAddr, process::Command, sync::atomic::Ordering, time::Duration};

use api_server_rest::{BackendConfig, Features, MAX_AAEL_BODY};
use common::*;
use serde_json::{json, Value};
use testkit::process::{workspace_bin, Daemon as Process, Ready};

const AAEL: &str = "/aa/aael";

fn event(domain: &str) -> Vec<u8> {
    json!({"domain": domain, "operation": "o", "content": "c"})
        .to_string()
        .into_bytes()
}

/// The JSON answer of `/aa/aael`, checked to be JSON.
fn answer(resp: &HttpResponse) -> Value {
    assert_eq!(resp.header("content-type"), Some("application/json"));
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.text()))
}

/// A refusal: `{"success":"false","message":...}` with `message` containing `says`.
fn assert_refused(resp: &HttpResponse, status: u16, says: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    let body = answer(resp);
    assert_eq!(body["success"], "false", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(says), "{message:?} does not say {says:?}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn the_event_is_forwarded_exactly() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::Attestation, daemons.config()).await;

    for body in [
        json!({"domain": "github.com/confidential-containers", "operation": "PullImage",
               "content": "{\"image\":\"docker.io/library/busybox:latest\"}"}),
        json!({"content": "spaces  and é \u{1F600}", "operation": "op", "domain": "d",
               "register_index": 0}),
        json!({"domain": "d", "operation": "o", "content": "", "register_index": 17}),
        json!({"domain": "d", "operation": "o", "content": "c", "register_index": u64::MAX}),
    ] {
        let resp = shim.post_json(AAEL, body.to_string().as_bytes()).await;
        assert_eq!(resp.status, 200, "{body}: {}", resp.text());
        // upstream's exact shape
        assert_eq!(resp.text(), r#"{"success":"true"}"#);
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }

    let got = daemons.aa_extends.lock().unwrap().clone();
    let fields: Vec<(&str, &str, &str, Option<u64>)> = got
        .iter()
        .map(|r| {
            (
                r.Domain.as_str(),
                r.Operation.as_str(),
                r.Content.as_str(),
                r.RegisterIndex,
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            (
                "github.com/confidential-containers",
                "PullImage",
                "{\"image\":\"docker.io/library/busybox:latest\"}",
                // absent stays absent: the agent uses its configured register
                None
            ),
            // a present 0 arrives as present (proto3 optional), not as "unset"
            ("d", "op", "spaces  and é \u{1F600}", Some(0)),
            ("d", "o", "", Some(17)),
            ("d", "o", "c", Some(u64::MAX)),
        ]
    );
    assert_eq!(daemons.calls(), (4, 0));
    shim.stop().await;
}

#[tokio::test]
async fn agent_answers_map_to_http() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;

    let resp = shim.post_json(AAEL, &event(NOT_ENABLED_DOMAIN)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.text(),
        r#"{"success":"false","message":"runtime measurement is not enabled"}"#
    );

    let resp = shim.post_json(AAEL, &event(NOT_SUPPORTED_DOMAIN)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.text(),
        r#"{"success":"false","message":"runtime measurement is not supported by this TEE"}"#
    );

    // INVALID_ARGUMENT describes the caller's own event: 400 with the agent's message
    let resp = shim.post_json(AAEL, &event(REFUSED_DOMAIN)).await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        answer(&resp),
        json!({"success": "false", "message": REFUSED_MESSAGE})
    );

    // anything else: a short fixed 500, the agent's detail only logged
    for domain in [FAILING_DOMAIN, UNKNOWN_RESULT_DOMAIN] {
        let resp = shim.post_json(AAEL, &event(domain)).await;
        assert_eq!(resp.status, 500, "{domain}");
        assert_eq!(
            answer(&resp),
            json!({"success": "false", "message": "Failed to record the runtime measurement"}),
            "{domain}"
        );
        assert!(!resp.text().contains(INTERNAL_DETAIL));
        assert!(!resp.text().contains(&UNKNOWN_RESULT.to_string()));
    }
    assert_eq!(daemons.calls(), (5, 0));
    shim.stop().await;
}

#[tokio::test]
async fn an_agent_that_is_down_gives_a_500() {
    let mut daemons = Daemons::start().await;
    daemons.aa.take().unwrap().stop().await.unwrap();
    let shim = Shim::start(Features::All, daemons.config()).await;
    let resp = shim.post_json(AAEL, &event("d")).await;
    assert_eq!(resp.status, 500);
    assert_eq!(
        answer(&resp),
        json!({"success": "false", "message": "Failed to record the runtime measurement"})
    );
    assert!(!resp
        .text()
        .contains(&daemons.dir.path().display().to_string()));
    shim.stop().await;
}

#[tokio::test]
async fn a_measurement_is_sent_once_and_a_restarted_agent_is_reached() {
    let mut daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    // the shared connection is open ...
    assert_eq!(shim.get("/aa/evidence?runtime_data=1").await.status, 200);
    // ... when the agent restarts on the same socket
    daemons.aa.take().unwrap().stop().await.unwrap();
    let new_aa = FakeAa::default();
    let (new_calls, new_extends) = (new_aa.calls.clone(), new_aa.extends.clone());
    let aa = start_aa(&daemons.aa_addr, new_aa).await;

    let resp = shim.post_json(AAEL, &event("after-restart")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(new_calls.load(Ordering::SeqCst), 1);
    assert_eq!(new_extends.lock().unwrap()[0].Domain, "after-restart");
    assert_eq!(daemons.calls(), (1, 0));
    shim.stop().await;
    aa.stop().await.unwrap();
}

/// An "agent" that reads one request per connection and hangs up without answering:
/// the caller cannot know whether it acted.
#[tokio::test]
async fn a_measurement_lost_with_its_connection_is_not_resent() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aa.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = requests.clone();
    let agent = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            // a ttRPC frame header is 10 bytes
            let mut header = [0u8; 10];
            if stream.read_exact(&mut header).await.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            drop(stream);
        }
    });
    let config = BackendConfig {
        aa_addr: format!("unix://{}", socket.display()),
        cdh_addr: format!("unix://{}/no-cdh.sock", dir.path().display()),
        timeout: Duration::from_secs(10),
    };
    let shim = Shim::start(Features::Attestation, config).await;
    let resp = shim.post_json(AAEL, &event("d")).await;
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert_eq!(
        answer(&resp),
        json!({"success": "false", "message": "Failed to record the runtime measurement"})
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    // a reading call on the same kind of failure is retried once, as before
    let resp = shim.get("/aa/evidence?runtime_data=x").await;
    assert_eq!(resp.status, 500);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    shim.stop().await;
    agent.abort();
}

#[tokio::test]
async fn a_slow_measurement_times_out_and_is_not_repeated() {
    let daemons = Daemons::start().await;
    let config = BackendConfig {
        timeout: Duration::from_millis(200),
        ..daemons.config()
    };
    let shim = Shim::start(Features::All, config).await;
    let resp = shim.post_json(AAEL, &event(SLOW_RUNTIME_DATA)).await;
    assert_eq!(resp.status, 500);
    assert_eq!(answer(&resp)["success"], "false");
    // let the agent finish what it got; nothing else arrives
    tokio::time::sleep(SLOW_DELAY).await;
    assert_eq!(daemons.calls(), (1, 0));
    shim.stop().await;
}

#[tokio::test]
async fn only_post_is_served() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    for method in ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        let resp = request(shim.addr, method, AAEL).await;
        assert_eq!(resp.status, 405, "{method}");
        assert_eq!(resp.header("allow"), Some("POST"), "{method}");
    }
    // the method is checked before the body
    let resp = request(shim.addr, "PUT", AAEL).await;
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // and the other endpoints still take GET only
    let resp = post(
        shim.addr,
        "/aa/evidence?runtime_data=x",
        Some("application/json"),
        &event("d"),
    )
    .await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET"));
    assert_eq!(daemons.calls(), (0, 0));
    shim.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_refused_before_the_agent() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::Attestation, daemons.config()).await;

    let good = event("d");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
    ] {
        let resp = post(shim.addr, AAEL, content_type, &good).await;
        assert_refused(&resp, 400, "Content-Type: application/json");
    }

    for (body, says) in [
        (&b""[..], "EOF while parsing"),
        (b"not json", "expected"),
        (b"[]", "expected a JSON object"),
        (b"[\"d\",\"o\",\"c\"]", "expected a JSON object"),
        (
            b"{\"domain\":\"d\",\"operation\":\"o\"}",
            "missing field `content`",
        ),
        (
            b"{\"domain\":\"d\",\"operation\":\"o\",\"content\":\"c\",\"extra\":true}",
            "unknown field `extra`",
        ),
        (
            b"{\"domain\":\"d\",\"domain\":\"e\",\"operation\":\"o\",\"content\":\"c\"}",
            "duplicate field `domain`",
        ),
        (
            b"{\"domain\":7,\"operation\":\"o\",\"content\":\"c\"}",
            "invalid type",
        ),
        (
            b"{\"domain\":\"d\",\"operation\":\"o\",\"content\":\"c\",\"register_index\":null}",
            "invalid type",
        ),
        (
            b"{\"domain\":\"d\",\"operation\":\"o\",\"content\":\"c\",\"register_index\":-1}",
            "invalid value",
        ),
        (
            b"{\"domain\":\"d\",\"operation\":\"o\",\"content\":\"c\",\"register_index\":\"1\"}",
            "invalid type",
        ),
        (
            b"{\"domain\":\"d\",\"operation\":\"o\",\"content\":\"c\"",
            "EOF",
        ),
        (
            b"{\"domain\":\"d\",\"operation\":\"o\",\"content\":\"c\"} {}",
            "trailing characters",
        ),
        (
            b"{\"domain\":\"\xff\",\"operation\":\"o\",\"content\":\"c\"}",
            "invalid unicode",
        ),
    ] {
        let resp = shim.post_json(AAEL, body).await;
        assert_refused(&resp, 400, "the request body is not an event");
        assert_refused(&resp, 400, says);
    }
    assert_eq!(daemons.calls(), (0, 0));
    shim.stop().await;
}

/// Sends `bytes` and returns the response, or `None` when the server closed the
/// connection without one it could deliver (it may stop reading an oversized body).
async fn send_unread(addr: SocketAddr, bytes: &[u8]) -> Option<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server neither answered nor closed");
    if raw.is_empty() {
        assert!(read.is_err(), "closed without an answer");
        return None;
    }
    Some(parse_response(&raw))
}

fn head(extra: &str) -> String {
    format!(
        "POST {AAEL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}\r\n"
    )
}

/// A valid event body of exactly `len` bytes.
fn event_of_len(len: usize) -> Vec<u8> {
    let frame = br#"{"domain":"d","operation":"o","content":""}"#.len();
    let body = json!({"domain": "d", "operation": "o", "content": "x".repeat(len - frame)});
    let bytes = body.to_string().into_bytes();
    assert_eq!(bytes.len(), len);
    bytes
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn body_size_is_bounded() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::Attestation, daemons.config()).await;

    // exactly the limit is read and forwarded
    let at_limit = event_of_len(MAX_AAEL_BODY);
    let resp = shim.post_json(AAEL, &at_limit).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        daemons.aa_extends.lock().unwrap()[0].Content.len(),
        MAX_AAEL_BODY - br#"{"domain":"d","operation":"o","content":""}"#.len()
    );
    // also when it arrives in chunks
    let mut bytes = head("Transfer-Encoding: chunked\r\n").into_bytes();
    bytes.extend_from_slice(&chunked(&at_limit, 4000));
    let resp = raw_request(shim.addr, &bytes).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(daemons.calls(), (2, 0));

    // one byte more: 413
    let over = event_of_len(MAX_AAEL_BODY + 1);
    if let Some(resp) = send_unread(
        shim.addr,
        &[
            head(&format!("Content-Length: {}\r\n", over.len())).as_bytes(),
            &over,
        ]
        .concat(),
    )
    .await
    {
        assert_refused(&resp, 413, &format!("larger than {MAX_AAEL_BODY} bytes"));
    }
    // a declared length over the limit is refused without waiting for the body
    let resp = send_unread(shim.addr, head("Content-Length: 10000000\r\n").as_bytes())
        .await
        .expect("no answer to an oversized declared length");
    assert_refused(&resp, 413, "larger than");
    // a chunked body is cut off at the limit
    let mut bytes = head("Transfer-Encoding: chunked\r\n").into_bytes();
    bytes.extend_from_slice(&chunked(&over, 4000));
    if let Some(resp) = send_unread(shim.addr, &bytes).await {
        assert_refused(&resp, 413, "larger than");
    }
    // malformed chunked encoding: the body cannot be read
    let mut bytes = head("Transfer-Encoding: chunked\r\n").into_bytes();
    bytes.extend_from_slice(b"zz\r\n{}\r\n0\r\n\r\n");
    let resp = send_unread(shim.addr, &bytes)
        .await
        .expect("no answer to a malformed chunked body");
    assert_refused(&resp, 400, "could not be read");
    assert_eq!(daemons.calls(), (2, 0));

    // the server still answers afterwards
    let resp = shim.post_json(AAEL, &event("d")).await;
    assert_eq!(resp.status, 200);
    shim.stop().await;
}

// ---------------------------------------------------------------------------------------
// End to end against the real attestation-agent binary (`cargo build --bins` first).

/// The real agent with the sample attester, its eventlog on or off, in a temporary
/// directory.
struct RealAa {
    dir: tempfile::TempDir,
    process: Option<Process>,
    addr: String,
}

impl RealAa {
    fn start(enable_eventlog: bool) -> RealAa {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("aa.toml");
        std::fs::write(
            &config,
            format!(
                "[attester]\nallow_sample = true\n\n[eventlog_config]\nenable_eventlog = {enable_eventlog}\n"
            ),
        )
        .unwrap();
        let cmdline = dir.path().join("cmdline");
        std::fs::write(&cmdline, "console=ttyS0\n").unwrap();
        let socket = dir.path().join("aa.sock");
        let addr = format!("unix://{}", socket.display());
        let mut cmd = Command::new(workspace_bin("attestation-agent").unwrap());
        cmd.arg("-c")
            .arg(&config)
            .arg("--attestation_sock")
            .arg(&addr)
            .arg("--eventlog-dir")
            .arg(dir.path().join("eventlog"))
            .arg("--kernel-cmdline")
            .arg(&cmdline)
            .env_remove("AA_KBC_PARAMS")
            .env_remove("AA_SAMPLE_ATTESTER")
            .env_remove("RUST_LOG");
        let process = Process::spawn(
            "attestation-agent",
            cmd,
            dir.path(),
            Ready::Unix(socket),
            Duration::from_secs(20),
        )
        .unwrap();
        RealAa {
            dir,
            process: Some(process),
            addr,
        }
    }

    fn config(&self) -> BackendConfig {
        BackendConfig {
            aa_addr: self.addr.clone(),
            cdh_addr: format!("unix://{}/no-cdh.sock", self.dir.path().display()),
            timeout: Duration::from_secs(20),
        }
    }

    /// Bytes in the agent's event log (none when it never wrote one).
    fn eventlog_len(&self) -> u64 {
        std::fs::metadata(self.dir.path().join("eventlog/eventlog"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        let process = self.process.take().unwrap();
        let stderr = process.stderr();
        let status = process.stop().unwrap();
        assert!(status.success(), "{status}: {stderr}");
    }
}

#[tokio::test]
async fn real_agent_with_the_sample_attester_answers_not_supported() {
    let aa = RealAa::start(true);
    let shim = Shim::start(Features::Attestation, aa.config()).await;

    for body in [
        json!({"domain": "github.com/confidential-containers", "operation": "PullImage",
               "content": "{\"image\":\"busybox\"}"}),
        json!({"domain": "d", "operation": "o", "content": "c", "register_index": 17}),
    ] {
        let resp = shim.post_json(AAEL, body.to_string().as_bytes()).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(
            resp.text(),
            r#"{"success":"false","message":"runtime measurement is not supported by this TEE"}"#
        );
    }

    // events the agent refuses are the caller's fault: 400 with the agent's reason
    for (body, says) in [
        (
            json!({"domain": "my domain", "operation": "o", "content": "c"}),
            "whitespace",
        ),
        (
            json!({"domain": "d", "operation": "", "content": "c"}),
            "empty",
        ),
        (
            json!({"domain": "d", "operation": "o", "content": "two\nlines"}),
            "newline",
        ),
        (
            json!({"domain": "d", "operation": "o", "content": "c", "register_index": 24}),
            "register index 24",
        ),
    ] {
        let resp = shim.post_json(AAEL, body.to_string().as_bytes()).await;
        assert_refused(&resp, 400, says);
        assert_refused(&resp, 400, "ExtendRuntimeMeasurement");
    }
    // nothing was recorded
    assert_eq!(aa.eventlog_len(), 0);

    // a body the shim refuses is answered by the shim itself
    let resp = post(shim.addr, AAEL, Some("text/plain"), b"{}").await;
    assert_refused(&resp, 400, "Content-Type");
    shim.stop().await;
    aa.stop();
}

#[tokio::test]
async fn real_agent_with_the_eventlog_off_answers_not_enabled() {
    let aa = RealAa::start(false);
    let shim = Shim::start(Features::All, aa.config()).await;
    let resp = shim
        .post_json(
            AAEL,
            br#"{"domain":"d","operation":"o","content":"c","register_index":3}"#,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.text(),
        r#"{"success":"false","message":"runtime measurement is not enabled"}"#
    );
    assert_eq!(aa.eventlog_len(), 0);
    shim.stop().await;
    aa.stop();
}
