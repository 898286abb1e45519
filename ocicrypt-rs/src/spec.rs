//! Annotation names and media types of the OCI image encryption spec.

use crate::error::{Error, Result};

/// Prefix of every wrapped-key annotation: `org.opencontainers.image.enc.keys.<scheme>`.
pub(crate) const ANNOTATION_KEYS_PREFIX: &str = "org.opencontainers.image.enc.keys.";
/// Annotation holding the base64 public cipher options.
pub const ANNOTATION_PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";
/// Prefix shared by all encryption annotations.
pub(crate) const ANNOTATION_ENC_PREFIX: &str = "org.opencontainers.image.enc.";

pub(crate) use oci_model::{
    ENCRYPTED_SUFFIX, OCI_LAYER_GZIP as MEDIA_TYPE_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP as MEDIA_TYPE_LAYER_NON_DISTRIBUTABLE_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_TAR as MEDIA_TYPE_LAYER_NON_DISTRIBUTABLE_TAR,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD as MEDIA_TYPE_LAYER_NON_DISTRIBUTABLE_ZSTD,
    OCI_LAYER_TAR as MEDIA_TYPE_LAYER_TAR, OCI_LAYER_ZSTD as MEDIA_TYPE_LAYER_ZSTD,
};

const PLAIN_LAYER_TYPES: [&str; 6] = [
    MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
    MEDIA_TYPE_LAYER_NON_DISTRIBUTABLE_TAR,
    MEDIA_TYPE_LAYER_NON_DISTRIBUTABLE_GZIP,
    MEDIA_TYPE_LAYER_NON_DISTRIBUTABLE_ZSTD,
];

/// Whether `media_type` is one of the encrypted layer types.
pub(crate) fn is_encrypted_media_type(media_type: &str) -> bool {
    media_type
        .strip_suffix(ENCRYPTED_SUFFIX)
        .is_some_and(|plain| PLAIN_LAYER_TYPES.contains(&plain))
}

/// The encrypted media type of a plain layer type (`…tar+gzip` → `…tar+gzip+encrypted`).
pub(crate) fn encrypted_media_type(media_type: &str) -> Result<String> {
    if is_encrypted_media_type(media_type) {
        return Err(Error::AlreadyEncrypted(media_type.to_string()));
    }
    if PLAIN_LAYER_TYPES.contains(&media_type) {
        Ok(format!("{media_type}{ENCRYPTED_SUFFIX}"))
    } else {
        Err(Error::UnsupportedMediaType(
            media_type.chars().take(200).collect(),
        ))
    }
}

/// The plain media type of an encrypted layer type (`…tar+zstd+encrypted` → `…tar+zstd`).
pub(crate) fn decrypted_media_type(media_type: &str) -> Result<String> {
    match media_type.strip_suffix(ENCRYPTED_SUFFIX) {
        Some(plain) if PLAIN_LAYER_TYPES.contains(&plain) => Ok(plain.to_string()),
        _ if PLAIN_LAYER_TYPES.contains(&media_type) => {
            Err(Error::NotEncrypted(media_type.to_string()))
        }
        _ => Err(Error::UnsupportedMediaType(
            media_type.chars().take(200).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_both_ways() {
        for plain in PLAIN_LAYER_TYPES {
            let enc = encrypted_media_type(plain).unwrap_or_default();
            assert_eq!(enc, format!("{plain}+encrypted"));
            assert!(is_encrypted_media_type(&enc));
            assert_eq!(decrypted_media_type(&enc).unwrap_or_default(), plain);
            assert!(matches!(
                decrypted_media_type(plain),
                Err(Error::NotEncrypted(_))
            ));
            assert!(matches!(
                encrypted_media_type(&enc),
                Err(Error::AlreadyEncrypted(_))
            ));
        }
        for other in [
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.oci.image.layer.v1.tar+bzip2+encrypted",
            "",
            "+encrypted",
        ] {
            assert!(
                matches!(
                    encrypted_media_type(other),
                    Err(Error::UnsupportedMediaType(_)) | Err(Error::AlreadyEncrypted(_))
                ),
                "{other}"
            );
            assert!(
                matches!(
                    decrypted_media_type(other),
                    Err(Error::UnsupportedMediaType(_))
                ),
                "{other}"
            );
        }
    }
}
