//! coco-keyprovider: the encryption side of Confidential Containers images.
//!
//! A gRPC `keyprovider.KeyProviderService` that skopeo, buildah or this project's `ocicrypt`
//! call (`--encryption-key provider:attestation-agent:<params>`, with the provider's
//! `{"grpc":"<addr>"}` entry in `OCICRYPT_KEYPROVIDER_CONFIG`) to wrap each layer's key:
//! `WrapKey` writes the annotation packet the confidential data hub unwraps
//! (`org.opencontainers.image.enc.keys.provider.attestation-agent`) and, with `--kbs` and
//! an admin key, stores the key-encryption key in the KBS through trustee's admin API.
//! `UnWrapKey` is refused: unwrapping happens in the guest, after attestation.
//!
//! - [`WrapParams`]: the `keyid`/`keypath`/`algorithm`/`sample` parameters;
//! - [`CocoKeyProvider`]: the wrap; [`Registrar`]: the KEK registration;
//! - [`AdminKey`]: the Ed25519 admin key and its EdDSA tokens;
//! - [`serve`]: the gRPC service;
//! - [`daemon`]: `-d`, running in the background.
//!
//! The gRPC server and the keyprovider protocol are ocicrypt-rs's; the KBS HTTP client and
//! resource URIs are kbs_protocol's.

#![forbid(unsafe_code)]

mod admin;
// Public as a namespace: `daemon::spawn`, `daemon::is_child`, `daemon::announce` only read
// right qualified.
pub mod daemon;
mod params;
mod provider;

use std::future::Future;
use std::sync::Arc;

use ocicrypt_rs::keywrap::keyprovider::GrpcKeyProviderService;

/// The KBS admin key and why it could not be loaded.
pub use admin::{AdminKey, AdminKeyError};
/// The wrap parameters of a WrapKey request.
pub use params::{Algorithm, ParamsError, WrapParams, PROVIDER_NAME};
/// The keyprovider service and its KBS registration.
pub use provider::{CocoKeyProvider, Registrar, WrapError};

/// Serves `provider` as `keyprovider.KeyProviderService` on `listener` until `shutdown`.
pub async fn serve(
    provider: CocoKeyProvider,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    GrpcKeyProviderService::new(Arc::new(provider))
        .serve(listener, shutdown)
        .await
        .map_err(Into::into)
}
