//! The real router over HTTP/1 against small ttRPC daemons built from `protos`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{net::SocketAddr, sync::atomic::Ordering, time::Duration};

use api_server_rest::{BackendConfig, Backends, Features, Router};
use bytes::Bytes;
use common::*;
use http_body_util::{Empty, Full};

const OCTETS: &str = "application/octet-stream";

fn assert_short_opaque_error(resp: &HttpResponse, daemons: &Daemons) {
    assert_eq!(resp.status, 500);
    let body = resp.text();
    assert!(body.len() < 64, "long error body {body:?}");
    assert!(!body.contains(INTERNAL_DETAIL), "{body}");
    assert!(!body.contains("secret"), "{body}");
    assert!(
        !body.contains(&daemons.dir.path().display().to_string()),
        "{body}"
    );
    assert!(!body.to_lowercase().contains("ttrpc"), "{body}");
}

#[tokio::test]
async fn resource_is_forwarded_as_a_kbs_uri() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::Resource, daemons.config()).await;

    let resp = shim.get("/cdh/resource/default/key/1").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some(OCTETS));
    assert_eq!(resp.body, b"secret-1\x00\xff");

    // the query string is dropped
    let resp = shim
        .get("/cdh/resource/default/key/1?x=../../etc&y=%2F")
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"secret-1\x00\xff");

    // escapes are decoded, checked, and re-encoded in the URI
    let resp = shim.get("/cdh/resource/my%20repo/k%65y/t%3f").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"spaced");

    assert_eq!(
        *daemons.cdh_asked.lock().unwrap(),
        [
            "kbs:///default/key/1",
            "kbs:///default/key/1",
            "kbs:///my%20repo/key/t%3F"
        ]
    );
    assert_eq!(daemons.calls(), (0, 3));
    shim.stop().await;
}

#[tokio::test]
async fn resource_errors() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::Resource, daemons.config()).await;

    let resp = shim.get("/cdh/resource/default/key/missing").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.text(), "Resource Not Found");

    let resp = shim.get("/cdh/resource/default/key/internal").await;
    assert_short_opaque_error(&resp, &daemons);
    assert_eq!(resp.text(), "Failed to get resource");
    assert_eq!(daemons.calls(), (0, 2));
    shim.stop().await;
}

#[tokio::test]
async fn hostile_resource_paths_never_reach_the_cdh() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;

    for target in [
        "/cdh/resource/../../etc/passwd",
        "/cdh/resource/%2e%2e/%2e%2e/etc",
        "/cdh/resource/a/%2F/b",
        "/cdh/resource/%2E./key/1",
        "/cdh/resource/./key/1",
        "/cdh/resource/default/../1",
        "/cdh/resource/default/key/..",
        "/cdh/resource/default/key%5C..%5C/1",
        "/cdh/resource/default/key/1%00",
        "/cdh/resource/default//1",
        "/cdh/resource/default/key/1/",
        "/cdh/resource/default/key/%zz",
        "/cdh/resource/default/key/%C0%AF",
        "/cdh/resource/default/key",
        "/cdh/resource/default/key/1/2",
        "/cdh/resource/",
    ] {
        let resp = shim.get(target).await;
        assert!(
            resp.status == 400 || resp.status == 404,
            "{target}: {} {}",
            resp.status,
            resp.text()
        );
    }
    // the plain traversal and the escaped ones are bad requests, not mere misses
    for target in [
        "/cdh/resource/%2e%2e/%2e%2e/etc",
        "/cdh/resource/a/%2F/b",
        "/cdh/resource/../../etc/passwd",
    ] {
        assert_eq!(shim.get(target).await.status, 400, "{target}");
    }
    assert_eq!(daemons.cdh_calls.load(Ordering::SeqCst), 0);
    shim.stop().await;
}

#[tokio::test]
async fn evidence_endpoints() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::Attestation, daemons.config()).await;

    let resp = shim.get("/aa/evidence?runtime_data=abc+d%21").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some(OCTETS));
    assert_eq!(resp.body, b"evidence:abc d!");

    // URL-safe base64 without padding
    let resp = shim
        .get("/aa/evidence?runtime_data=AAEC_-8&encoding=base64")
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"evidence:\x00\x01\x02\xff\xef");

    let resp = shim
        .get("/aa/additional-evidence?encoding=base64&runtime_data=aGk")
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some(OCTETS));
    assert_eq!(resp.body, b"additional:hi");

    // no additional devices: an empty 200
    let resp = shim.get("/aa/additional-evidence?runtime_data=none").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("0"));
    assert!(resp.body.is_empty());

    let resp = shim.get("/aa/evidence?runtime_data=fail").await;
    assert_short_opaque_error(&resp, &daemons);
    assert_eq!(resp.text(), "Failed to get evidence");
    assert_eq!(daemons.calls(), (5, 0));
    shim.stop().await;
}

#[tokio::test]
async fn bad_runtime_data_is_refused_before_the_agent() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;

    for (query, expected) in [
        ("", "runtime_data is required"),
        ("?", "runtime_data is required"),
        ("?encoding=base64", "runtime_data is required"),
        ("?runtime_data=a&encoding=hex", "unsupported encoding"),
        ("?runtime_data=a&encoding=", "unsupported encoding"),
        (
            "?runtime_data=a&encoding=base64",
            "not valid URL-safe base64",
        ),
        (
            "?runtime_data=a%2Bb&encoding=base64",
            "not valid URL-safe base64",
        ),
        ("?runtime_data=%zz", "could not be decoded"),
        ("?runtime_data=a&runtime_data=b", "more than once"),
    ] {
        for endpoint in ["/aa/evidence", "/aa/additional-evidence"] {
            let resp = shim.get(&format!("{endpoint}{query}")).await;
            assert_eq!(resp.status, 400, "{endpoint}{query}");
            assert!(
                resp.text().contains(expected),
                "{endpoint}{query}: {}",
                resp.text()
            );
        }
    }
    assert_eq!(daemons.calls(), (0, 0));
    shim.stop().await;
}

#[tokio::test]
async fn kbs_token_is_answered_without_the_tee_key_when_withheld() {
    let daemons = Daemons::start().await;
    let router =
        Router::new(Features::Attestation, Backends::new(daemons.config())).withhold_tee_key(true);
    let shim = Shim::start_router(router).await;

    let resp = shim.get("/aa/token?token_type=kbs").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some(OCTETS));
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body, serde_json::json!({ "token": KBS_TOKEN }));
    assert!(!resp.text().contains("PRIVATE KEY"));
    assert!(!resp.text().contains("TEEKEY"));

    // other token types are passed on as AA answers them
    let resp = shim.get("/aa/token?x=1&token_type=coco%5Fas").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, COCO_AS_TOKEN);

    // a type AA refuses: a short 500, AA's detail only logged
    let resp = shim.get("/aa/token?token_type=vault").await;
    assert_short_opaque_error(&resp, &daemons);
    assert_eq!(resp.text(), "Failed to get token");
    assert_eq!(daemons.calls(), (3, 0));
    shim.stop().await;
}

#[tokio::test]
async fn kbs_token_with_the_tee_key_as_upstream() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    let resp = shim.get("/aa/token?token_type=kbs").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some(OCTETS));
    assert_eq!(resp.body, kbs_token_reply());
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["tee_keypair"], TEE_KEY_PEM);
    shim.stop().await;
}

#[tokio::test]
async fn a_kbs_reply_that_cannot_be_stripped_is_not_passed_on() {
    for reply in [
        b"not json -----BEGIN PRIVATE KEY-----".to_vec(),
        br#"{"tee_keypair":"-----BEGIN PRIVATE KEY-----"}"#.to_vec(),
        br#"{"token":7,"tee_keypair":"-----BEGIN PRIVATE KEY-----"}"#.to_vec(),
        Vec::new(),
    ] {
        let daemons = Daemons::start_with(FakeAa {
            kbs_reply: Some(reply),
            ..Default::default()
        })
        .await;
        let router = Router::new(Features::Attestation, Backends::new(daemons.config()))
            .withhold_tee_key(true);
        let shim = Shim::start_router(router).await;
        let resp = shim.get("/aa/token?token_type=kbs").await;
        assert_short_opaque_error(&resp, &daemons);
        assert_eq!(resp.text(), "Failed to get token");
        shim.stop().await;
    }
}

#[tokio::test]
async fn bad_token_queries_are_refused_before_the_agent() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    for (target, says) in [
        ("/aa/token", "query parameter token_type is required"),
        ("/aa/token?", "query parameter token_type is required"),
        (
            "/aa/token?token_type=",
            "query parameter token_type is required",
        ),
        (
            "/aa/token?tokentype=kbs",
            "query parameter token_type is required",
        ),
        (
            "/aa/token?token_type=kbs&token_type=kbs",
            "query parameter token_type is given more than once",
        ),
        (
            "/aa/token?token_type=%zz",
            "query parameter could not be decoded: malformed percent escape",
        ),
        (
            "/aa/token?token_type=%FF",
            "query parameter could not be decoded: decoded text is not UTF-8",
        ),
    ] {
        let resp = shim.get(target).await;
        assert_eq!(resp.status, 400, "{target}");
        assert_eq!(resp.text(), says, "{target}");
    }
    let long = format!("/aa/token?token_type={}", "k".repeat(65));
    let resp = shim.get(&long).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.text(), "token_type is longer than 64 bytes");
    // only GET
    let resp = request(shim.addr, "POST", "/aa/token?token_type=kbs").await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET"));
    assert_eq!(daemons.calls(), (0, 0));
    shim.stop().await;
}

#[tokio::test]
async fn info_reports_version_feature_and_tees() {
    let daemons = Daemons::start().await;
    let version = env!("CARGO_PKG_VERSION");

    let shim = Shim::start(Features::All, daemons.config()).await;
    let resp = shim.get("/info").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    // field names and order as upstream
    assert_eq!(
        resp.text(),
        format!(
            r#"{{"version":"{version}","tee":"sample","additional_tees":["nvidia","tpm"],"feature":"all"}}"#
        )
    );
    assert_eq!(daemons.calls(), (2, 0));
    shim.stop().await;

    // without the attestation feature the agent is not asked
    let shim = Shim::start(Features::Resource, daemons.config()).await;
    let resp = shim.get("/info").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.text(),
        format!(r#"{{"version":"{version}","feature":"resource"}}"#)
    );
    assert_eq!(daemons.calls(), (2, 0));
    shim.stop().await;

    let shim = Shim::start(Features::Attestation, daemons.config()).await;
    let json: serde_json::Value = serde_json::from_slice(&shim.get("/info").await.body).unwrap();
    assert_eq!(json["feature"], "attestation");
    assert_eq!(json["tee"], "sample");
    shim.stop().await;
}

#[tokio::test]
async fn info_with_a_failing_agent_answers_500() {
    let dir = tempfile::tempdir().unwrap();
    let aa_addr = socket_addr(dir.path(), "aa");
    let aa = start_aa(
        &aa_addr,
        FakeAa {
            broken_tee: true,
            ..Default::default()
        },
    )
    .await;
    let config = BackendConfig {
        aa_addr,
        cdh_addr: socket_addr(dir.path(), "cdh"),
        timeout: Duration::from_secs(10),
    };
    let shim = Shim::start(Features::All, config).await;
    let resp = shim.get("/info").await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.text(), "Failed to get TEE information");
    shim.stop().await;
    aa.stop().await.unwrap();
}

#[tokio::test]
async fn only_get_is_served() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    for target in [
        "/info",
        "/openapi.json",
        "/aa/evidence?runtime_data=x",
        "/aa/additional-evidence?runtime_data=x",
        "/cdh/resource/default/key/1",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            let resp = request(shim.addr, method, target).await;
            assert_eq!(resp.status, 405, "{method} {target}");
            assert_eq!(resp.header("allow"), Some("GET"), "{method} {target}");
        }
    }
    assert_eq!(daemons.calls(), (0, 0));
    shim.stop().await;
}

#[tokio::test]
async fn unknown_and_future_paths_are_not_found() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    for target in [
        "/",
        "/aa/token/kbs",
        "/aa/aael/",
        "/aa/aael/x",
        "/aa",
        "/cdh/resource",
        "/cdh/secret/a/b/c",
        "/info/x",
        "/INFO",
        "/%69nfo",
    ] {
        let resp = shim.get(target).await;
        assert_eq!(resp.status, 404, "{target}");
        assert_eq!(resp.text(), "URL NOT FOUND", "{target}");
    }
    let resp = shim
        .post_json(
            "/aa/aael/x",
            br#"{"domain":"d","operation":"o","content":"c"}"#,
        )
        .await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.text(), "URL NOT FOUND");
    assert_eq!(daemons.calls(), (0, 0));
    shim.stop().await;
}

#[tokio::test]
async fn disabled_features_are_not_found() {
    let daemons = Daemons::start().await;

    let shim = Shim::start(Features::Resource, daemons.config()).await;
    for target in [
        "/aa/evidence?runtime_data=x",
        "/aa/additional-evidence?runtime_data=x",
        "/aa/token?token_type=kbs",
    ] {
        let resp = shim.get(target).await;
        assert_eq!(resp.status, 404, "{target}");
        assert_eq!(resp.text(), "Attestation Feature Not Enabled");
    }
    // the feature check comes before the method and body checks
    for (method, content_type, body) in [
        (
            "POST",
            Some("application/json"),
            &br#"{"domain":"d","operation":"o","content":"c"}"#[..],
        ),
        ("POST", Some("text/plain"), b"x"),
        ("GET", None, b""),
    ] {
        let resp = if method == "POST" {
            post(shim.addr, "/aa/aael", content_type, body).await
        } else {
            request(shim.addr, method, "/aa/aael").await
        };
        assert_eq!(resp.status, 404, "{method} {content_type:?}");
        assert_eq!(resp.text(), "Attestation Feature Not Enabled");
    }
    assert!(daemons.aa_extends.lock().unwrap().is_empty());
    shim.stop().await;

    let shim = Shim::start(Features::Attestation, daemons.config()).await;
    let resp = shim.get("/cdh/resource/default/key/1").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.text(), "Resource Feature Not Enabled");
    shim.stop().await;

    assert_eq!(daemons.calls(), (0, 0));
}

#[tokio::test]
async fn backends_down_give_a_short_500() {
    let mut daemons = Daemons::start().await;
    daemons.aa.take().unwrap().stop().await.unwrap();
    daemons.cdh.take().unwrap().stop().await.unwrap();
    let shim = Shim::start(Features::All, daemons.config()).await;

    let resp = shim.get("/cdh/resource/default/key/1").await;
    assert_short_opaque_error(&resp, &daemons);
    assert_eq!(resp.text(), "Failed to get resource");
    let resp = shim.get("/aa/evidence?runtime_data=x").await;
    assert_short_opaque_error(&resp, &daemons);
    let resp = shim.get("/info").await;
    assert_short_opaque_error(&resp, &daemons);

    // a daemon that starts after the shim is picked up by the next request
    let cdh = start_cdh(&daemons.cdh_addr, FakeCdh::default()).await;
    let resp = shim.get("/cdh/resource/default/key/1").await;
    assert_eq!(resp.status, 200);
    shim.stop().await;
    cdh.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_daemon_is_reconnected() {
    let mut daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;

    assert_eq!(shim.get("/cdh/resource/default/key/1").await.status, 200);
    assert_eq!(shim.get("/aa/evidence?runtime_data=1").await.status, 200);
    assert_eq!(daemons.calls(), (1, 1));

    // restart both on the same sockets
    daemons.cdh.take().unwrap().stop().await.unwrap();
    daemons.aa.take().unwrap().stop().await.unwrap();
    let new_cdh = FakeCdh::default();
    let new_aa = FakeAa::default();
    let (new_cdh_calls, new_aa_calls) = (new_cdh.calls.clone(), new_aa.calls.clone());
    let cdh = start_cdh(&daemons.cdh_addr, new_cdh).await;
    let aa = start_aa(&daemons.aa_addr, new_aa).await;

    let resp = shim.get("/cdh/resource/default/key/1").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"secret-1\x00\xff");
    let resp = shim.get("/aa/evidence?runtime_data=2").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"evidence:2");
    // the new daemons answered, the old ones were not asked again
    assert_eq!(new_cdh_calls.load(Ordering::SeqCst), 1);
    assert_eq!(new_aa_calls.load(Ordering::SeqCst), 1);
    assert_eq!(daemons.calls(), (1, 1));

    // and the new connection is reused
    assert_eq!(shim.get("/cdh/resource/default/key/1").await.status, 200);
    assert_eq!(new_cdh_calls.load(Ordering::SeqCst), 2);

    shim.stop().await;
    cdh.stop().await.unwrap();
    aa.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_backend_times_out() {
    let daemons = Daemons::start().await;
    let config = BackendConfig {
        timeout: Duration::from_millis(200),
        ..daemons.config()
    };
    let shim = Shim::start(Features::All, config).await;
    let started = std::time::Instant::now();
    let resp = shim
        .get(&format!("/aa/evidence?runtime_data={SLOW_RUNTIME_DATA}"))
        .await;
    assert_short_opaque_error(&resp, &daemons);
    assert!(started.elapsed() < SLOW_DELAY, "{:?}", started.elapsed());
    // a timeout is not retried
    assert_eq!(daemons.calls(), (1, 0));
    shim.stop().await;
}

#[tokio::test]
async fn stop_lets_an_open_request_finish() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    let addr = shim.addr;
    let open = tokio::spawn(async move {
        request(
            addr,
            "GET",
            &format!("/aa/evidence?runtime_data={SLOW_RUNTIME_DATA}"),
        )
        .await
    });
    // wait until the agent has the request
    while daemons.aa_calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shim.stop().await;
    let resp = open.await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"evidence:slow");
    // nothing accepts connections any more
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn non_loopback_peers_are_forbidden_before_anything_else() {
    let daemons = Daemons::start().await;
    let router = Router::new(Features::All, Backends::new(daemons.config()));
    for peer in [
        "10.0.0.5:4000",
        "[fe80::1]:4000",
        "[::ffff:192.168.1.1]:4000",
    ] {
        let peer: SocketAddr = peer.parse().unwrap();
        for (method, target) in [
            ("GET", "/cdh/resource/default/key/1"),
            ("GET", "/aa/evidence?runtime_data=x"),
            ("GET", "/info"),
            ("POST", "/info"),
            ("POST", "/aa/aael"),
            ("GET", "/aa/aael"),
            ("GET", "/nowhere"),
        ] {
            let req = hyper::Request::builder()
                .method(method)
                .uri(target)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(
                    br#"{"domain":"d","operation":"o","content":"c"}"#,
                )))
                .unwrap();
            let resp = router.handle(peer, req).await;
            assert_eq!(resp.status(), 403, "{peer} {method} {target}");
        }
    }
    assert_eq!(daemons.calls(), (0, 0));

    // the same requests from loopback peers are served
    for peer in [
        "127.0.0.1:4000",
        "127.9.9.9:4000",
        "[::1]:4000",
        "[::ffff:127.0.0.1]:4000",
    ] {
        let req = hyper::Request::builder()
            .uri("/cdh/resource/default/key/1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = router.handle(peer.parse().unwrap(), req).await;
        assert_eq!(resp.status(), 200, "{peer}");
    }
    assert_eq!(daemons.calls(), (0, 4));
}

/// Sends `head` and returns the status of the answer, or `None` when the server reset the
/// connection (it may close with part of an oversized request unread).
async fn status_of_oversized(addr: SocketAddr, head: String) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // the server may stop reading and answer before everything is written
    let _ = stream.write_all(head.as_bytes()).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server neither answered nor closed");
    if raw.is_empty() {
        assert!(read.is_err(), "closed without an answer");
        return None;
    }
    Some(parse_response(&raw).status)
}

#[tokio::test]
async fn oversized_requests_are_refused_before_the_router() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    // hyper checks the limit between reads, so go well past it
    let huge = "A".repeat(4 * api_server_rest::MAX_REQUEST_HEAD);

    let long_uri = format!(
        "GET /aa/evidence?runtime_data={huge} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    if let Some(status) = status_of_oversized(shim.addr, long_uri).await {
        assert!(status == 414 || status == 431, "{status}");
    }
    let long_header = format!(
        "GET /aa/evidence?runtime_data=x HTTP/1.1\r\nHost: x\r\nX-Filler: {huge}\r\nConnection: close\r\n\r\n"
    );
    if let Some(status) = status_of_oversized(shim.addr, long_header).await {
        assert!(status == 414 || status == 431, "{status}");
    }
    // a garbage request line is no request either
    let resp = raw_request(shim.addr, b"\x00\x01 nonsense\r\n\r\n").await;
    assert_eq!(resp.status, 400);
    assert_eq!(daemons.calls(), (0, 0));

    // the server still answers afterwards
    assert_eq!(shim.get("/info").await.status, 200);
    assert_eq!(daemons.calls(), (2, 0));
    shim.stop().await;
}

/// Clients that open connections and never send (or send half a request head) hold no
/// slot others need: the shim keeps answering, and stops within its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_starve_other_clients() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    let mut silent = Vec::new();
    for i in 0..500 {
        let mut stream = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
        if i % 2 == 1 {
            tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /info HTTP/1.1\r\nHost: x")
                .await
                .unwrap();
        }
        silent.push(stream);
    }
    for _ in 0..20 {
        let resp = tokio::time::timeout(Duration::from_secs(5), shim.get("/info"))
            .await
            .expect("the shim stopped answering while silent clients were connected");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let resp = shim.get("/cdh/resource/default/key/1").await;
    assert_eq!(resp.status, 200);
    assert_eq!(silent.len(), 500);
    shim.stop().await;
}
