//! In-guest container image pull for Confidential Containers: a registry client, a
//! streaming and verified layer pipeline, a safe unpacker, a deduplicating layer store,
//! overlay and flatten snapshotters, and OCI bundles.
//!
//! ```no_run
//! # async fn f() -> Result<(), image_rs::PullError> {
//! use image_rs::{ImageClient, ImageConfig, PullOptions};
//! let client = ImageClient::new(ImageConfig::default()).await?;
//! let report = client
//!     .pull_image("quay.io/org/app:v1", "/run/kata-containers/bundle".as_ref(), &PullOptions::default())
//!     .await?;
//! println!("{}", report.image.manifest_digest);
//! # Ok(()) }
//! ```
//!
//! What happens in a pull and why it is safe to run on untrusted registries is described
//! in [`image`] (flow), [`layer`] (pipeline and verification),
//! [`layer::unpack`](mod@layer::unpack) (extraction), [`store`] (commit and recovery) and
//! [`snapshot`] (rootfs).

#![forbid(unsafe_code)]

pub mod bundle;
pub mod config;
pub mod decrypt;
pub mod digest;
mod fsutil;
pub mod image;
pub mod layer;
pub mod manifest;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod resource;
pub mod snapshot;
pub mod store;

pub use config::{ImageConfig, ProxyConfig, RegistryConfig};
#[cfg(feature = "encryption")]
pub use decrypt::OcicryptKeyUnwrap;
pub use decrypt::{KeyUnwrap, KeyUnwrapError};
pub use digest::Digest;
pub use image::{ImageClient, PullError, PullOptions, PullReport, PulledImage};
pub use policy::{AcceptAll, PolicyError, PolicyRequest, SignaturePolicy};
pub use reference::Reference;
pub use registry::Credentials;
pub use resource::{LocalResources, ResourceError, ResourceProvider};
pub use snapshot::SnapshotterKind;

/// Entry points for the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// A `WWW-Authenticate` value: whether it holds a challenge this client answers.
    pub fn www_authenticate(header: &str) -> bool {
        crate::registry::client::parse_challenge(header).is_some()
    }
}
