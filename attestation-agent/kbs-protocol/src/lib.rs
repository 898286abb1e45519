//! KBS client of the attestation agent and the confidential data hub: the RCAR handshake
//! with trustee's KBS, the TEE key pair that receives resources, tokens, and the KBS
//! resource URIs. Everything is at the crate root except the wire messages, in [`wire`].
//!
//! - [`KbsClient`]: background-check attestation (an [`EvidenceProvider`]; with the
//!   `attester` feature, `AttesterEvidenceProvider` over the `attester` crate's detected
//!   attesters, as AA and `kbs-client` use it) or passport mode (a [`TokenProvider`], as the
//!   data hub uses it, needing neither the feature nor any attester), with a shared token
//!   cache and single-flight attestation;
//! - [`TeeKeyPair`]: the TEE key pair and the decryption of the KBS's JWE replies;
//! - [`Token`], and AA's GetToken reply ([`encode_aa_token_reply`], [`decode_aa_token_reply`]);
//! - [`primary_report_data`]: the JCS binding of nonce and TEE key into the evidence;
//! - [`ResourceUri`]: `kbs://` resource URIs;
//! - [`KbsAdminClient`]: trustee's admin API for storing resources;
//! - [`wire`]: the protocol's JSON messages, exactly as trustee speaks them.

#![forbid(unsafe_code)]

mod admin;
mod client;
mod error;
mod evidence;
mod hash;
mod http;
mod jwe;
mod keypair;
mod report_data;
mod resource_uri;
mod token;
/// A namespace of its own: the message names (`Request`, `Challenge`, `Attestation`,
/// `InitData`) only read right qualified, as `wire::Request`.
pub mod wire;

/// Trustee's admin API client, for storing resources.
pub use admin::KbsAdminClient;
/// The KBS client and its settings.
pub use client::{KbsClient, KbsClientConfig};
/// Why a KBS operation failed.
pub use error::{Error, Result};
/// Evidence from the `attester` crate's detected attesters.
#[cfg(feature = "attester")]
pub use evidence::AttesterEvidenceProvider;
/// Where background-check evidence comes from.
pub use evidence::EvidenceProvider;
/// The hash algorithms a KBS challenge may ask for.
pub use hash::HashAlgorithm;
/// How often and how patiently KBS requests are retried.
pub use http::RetryPolicy;
/// JWE decryption options and errors (jose's).
pub use jwe::{JweError, JweOptions};
/// The TEE key pair and its algorithms.
pub use keypair::{KeyError, TeeKeyAlgorithm, TeeKeyPair};
/// The report data binding nonce and TEE key into the primary evidence.
pub use report_data::primary_report_data;
/// `kbs://` resource URIs.
pub use resource_uri::{ResourceUri, ResourceUriError};
/// Attestation tokens, passport-mode token providers and AA's GetToken reply.
pub use token::{
    decode_aa_token_reply, encode_aa_token_reply, ProviderError, Token, TokenError, TokenNeed,
    TokenProvider, TokenReplyError,
};
