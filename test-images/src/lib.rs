//! Builds the suite's OCI test images from scratch, in Rust, and serves them from a real
//! `docker-registry` on 127.0.0.1:
//!
//! - layer contents as tar entries ([`Entry`], [`TarWriter`]), including deliberately
//!   hostile ones (`..`, absolute paths, oversized headers) that ordinary tar writers refuse
//!   to write;
//! - an OCI image layout on disk ([`OciLayout`]: blobs, image config, manifest, index) with
//!   gzip, zstd or uncompressed layers, OCI or Docker v2 media types ([`ImageSpec`]);
//! - a `docker-registry` launcher ([`Registry`]: temporary storage, free port, optional
//!   htpasswd or bearer-token auth, and TLS) that a test starts and stops;
//! - a byte-exact HTTP push of a layout's image (or index) to a registry ([`push_image`]);
//! - [`fixtures`]: the named images the tests use, and a large deterministic image for
//!   benchmarks ([`ContentGenerator`] makes its bytes).
//!
//! ```no_run
//! # async fn f() -> Result<(), test_images::Error> {
//! use test_images::{fixtures, push_image, OciLayout, Registry, RegistryOptions};
//! let dir = tempfile::tempdir()?;
//! let layout = OciLayout::create(dir.path().join("oci"))?;
//! let image = layout.write_image(&fixtures::plain())?;
//! let registry = Registry::start(RegistryOptions::default())?;
//! push_image(&layout, &image.manifest, &registry.target(), "test/plain", "v1").await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod error;
/// The named images, a namespace of their own: `fixtures::plain()` says what
/// `test_images::plain()` would not.
pub mod fixtures;
mod hashing;
mod layout;
mod push;
mod registry;
mod synthetic;
mod tarball;
mod token;

pub use error::{Error, Result};
pub use layout::{
    BuiltImage, Compression, ConfigSpec, Descriptor, ImageSpec, LayerContent, LayerSpec,
    ManifestFormat, OciLayout, Platform,
};
pub use push::{push_image, PushTarget};
pub use registry::{Registry, RegistryOptions};
pub use synthetic::ContentGenerator;
pub use tarball::{tar_bytes, Entry, EntryKind, TarWriter};
