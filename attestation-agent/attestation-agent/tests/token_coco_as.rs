//! GetToken("coco_as") of the real agent binary against a tiny attestation service that
//! records the exact request and answers what the test tells it to.
#![cfg(feature = "coco_as")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the service saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    body: String,
}

/// The service's state: its recorded requests and the reply it gives.
#[derive(Default)]
struct Service {
    seen: Mutex<Vec<Seen>>,
    reply: Mutex<(u16, String)>,
}

async fn start_service(state: Arc<Service>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_string();
                        let content_type = req
                            .headers()
                            .get(hyper::header::CONTENT_TYPE)
                            .map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        state.seen.lock().unwrap().push(Seen {
                            method,
                            path,
                            content_type,
                            body: String::from_utf8(body.to_vec()).unwrap(),
                        });
                        let (status, body) = state.reply.lock().unwrap().clone();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

const TOKEN: &str = "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJjb2NvIn0.c2lnbmF0dXJl";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_upstreams_body_and_returns_the_reply() {
    let state = Arc::new(Service::default());
    *state.reply.lock().unwrap() = (200, TOKEN.to_string());
    let addr = start_service(state.clone()).await;
    // a trailing slash in the configured URL is not doubled
    let agent = Agent::start(
        &format!("[token_configs.coco_as]\nurl = \"http://{addr}/\"\n"),
        None,
    )
    .await;
    let c = agent.client().await;

    let token = get_token(&c, "coco_as", false).await.unwrap();
    assert_eq!(token, TOKEN.as_bytes());
    let seen = state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/attestation");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    // the exact body: field names and order, and evidence over EMPTY report data
    let prefix = r#"{"verification_requests":[{"tee":"sample","evidence":""#;
    let suffix = r#""}],"policy_ids":[]}"#;
    assert!(request.body.starts_with(prefix), "{}", request.body);
    assert!(request.body.ends_with(suffix), "{}", request.body);
    let encoded = &request.body[prefix.len()..request.body.len() - suffix.len()];
    assert!(!encoded.contains('='), "padded: {encoded}");
    let evidence: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
    assert_eq!(evidence, serde_json::json!({"svn": "1", "report_data": ""}));

    // the service refusing the evidence: INTERNAL with its status and words
    *state.reply.lock().unwrap() = (403, "policy says no".to_string());
    let message = internal_message(get_token(&c, "coco_as", false).await);
    assert!(message.starts_with("GetToken failed: "), "{message}");
    assert!(message.contains("403"), "{message}");
    assert!(message.contains("policy says no"), "{message}");

    // 200 without a token is an error, not an empty token
    *state.reply.lock().unwrap() = (200, String::new());
    let message = internal_message(get_token(&c, "coco_as", false).await);
    assert!(message.contains("empty body"), "{message}");

    // GetToken("kbs") without [token_configs.kbs] says what is missing
    let message = internal_message(get_token(&c, "kbs", false).await);
    let expected = if cfg!(feature = "kbs") {
        "no [token_configs.kbs] section"
    } else {
        "cargo feature `kbs`"
    };
    assert!(message.contains(expected), "{message}");
    assert_eq!(state.seen.lock().unwrap().len(), 3);

    drop(c);
    let stderr = agent.stop().await;
    assert!(!stderr.contains(TOKEN), "token logged:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_service_is_an_internal_error() {
    let port = testkit::process::free_port().unwrap();
    let agent = Agent::start(
        &format!("[token_configs.coco_as]\nurl = \"http://127.0.0.1:{port}\"\n"),
        None,
    )
    .await;
    let c = agent.client().await;
    let message = internal_message(get_token(&c, "coco_as", false).await);
    assert!(
        message.contains(&format!(
            "cannot reach the attestation service at http://127.0.0.1:{port}/attestation"
        )),
        "{message}"
    );
    assert_serving(&c).await;
    drop(c);
    agent.stop().await;
}
