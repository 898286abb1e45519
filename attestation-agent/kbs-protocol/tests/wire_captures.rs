//! The wire types against bodies captured between upstream guest components and a running
//! trustee KBS (testdata/wire/): each parses and re-serializes with the same members.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, UNIX_EPOCH};

use kbs_protocol::wire::{
    Attestation, Challenge, ChallengeError, ErrorInformation, JweResponse, Request, TokenResponse,
    KBS_PROTOCOL_VERSION, SESSION_COOKIE,
};
use kbs_protocol::{HashAlgorithm, Token};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

const WIRE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/wire");

fn capture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{WIRE}/{name}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Parses `value` as `T` and checks that serializing it gives the same JSON back.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> T {
    let parsed: T = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&parsed).unwrap(), value);
    parsed
}

#[test]
fn auth_request_round_trips_and_ours_has_the_same_shape() {
    let captured = capture("01-auth-request.json");
    let request: Request = round_trip(&captured);
    assert_eq!(request.version, KBS_PROTOCOL_VERSION);
    assert_eq!(request.tee, "sample");
    let ours = serde_json::to_value(Request::new("sample")).unwrap();
    assert_eq!(
        ours,
        json!({"version": "0.4.0", "tee": "sample",
               "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512"]}})
    );
}

#[test]
fn challenge_round_trips_and_defaults_to_sha384() {
    let challenge: Challenge = round_trip(&capture("02-auth-response-challenge.json"));
    assert_eq!(challenge.hash_algorithm().unwrap(), HashAlgorithm::Sha384);
    use base64::Engine;
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(&challenge.nonce)
        .unwrap();
    assert_eq!(nonce.len(), 32);
}

#[test]
fn challenge_extra_params_variants() {
    let with = |extra: Value| Challenge {
        nonce: "n".into(),
        extra_params: extra,
    };
    assert_eq!(
        with(json!({"selected-hash-algorithm": "SHA512"}))
            .hash_algorithm()
            .unwrap(),
        HashAlgorithm::Sha512
    );
    assert_eq!(
        with(json!({})).hash_algorithm().unwrap(),
        HashAlgorithm::Sha384
    );
    assert_eq!(
        with(json!({"selected-hash-algorithm": "sm3"})).hash_algorithm(),
        Err(ChallengeError::UnsupportedHashAlgorithm("sm3".into()))
    );
    for bad in [
        json!(7),
        json!("sha512"),
        json!({"selected-hash-algorithm": 1}),
        json!([]),
    ] {
        assert!(matches!(
            with(bad).hash_algorithm(),
            Err(ChallengeError::MalformedExtraParams(_))
        ));
    }
}

#[test]
fn attestation_round_trips_with_kebab_and_snake_case_members() {
    let captured = capture("03-attest-request.json");
    let attestation: Attestation = round_trip(&captured);
    assert!(attestation.init_data.is_none());
    assert_eq!(attestation.tee_evidence.additional_evidence, "");
    assert_eq!(
        attestation.tee_evidence.primary_evidence["report_data"],
        "6J9EL1X2OQo5vfv0j8ywhhd80wYiwz9awlKRiSuDq45qf1CXjgkR8dOOwkaDQu85"
    );
    // The binding recomputed from the parsed message is the captured report data.
    let digest = kbs_protocol::primary_report_data(
        HashAlgorithm::Sha384,
        &attestation.runtime_data.nonce,
        &attestation.runtime_data.tee_pubkey,
        &attestation.tee_evidence.additional_evidence,
    )
    .unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(digest),
        attestation.tee_evidence.primary_evidence["report_data"]
    );
    // With initdata, the member becomes {"format":"toml","body":...}.
    let mut with_initdata = attestation.clone();
    with_initdata.init_data = Some(kbs_protocol::wire::InitData::toml("version = \"0.1.0\"\n"));
    let value = serde_json::to_value(&with_initdata).unwrap();
    assert_eq!(
        value["init-data"],
        json!({"format": "toml", "body": "version = \"0.1.0\"\n"})
    );
}

#[test]
fn token_reply_round_trips_and_exposes_exp() {
    let reply: TokenResponse = round_trip(&capture("04-attest-response-token.json"));
    let token = Token::parse(&reply.token).unwrap();
    assert_eq!(
        token.expires_at(),
        Some(UNIX_EPOCH + Duration::from_secs(1_795_896_181))
    );
}

#[test]
fn jwe_reply_round_trips_verbatim() {
    let jwe: JweResponse = round_trip(&capture("05-resource-response-jwe.json"));
    assert!(jwe.aad.is_none());
    assert!(jwe
        .protected
        .starts_with("eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIs"));
}

#[test]
fn error_information_round_trips_and_names_its_kind() {
    let body = json!({
        "type": "https://github.com/confidential-containers/kbs/errors/PolicyDeny",
        "detail": "Access denied by policy"
    });
    let info: ErrorInformation = round_trip(&body);
    assert_eq!(info.kind(), "PolicyDeny");
    assert!(serde_json::from_value::<ErrorInformation>(json!({"type": 1})).is_err());
}

#[test]
fn every_captured_exchange_parses_with_the_wire_types() {
    let text = std::fs::read_to_string(format!("{WIRE}/exchanges.jsonl")).unwrap();
    let mut seen = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let exchange: Value = serde_json::from_str(line).unwrap();
        let path = exchange["request"]["path"].as_str().unwrap();
        let request = &exchange["request"]["body"]["json"];
        let response = &exchange["response"]["body"]["json"];
        match path {
            "/kbs/v0/auth" => {
                round_trip::<Request>(request);
                round_trip::<Challenge>(response);
                let cookie = exchange["response"]["headers"]["set-cookie"]
                    .as_str()
                    .unwrap();
                assert!(cookie.starts_with(&format!("{SESSION_COOKIE}=")));
            }
            "/kbs/v0/attest" => {
                round_trip::<Attestation>(request);
                round_trip::<TokenResponse>(response);
            }
            _ => {
                assert!(path.starts_with("/kbs/v0/resource/"));
                round_trip::<JweResponse>(response);
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 8);
}
