//! Talking to registries: where to pull from ([`resolve()`]), with which credentials
//! ([`auth`]), and the HTTP client itself ([`client`]).

mod auth;
pub(crate) mod client;
mod resolve;

pub use auth::{AuthFile, AuthFileError, Credentials};
pub(crate) use client::BlobStream;
pub use client::{
    ClientSettings, FetchedManifest, LowSpeed, RegistryClient, RegistryError, RegistryResponse,
    Repository,
};
pub use resolve::{resolve, PullSource, ResolveError, SourceKind};
