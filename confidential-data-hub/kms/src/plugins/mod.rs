//! The provider implementations behind [`crate::KmsProviders`].

#[cfg(feature = "aws")]
pub mod aws;
pub mod kbs;
pub mod offline_fs;
