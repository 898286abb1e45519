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
//! in the module comments of `src/image.rs` (flow), `src/layer/mod.rs` (pipeline and
//! verification), `src/layer/unpack.rs` (extraction), `src/store.rs` (commit and
//! recovery) and `src/snapshot/` (rootfs).

#![forbid(unsafe_code)]

mod bundle;
mod config;
mod decrypt;
mod fsutil;
mod image;
mod layer;
mod policy;
mod reference;
mod registry;
mod resource;
mod snapshot;
mod store;

/// Why an OCI bundle could not be written.
pub use bundle::BundleError;
/// The puller's configuration: work directory, registries (registries.conf), proxy.
pub use config::{
    ConfigError, ImageConfig, MirrorConfig, ProxyConfig, RegistryConfig, RegistryEntry,
};
/// The layer key unwrapping hook of encrypted images, backed by ocicrypt-rs.
#[cfg(feature = "encryption")]
pub use decrypt::OcicryptKeyUnwrap;
/// Decrypting layers: the key unwrapping hook and its errors.
pub use decrypt::{DecryptError, KeyUnwrap, KeyUnwrapError};
/// The pull itself: the client, its options, its result and its errors.
pub use image::{ImageClient, PullError, PullOptions, PullReport, PulledImage};
/// The layer pipeline's errors, and the safe tar unpacker with its limits.
pub use layer::{
    unpack, LayerError, UnpackError, UnpackLimits, UnpackOptions, UnpackStats, RATIO_FREE_BYTES,
};
/// The OCI model (from `oci-model`) that appears in this crate's API.
pub use oci_model::{
    parse_manifest, Digest, Hasher, ImageConfiguration, ManifestKind, PlatformSpec,
};
/// The signature policy hook a pull consults, and a policy that accepts everything.
pub use policy::{AcceptAll, PolicyError, PolicyRequest, SignaturePolicy};
/// Image references (`registry/repository:tag@digest`).
pub use reference::{is_domain_name, Reference, ReferenceError};
/// The registry client, credentials (auth.json) and pull-source resolution (mirrors,
/// remapped locations, search registries).
pub use registry::{
    resolve, AuthFile, AuthFileError, ClientSettings, Credentials, FetchedManifest, LowSpeed,
    PullSource, RegistryClient, RegistryError, RegistryResponse, Repository, ResolveError,
    SourceKind,
};
/// Where `kbs://` and file resources (policies, keys, auth files) come from.
pub use resource::{LocalResources, ResourceError, ResourceProvider};
/// Rootfs snapshotters: overlay mounts or flattened copies.
pub use snapshot::{mount_overlay, SnapshotError, SnapshotterKind};
/// The deduplicating layer store under the work directory.
pub use store::{LayerStore, StoreError};

/// Entry points for the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// A `WWW-Authenticate` value: whether it holds a challenge this client answers.
    pub fn www_authenticate(header: &str) -> bool {
        crate::registry::client::parse_challenge(header).is_some()
    }
}
