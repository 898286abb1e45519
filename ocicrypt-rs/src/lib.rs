//! OCI image layer encryption and decryption, interoperable with containers/ocicrypt
//! (skopeo, podman, buildah) and CoCo's keyprovider protocol.
//!
//! - [`blockcipher`]: `AES_256_CTR_HMAC_SHA256` as streaming `Read`/`AsyncRead` adapters;
//!   decryption fails on the read that reaches end of stream when the HMAC is wrong.
//! - [`keywrap`]: the [`keywrap::KeyWrapper`] trait and the `jwe`, `pkcs7` and
//!   `provider.<name>` (keyprovider) wrappers, selected by annotation.
//! - [`layer`]: [`encrypt_layer`] / [`decrypt_layer`] over media types and annotations.
//! - [`layout`]: encrypt or decrypt a whole OCI image layout on disk.
//!
//! Typical decryption of a layer pulled from a registry:
//!
//! ```no_run
//! # async fn f(blob: std::fs::File, media_type: &str,
//! #            annotations: std::collections::BTreeMap<String, String>) -> ocicrypt_rs::Result<()> {
//! use ocicrypt_rs::keywrap::{jwe::JweKeyWrapper, KeyWrappers};
//! let mut jwe = JweKeyWrapper::new();
//! jwe.add_private_key(ocicrypt_rs::keys::parse_private_key(&std::fs::read("key.pem")?, None)?);
//! let mut wrappers = KeyWrappers::new();
//! wrappers.add(jwe);
//! let layer = ocicrypt_rs::decrypt_layer(blob, media_type, &annotations, &wrappers).await?;
//! let mut reader = layer.reader;
//! std::io::copy(&mut reader, &mut std::io::sink())?; // fails at EOF if the HMAC is wrong
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod blockcipher;
mod bytes;
pub mod digest;
mod error;
#[cfg(feature = "asymmetric-keys")]
pub mod keys;
#[cfg(all(feature = "keywrap-jwe", feature = "keywrap-keyprovider"))]
pub mod keyspec;
pub mod keywrap;
pub mod layer;
#[cfg(feature = "layout")]
pub mod layout;
pub mod spec;

pub use error::{Error, Result, UnwrapAttempt};
#[cfg(feature = "async-io")]
pub use layer::async_decrypt_layer;
pub use layer::{
    decrypt_layer, encrypt_layer, finalize_encryption, strip_encryption_annotations,
    unwrap_layer_options, EncryptedLayer, LayerDecryption, LayerEncryption,
};
