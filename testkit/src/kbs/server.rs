//! HTTP handling of the test KBS.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as STANDARD_NO_PAD_URL};
use base64::Engine;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::debug;

use super::crypto::{
    binding, corrupt_jwe, jwe_for_key, tee_pubkey_from_claims, verify_sample_evidence, BindingHash,
    TeeKey,
};
use super::tls::TlsMaterial;
use super::{
    bump, lock, Access, AdminWrite, FaultTarget, JweCorruption, KbsState, MissingResource,
    NonceFault, ReplyFault,
};

const SESSION_COOKIE: &str = "kbs-session-id";
const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors";
/// Request bodies above this are refused (trustee's default payload limit is 2 MiB).
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// TEE names trustee's `Tee` type accepts (kbs-types 0.18).
const KNOWN_TEES: &[&str] = &[
    "az-snp-vtpm",
    "az-tdx-vtpm",
    "nvidia",
    "sgx",
    "snp",
    "tdx",
    "cca",
    "csv",
    "se",
    "hygondcu",
    "nvidia-dpu",
    "tpm",
    "sample",
    "sampledevice",
];

pub(crate) enum SessionState {
    Authed,
    /// `/attest` was tried with this nonce and failed: the nonce is spent.
    Spent,
    Attested {
        token: String,
    },
}

pub(crate) struct Session {
    tee: String,
    nonce: String,
    hash: Option<BindingHash>,
    expires: SystemTime,
    state: SessionState,
}

/// Returned by the service to make hyper close the connection without a reply.
#[derive(Debug)]
struct DroppedByFault;

impl std::fmt::Display for DroppedByFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a test fault")
    }
}

impl std::error::Error for DroppedByFault {}

type BodyError = Box<dyn std::error::Error + Send + Sync>;
type Reply = Response<BoxBody<Bytes, BodyError>>;

/// The body of a [`ReplyFault`].
struct BrokenBody {
    fault: ReplyFault,
    sent: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

const RESET_AFTER_BYTES: usize = 1000;
const RESET_DECLARED_BYTES: u64 = 4096;
const SLOWLORIS_INTERVAL: Duration = Duration::from_millis(100);
const FLOOD_CHUNK: usize = 64 * 1024;

impl hyper::body::Body for BrokenBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.fault {
            ReplyFault::ResetMidBody if self.sent >= RESET_AFTER_BYTES => {
                Poll::Ready(Some(Err("connection reset by a test fault".into())))
            }
            ReplyFault::ResetMidBody => {
                self.sent = RESET_AFTER_BYTES;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![
                    b' ';
                    RESET_AFTER_BYTES
                ])))))
            }
            ReplyFault::NeverEnding => {
                let pause = self
                    .pause
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(SLOWLORIS_INTERVAL)));
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.pause = None;
                self.sent += 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
            }
            ReplyFault::Oversized | ReplyFault::OversizedDeclared => {
                self.sent += FLOOD_CHUNK;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'A'; FLOOD_CHUNK])))))
            }
        }
    }
}

fn broken_reply(fault: ReplyFault) -> Reply {
    let mut reply = Response::new(
        BrokenBody {
            fault,
            sent: 0,
            pause: None,
        }
        .boxed(),
    );
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let declared = match fault {
        ReplyFault::ResetMidBody => Some(RESET_DECLARED_BYTES),
        ReplyFault::OversizedDeclared => Some(1 << 40),
        ReplyFault::NeverEnding | ReplyFault::Oversized => None,
    };
    if let Some(length) = declared {
        reply
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    reply
}

fn response(status: u16, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut reply = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *reply.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(content_type) = content_type {
        if let Ok(value) = HeaderValue::from_str(content_type) {
            reply.headers_mut().insert(CONTENT_TYPE, value);
        }
    }
    reply
}

/// A trustee-style error reply: `{"type": ".../errors/<kind>", "detail": ...}`.
fn error(status: u16, kind: &str, detail: impl std::fmt::Display) -> Reply {
    let body = json!({"type": format!("{ERROR_TYPE_PREFIX}/{kind}"), "detail": detail.to_string()});
    debug!(status, kind, %detail, "test KBS refuses");
    response(
        status,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
}

fn json_reply(value: &Value) -> Reply {
    response(
        200,
        Some("application/json"),
        value.to_string().into_bytes(),
    )
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The KBS's own clock for tokens: the real one plus the skew fault.
fn kbs_now_secs(state: &KbsState) -> u64 {
    let offset = lock(&state.faults).clock_offset_secs;
    now_secs().saturating_add_signed(offset)
}

/// A challenge nonce as trustee makes it: standard base64 of 32 random bytes.
pub(crate) fn fresh_nonce() -> String {
    STANDARD.encode(random_bytes::<32>())
}

fn set_cookie(reply: &mut Reply, id: &str, expires: SystemTime) {
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Expires={}",
        httpdate::fmt_http_date(expires)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        reply.headers_mut().insert(SET_COOKIE, value);
    }
}

fn session_id(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|_| response(413, None, Vec::new()))
}

pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<KbsState>,
    tls: Option<Arc<TlsMaterial>>,
) {
    let acceptor = tls.map(|tls| tokio_rustls::TlsAcceptor::from(tls.server_config.clone()));
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(TokioIo::new(stream), state).await;
                            }
                        }
                        None => serve_connection(TokioIo::new(stream), state).await,
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection<I>(io: I, state: Arc<KbsState>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { handle(state, req).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// Applies the fault switches to a request of `target`; `Ok(Some)` is the reply to send
/// instead of the real one.
async fn apply_faults(
    state: &KbsState,
    target: FaultTarget,
) -> Result<Option<Reply>, DroppedByFault> {
    let (delay, rate) = {
        let faults = lock(&state.faults);
        if faults.target != FaultTarget::All && faults.target != target {
            return Ok(None);
        }
        (faults.delay, faults.max_replies_per_sec)
    };
    if delay > Duration::ZERO {
        tokio::time::sleep(delay).await;
    }
    if rate > 0 {
        // Each request books the next free slot, so replies leave evenly spaced.
        let slot = {
            let mut next = lock(&state.throttle_next);
            let slot = (*next).max(std::time::Instant::now());
            *next = slot + Duration::from_secs(1) / rate;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
    let mut faults = lock(&state.faults);
    if faults.drop_connections > 0 {
        faults.drop_connections -= 1;
        return Err(DroppedByFault);
    }
    if faults.fail_with_500 > 0 {
        faults.fail_with_500 -= 1;
        return Ok(Some(error(
            500,
            "InternalServerError",
            "injected test fault",
        )));
    }
    if faults.fail_with_401 > 0 {
        faults.fail_with_401 -= 1;
        return Ok(Some(match target {
            FaultTarget::Resource => error(
                401,
                "TokenVerifierError",
                "Token Verifier error: injected test fault",
            ),
            _ => attestation_error("injected test fault"),
        }));
    }
    Ok(faults.broken_reply.map(broken_reply))
}

async fn handle(state: Arc<KbsState>, req: Request<Incoming>) -> Result<Reply, DroppedByFault> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/kbs/v0/") else {
        return Ok(response(404, None, Vec::new()));
    };
    let (plugin, plugin_path) = rest.split_once('/').unwrap_or((rest, ""));
    let method = req.method().clone();
    if method != Method::GET && method != Method::POST {
        return Ok(response(405, None, Vec::new()));
    }
    let target = match (plugin, method == Method::POST) {
        ("auth", true) => Some((FaultTarget::Auth, &state.counters.auth)),
        ("attest", true) => Some((FaultTarget::Attest, &state.counters.attest)),
        ("resource", false) => Some((FaultTarget::Resource, &state.counters.resource_get)),
        ("resource", true) => Some((FaultTarget::Resource, &state.counters.resource_post)),
        _ => None,
    };
    if let Some((target, counter)) = target {
        bump(counter);
        if let Some(reply) = apply_faults(&state, target).await? {
            return Ok(reply);
        }
    }
    let reply = match (plugin, method == Method::POST) {
        ("auth", true) => auth(&state, req).await,
        ("attest", true) => attest(&state, req).await,
        ("resource", false) => resource(&state, &req, plugin_path),
        ("resource", true) => set_resource(&state, req, plugin_path).await,
        _ => error(404, "PluginNotFound", format!("Plugin {plugin} not found")),
    };
    Ok(reply)
}

fn attestation_error(detail: impl std::fmt::Display) -> Reply {
    error(
        401,
        "AttestationError",
        format!("Attestation error: {detail}"),
    )
}

async fn auth(state: &KbsState, req: Request<Incoming>) -> Reply {
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let auth_failed =
        |detail: String| attestation_error(format!("RCAR handshake Auth failed: {detail}"));
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return auth_failed("deserialize Request: not JSON".into());
    };
    let (Some(version), Some(tee), Some(_)) = (
        request.get("version").and_then(Value::as_str),
        request.get("tee").and_then(Value::as_str),
        request.get("extra-params"),
    ) else {
        return auth_failed(
            "deserialize Request: version, tee and extra-params are required".into(),
        );
    };
    if !KNOWN_TEES.contains(&tee) {
        return auth_failed(format!("deserialize Request: unknown tee {tee:?}"));
    }
    let Ok(parsed) = semver::Version::parse(version) else {
        return auth_failed(format!("failed to parse KBS version {version:?}"));
    };
    let requirement = match semver::VersionReq::parse(&state.config.version_requirement) {
        Ok(requirement) => requirement,
        Err(e) => return error(500, "ConfigError", format!("bad version requirement: {e}")),
    };
    if !requirement.matches(&parsed) {
        return auth_failed(format!(
            "KBS Client Protocol Version Mismatch: expect {requirement} while the request is {version}"
        ));
    }

    let nonce_fault = lock(&state.faults).nonce;
    let nonce = match nonce_fault {
        NonceFault::Reused => state.reused_nonce.clone(),
        NonceFault::Empty => String::new(),
        NonceFault::Oversized => "A".repeat(1024 * 1024),
        NonceFault::Fresh | NonceFault::NotAString => fresh_nonce(),
    };
    let id = hex::encode(random_bytes::<16>());
    let expires = SystemTime::now() + state.config.session_lifetime;
    let (extra_params, hash) = match &state.config.selected_hash_algorithm {
        Some(name) => (
            json!({"selected-hash-algorithm": name}),
            BindingHash::from_name(name),
        ),
        None => (json!(""), Some(BindingHash::Sha384)),
    };
    {
        let mut sessions = lock(&state.sessions);
        let now = SystemTime::now();
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                tee: tee.to_string(),
                nonce: nonce.clone(),
                hash,
                expires,
                state: SessionState::Authed,
            },
        );
    }
    let wire_nonce = match nonce_fault {
        NonceFault::NotAString => json!(4242),
        _ => json!(nonce),
    };
    let mut reply = json_reply(&json!({"nonce": wire_nonce, "extra-params": extra_params}));
    set_cookie(&mut reply, &id, expires);
    reply
}

async fn attest(state: &KbsState, req: Request<Incoming>) -> Reply {
    let attest_failed =
        |detail: String| attestation_error(format!("RCAR handshake Attest failed: {detail}"));
    let Some(id) = session_id(&req) else {
        return attest_failed("cookie not found".into());
    };
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Ok(attestation) = serde_json::from_slice::<Value>(&body) else {
        return attest_failed("deserialize Attestation: not JSON".into());
    };
    let runtime = attestation.get("runtime-data");
    let evidence = attestation.get("tee-evidence");
    let (Some(nonce), Some(jwk), Some(primary), Some(additional)) = (
        runtime.and_then(|r| r.get("nonce")).and_then(Value::as_str),
        runtime.and_then(|r| r.get("tee-pubkey")),
        evidence.and_then(|e| e.get("primary_evidence")),
        evidence
            .and_then(|e| e.get("additional_evidence"))
            .and_then(Value::as_str),
    ) else {
        return attest_failed(
            "deserialize Attestation: runtime-data {nonce, tee-pubkey} and tee-evidence {primary_evidence, additional_evidence} are required".into(),
        );
    };
    let init_data = match attestation.get("init-data") {
        None | Some(Value::Null) => None,
        Some(init) => match (
            init.get("format").and_then(Value::as_str),
            init.get("body").and_then(Value::as_str),
        ) {
            (Some("toml"), Some(_)) => Some(init.clone()),
            _ => {
                return attest_failed(
                    "init-data must be {\"format\":\"toml\",\"body\":<string>}".into(),
                )
            }
        },
    };

    // The nonce is spent by this request whatever its outcome.
    let (tee, session_nonce, hash, expires) = {
        let mut sessions = lock(&state.sessions);
        let Some(session) = sessions.get_mut(&id) else {
            return attest_failed("No cookie found".into());
        };
        if session.expires <= SystemTime::now() {
            return attest_failed("session expired.".into());
        }
        if !matches!(session.state, SessionState::Authed) {
            return attest_failed("the nonce of this session was already used".into());
        }
        session.state = SessionState::Spent;
        (
            session.tee.clone(),
            session.nonce.clone(),
            session.hash,
            session.expires,
        )
    };
    if nonce != session_nonce {
        return attest_failed("the nonce in the handshake session is different from the client side in KBS protocol's Attestation message".into());
    }
    let key = match TeeKey::from_jwk(jwk) {
        Ok(key) => key,
        Err(detail) => return attest_failed(detail),
    };
    let Some(hash) = hash else {
        return attest_failed("the test KBS does not offer the selected hash algorithm".into());
    };
    if tee != "sample" {
        return attest_failed(format!(
            "verify TEE evidence failed: no verifier for tee {tee:?} in the test KBS"
        ));
    }
    let primary_claims = json!({
        "tee-pubkey": key.jwk(),
        "nonce": nonce,
        "additional-evidence": additional,
    });
    let checked = binding(hash, &primary_claims)
        .and_then(|expected| verify_sample_evidence(primary, &expected));
    if let Err(detail) = checked {
        return attest_failed(format!("verify TEE evidence failed: {detail}"));
    }
    if !additional.is_empty() {
        let Ok(Value::Object(devices)) = serde_json::from_str::<Value>(additional) else {
            return attest_failed("additional_evidence is not a JSON object".into());
        };
        let device_claims = json!({"tee-pubkey": key.jwk(), "nonce": nonce});
        for (device_tee, device_evidence) in &devices {
            if device_tee != "sampledevice" {
                return attest_failed(format!("no verifier for device tee {device_tee:?}"));
            }
            let checked = binding(hash, &device_claims)
                .and_then(|expected| verify_sample_evidence(device_evidence, &expected));
            if let Err(detail) = checked {
                return attest_failed(format!("verify device evidence failed: {detail}"));
            }
        }
    }

    let now = kbs_now_secs(state);
    let claims = json!({
        "iss": "testkit-kbs",
        "iat": now,
        "exp": now + state.config.token_lifetime.as_secs(),
        "submods": {"cpu0": {
            "ear.status": "affirming",
            "ear.veraison.annotated-evidence": {
                "runtime_data_claims": primary_claims,
                "sample": primary,
                "init_data": init_data.as_ref().and_then(|i| i.get("body")).cloned().unwrap_or(Value::Null),
            },
        }},
    });
    let signer = lock(&state.signer).clone();
    let token = signer.sign(&claims);
    if let Some(session) = lock(&state.sessions).get_mut(&id) {
        session.state = SessionState::Attested {
            token: token.clone(),
        };
    }
    *lock(&state.last_init_data) = init_data;
    *lock(&state.last_tee_pubkey) = Some(key.jwk().clone());
    bump(&state.counters.attest_ok);
    let mut reply = json_reply(&json!({"token": token}));
    set_cookie(&mut reply, &id, expires);
    reply
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// One segment of trustee's `ResourceDesc` pattern: `[A-Za-z0-9_-]+[A-Za-z0-9_.-]*`.
fn resource_segment_ok(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `POST /kbs/v0/resource/<repo>/<type>/<tag>`: trustee's admin write. The body is read
/// first (actix does), then the admin token, then the path.
async fn set_resource(state: &KbsState, req: Request<Incoming>, path: &str) -> Reply {
    let admin_denied = |reason: &str| {
        error(
            401,
            "AdminAuthAccess",
            format!("admin access denied for endpoint resource: {reason}"),
        )
    };
    let token = bearer(&req);
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(token) = token else {
        return admin_denied("Failed to parse HTTP Auth Bearer header");
    };
    let Some(verifier) = &state.admin else {
        return admin_denied("Admin Token could not be verified for any admin persona");
    };
    let claims = match verifier.verify(&token, now_secs()) {
        Ok(claims) => claims,
        Err(detail) => {
            debug!(%detail, "admin token refused");
            return admin_denied("Admin Token could not be verified for any admin persona");
        }
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() != 3 || !segments.iter().all(|s| resource_segment_ok(s)) {
        return error(
            401,
            "PluginInternalError",
            format!("Plugin internal error: illegal ResourceDesc format {path:?}"),
        );
    }
    let header = token
        .split('.')
        .next()
        .and_then(|h| STANDARD_NO_PAD_URL.decode(h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    lock(&state.resources).insert(path.to_string(), body.to_vec());
    lock(&state.admin_writes).push(AdminWrite {
        path: path.to_string(),
        content_type,
        header,
        claims,
    });
    bump(&state.counters.resource_post_ok);
    response(200, Some("text/xml"), Vec::new())
}

fn resource(state: &KbsState, req: &Request<Incoming>, path: &str) -> Reply {
    // trustee: the session cookie's token first, else the Bearer token.
    let from_session = session_id(req).and_then(|id| {
        let sessions = lock(&state.sessions);
        let session = sessions.get(&id)?;
        match &session.state {
            SessionState::Attested { token } if session.expires > SystemTime::now() => {
                Some(token.clone())
            }
            _ => None,
        }
    });
    let Some(token) = from_session.or_else(|| bearer(req)) else {
        return error(401, "TokenNotFound", "Attestation Token not found");
    };
    let signer = lock(&state.signer).clone();
    let claims = match signer.verify(&token, kbs_now_secs(state)) {
        Ok(claims) => claims,
        Err(detail) => {
            return error(
                401,
                "TokenVerifierError",
                format!("Token Verifier error: {detail}"),
            )
        }
    };
    let key = match tee_pubkey_from_claims(&claims).map(TeeKey::from_jwk) {
        Some(Ok(key)) => key,
        Some(Err(detail)) => return error(401, "TokenVerifierError", detail),
        None => {
            return error(
                401,
                "TokenVerifierError",
                "no tee-pubkey in the token claims",
            )
        }
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() != 3 || segments.iter().any(|s| s.is_empty()) {
        return error(
            401,
            "PluginInternalError",
            format!("Plugin internal error: invalid resource path {path:?}"),
        );
    }
    let access = lock(&state.policy)
        .get(path)
        .copied()
        .unwrap_or(state.config.default_access);
    if access == Access::Deny {
        return error(
            state.config.policy_deny_status,
            "PolicyDeny",
            "Access denied by policy",
        );
    }
    let Some(plaintext) = lock(&state.resources).get(path).cloned() else {
        return match state.config.missing_resource {
            MissingResource::Unauthorized => error(
                401,
                "PluginInternalError",
                format!("Plugin internal error: resource {path} not found"),
            ),
            MissingResource::NotFound => error(
                404,
                "ResourceNotFound",
                format!("resource {path} not found"),
            ),
        };
    };
    let (force_rsa1_5, corruption) = {
        let faults = lock(&state.faults);
        let applies = matches!(faults.target, FaultTarget::All | FaultTarget::Resource);
        (faults.force_rsa1_5, faults.corrupt_jwe.filter(|_| applies))
    };
    let key = if corruption == Some(JweCorruption::ForeignKey) {
        key.foreign()
    } else {
        key
    };
    let mut jwe = match jwe_for_key(&key, &plaintext, force_rsa1_5) {
        Ok(jwe) => jwe,
        Err(detail) => return error(401, "JweError", format!("JWE failed: {detail}")),
    };
    if let Some(corruption) = corruption {
        corrupt_jwe(&mut jwe, corruption);
    }
    bump(&state.counters.resource_ok);
    json_reply(&jwe)
}
