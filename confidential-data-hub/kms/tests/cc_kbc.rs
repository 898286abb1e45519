//! `cc_kbc` against the protocol-faithful test KBS, with tokens from an in-process
//! attestation agent stand-in that attests with kbs_protocol's RCAR client and sample
//! evidence, caches its token like AA, and records the ttRPC metadata of every `GetToken`.
//! (The real `attestation-agent` binary is exercised by the hub's daemon tests.)

#![cfg(feature = "kbs")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use kbs_protocol::{
    encode_aa_token_reply, EvidenceProvider, KbsClient, KbsClientConfig, ProviderError,
    ResourceUri, RetryPolicy,
};
use kms::{AaTokenProvider, CcKbc, Kbc, KbcError, TOKEN_REFRESH_METADATA};
use protos::{
    attestation_agent::{GetTokenRequest, GetTokenResponse},
    attestation_agent_ttrpc::{create_attestation_agent_service, AttestationAgentService},
    server::RunningServer,
};
use testkit::kbs::{Access, FaultTarget, Faults, KbsConfig, MissingResource, TestKbs};
use ttrpc::r#async::TtrpcContext;

const SECRET: &[u8] = b"cc_kbc secret \x00\x01\xff";

fn fast_config(url: &str) -> KbsClientConfig {
    let mut config = KbsClientConfig::new(url).unwrap();
    config.request_timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    };
    config
}

/// The `sample` TEE's evidence, as trustee's sample verifier expects it.
struct SampleEvidence;

#[async_trait::async_trait]
impl EvidenceProvider for SampleEvidence {
    async fn tee(&self) -> Result<String, ProviderError> {
        Ok("sample".into())
    }

    async fn primary_evidence(
        &self,
        report_data: &[u8],
    ) -> Result<serde_json::Value, ProviderError> {
        Ok(serde_json::json!({
            "svn": "1",
            "report_data": base64::engine::general_purpose::STANDARD.encode(report_data),
        }))
    }
}

/// How the stand-in answers.
#[derive(Clone, Default)]
enum Behaviour {
    /// attests (or answers from its cache) like AA
    #[default]
    Attest,
    /// answers these bytes
    Fixed(Vec<u8>),
    /// waits this long, then attests
    Slow(Duration),
}

/// AA stand-in: `GetToken("kbs")` from a cached background-check client; the refresh
/// metadata drops the cache first.
struct AaStandIn {
    kbs: KbsClient,
    behaviour: Behaviour,
    /// the refresh metadata value of each GetToken, in order (`None`: absent)
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

#[async_trait::async_trait]
impl AttestationAgentService for AaStandIn {
    async fn get_token(
        &self,
        ctx: &TtrpcContext,
        req: GetTokenRequest,
    ) -> ttrpc::Result<GetTokenResponse> {
        let refresh = ctx
            .metadata
            .get(TOKEN_REFRESH_METADATA)
            .map(|values| values.join(","));
        self.seen.lock().unwrap().push(refresh.clone());
        let internal =
            |m: String| ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::INTERNAL, m));
        if req.TokenType != "kbs" {
            return Err(internal(format!("unknown token type {}", req.TokenType)));
        }
        match &self.behaviour {
            Behaviour::Fixed(bytes) => {
                return Ok(GetTokenResponse {
                    Token: bytes.clone(),
                    ..Default::default()
                })
            }
            Behaviour::Slow(delay) => tokio::time::sleep(*delay).await,
            Behaviour::Attest => {}
        }
        if refresh.as_deref() == Some("1") {
            self.kbs.invalidate_token().await;
        }
        let (token, keypair) = self
            .kbs
            .get_token()
            .await
            .map_err(|e| internal(e.to_string()))?;
        let reply = encode_aa_token_reply(&token, &keypair).map_err(|e| internal(e.to_string()))?;
        Ok(GetTokenResponse {
            Token: reply.to_vec(),
            ..Default::default()
        })
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    kbs: TestKbs,
    aa_addr: String,
    aa_kbs_client: KbsClient,
    aa: Option<RunningServer>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Fixture {
    async fn start(config: KbsConfig, behaviour: Behaviour) -> Self {
        let kbs = TestKbs::start(config).await.unwrap();
        kbs.put_resource("default/key/1", SECRET);
        kbs.put_resource("default/key/denied", b"never served".to_vec());
        kbs.set_access("default/key/denied", Access::Deny);
        let dir = tempfile::tempdir().unwrap();
        let aa_addr = format!("unix://{}/aa.sock", dir.path().display());
        let aa_kbs_client =
            KbsClient::background_check(fast_config(&kbs.url()), Arc::new(SampleEvidence)).unwrap();
        let mut fixture = Self {
            dir,
            kbs,
            aa_addr,
            aa_kbs_client,
            aa: None,
            seen: Arc::default(),
        };
        fixture.start_aa(behaviour).await;
        fixture
    }

    async fn start_aa(&mut self, behaviour: Behaviour) {
        let service = AaStandIn {
            kbs: self.aa_kbs_client.clone(),
            behaviour,
            seen: self.seen.clone(),
        };
        self.aa = Some(
            protos::server::start(
                &self.aa_addr,
                [create_attestation_agent_service(Arc::new(service))],
            )
            .await
            .unwrap(),
        );
    }

    async fn stop_aa(&mut self) {
        self.aa.take().unwrap().stop().await.unwrap();
    }

    fn kbc(&self) -> CcKbc {
        CcKbc::with_config(
            fast_config(&self.kbs.url()),
            AaTokenProvider::new(self.aa_addr.clone()),
        )
        .unwrap()
    }

    fn attestations(&self) -> u64 {
        self.kbs.counters().attest_ok
    }

    fn refresh_flags(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

fn uri(text: &str) -> ResourceUri {
    ResourceUri::parse(text).unwrap()
}

/// The resource at `text` read through `kbc`.
async fn get(kbc: &CcKbc, text: &str) -> Result<Vec<u8>, KbcError> {
    kbc.get_resource(&uri(text))
        .await
        .map(|bytes| bytes.to_vec())
}

/// The resource at `text` read by `readers` tasks at once through `kbc`, each one's result.
async fn get_concurrently(
    kbc: &Arc<CcKbc>,
    readers: usize,
    text: &'static str,
) -> Vec<Result<Vec<u8>, KbcError>> {
    let tasks: Vec<_> = (0..readers)
        .map(|_| {
            let kbc = kbc.clone();
            tokio::spawn(async move { get(&kbc, text).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test]
async fn the_token_is_reused_and_a_revoked_one_renewed_with_the_refresh_metadata() {
    let fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    let kbc = fixture.kbc();

    let got = get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(got.as_slice(), SECRET);
    // the host of the URI is ignored: the configured KBS answers
    let got = get(&kbc, "kbs://elsewhere.example:1234/default/key/1")
        .await
        .unwrap();
    assert_eq!(got.as_slice(), SECRET);
    assert_eq!(fixture.attestations(), 1);
    assert_eq!(fixture.refresh_flags(), [None]);

    fixture.kbs.revoke_tokens();
    let got = get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(got.as_slice(), SECRET);
    assert_eq!(fixture.attestations(), 2);
    assert_eq!(fixture.refresh_flags(), [None, Some("1".to_string())]);
    assert_eq!(kbc.token_provider().tokens_handed_out(), 2);
}

#[tokio::test]
async fn an_expired_token_is_replaced_without_forcing_a_new_attestation() {
    let config = KbsConfig {
        token_lifetime: Duration::from_secs(2),
        ..KbsConfig::default()
    };
    let fixture = Fixture::start(config, Behaviour::Attest).await;
    let kbc = fixture.kbc();
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    // past half its lifetime a token counts as expired, for CDH and AA alike
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let got = get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(got.as_slice(), SECRET);
    // AA was asked for a valid token (no refresh metadata) and attested on its own
    assert_eq!(fixture.refresh_flags(), [None, None]);
    assert_eq!(fixture.attestations(), 2);
}

#[tokio::test]
async fn concurrent_first_requests_share_one_token() {
    let fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    let kbc = Arc::new(fixture.kbc());
    for result in get_concurrently(&kbc, 50, "kbs:///default/key/1").await {
        assert_eq!(result.unwrap().as_slice(), SECRET);
    }
    assert_eq!(fixture.attestations(), 1);
    assert_eq!(fixture.refresh_flags(), [None]);
}

#[tokio::test]
async fn a_stale_token_cached_by_aa_is_replaced_once() {
    let fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    // AA attested before this CDH started (another client asked it), then the KBS
    // restarted with a new token key
    fixture.aa_kbs_client.get_token().await.unwrap();
    fixture.kbs.revoke_tokens();
    assert_eq!(fixture.attestations(), 1);

    let kbc = fixture.kbc();
    let got = get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(got.as_slice(), SECRET);
    assert_eq!(fixture.attestations(), 2);
    assert_eq!(fixture.refresh_flags(), [None, Some("1".to_string())]);
    // and from now on the new token is reused
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(fixture.attestations(), 2);
}

#[tokio::test]
async fn a_policy_denial_is_final_and_costs_no_attestation_loop() {
    let fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    let kbc = fixture.kbc();
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(fixture.attestations(), 1);

    // the cached token may have been revoked: exactly one new attestation proves the denial
    let err = get(&kbc, "kbs:///default/key/denied").await.unwrap_err();
    assert!(
        matches!(&err, KbcError::Denied { uri, source } if uri == "kbs:///default/key/denied"
            && matches!(**source, kbs_protocol::Error::Unauthorized { .. })),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("access to resource kbs:///default/key/denied denied: "),
        "{text}"
    );
    assert!(text.contains("PolicyDeny"), "{text}");
    assert_eq!(fixture.attestations(), 2);

    // asked again: denied at once, no attestation
    for _ in 0..3 {
        let err = get(&kbc, "kbs:///default/key/denied").await.unwrap_err();
        assert!(matches!(err, KbcError::Denied { .. }), "{err}");
    }
    assert_eq!(fixture.attestations(), 2);
    // other resources still work with the same token
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(fixture.attestations(), 2);
}

#[tokio::test]
async fn a_denial_as_the_very_first_request_is_bounded() {
    let fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    let kbc = Arc::new(fixture.kbc());
    for result in get_concurrently(&kbc, 20, "kbs:///default/key/denied").await {
        let err = result.unwrap_err();
        assert!(matches!(err, KbcError::Denied { .. }), "{err}");
    }
    // AA's attestation for the first token, then one fresh attestation to rule out a stale
    // AA cache; never one per caller
    assert_eq!(fixture.attestations(), 2);
    assert_eq!(fixture.refresh_flags(), [None, Some("1".to_string())]);
}

#[tokio::test]
async fn missing_resources_401_is_denied_404_is_not_found() {
    // trustee: 401 for a missing resource
    let fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    let kbc = fixture.kbc();
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    let err = get(&kbc, "kbs:///default/key/missing").await.unwrap_err();
    assert!(matches!(err, KbcError::Denied { .. }), "{err}");

    // a KBS that answers 404: not found, no re-attestation
    let fixture = Fixture::start(
        KbsConfig {
            missing_resource: MissingResource::NotFound,
            ..Default::default()
        },
        Behaviour::Attest,
    )
    .await;
    let kbc = fixture.kbc();
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    let err = get(&kbc, "kbs:///default/key/missing").await.unwrap_err();
    assert!(
        matches!(&err, KbcError::NotFound(uri) if uri == "kbs:///default/key/missing"),
        "{err}"
    );
    assert_eq!(fixture.attestations(), 1);

    // a KBS that forbids with 403: denied
    let fixture = Fixture::start(
        KbsConfig {
            policy_deny_status: 403,
            ..Default::default()
        },
        Behaviour::Attest,
    )
    .await;
    let err = get(&fixture.kbc(), "kbs:///default/key/denied")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KbcError::Denied { source, .. }
            if matches!(**source, kbs_protocol::Error::Forbidden { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn a_restarted_agent_is_reconnected() {
    let mut fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    let kbc = fixture.kbc();
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    fixture.stop_aa().await;
    fixture.start_aa(Behaviour::Attest).await;
    // the KBS refuses the token, so a new one is needed from the restarted agent
    fixture.kbs.revoke_tokens();
    let got = get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(got.as_slice(), SECRET);
    assert_eq!(fixture.refresh_flags(), [None, Some("1".to_string())]);
}

#[tokio::test]
async fn agent_failures_are_typed_and_say_what_happened() {
    let mut fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    fixture.stop_aa().await;
    let kbc = fixture.kbc();
    let err = get(&kbc, "kbs:///default/key/1").await.unwrap_err();
    assert!(
        matches!(&err, KbcError::Kbs { source, .. }
            if matches!(**source, kbs_protocol::Error::TokenProvider(_))),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("cannot connect to the attestation agent at unix://"),
        "{err}"
    );
    assert_eq!(fixture.kbs.counters().resource_get, 0);

    // an agent without GetToken (codegen default NOT_FOUND)
    let empty = protos::server::start(
        &fixture.aa_addr,
        [create_attestation_agent_service(Arc::new(NoTokens))],
    )
    .await
    .unwrap();
    let err = get(&kbc, "kbs:///default/key/1").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("answered GetToken(\"kbs\") with NOT_FOUND"),
        "{err}"
    );
    empty.stop().await.unwrap();

    // replies that are not a token and a key; the text never echoes the reply
    for bad in [
        b"not json".to_vec(),
        br#"{"token":"a.b.c"}"#.to_vec(),
        br#"{"token":"x","tee_keypair":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"}"#.to_vec(),
        Vec::new(),
    ] {
        fixture.start_aa(Behaviour::Fixed(bad.clone())).await;
        let kbc = fixture.kbc();
        let err = get(&kbc, "kbs:///default/key/1").await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("the attestation agent's token reply is unusable"),
            "{text}"
        );
        assert!(!text.contains("c2VjcmV0"), "{text}");
        assert_eq!(kbc.token_provider().tokens_handed_out(), 0);
        fixture.stop_aa().await;
    }
    assert_eq!(fixture.kbs.counters().resource_get, 0);
}

#[tokio::test]
async fn a_silent_agent_times_out() {
    let fixture = Fixture::start(
        KbsConfig::default(),
        Behaviour::Slow(Duration::from_secs(30)),
    )
    .await;
    let kbc = CcKbc::with_config(
        fast_config(&fixture.kbs.url()),
        AaTokenProvider::new(fixture.aa_addr.clone()).with_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = get(&kbc, "kbs:///default/key/1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.to_string()
            .contains("did not answer GetToken within 300ms"),
        "{err}"
    );
    drop(fixture.dir);
}

struct NoTokens;
impl AttestationAgentService for NoTokens {}

/// Readers of the same resource while a KBS request is in flight share it: one request to
/// a slow KBS serves them all; a later read makes a new request (nothing is cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_of_one_resource_share_one_kbs_request() {
    let fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    let kbc = Arc::new(fixture.kbc());
    // the token first, so that only resource requests are counted below
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    let before = fixture.kbs.counters().resource_get;
    fixture.kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        delay: Duration::from_millis(400),
        ..Default::default()
    });
    for result in get_concurrently(&kbc, 100, "kbs:///default/key/1").await {
        assert_eq!(result.unwrap().as_slice(), SECRET);
    }
    let shared = fixture.kbs.counters().resource_get - before;
    assert!(
        shared <= 2,
        "{shared} KBS requests for 100 concurrent reads"
    );
    // the next read is a new request: the resource may have changed
    fixture.kbs.set_faults(Faults::default());
    fixture
        .kbs
        .put_resource("default/key/1", b"changed".to_vec());
    let bytes = get(&kbc, "kbs:///default/key/1").await.unwrap();
    assert_eq!(bytes.as_slice(), b"changed");
    assert_eq!(fixture.kbs.counters().resource_get - before, shared + 1);
}

/// With every request slot taken by a slow KBS, a read of another resource fails fast with
/// `Busy` instead of queueing, and reads succeed again once the slots are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_without_a_request_slot_fails_fast_as_busy() {
    let fixture = Fixture::start(KbsConfig::default(), Behaviour::Attest).await;
    fixture.kbs.put_resource("default/key/2", b"two".to_vec());
    let kbc = Arc::new(
        fixture
            .kbc()
            .with_request_limit(1, Duration::from_millis(100)),
    );
    get(&kbc, "kbs:///default/key/1").await.unwrap();
    fixture.kbs.set_faults(Faults {
        target: FaultTarget::Resource,
        delay: Duration::from_millis(1500),
        ..Default::default()
    });
    let slow = {
        let kbc = kbc.clone();
        tokio::spawn(async move { get(&kbc, "kbs:///default/key/1").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let err = get(&kbc, "kbs:///default/key/2").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, KbcError::Busy { ref uri, waited } if uri == "kbs:///default/key/2" && waited == Duration::from_millis(100)),
        "{err}"
    );
    assert!(err.to_string().contains("busy"), "{err}");
    assert_eq!(slow.await.unwrap().unwrap().as_slice(), SECRET);
    fixture.kbs.set_faults(Faults::default());
    assert_eq!(
        get(&kbc, "kbs:///default/key/2").await.unwrap().as_slice(),
        b"two"
    );
}
