//! Encrypting and decrypting one layer: media types, annotations and the cipher stream.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::blockcipher::{
    DecryptingReader, EncryptingReader, LayerBlockCipherOptions, PrivateLayerBlockCipherOptions,
    PublicLayerBlockCipherOptions,
};
use crate::error::{Error, Result};
use crate::keywrap::KeyWrappers;
use crate::spec::{self, ANNOTATION_PUBOPTS};

/// A layer being encrypted: read it to the end, then [`LayerEncryption::finalize`].
#[derive(Debug)]
pub struct LayerEncryption<R> {
    reader: EncryptingReader<R>,
    media_type: String,
}

/// What an encrypted layer's descriptor gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedLayer {
    /// the `…+encrypted` media type
    pub media_type: String,
    /// annotations to set: wrapped keys per scheme and `pubopts`
    pub annotations: BTreeMap<String, String>,
    /// digest of the plaintext blob that was encrypted
    pub plaintext_digest: String,
}

/// Starts encrypting a plain layer blob of `media_type` whose descriptor digest is
/// `digest` (empty if unknown; when given, a blob with another digest fails at EOF).
pub fn encrypt_layer<R: Read>(
    reader: R,
    media_type: &str,
    digest: &str,
) -> Result<LayerEncryption<R>> {
    let media_type = spec::encrypted_media_type(media_type)?;
    Ok(LayerEncryption {
        reader: EncryptingReader::new(reader, Some(digest))?,
        media_type,
    })
}

impl<R: Read> Read for LayerEncryption<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl<R: Read> LayerEncryption<R> {
    /// Wraps the layer key for every recipient of `wrappers` once the blob was read.
    pub async fn finalize(self, wrappers: &KeyWrappers) -> Result<EncryptedLayer> {
        let media_type = self.media_type;
        let opts = self.reader.finish()?;
        finalize_encryption(&opts, &media_type, wrappers).await
    }
}

/// The annotations of an encrypted layer for `opts` (from [`EncryptingReader::finish`] or
/// its async twin): each wrapper's wrapped keys and the public options.
pub async fn finalize_encryption(
    opts: &LayerBlockCipherOptions,
    encrypted_media_type: &str,
    wrappers: &KeyWrappers,
) -> Result<EncryptedLayer> {
    let private = opts.private.to_json()?;
    let mut annotations = wrappers.wrap(&private, &BTreeMap::new()).await?;
    annotations.insert(ANNOTATION_PUBOPTS.to_string(), opts.public.to_annotation()?);
    Ok(EncryptedLayer {
        media_type: encrypted_media_type.to_string(),
        annotations,
        plaintext_digest: opts.private.digest.clone(),
    })
}

/// Unwraps a layer's cipher options from its annotations with the first wrapper and
/// wrapped key that work, and reads its public options.
pub async fn unwrap_layer_options<I, K, V>(
    annotations: I,
    wrappers: &KeyWrappers,
) -> Result<LayerBlockCipherOptions>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let annotations: BTreeMap<String, String> = annotations
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect();
    let public = match annotations.get(ANNOTATION_PUBOPTS) {
        Some(value) => PublicLayerBlockCipherOptions::from_annotation(value)?,
        None => {
            return Err(Error::InvalidAnnotation {
                annotation: ANNOTATION_PUBOPTS.into(),
                reason: "missing: the layer cannot be authenticated".into(),
            })
        }
    };
    let private_json = wrappers.unwrap(&annotations).await?;
    let private = PrivateLayerBlockCipherOptions::from_json(&private_json)?;
    Ok(LayerBlockCipherOptions { public, private })
}

/// A layer being decrypted.
#[derive(Debug)]
pub struct LayerDecryption<R> {
    /// the decrypting stream; see [`DecryptingReader`] for how the verdict is given
    pub reader: R,
    /// the plain media type (without `+encrypted`)
    pub media_type: String,
    /// digest of the plaintext blob as recorded in the wrapped options; for a `tar`
    /// layer that skopeo gzipped while encrypting it, this is the uncompressed digest
    pub digest: String,
}

/// Unwraps the layer key and starts decrypting an encrypted layer blob.
pub async fn decrypt_layer<R, I, K, V>(
    reader: R,
    media_type: &str,
    annotations: I,
    wrappers: &KeyWrappers,
) -> Result<LayerDecryption<DecryptingReader<R>>>
where
    R: Read,
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let plain_type = spec::decrypted_media_type(media_type)?;
    let opts = unwrap_layer_options(annotations, wrappers).await?;
    Ok(LayerDecryption {
        reader: DecryptingReader::new(reader, &opts)?,
        media_type: plain_type,
        digest: opts.private.digest.clone(),
    })
}

/// Async twin of [`decrypt_layer`].
#[cfg(feature = "async-io")]
pub async fn async_decrypt_layer<R, I, K, V>(
    reader: R,
    media_type: &str,
    annotations: I,
    wrappers: &KeyWrappers,
) -> Result<LayerDecryption<crate::blockcipher::AsyncDecryptingReader<R>>>
where
    R: tokio::io::AsyncRead,
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let plain_type = spec::decrypted_media_type(media_type)?;
    let opts = unwrap_layer_options(annotations, wrappers).await?;
    Ok(LayerDecryption {
        reader: crate::blockcipher::AsyncDecryptingReader::new(reader, &opts)?,
        media_type: plain_type,
        digest: opts.private.digest.clone(),
    })
}

/// The annotations of a decrypted layer: `annotations` without the encryption ones.
pub fn strip_encryption_annotations<I, K, V>(annotations: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    annotations
        .into_iter()
        .filter(|(k, _)| !k.as_ref().starts_with(spec::ANNOTATION_ENC_PREFIX))
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect()
}
