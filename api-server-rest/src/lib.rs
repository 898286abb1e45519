//! api-server-rest: the REST shim on `127.0.0.1:8006` through which workload containers
//! reach the attestation agent (evidence, tokens, TEE type) and the confidential data hub
//! (KBS resources) over ttRPC.
//!
//! Compared with upstream: each endpoint answers one method (405 otherwise, also on
//! `/cdh/resource`): `POST` for `/aa/aael`, `GET` for the others; resource paths are exactly `<repository>/<type>/<tag>` with every segment decoded and
//! checked for traversal before the CDH is asked, error bodies are short fixed texts (the
//! detail is logged), an attestation agent failure during `/info` answers 500 instead of
//! dropping the connection, and `/aa/token?token_type=kbs` answers upstream's
//! `{"token","tee_keypair"}` unless the operator keeps the key from the pod
//! ([`Router::withhold_tee_key`], `--withhold-tee-key`). `POST /aa/aael` checks its JSON
//! body (content type, exact members and types, at most 64 KiB) before the attestation
//! agent is called, answers 400 rather than 500 for a bad body or an event the agent
//! refuses, and never sends a measurement twice.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use api_server_rest::{serve, BackendConfig, Backends, Features, Router};
//!
//! let router = Router::new(Features::All, Backends::new(BackendConfig::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8006").await?;
//! serve(listener, Arc::new(router), async {
//!     let _ = protos::server::shutdown_signal().await;
//! })
//! .await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod aael;
mod access;
mod backend;
mod request;
mod router;
mod server;
mod token;

pub use aael::MAX_AAEL_BODY;
pub use backend::{BackendConfig, Backends, DEFAULT_AA_ADDR, DEFAULT_CDH_ADDR, DEFAULT_TIMEOUT};
pub use request::{Features, UnknownFeatures, MAX_TOKEN_TYPE_LEN};
pub use router::{Route, Router, OPENAPI_DOCUMENT};
pub use server::{serve, MAX_REQUEST_HEAD};

/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8006";

/// Entry points for the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`): the
/// parsers of what a container sends, without the server around them.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// An `/aa/aael` request body; whether it is accepted.
    pub fn parse_event(body: &[u8]) -> bool {
        crate::aael::parse_event(body).is_ok()
    }

    /// The `token_type` of a query string; whether it is accepted.
    pub fn token_type_from_query(query: Option<&str>) -> bool {
        crate::request::token_type_from_query(query).is_ok()
    }

    /// The `runtime_data` of a query string; whether it is accepted.
    pub fn runtime_data_from_query(query: Option<&str>) -> bool {
        crate::request::runtime_data_from_query(query).is_ok()
    }

    /// The KBS resource URI of an encoded `<repository>/<type>/<tag>` path, if it is one.
    pub fn resource_kbs_uri(encoded: &str) -> Option<String> {
        crate::request::ResourcePath::parse(encoded)
            .ok()
            .map(|path| path.kbs_uri())
    }
}
