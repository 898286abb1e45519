//! The HTTPS client every guest component builds: rustls with the aws-lc-rs provider (the
//! one `jose` links anyway), Mozilla's roots plus configured PEM roots, and reqwest on top
//! with the few options the callers set. Also the error helpers they share.
#![forbid(unsafe_code)]

mod builder;
mod error;
mod tls;

/// Builds the `reqwest::Client`.
pub use builder::ClientBuilder;
/// Why a client could not be built, and the error-chain helpers the callers share.
pub use error::{error_chain, is_tls_failure, Error};
