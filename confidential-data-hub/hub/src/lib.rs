//! The Confidential Data Hub (CDH): the in-guest daemon that hands KBS resources, sealed
//! secrets, image layer keys, pulled images and secure mounts to kata-agent over ttRPC
//! (`unix:///run/confidential-containers/cdh.sock`).
//!
//! [`Config::load`] resolves the configuration (file, environment, kernel command line),
//! [`kms::new_kbc`] builds the one KBC the process uses, and [`Hub`] serves the ttRPC
//! services ([`Hub::ttrpc_services`]) and provisions credential files
//! ([`Hub::provision_credentials`]). The binary only wires these together.
//!
//! - [`secret`]: sealed secrets, unsealing ([`Unsealer`]) and sealing (the `secret` tool);
//! - [`keyprovider`]: layer-key unwrapping ([`LayerKeyUnwrapper`], also an ocicrypt-rs
//!   `KeyProviderHandler` for in-process image pulls);
//! - [`pull`]: `PullImage` through image-rs in this process ([`ImagePuller`]), with the
//!   hub's KBC for resources and its unwrapper for layer keys, measured by the agent;
//! - [`secure_mount`]: `SecureMount` of LUKS2 block devices ([`secure_mount::SecureMounter`]);
//! - [`client`]: thin ttRPC clients of the CDH and the attestation agent (`cdh-tool`,
//!   `aa-client`).

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
mod credentials;
mod hub;
pub mod keyprovider;
pub mod pull;
pub mod secret;
pub mod secure_mount;

pub use config::{Config, ConfigError, Environment, ImageConfig, LoadOptions, LoadedConfig};
pub use credentials::WriteCredentialError;
pub use hub::{
    secure_mount_code, unseal_code, unwrap_key_code, CredentialError, GetResourceError, Hub,
    HubDirs, ERROR_PREFIX,
};
pub use keyprovider::{LayerKeyUnwrapper, UnwrapKeyError};
pub use pull::{ImagePuller, KbcResources, PullImageError};
pub use secret::{UnsealError, Unsealer, Verification};
