//! OCI image layer encryption and decryption, interoperable with containers/ocicrypt
//! (skopeo, podman, buildah) and CoCo's keyprovider protocol.
//!
//! - The layer cipher `AES_256_CTR_HMAC_SHA256` as streaming `Read`/`AsyncRead` adapters
//!   ([`EncryptingReader`], [`DecryptingReader`]); decryption fails on the read that
//!   reaches end of stream when the HMAC is wrong.
//! - [`keywrap`]: the [`KeyWrapper`] trait and the `jwe`, `pkcs7` and `provider.<name>`
//!   (keyprovider) wrappers, selected by annotation.
//! - [`encrypt_layer`] / [`decrypt_layer`] over media types and annotations.
//! - `encrypt_image` / `decrypt_image` (feature `layout`): a whole OCI image layout on disk.
//!
//! Typical decryption of a layer pulled from a registry:
//!
//! ```no_run
//! # async fn f(blob: std::fs::File, media_type: &str,
//! #            annotations: std::collections::BTreeMap<String, String>) -> ocicrypt_rs::Result<()> {
//! use ocicrypt_rs::{keywrap::jwe::JweKeyWrapper, KeyWrappers};
//! let mut jwe = JweKeyWrapper::new();
//! jwe.add_private_key(ocicrypt_rs::parse_private_key(&std::fs::read("key.pem")?, None)?);
//! let mut wrappers = KeyWrappers::new();
//! wrappers.add(jwe);
//! let layer = ocicrypt_rs::decrypt_layer(blob, media_type, &annotations, &wrappers).await?;
//! let mut reader = layer.reader;
//! std::io::copy(&mut reader, &mut std::io::sink())?; // fails at EOF if the HMAC is wrong
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod blockcipher;
mod bytes;
mod error;
#[cfg(feature = "asymmetric-keys")]
mod keys;
#[cfg(all(feature = "keywrap-jwe", feature = "keywrap-keyprovider"))]
mod keyspec;
// Stays a namespace: each wrapper module has its own `encrypt`/`decrypt`/error names.
pub mod keywrap;
mod layer;
#[cfg(feature = "layout")]
mod layout;
mod spec;

/// The layer cipher's `tokio` readers.
#[cfg(feature = "async-io")]
pub use blockcipher::{AsyncDecryptingReader, AsyncEncryptingReader};
/// The layer cipher: streaming readers, its options (public and private parts) and sizes.
pub use blockcipher::{
    DecryptingReader, EncryptingReader, LayerBlockCipherOptions, PrivateLayerBlockCipherOptions,
    PublicLayerBlockCipherOptions, VerifiedLayer,
};
/// PEM/DER/JWK key parsing for the JWE and PKCS#7 wrappers.
#[cfg(feature = "asymmetric-keys")]
pub use keys::{parse_private_key, parse_public_key, KeyError, PrivateKey, PublicKey};
/// Key wrappers from skopeo-style `--encryption-key`/`--decryption-key` specs.
#[cfg(all(feature = "keywrap-jwe", feature = "keywrap-keyprovider"))]
pub use keyspec::{decryption_wrappers, encryption_wrappers};
/// The key wrapper trait and the set of wrappers a layer is wrapped or unwrapped with.
pub use keywrap::{KeyWrapper, KeyWrappers};
/// Encrypting and decrypting whole OCI image layouts on disk.
#[cfg(feature = "layout")]
pub use layout::{decrypt_image, encrypt_image, ImageSummary, LayoutReference};
/// The annotation holding a layer's public cipher options.
pub use spec::ANNOTATION_PUBOPTS;

pub use error::{Error, Result, UnwrapAttempt};
#[cfg(feature = "async-io")]
pub use layer::async_decrypt_layer;
pub use layer::{
    decrypt_layer, encrypt_layer, finalize_encryption, strip_encryption_annotations,
    unwrap_layer_options, EncryptedLayer, LayerDecryption, LayerEncryption,
};
