//! The OpenAPI document in `openapi/api.json` describes exactly what the router serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use api_server_rest::{Features, Route, OPENAPI_DOCUMENT};
use common::*;
use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(OPENAPI_DOCUMENT).expect("openapi/api.json is not JSON")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => doc
            .pointer(reference.strip_prefix('#').unwrap())
            .unwrap_or_else(|| panic!("dangling $ref {reference}")),
        None => value,
    }
}

fn statuses(doc: &Value, template: &str) -> BTreeSet<u16> {
    doc["paths"][template]["get"]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect()
}

#[test]
fn document_and_router_have_the_same_paths() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let served: BTreeSet<&str> = Route::ALL.iter().map(|r| r.template()).collect();
    assert_eq!(documented, served);
    assert_eq!(served.len(), Route::ALL.len());

    // GET only, as served
    for (path, item) in doc["paths"].as_object().unwrap() {
        let methods: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(methods, ["get"], "{path}");
    }
}

#[test]
fn parameters_and_status_codes_are_documented() {
    let doc = document();
    let params = |template: &str| -> Vec<(String, String, bool)> {
        doc["paths"][template]["get"]["parameters"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|p| {
                        let p = resolve(&doc, p);
                        (
                            p["name"].as_str().unwrap().to_string(),
                            p["in"].as_str().unwrap().to_string(),
                            p["required"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let evidence_params = vec![
        ("runtime_data".to_string(), "query".to_string(), true),
        ("encoding".to_string(), "query".to_string(), false),
    ];
    assert_eq!(params("/aa/evidence"), evidence_params);
    assert_eq!(
        params("/aa/token"),
        [("token_type".to_string(), "query".to_string(), true)]
    );
    let token_type = resolve(&doc, &doc["paths"]["/aa/token"]["get"]["parameters"][0]);
    assert_eq!(token_type["schema"]["minLength"], 1);
    assert_eq!(
        token_type["schema"]["maxLength"],
        api_server_rest::request::MAX_TOKEN_TYPE_LEN
    );
    // the key is documented as withheld unless --expose-tee-key
    let token_doc = doc["paths"]["/aa/token"]["get"]["description"]
        .as_str()
        .unwrap();
    assert!(token_doc.contains("--expose-tee-key"), "{token_doc}");
    assert!(token_doc.contains("tee_keypair"), "{token_doc}");
    assert_eq!(params("/aa/additional-evidence"), evidence_params);
    let resource = "/cdh/resource/{repository}/{type}/{tag}";
    assert_eq!(
        params(resource),
        ["repository", "type", "tag"]
            .map(|n| (n.to_string(), "path".to_string(), true))
            .to_vec()
    );
    assert!(params("/info").is_empty());
    assert!(params("/openapi.json").is_empty());

    let encoding = resolve(&doc, &doc["paths"]["/aa/evidence"]["get"]["parameters"][1]);
    assert_eq!(encoding["schema"]["enum"], serde_json::json!(["base64"]));

    // every code each endpoint can answer, and no other
    let set = |codes: &[u16]| codes.iter().copied().collect::<BTreeSet<u16>>();
    assert_eq!(statuses(&doc, "/info"), set(&[200, 403, 405, 500]));
    assert_eq!(statuses(&doc, "/openapi.json"), set(&[200, 403, 405]));
    for path in [
        "/aa/evidence",
        "/aa/additional-evidence",
        "/aa/token",
        resource,
    ] {
        assert_eq!(
            statuses(&doc, path),
            set(&[200, 400, 403, 404, 405, 500]),
            "{path}"
        );
    }
    // every $ref resolves and the 405 documents the Allow header
    let not_allowed = resolve(&doc, &doc["paths"]["/info"]["get"]["responses"]["405"]);
    assert!(not_allowed["headers"]["Allow"].is_object());
    for path in doc["paths"].as_object().unwrap().values() {
        for response in path["get"]["responses"].as_object().unwrap().values() {
            assert!(resolve(&doc, response)["description"].is_string());
        }
    }
    let info = &doc["components"]["schemas"]["Info"]["properties"];
    let fields: BTreeSet<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["version", "tee", "additional_tees", "feature"])
    );
}

/// Every documented path, filled with sample values, is answered by the router (not with
/// `URL NOT FOUND`), and `/openapi.json` serves this very document.
#[tokio::test]
async fn every_documented_path_is_served() {
    let daemons = Daemons::start().await;
    let shim = Shim::start(Features::All, daemons.config()).await;
    let doc = document();
    for template in doc["paths"].as_object().unwrap().keys() {
        let target = template
            .replace("{repository}", "default")
            .replace("{type}", "key")
            .replace("{tag}", "1");
        let query = if template == "/aa/token" {
            "?token_type=kbs"
        } else if template.starts_with("/aa/") {
            "?runtime_data=x"
        } else {
            ""
        };
        let resp = shim.get(&format!("{target}{query}")).await;
        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
    }
    let resp = shim.get("/openapi.json").await;
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.body, OPENAPI_DOCUMENT.as_bytes());
    shim.stop().await;
}
