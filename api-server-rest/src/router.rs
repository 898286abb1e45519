//! The REST endpoints: which paths exist, what each one checks, and how backend answers
//! become HTTP responses.
//!
//! Order of checks for every request: loopback peer (else 403), known path (else 404),
//! feature enabled (else 404), the endpoint's method — `POST` for `/aa/aael`, `GET` for
//! every other endpoint — (else 405 with `Allow`), then the endpoint's own parameters
//! (else 400; 413 for an oversized `/aa/aael` body) — all before any backend is called.
//! Only `/aa/aael` reads the request body, and at most [`MAX_AAEL_BODY`] bytes of it.
//!
//! Error bodies are short fixed texts; the backend's error detail only goes to the log.
//! `/aa/aael` answers JSON `{"success":"true"|"false"[,"message":...]}` once its method
//! is accepted; the one message taken from a backend is the attestation agent's
//! `INVALID_ARGUMENT` text, which describes the caller's own event.

use std::{error::Error as StdError, net::SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{
    body::Body as HttpBody,
    header::{HeaderValue, ALLOW, CONTENT_TYPE},
    Method, Request, Response, StatusCode,
};
use serde::Serialize;

use crate::{
    aael::{is_json_content_type, parse_event, AaelEvent, AaelRequestError, MAX_AAEL_BODY},
    access::is_loopback_peer,
    backend::{BackendError, Backends, MeasurementOutcome},
    request::{runtime_data_from_query, token_type_from_query, Features, ResourcePath},
    token::{without_tee_key, KBS_TOKEN_TYPE},
};

/// The OpenAPI 3 document of the endpoints below, served at `/openapi.json`.
pub const OPENAPI_DOCUMENT: &str = include_str!("../openapi/api.json");

/// The body type of every response.
pub(crate) type Body = Full<Bytes>;

const RESOURCE_PREFIX: &str = "/cdh/resource/";

/// One endpoint of the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /info`
    Info,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /aa/evidence`
    Evidence,
    /// `GET /aa/additional-evidence`
    AdditionalEvidence,
    /// `GET /aa/token`
    Token,
    /// `POST /aa/aael`
    Aael,
    /// `GET /cdh/resource/{repository}/{type}/{tag}`
    Resource,
}

impl Route {
    /// Every endpoint the router serves.
    pub const ALL: [Route; 7] = [
        Route::Info,
        Route::OpenApi,
        Route::Evidence,
        Route::AdditionalEvidence,
        Route::Token,
        Route::Aael,
        Route::Resource,
    ];

    /// The one method the endpoint answers (others get 405).
    pub fn method(self) -> Method {
        match self {
            Self::Aael => Method::POST,
            Self::Info
            | Self::OpenApi
            | Self::Evidence
            | Self::AdditionalEvidence
            | Self::Token
            | Self::Resource => Method::GET,
        }
    }

    /// The `Allow` header of the endpoint's 405 answer.
    fn allow_header(self) -> HeaderValue {
        HeaderValue::from_static(if self.method() == Method::POST {
            "POST"
        } else {
            "GET"
        })
    }

    /// The endpoint's path as written in the OpenAPI document.
    pub fn template(self) -> &'static str {
        match self {
            Self::Info => "/info",
            Self::OpenApi => "/openapi.json",
            Self::Evidence => "/aa/evidence",
            Self::AdditionalEvidence => "/aa/additional-evidence",
            Self::Token => "/aa/token",
            Self::Aael => "/aa/aael",
            Self::Resource => "/cdh/resource/{repository}/{type}/{tag}",
        }
    }

    /// The endpoint a request path belongs to (a resource path is checked later).
    pub fn of_path(path: &str) -> Option<Self> {
        match path {
            "/info" => Some(Self::Info),
            "/openapi.json" => Some(Self::OpenApi),
            "/aa/evidence" => Some(Self::Evidence),
            "/aa/additional-evidence" => Some(Self::AdditionalEvidence),
            "/aa/token" => Some(Self::Token),
            "/aa/aael" => Some(Self::Aael),
            _ if path.starts_with(RESOURCE_PREFIX) => Some(Self::Resource),
            _ => None,
        }
    }

    /// The text of the 404 answered when the endpoint's feature is off, or `None` when
    /// the endpoint is served with `features`.
    fn disabled_under(self, features: Features) -> Option<&'static str> {
        match self {
            Self::Info | Self::OpenApi => None,
            Self::Evidence | Self::AdditionalEvidence | Self::Token | Self::Aael
                if !features.attestation() =>
            {
                Some("Attestation Feature Not Enabled")
            }
            Self::Resource if !features.resource() => Some("Resource Feature Not Enabled"),
            Self::Evidence
            | Self::AdditionalEvidence
            | Self::Token
            | Self::Aael
            | Self::Resource => None,
        }
    }
}

/// The `/info` answer; `tee` and `additional_tees` only with the attestation feature.
#[derive(Debug, Serialize)]
struct Info {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_tees: Option<Vec<String>>,
    feature: &'static str,
}

/// Answers the REST endpoints for one enabled feature set, forwarding to the backends.
#[derive(Debug)]
pub struct Router {
    features: Features,
    backends: Backends,
    withhold_tee_key: bool,
}

impl Router {
    /// A router that serves the endpoints of `features` through `backends`; `/aa/token`
    /// answers the agent's reply as upstream does, TEE key pair included.
    pub fn new(features: Features, backends: Backends) -> Self {
        Self {
            features,
            backends,
            withhold_tee_key: false,
        }
    }

    /// With `true`, `/aa/token?token_type=kbs` answers only `{"token":...}`, keeping the
    /// TEE private key (`tee_keypair`) from the pod (`--withhold-tee-key`).
    pub fn withhold_tee_key(mut self, withhold: bool) -> Self {
        self.withhold_tee_key = withhold;
        self
    }

    /// Answers one request from `peer`. Only `/aa/aael` reads the request body (bounded);
    /// for every other endpoint it is dropped unread.
    pub async fn handle<B>(&self, peer: SocketAddr, req: Request<B>) -> Response<Body>
    where
        B: HttpBody,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        if !is_loopback_peer(&peer) {
            tracing::warn!(%peer, "refused a request from a non-loopback peer");
            return text(StatusCode::FORBIDDEN, "Forbidden");
        }
        let uri = req.uri();
        let path = uri.path();
        let Some(route) = Route::of_path(path) else {
            return text(StatusCode::NOT_FOUND, "URL NOT FOUND");
        };
        if let Some(message) = route.disabled_under(self.features) {
            return text(StatusCode::NOT_FOUND, message);
        }
        if req.method() != route.method() {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            response.headers_mut().insert(ALLOW, route.allow_header());
            return response;
        }
        match route {
            Route::Info => self.info().await,
            Route::OpenApi => with_type(
                StatusCode::OK,
                "application/json",
                Bytes::from_static(OPENAPI_DOCUMENT.as_bytes()),
            ),
            Route::Evidence | Route::AdditionalEvidence => self.evidence(route, uri.query()).await,
            Route::Token => self.token(uri.query()).await,
            Route::Resource => self.resource(&path[RESOURCE_PREFIX.len()..]).await,
            Route::Aael => self.aael(req).await,
        }
    }

    async fn info(&self) -> Response<Body> {
        let mut info = Info {
            version: env!("CARGO_PKG_VERSION"),
            tee: None,
            additional_tees: None,
            feature: self.features.as_str(),
        };
        if self.features.attestation() {
            let (tee, additional) =
                tokio::join!(self.backends.tee_type(), self.backends.additional_tees());
            match (tee, additional) {
                (Ok(tee), Ok(additional)) => {
                    info.tee = Some(tee);
                    info.additional_tees = Some(additional);
                }
                (Err(e), _) | (_, Err(e)) => return backend_failure(&e, "TEE information"),
            }
        }
        match serde_json::to_vec(&info) {
            Ok(json) => with_type(StatusCode::OK, "application/json", json.into()),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize /info");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }

    async fn evidence(&self, route: Route, query: Option<&str>) -> Response<Body> {
        let runtime_data = match runtime_data_from_query(query) {
            Ok(data) => data,
            Err(e) => return text_owned(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let (answer, what) = if route == Route::Evidence {
            (self.backends.get_evidence(runtime_data).await, "evidence")
        } else {
            (
                self.backends.get_additional_evidence(runtime_data).await,
                "additional evidence",
            )
        };
        match answer {
            Ok(evidence) => octets(evidence),
            Err(e) => backend_failure(&e, what),
        }
    }

    async fn token(&self, query: Option<&str>) -> Response<Body> {
        let token_type = match token_type_from_query(query) {
            Ok(token_type) => token_type,
            Err(e) => return text_owned(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let reply = match self.backends.get_token(&token_type).await {
            Ok(reply) => reply,
            Err(e) => return backend_failure(&e, "token"),
        };
        if token_type != KBS_TOKEN_TYPE || !self.withhold_tee_key {
            return octets(reply.to_vec());
        }
        match without_tee_key(&reply) {
            Ok(token_only) => octets(token_only),
            Err(e) => {
                // never pass on a reply that could not be stripped of the key
                tracing::error!(error = %e, "getting token failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Failed to get token")
            }
        }
    }

    async fn aael<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: HttpBody,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let event = match read_aael_event(req).await {
            Ok(event) => event,
            Err(e) => {
                let status = if matches!(e, AaelRequestError::TooLarge) {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return aael_answer(status, false, Some(&e.to_string()));
            }
        };
        match self.backends.extend_runtime_measurement(&event).await {
            Ok(MeasurementOutcome::Recorded) => aael_answer(StatusCode::OK, true, None),
            Ok(MeasurementOutcome::NotEnabled) => aael_answer(
                StatusCode::OK,
                false,
                Some("runtime measurement is not enabled"),
            ),
            Ok(MeasurementOutcome::NotSupported) => aael_answer(
                StatusCode::OK,
                false,
                Some("runtime measurement is not supported by this TEE"),
            ),
            Err(e) => match e.invalid_argument_message() {
                Some(message) => {
                    tracing::info!(error = %e, "the attestation agent refused a runtime event");
                    aael_answer(StatusCode::BAD_REQUEST, false, Some(message))
                }
                None => {
                    tracing::error!(error = %e, "recording a runtime measurement failed");
                    aael_answer(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        false,
                        Some("Failed to record the runtime measurement"),
                    )
                }
            },
        }
    }

    async fn resource(&self, encoded: &str) -> Response<Body> {
        let path = match ResourcePath::parse(encoded) {
            Ok(path) => path,
            Err(e) if e.is_not_found() => {
                return text_owned(StatusCode::NOT_FOUND, e.to_string());
            }
            Err(e) => return text_owned(StatusCode::BAD_REQUEST, e.to_string()),
        };
        match self.backends.get_resource(&path.kbs_uri()).await {
            Ok(resource) => octets(resource),
            Err(e) if e.is_not_found() => {
                tracing::info!(error = %e, "resource not found");
                text(StatusCode::NOT_FOUND, "Resource Not Found")
            }
            Err(e) => backend_failure(&e, "resource"),
        }
    }
}

/// The `/aa/aael` answer (upstream's shape: `success` is a string).
#[derive(Debug, Serialize)]
struct AaelAnswer<'a> {
    success: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// Reads the body of a `/aa/aael` request: at most [`MAX_AAEL_BODY`] bytes, refused
/// unread when its declared length is larger.
async fn read_aael_event<B>(req: Request<B>) -> Result<AaelEvent, AaelRequestError>
where
    B: HttpBody,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    if !is_json_content_type(req.headers().get(CONTENT_TYPE)) {
        return Err(AaelRequestError::ContentType);
    }
    let body = req.into_body();
    // a declared Content-Length is the lower bound of the size hint
    if body.size_hint().lower() > MAX_AAEL_BODY as u64 {
        return Err(AaelRequestError::TooLarge);
    }
    let collected = Limited::new(body, MAX_AAEL_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                AaelRequestError::TooLarge
            } else {
                tracing::debug!(error = %e, "reading a /aa/aael body failed");
                AaelRequestError::Unreadable
            }
        })?;
    parse_event(&collected.to_bytes())
}

fn aael_answer(status: StatusCode, success: bool, message: Option<&str>) -> Response<Body> {
    let answer = AaelAnswer {
        success: if success { "true" } else { "false" },
        message,
    };
    match serde_json::to_vec(&answer) {
        Ok(json) => with_type(status, "application/json", json.into()),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the /aa/aael answer");
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// 500 with a short text; the error itself (which may carry daemon internals) is logged.
fn backend_failure(error: &BackendError, what: &str) -> Response<Body> {
    tracing::error!(error = %error, "getting {what} failed");
    text_owned(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Failed to get {what}"),
    )
}

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn octets(body: Vec<u8>) -> Response<Body> {
    with_type(StatusCode::OK, "application/octet-stream", body.into())
}

fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(message.as_bytes()),
    )
}

fn text_owned(status: StatusCode, message: String) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        for route in Route::ALL {
            let concrete = route
                .template()
                .replace("{repository}", "default")
                .replace("{type}", "key")
                .replace("{tag}", "1");
            assert_eq!(Route::of_path(&concrete), Some(route), "{concrete}");
        }
        for unknown in [
            "/",
            "",
            "/info/",
            "/INFO",
            "/aa/token/",
            "/aa/tokens",
            "/aa/aael/",
            "/aa/AAEL",
            "/aa/evidence/x",
            "/cdh/resource",
            "/cdh/resources/a/b/c",
            "/cdh/secret/a/b/c",
            "/openapi",
        ] {
            assert_eq!(Route::of_path(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn only_aael_is_post() {
        for route in Route::ALL {
            let expected = if route == Route::Aael {
                Method::POST
            } else {
                Method::GET
            };
            assert_eq!(route.method(), expected, "{route:?}");
        }
    }

    #[test]
    fn features_gate_routes() {
        use Features::*;
        assert_eq!(Route::Info.disabled_under(Resource), None);
        assert_eq!(Route::OpenApi.disabled_under(Attestation), None);
        assert_eq!(
            Route::Evidence.disabled_under(Resource),
            Some("Attestation Feature Not Enabled")
        );
        assert_eq!(
            Route::AdditionalEvidence.disabled_under(Resource),
            Some("Attestation Feature Not Enabled")
        );
        assert_eq!(
            Route::Token.disabled_under(Resource),
            Some("Attestation Feature Not Enabled")
        );
        assert_eq!(Route::Token.disabled_under(Attestation), None);
        assert_eq!(
            Route::Aael.disabled_under(Resource),
            Some("Attestation Feature Not Enabled")
        );
        assert_eq!(Route::Aael.disabled_under(Attestation), None);
        assert_eq!(
            Route::Resource.disabled_under(Attestation),
            Some("Resource Feature Not Enabled")
        );
        for route in Route::ALL {
            assert_eq!(route.disabled_under(All), None);
        }
    }
}
