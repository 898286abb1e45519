//! ttRPC wire contract of the in-guest suite: the protobuf messages and the async ttRPC
//! clients and servers of the Attestation Agent (`attestation_agent`), the Confidential
//! Data Hub (`api`) and the ocicrypt keyprovider (`keyprovider`), generated at build time
//! from `protos/*.proto` by pure-Rust codegen.
//!
//! A service whose trait method is not overridden answers the codegen default,
//! `NOT_FOUND "/<package.Service>/<Method> is not supported"`, as upstream does.

#![forbid(unsafe_code)]

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

pub use protobuf;
pub use ttrpc;

pub mod server;
