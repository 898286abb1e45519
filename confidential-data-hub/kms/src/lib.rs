//! The confidential data hub's way to KBS resources: the [`Kbc`] trait ("key broker client")
//! and its implementations, chosen by name with [`new_kbc`].
//!
//! Built in: [`offline_fs::OfflineFsKbc`] (`offline_fs_kbc`), resources from local JSON
//! files. With the `kbs` feature (default): `cc_kbc` (`cc_kbc::CcKbc`), attested KBS access
//! with tokens from the attestation agent; a build without it says so instead of falling
//! back to something else.

#![forbid(unsafe_code)]

#[cfg(feature = "kbs")]
pub mod cc_kbc;
mod kbc;
pub mod offline_fs;

pub use kbc::{new_kbc, Kbc, KbcError, KbcParams, CC_KBC, OFFLINE_FS_KBC};
