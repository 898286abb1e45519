//! The confidential data hub's ways to secrets.
//!
//! - KBS resources: the [`Kbc`] trait ("key broker client") and its implementations, chosen
//!   by name with [`new_kbc`]. Built in: [`OfflineFsKbc`] (`offline_fs_kbc`), resources from
//!   local JSON files. With the `kbs` feature (default): `cc_kbc` (`CcKbc`), attested KBS
//!   access with tokens from the attestation agent; a build without it says so instead of
//!   falling back to something else.
//! - KMS and secret-store providers: the [`Getter`], [`Decrypter`] and [`Encrypter`]
//!   traits, built by provider name with [`KmsProviders`] (`kbs`, `offline_fs`, and `aws`,
//!   `aliyun`, `ehsm` with the features of the same names).
//! - [`wrap`] and [`unwrap`]: the A256GCM / A256CTR wraps of envelope secrets and layer-key
//!   packets.

#![forbid(unsafe_code)]

#[cfg(feature = "aliyun")]
mod aliyun;
#[cfg(feature = "kbs")]
mod cc_kbc;
mod kbc;
mod offline_fs;
mod plugins;
mod provider;
mod wrap;

/// `cc_kbc`: the KBS client with tokens from the attestation agent, and its token source.
#[cfg(feature = "kbs")]
pub use cc_kbc::{AaTokenProvider, CcKbc, TOKEN_REFRESH_METADATA};
/// The KBC trait, its errors and parameters, and the factory by name.
pub use kbc::{new_kbc, Kbc, KbcError, KbcParams, CC_KBC, OFFLINE_FS_KBC};
/// `offline_fs_kbc`: KBS resources from local JSON files, and where upstream keeps them.
pub use offline_fs::{
    OfflineFsError, OfflineFsKbc, OfflineFsSources, DEFAULT_KEYS_FILE as OFFLINE_FS_KEYS_FILE,
    DEFAULT_RESOURCES_FILE as OFFLINE_FS_RESOURCES_FILE,
    EXTRA_FILES_ENV as OFFLINE_FS_EXTRA_FILES_ENV,
};
/// Provider `aliyun`: network overrides (tests, private endpoints) and the environment
/// variable naming its credential directory.
#[cfg(feature = "aliyun")]
pub use plugins::aliyun::{AliyunNetwork, KEY_PATH_ENV as ALIYUN_KEY_PATH_ENV};
/// Provider `ehsm`: the environment variable naming its credential directory.
#[cfg(feature = "ehsm")]
pub use plugins::ehsm::KEY_PATH_ENV as EHSM_KEY_PATH_ENV;
/// The KMS/secret-store provider traits, their settings, errors and names.
pub use provider::{
    Annotations, Decrypter, Encrypter, Getter, KmsError, KmsProviders, Operation, ProviderSettings,
    ALIYUN_PROVIDER, AWS_PROVIDER, COMPILED_PROVIDERS, DEFAULT_KMS_CREDENTIAL_DIR, EHSM_PROVIDER,
    KBS_PROVIDER, OFFLINE_FS_PROVIDER,
};
/// Symmetric wraps of envelope secrets and layer keys.
pub use wrap::{unwrap, wrap, wrap_with_iv, WrapError, WrapType, WRAP_KEY_LEN};
