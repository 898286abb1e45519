//! Encrypted layers: the [`KeyUnwrap`] hook that yields a layer's key (CDH serves it
//! in-process; a keyprovider config or local keys work through ocicrypt-rs's key wrappers),
//! and the decrypting stage of the layer pipeline (ocicrypt-rs's streaming
//! `AES_256_CTR_HMAC_SHA256`, whose HMAC verdict arrives on the read that reaches the end).

use std::collections::BTreeMap;

use zeroize::Zeroizing;

/// Why an encrypted layer could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// no [`KeyUnwrap`] is configured
    #[error("layer {digest} is encrypted and no key unwrapper is configured (CDH key provider, OCICRYPT_KEYPROVIDER_CONFIG or keys)")]
    NoKeyUnwrap {
        /// the layer digest
        digest: String,
    },
    /// encrypted layers are not compiled in
    #[error("layer {digest} is encrypted and this build has no encryption support (feature `encryption`)")]
    NotCompiled {
        /// the layer digest
        digest: String,
    },
    /// the key could not be unwrapped
    #[error("unwrapping the key of layer {digest}: {message}")]
    Unwrap {
        /// the layer digest
        digest: String,
        /// what the unwrapper said
        message: String,
    },
    /// the layer's cipher options are unusable
    #[error("cipher options of layer {digest}: {message}")]
    Options {
        /// the layer digest
        digest: String,
        /// what is wrong
        message: String,
    },
    /// the HMAC (or another end-of-stream check) failed: the layer was altered
    #[error("layer {digest} failed authentication: {message}")]
    Authentication {
        /// the layer digest
        digest: String,
        /// ocicrypt's verdict
        message: String,
    },
}

/// Why a key unwrapper failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct KeyUnwrapError {
    /// what went wrong (never key material)
    pub message: String,
}

/// Yields the key of an encrypted layer.
#[async_trait::async_trait]
pub trait KeyUnwrap: Send + Sync + std::fmt::Debug {
    /// Returns the unwrapped private layer options JSON
    /// (`{"symkey":…,"digest":…,"cipheroptions":{"nonce":…}}`) from the layer descriptor's
    /// annotations (`org.opencontainers.image.enc.keys.*`).
    async fn unwrap_layer_key(
        &self,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyUnwrapError>;
}

#[cfg(feature = "encryption")]
mod ocicrypt_impl {
    use std::collections::BTreeMap;
    use std::io::Read;

    use ocicrypt_rs::keywrap::KeyWrappers;
    use ocicrypt_rs::ANNOTATION_PUBOPTS;
    use ocicrypt_rs::{
        DecryptingReader, LayerBlockCipherOptions, PrivateLayerBlockCipherOptions,
        PublicLayerBlockCipherOptions,
    };
    use zeroize::Zeroizing;

    use super::{DecryptError, KeyUnwrap, KeyUnwrapError};

    /// [`KeyUnwrap`] through ocicrypt-rs key wrappers (JWE/PKCS#7 private keys,
    /// keyprovider protocol, in-process key providers).
    #[derive(Debug, Clone)]
    pub struct OcicryptKeyUnwrap {
        wrappers: KeyWrappers,
    }

    impl OcicryptKeyUnwrap {
        /// Unwraps with these wrappers (tried in order).
        pub fn new(wrappers: KeyWrappers) -> Self {
            Self { wrappers }
        }

        /// The key providers of `OCICRYPT_KEYPROVIDER_CONFIG`, if it is set (what
        /// upstream does when it is given no decryption config).
        pub fn from_keyprovider_env() -> Result<Option<Self>, KeyUnwrapError> {
            let config =
                ocicrypt_rs::keywrap::keyprovider::OcicryptConfig::from_env().map_err(|e| {
                    KeyUnwrapError {
                        message: format!("OCICRYPT_KEYPROVIDER_CONFIG: {e}"),
                    }
                })?;
            let Some(config) = config else {
                return Ok(None);
            };
            let mut wrappers = KeyWrappers::new();
            for wrapper in config
                .key_wrappers(&BTreeMap::new())
                .map_err(|e| KeyUnwrapError {
                    message: format!("OCICRYPT_KEYPROVIDER_CONFIG: {e}"),
                })?
            {
                wrappers.add(wrapper);
            }
            Ok(Some(Self { wrappers }))
        }
    }

    #[async_trait::async_trait]
    impl KeyUnwrap for OcicryptKeyUnwrap {
        async fn unwrap_layer_key(
            &self,
            annotations: &BTreeMap<String, String>,
        ) -> Result<Zeroizing<Vec<u8>>, KeyUnwrapError> {
            self.wrappers
                .unwrap(annotations)
                .await
                .map_err(|e| KeyUnwrapError {
                    message: e.to_string(),
                })
        }
    }

    /// The cipher options of a layer: public ones from its annotations, private ones
    /// unwrapped.
    pub(crate) async fn layer_cipher_options(
        unwrapper: &dyn KeyUnwrap,
        annotations: &BTreeMap<String, String>,
        digest: &str,
    ) -> Result<LayerBlockCipherOptions, DecryptError> {
        let options_err = |message: String| DecryptError::Options {
            digest: digest.to_string(),
            message,
        };
        let public = annotations
            .get(ANNOTATION_PUBOPTS)
            .ok_or_else(|| {
                options_err(format!(
                    "no {ANNOTATION_PUBOPTS} annotation: the layer cannot be authenticated"
                ))
            })
            .and_then(|v| {
                PublicLayerBlockCipherOptions::from_annotation(v)
                    .map_err(|e| options_err(e.to_string()))
            })?;
        let private_json =
            unwrapper
                .unwrap_layer_key(annotations)
                .await
                .map_err(|e| DecryptError::Unwrap {
                    digest: digest.to_string(),
                    message: e.message,
                })?;
        let private = PrivateLayerBlockCipherOptions::from_json(&private_json)
            .map_err(|e| options_err(e.to_string()))?;
        Ok(LayerBlockCipherOptions { public, private })
    }

    /// The decrypting reader over the encrypted blob.
    pub(crate) fn decrypting_reader<R: Read>(
        inner: R,
        options: &LayerBlockCipherOptions,
        digest: &str,
    ) -> Result<DecryptingReader<R>, DecryptError> {
        DecryptingReader::new(inner, options).map_err(|e| DecryptError::Options {
            digest: digest.to_string(),
            message: e.to_string(),
        })
    }

    /// Turns an error of the decrypting reader into the decryption verdict, if it is one.
    pub(crate) fn authentication_failure(
        error: &std::io::Error,
        digest: &str,
    ) -> Option<DecryptError> {
        ocicrypt_rs::Error::from_io(error).map(|e| DecryptError::Authentication {
            digest: digest.to_string(),
            message: e.to_string(),
        })
    }
}

#[cfg(feature = "encryption")]
pub use ocicrypt_impl::OcicryptKeyUnwrap;
#[cfg(feature = "encryption")]
pub(crate) use ocicrypt_impl::{authentication_failure, decrypting_reader, layer_cipher_options};
