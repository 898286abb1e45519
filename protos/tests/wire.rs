//! Pins the wire contract: every ttRPC method path, the field numbers of the messages, and
//! proto3 `optional` presence on `RegisterIndex`.

use std::{collections::BTreeSet, sync::Arc};

use protobuf::Message;
use protos::{api, api_ttrpc, attestation_agent as aa, attestation_agent_ttrpc as aa_ttrpc};
use protos::{keyprovider, keyprovider_ttrpc};
use ttrpc::r#async::{Server, TtrpcContext};

struct Nothing;
impl aa_ttrpc::AttestationAgentService for Nothing {}
impl api_ttrpc::SealedSecretService for Nothing {}
impl api_ttrpc::GetResourceService for Nothing {}
impl api_ttrpc::SecureMountService for Nothing {}
impl api_ttrpc::ImagePullService for Nothing {}
impl keyprovider_ttrpc::KeyProviderService for Nothing {}

fn paths(services: std::collections::HashMap<String, ttrpc::r#async::Service>) -> Vec<String> {
    services
        .into_iter()
        .flat_map(|(service, s)| {
            s.methods
                .into_keys()
                .map(move |method| format!("/{service}/{method}"))
        })
        .collect()
}

#[test]
fn every_method_path_is_pinned() {
    let n = Arc::new(Nothing);
    let mut all: BTreeSet<String> = BTreeSet::new();
    all.extend(paths(aa_ttrpc::create_attestation_agent_service(n.clone())));
    all.extend(paths(api_ttrpc::create_sealed_secret_service(n.clone())));
    all.extend(paths(api_ttrpc::create_get_resource_service(n.clone())));
    all.extend(paths(api_ttrpc::create_secure_mount_service(n.clone())));
    all.extend(paths(api_ttrpc::create_image_pull_service(n.clone())));
    all.extend(paths(keyprovider_ttrpc::create_key_provider_service(n)));
    let expected: BTreeSet<String> = [
        "/attestation_agent.AttestationAgentService/GetEvidence",
        "/attestation_agent.AttestationAgentService/GetAdditionalEvidence",
        "/attestation_agent.AttestationAgentService/GetToken",
        "/attestation_agent.AttestationAgentService/ExtendRuntimeMeasurement",
        "/attestation_agent.AttestationAgentService/BindInitData",
        "/attestation_agent.AttestationAgentService/GetTeeType",
        "/attestation_agent.AttestationAgentService/GetAdditionalTees",
        "/api.SealedSecretService/UnsealSecret",
        "/api.GetResourceService/GetResource",
        "/api.SecureMountService/SecureMount",
        "/api.ImagePullService/PullImage",
        "/keyprovider.KeyProviderService/WrapKey",
        "/keyprovider.KeyProviderService/UnWrapKey",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(all, expected);
}

#[test]
fn register_index_keeps_presence() {
    let mut req = aa::ExtendRuntimeMeasurementRequest::new();
    req.Domain = "d".into();
    req.Operation = "o".into();
    req.Content = "c".into();
    // absent: nothing for field 4 on the wire
    assert_eq!(
        req.write_to_bytes().unwrap(),
        [0x0a, 1, b'd', 0x12, 1, b'o', 0x1a, 1, b'c']
    );
    // present with value 0: field 4 (varint) is written, and survives a round trip
    req.RegisterIndex = Some(0);
    let bytes = req.write_to_bytes().unwrap();
    assert_eq!(&bytes[9..], &[0x20, 0x00]);
    let back = aa::ExtendRuntimeMeasurementRequest::parse_from_bytes(&bytes).unwrap();
    assert_eq!(back.RegisterIndex, Some(0));
}

#[test]
fn field_numbers_match_the_spec() {
    let mut m = api::SecureMountRequest::new();
    m.volume_type = "v".into();
    m.options.insert("k".into(), "x".into());
    m.flags.push("f".into());
    m.mount_point = "m".into();
    let b = m.write_to_bytes().unwrap();
    // tags: 1 (len), 2 (map entry), 3 (repeated string), 4 (string)
    assert_eq!(b[0], 0x0a);
    assert_eq!(b[3], 0x12);
    assert!(b.windows(3).any(|w| w == [0x1a, 1, b'f']));
    assert!(b.ends_with(&[0x22, 1, b'm']));

    let mut r = api::ImagePullResponse::new();
    r.manifest_digest = "d".into();
    assert_eq!(r.write_to_bytes().unwrap(), [0x0a, 1, b'd']);

    let mut t = aa::GetAdditionalTeesResponse::new();
    t.additional_tees = vec!["a".into(), "b".into()];
    assert_eq!(t.write_to_bytes().unwrap(), [0x0a, 1, b'a', 0x0a, 1, b'b']);

    let mut k = keyprovider::KeyProviderKeyWrapProtocolInput::new();
    k.KeyProviderKeyWrapProtocolInput = b"{}".to_vec();
    assert_eq!(k.write_to_bytes().unwrap(), [0x0a, 2, b'{', b'}']);

    let e = aa::ExtendRuntimeMeasurementResponse {
        Result: aa::RuntimeMeasurementResult::NOT_ENABLED.into(),
        ..Default::default()
    };
    assert_eq!(e.write_to_bytes().unwrap(), [0x08, 2]);
}

struct Resources;
#[async_trait::async_trait]
impl api_ttrpc::GetResourceService for Resources {
    async fn get_resource(
        &self,
        _ctx: &TtrpcContext,
        req: api::GetResourceRequest,
    ) -> ttrpc::Result<api::GetResourceResponse> {
        Ok(api::GetResourceResponse {
            Resource: req.ResourcePath.into_bytes(),
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn client_and_server_speak_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}/t.sock", dir.path().display());
    let mut server = Server::new()
        .bind(&addr)
        .unwrap()
        .register_service(api_ttrpc::create_get_resource_service(Arc::new(Resources)))
        .register_service(api_ttrpc::create_sealed_secret_service(Arc::new(Nothing)));
    server.start().await.unwrap();

    let client = ttrpc::r#async::Client::connect(&addr).await.unwrap();
    let resources = api_ttrpc::GetResourceServiceClient::new(client.clone());
    let req = api::GetResourceRequest {
        ResourcePath: "kbs:///a/b/c".into(),
        ..Default::default()
    };
    let resp = resources
        .get_resource(ttrpc::context::with_timeout(5_000_000_000), &req)
        .await
        .unwrap();
    assert_eq!(resp.Resource, b"kbs:///a/b/c");

    // a method with no override answers NOT_FOUND, as upstream's codegen default does
    let sealed = api_ttrpc::SealedSecretServiceClient::new(client);
    let err = sealed
        .unseal_secret(
            ttrpc::context::with_timeout(5_000_000_000),
            &api::UnsealSecretInput::new(),
        )
        .await
        .unwrap_err();
    match err {
        ttrpc::Error::RpcStatus(s) => {
            assert_eq!(s.code(), ttrpc::Code::NOT_FOUND);
            assert!(s
                .message()
                .contains("/api.SealedSecretService/UnsealSecret"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    server.shutdown().await.unwrap();
}
