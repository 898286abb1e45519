//! The Confidential Data Hub (CDH): the in-guest daemon that hands KBS resources, sealed
//! secrets, image layer keys, pulled images and secure mounts to kata-agent over ttRPC
//! (`unix:///run/confidential-containers/cdh.sock`).
//!
//! [`Config::load`] resolves the configuration (file, environment, kernel command line),
//! [`kms::new_kbc`] builds the one KBC the process uses, and [`Hub`] serves the ttRPC
//! services ([`Hub::ttrpc_services`]) and provisions credential files
//! ([`Hub::provision_credentials`]). The binary only wires these together.

#![forbid(unsafe_code)]

mod cmdline;
pub mod config;
mod credentials;
mod document;
mod hub;

pub use config::{Config, ConfigError, Environment, ImageConfig, LoadOptions, LoadedConfig};
pub use credentials::WriteCredentialError;
pub use hub::{CredentialError, GetResourceError, Hub, ERROR_PREFIX};
