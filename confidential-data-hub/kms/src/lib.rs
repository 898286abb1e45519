//! The confidential data hub's ways to secrets.
//!
//! - KBS resources: the [`Kbc`] trait ("key broker client") and its implementations, chosen
//!   by name with [`new_kbc`]. Built in: [`offline_fs::OfflineFsKbc`] (`offline_fs_kbc`),
//!   resources from local JSON files. With the `kbs` feature (default): `cc_kbc`
//!   (`cc_kbc::CcKbc`), attested KBS access with tokens from the attestation agent; a build
//!   without it says so instead of falling back to something else.
//! - KMS and secret-store providers: the [`Getter`], [`Decrypter`] and [`Encrypter`]
//!   traits, built by provider name with [`KmsProviders`] (`kbs`, `offline_fs`, and `aws`,
//!   `aliyun`, `ehsm` with the features of the same names).
//! - [`wrap`]: the A256GCM / A256CTR wraps of envelope secrets and layer-key packets.
//! - With the `aliyun` feature, module `aliyun`: Alibaba Cloud KMS wire formats (request
//!   signing, client keys, protobuf messages).

#![forbid(unsafe_code)]

#[cfg(feature = "aliyun")]
pub mod aliyun;
#[cfg(feature = "kbs")]
pub mod cc_kbc;
mod kbc;
pub mod offline_fs;
pub mod plugins;
mod provider;
pub mod wrap;

pub use kbc::{new_kbc, Kbc, KbcError, KbcParams, CC_KBC, OFFLINE_FS_KBC};
pub use provider::{
    Annotations, Decrypter, Encrypter, Getter, KmsError, KmsProviders, Operation, ProviderSettings,
    ALIYUN_PROVIDER, AWS_PROVIDER, COMPILED_PROVIDERS, DEFAULT_KMS_CREDENTIAL_DIR, EHSM_PROVIDER,
    KBS_PROVIDER, OFFLINE_FS_PROVIDER,
};
