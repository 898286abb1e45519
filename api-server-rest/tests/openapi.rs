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

/// The route of a documented path.
fn route(template: &str) -> Route {
    *Route::ALL
        .iter()
        .find(|r| r.template() == template)
        .unwrap_or_else(|| panic!("{template} is not served"))
}

/// The operation the router serves for `template`, under its method's name.
fn operation<'a>(doc: &'a Value, template: &str) -> &'a Value {
    let method = route(template).method().as_str().to_ascii_lowercase();
    let operation = &doc["paths"][template][method.as_str()];
    assert!(
        operation.is_object(),
        "{template} has no {method} operation"
    );
    operation
}

fn statuses(doc: &Value, template: &str) -> BTreeSet<u16> {
    operation(doc, template)["responses"]
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

    // exactly the one method each route serves: POST for /aa/aael, GET for the others
    for (path, item) in doc["paths"].as_object().unwrap() {
        let methods: Vec<&String> = item.as_object().unwrap().keys().collect();
        let served = route(path).method().as_str().to_ascii_lowercase();
        assert_eq!(methods, [&served], "{path}");
    }
    assert_eq!(route("/aa/aael").method(), hyper::Method::POST);
    assert!(doc["paths"]["/aa/aael"]["post"].is_object());
    for path in ["/info", "/aa/token", "/aa/evidence"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
}

#[test]
fn parameters_and_status_codes_are_documented() {
    let doc = document();
    let params = |template: &str| -> Vec<(String, String, bool)> {
        operation(&doc, template)["parameters"]
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
        api_server_rest::MAX_TOKEN_TYPE_LEN
    );
    // the key is documented as returned unless --withhold-tee-key
    let token_doc = doc["paths"]["/aa/token"]["get"]["description"]
        .as_str()
        .unwrap();
    assert!(token_doc.contains("--withhold-tee-key"), "{token_doc}");
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
    assert!(params("/aa/aael").is_empty());
    // only /aa/aael takes a body
    for template in doc["paths"].as_object().unwrap().keys() {
        assert_eq!(
            operation(&doc, template).get("requestBody").is_some(),
            template == "/aa/aael",
            "{template}"
        );
    }

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
    assert_eq!(
        statuses(&doc, "/aa/aael"),
        set(&[200, 400, 403, 404, 405, 413, 500])
    );
    // every $ref resolves, and each 405 documents the Allow header with the route's method
    for template in doc["paths"].as_object().unwrap().keys() {
        let responses = &operation(&doc, template)["responses"];
        for response in responses.as_object().unwrap().values() {
            assert!(resolve(&doc, response)["description"].is_string());
        }
        let not_allowed = resolve(&doc, &responses["405"]);
        let allow = not_allowed["headers"]["Allow"]["description"]
            .as_str()
            .unwrap();
        assert_eq!(
            allow,
            format!("Always `{}`", route(template).method()),
            "{template}"
        );
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

#[test]
fn aael_body_and_answers_are_documented() {
    let doc = document();
    let aael = operation(&doc, "/aa/aael");
    let body = &aael["requestBody"];
    assert_eq!(body["required"], true);
    let media: Vec<&String> = body["content"].as_object().unwrap().keys().collect();
    assert_eq!(media, ["application/json"]);
    let event = resolve(&doc, &body["content"]["application/json"]["schema"]);
    assert_eq!(event["type"], "object");
    assert_eq!(event["additionalProperties"], false);
    assert_eq!(
        event["required"],
        serde_json::json!(["domain", "operation", "content"])
    );
    let properties = event["properties"].as_object().unwrap();
    let names: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["domain", "operation", "content", "register_index"])
    );
    for name in ["domain", "operation", "content"] {
        assert_eq!(properties[name]["type"], "string", "{name}");
    }
    assert_eq!(properties["register_index"]["type"], "integer");
    assert_eq!(properties["register_index"]["minimum"], 0);
    // the documented body limit is the enforced one
    let description = aael["description"].as_str().unwrap();
    assert!(
        description.contains(&api_server_rest::MAX_AAEL_BODY.to_string()),
        "{description}"
    );

    // the endpoint's own answers are all the JSON result object
    for status in ["200", "400", "413", "500"] {
        let response = resolve(&doc, &aael["responses"][status]);
        let schema = resolve(&doc, &response["content"]["application/json"]["schema"]);
        assert_eq!(
            schema["properties"]["success"]["enum"],
            serde_json::json!(["true", "false"]),
            "{status}"
        );
        assert_eq!(
            schema["required"],
            serde_json::json!(["success"]),
            "{status}"
        );
    }
    let ok = aael["responses"]["200"]["description"].as_str().unwrap();
    for message in [
        "runtime measurement is not enabled",
        "runtime measurement is not supported by this TEE",
    ] {
        assert!(ok.contains(message), "{ok}");
    }
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
        let resp = match route(template) {
            Route::Aael => {
                shim.post_json(&target, br#"{"domain":"d","operation":"o","content":"c"}"#)
                    .await
            }
            Route::Token => shim.get(&format!("{target}?token_type=kbs")).await,
            Route::Evidence | Route::AdditionalEvidence => {
                shim.get(&format!("{target}?runtime_data=x")).await
            }
            Route::Info | Route::OpenApi | Route::Resource => shim.get(&target).await,
        };
        assert_eq!(resp.status, 200, "{target}: {}", resp.text());
        let method = route(template).method();
        // and every other method is refused with the route's one method in Allow
        let other = if method == hyper::Method::GET {
            "POST"
        } else {
            "GET"
        };
        let refused = request(shim.addr, other, &target).await;
        assert_eq!(refused.status, 405, "{other} {target}");
        assert_eq!(refused.header("allow"), Some(method.as_str()), "{target}");
    }
    let resp = shim.get("/openapi.json").await;
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.body, OPENAPI_DOCUMENT.as_bytes());
    shim.stop().await;
}
