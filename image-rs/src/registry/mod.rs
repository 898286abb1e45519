//! Talking to registries: where to pull from ([`resolve()`]), with which credentials
//! ([`auth`]), and the HTTP client itself ([`client`]).

pub mod auth;
pub mod client;
pub mod resolve;

pub use auth::{AuthFile, AuthFileError, Credentials};
pub use client::{
    BlobStream, ClientSettings, FetchedManifest, LowSpeed, RegistryClient, RegistryError,
    RegistryResponse, Repository,
};
pub use resolve::{resolve, PullSource, ResolveError, SourceKind};
