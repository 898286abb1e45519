//! Builds the suite's OCI test images from scratch, in Rust, and serves them from a real
//! `docker-registry` on 127.0.0.1.
//!
//! - [`tarball`]: layer contents as tar entries, including deliberately hostile ones
//!   (`..`, absolute paths, oversized headers) that ordinary tar writers refuse to write;
//! - [`layout`]: an OCI image layout on disk (blobs, image config, manifest, index) with
//!   gzip, zstd or uncompressed layers, OCI or Docker v2 media types;
//! - [`registry`]: a `docker-registry` launcher (temporary storage, free port, optional
//!   htpasswd or bearer-token auth, and TLS) that a test starts and stops;
//! - [`token`]: the bearer-token server of the token auth mode;
//! - [`push`]: a byte-exact HTTP push of a layout's image (or index) to a registry;
//! - [`fixtures`]: the named images the tests use;
//! - [`synthetic`]: a large deterministic image for benchmarks.
//!
//! ```no_run
//! # async fn f() -> Result<(), test_images::Error> {
//! use test_images::{fixtures, layout::OciLayout, push, registry::{Registry, RegistryOptions}};
//! let dir = tempfile::tempdir()?;
//! let layout = OciLayout::create(dir.path().join("oci"))?;
//! let image = layout.write_image(&fixtures::plain())?;
//! let registry = Registry::start(RegistryOptions::default())?;
//! push::push_image(&layout, &image.manifest, &registry.target(), "test/plain", "v1").await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod error;
pub mod fixtures;
pub mod hashing;
pub mod layout;
pub mod push;
pub mod registry;
pub mod synthetic;
pub mod tarball;
pub mod token;

pub use error::{Error, Result};
