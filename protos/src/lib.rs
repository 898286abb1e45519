//! ttRPC wire contract of the in-guest suite: the protobuf messages and the async ttRPC
//! clients and servers of the Attestation Agent (`attestation_agent`), the Confidential
//! Data Hub (`api`) and the ocicrypt keyprovider (`keyprovider`), generated at build time
//! from `protos/*.proto` by pure-Rust codegen.
//!
//! Also the rest of what crosses between the daemons, so that no daemon links another
//! daemon's implementation to speak to it:
//! - the AAEL event encoding ([`AaelEvent`], [`pull_image_event`]);
//! - the ttRPC metadata keys ([`TOKEN_REFRESH_METADATA_KEY`]);
//! - the kernel command line ([`KernelCmdline`]) and `aa_kbc_params` ([`AaKbcParams`]);
//! - the reconnecting ttRPC [`Connection`] and the typed attestation-agent [`AaClient`].
//!
//! A service whose trait method is not overridden answers the codegen default,
//! `NOT_FOUND "/<package.Service>/<Method> is not supported"`, as upstream does.

#![forbid(unsafe_code)]

// The generated modules stay public namespaces: callers (kata-agent style) name the
// messages and services as `protos::attestation_agent::...`, as with upstream's crate.
macro_rules! generated {
    ($(#[$doc:meta])* $name:ident, $file:literal) => {
        $(#[$doc])*
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::restriction,
            missing_docs,
            missing_debug_implementations,
            unused_imports,
            unused_mut,
            unused_qualifications,
            unused_results,
            non_camel_case_types,
            non_snake_case,
            non_upper_case_globals,
            dead_code,
            trivial_casts
        )]
        #[rustfmt::skip]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

generated!(
    /// Messages of `attestation-agent.proto` (package `attestation_agent`).
    attestation_agent,
    "attestation_agent.rs"
);
generated!(
    /// ttRPC client and server of `attestation_agent.AttestationAgentService`.
    attestation_agent_ttrpc,
    "attestation_agent_ttrpc.rs"
);
generated!(
    /// Messages of `api.proto` (package `api`), the Confidential Data Hub.
    api,
    "api.rs"
);
generated!(
    /// ttRPC clients and servers of the `api.*Service` services of the Confidential Data Hub.
    api_ttrpc,
    "api_ttrpc.rs"
);
generated!(
    /// Messages of `keyprovider.proto` (package `keyprovider`).
    keyprovider,
    "keyprovider.rs"
);
generated!(
    /// ttRPC client and server of `keyprovider.KeyProviderService`.
    keyprovider_ttrpc,
    "keyprovider_ttrpc.rs"
);

/// A namespace of its own: the daemons call `protos::server::start` / `shutdown_signal`.
pub mod server;

/// Longest resource URI (`kbs:///<repository>/<type>/<tag>`) the suite accepts, in bytes:
/// the KBS client refuses a longer one, so the REST shim answers it with 400 before any call.
/// Real resource URIs are a few dozen bytes.
pub const MAX_RESOURCE_URI_LEN: usize = 4096;

mod aael;
mod client;
mod cmdline;

pub use aael::{
    pull_image_content, pull_image_event, AaelEvent, DecodeError, EventError, EventField,
    AAEL_TAGGED_EVENT_ID, MAX_EVENT_TEXT_LEN, PULL_IMAGE_DOMAIN, PULL_IMAGE_OPERATION,
};
pub use client::{
    AaClient, CallError, Connection, TOKEN_REFRESH_METADATA_KEY, TOKEN_REFRESH_METADATA_VALUE,
};
pub use cmdline::{
    AaKbcParams, AaKbcParamsError, KernelCmdline, AA_KBC_PARAMS_ENV, AA_KBC_PARAMS_KEY,
    DEFAULT_AA_KBC_PARAMS, KERNEL_CMDLINE_PATH,
};
