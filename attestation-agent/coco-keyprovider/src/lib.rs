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
//! - [`params`]: the `keyid`/`keypath`/`algorithm`/`sample` parameters;
//! - [`provider`]: [`CocoKeyProvider`], the wrap and the KEK registration;
//! - [`admin`]: the Ed25519 admin key and its EdDSA tokens;
//! - [`daemon`]: `-d`, running in the background.
//!
//! The gRPC server and the keyprovider protocol are ocicrypt-rs's; the KBS HTTP client and
//! resource URIs are kbs_protocol's.

#![forbid(unsafe_code)]

pub mod admin;
pub mod daemon;
pub mod params;
pub mod provider;

use std::future::Future;
use std::sync::Arc;

pub use admin::AdminKey;
use ocicrypt_rs::keywrap::keyprovider::grpc::GrpcKeyProviderService;
pub use params::{Algorithm, WrapParams, PROVIDER_NAME};
pub use provider::{CocoKeyProvider, Registrar};

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
