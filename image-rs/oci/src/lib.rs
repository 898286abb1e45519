//! The OCI image model in one place, for image-rs (the puller), ocicrypt-rs (layer
//! encryption) and test-images (the fixture builder):
//!
//! - [`Digest`]: a validated `<sha256|sha384|sha512>:<lowercase hex>` and its streaming
//!   [`Hasher`];
//! - [`Descriptor`], [`ImageManifest`], [`ImageIndex`], [`Platform`] and the image config
//!   ([`ImageConfiguration`]) as serde types with the spec's field names;
//! - the manifest and layer media types (OCI and Docker schema 2);
//! - [`parse_manifest`]: the strict parser for manifests a registry sends, with the
//!   [`MAX_MANIFEST_BYTES`] / [`MAX_CONFIG_BYTES`] limits callers enforce on peer bodies;
//! - [`PlatformSpec`]: picking an image for a platform out of an index.

#![forbid(unsafe_code)]

mod config;
mod digest;
mod manifest;
mod media_types;
mod platform;

pub use config::{ContainerConfig, ImageConfiguration, RootFs};
pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{
    parse_manifest, Descriptor, ImageIndex, ImageManifest, ManifestError, ManifestKind, Platform,
    MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
};
pub use media_types::*;
pub use platform::{PlatformSpec, PlatformSpecError};
