//! The Confidential Data Hub (CDH): the in-guest daemon that hands KBS resources, sealed
//! secrets, image layer keys, pulled images and secure mounts to kata-agent over ttRPC
//! (`unix:///run/confidential-containers/cdh.sock`).
//!
//! [`Config::load`] resolves the configuration (file, environment, kernel command line),
//! [`kms::new_kbc`] builds the one KBC the process uses, and [`Hub`] serves the ttRPC
//! services ([`Hub::ttrpc_services`]) and provisions credential files
//! ([`Hub::provision_credentials`]). The binary only wires these together.
//!
//! - sealed secrets: unsealing ([`Unsealer`]) and sealing ([`seal`], [`envelope`], used by
//!   the `secret` tool);
//! - layer keys: [`LayerKeyUnwrapper`], also an ocicrypt-rs `KeyProviderHandler` for
//!   in-process image pulls;
//! - `PullImage` through image-rs in this process ([`ImagePuller`]), with the hub's KBC for
//!   resources and its unwrapper for layer keys, measured by the agent;
//! - `SecureMount` of LUKS2 block devices ([`Hub::secure_mount`]);
//! - thin ttRPC clients of the CDH ([`CdhClient`]) and the attestation agent ([`AaClient`])
//!   for the `cdh-tool` and `aa-client` binaries.

#![forbid(unsafe_code)]

mod client;
mod config;
mod credentials;
mod hub;
mod keyprovider;
mod pull;
mod secret;
mod secure_mount;

/// ttRPC clients of the CDH and the attestation agent, and keyprovider message helpers.
pub use client::{
    optsdata_of_unwrap_answer, unwrap_request_for_packet, AaClient, CdhClient, ClientError,
    DEFAULT_AA_SOCKET, DEFAULT_CDH_SOCKET, DEFAULT_TIMEOUT,
};
/// The hub's configuration, how it is loaded, and its defaults.
pub use config::{
    AaConfig, Config, ConfigError, Credential, Environment, ImageConfig, KbcConfig, LoadOptions,
    LoadedConfig, LogConfig, OcicryptConfig, DEFAULT_CREDENTIALS_DIR, DEFAULT_KERNEL_CMDLINE,
};
/// Why a credential file was not written.
pub use credentials::WriteCredentialError;
/// The hub and the ttRPC status codes of its errors.
pub use hub::{
    secure_mount_code, unseal_code, unwrap_key_code, CredentialError, GetResourceError, Hub,
    HubDirs, ERROR_PREFIX,
};
/// Layer-key unwrapping.
pub use keyprovider::{LayerKeyUnwrapper, UnwrapKeyError};
/// `PullImage` in process.
pub use pull::{BundlePathProblem, ImagePuller, KbcResources, MeasurementError, PullImageError};
/// Signs any payload bytes as a sealed secret (tests use it for payloads [`seal`] never
/// writes).
pub use secret::sign as sign_sealed_secret;
/// Sealed secrets: parsing, unsealing and sealing.
pub use secret::{
    envelope, generate_key_pair, seal, signing_key_from_jwk, verifying_key_from_jwk, CompactJws,
    EnvelopeSecret, GeneratedKeyPair, JwkError, JwsPart, SealError, SecretContent, SecretPayload,
    UnsealError, Unsealer, VaultSecret, Verification, DEFAULT_SEALED_SECRET_DIR,
};
/// `SecureMount`: where devices, tools and headers are found, and why a mount failed.
pub use secure_mount::{SecureMountError, SecureMountPaths};
