//! KBS client of the attestation agent and the confidential data hub.
//!
//! - [`wire`]: the protocol's JSON messages, exactly as trustee speaks them;
//! - [`report_data`]: the JCS binding of nonce, TEE key and device evidence;
//! - [`keypair`] and [`jwe`]: the TEE key pair and the decryption of the KBS's replies;
//! - [`token`]: attestation tokens, the passport-mode [`TokenProvider`], AA's token reply;
//! - [`evidence`]: the [`EvidenceProvider`] trait and, with the `attester` feature,
//!   `AttesterEvidenceProvider`, evidence from the `attester` crate's detected attesters (AA
//!   in-process, `kbs-client`); passport-mode users (CDH) need neither the feature nor any
//!   attester;
//! - [`client`]: [`KbsClient`], with a shared token cache and single-flight attestation;
//! - [`resource_uri`]: `kbs://` resource URIs;
//! - [`admin`]: [`KbsAdminClient`], trustee's admin API for storing resources.

#![forbid(unsafe_code)]

pub mod admin;
pub mod client;
pub mod error;
pub mod evidence;
pub mod hash;
mod http;
pub mod jwe;
pub mod keypair;
pub mod report_data;
pub mod resource_uri;
pub mod token;
pub mod wire;

pub use admin::KbsAdminClient;
pub use client::{KbsClient, KbsClientConfig};
pub use error::{Error, Result};
#[cfg(feature = "attester")]
pub use evidence::AttesterEvidenceProvider;
pub use evidence::EvidenceProvider;
pub use hash::HashAlgorithm;
pub use http::RetryPolicy;
pub use jwe::{JweError, JweOptions};
pub use keypair::{KeyError, TeeKeyAlgorithm, TeeKeyPair};
pub use resource_uri::ResourceUri;
pub use token::{ProviderError, Token, TokenNeed, TokenProvider};
