//! Layer media types: compression and encryption.

use oci_model::{
    DOCKER_FOREIGN_LAYER_GZIP, DOCKER_LAYER_GZIP, ENCRYPTED_SUFFIX, OCI_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP, OCI_LAYER_NONDISTRIBUTABLE_TAR,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD, OCI_LAYER_TAR, OCI_LAYER_ZSTD,
};

/// How a layer tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// plain tar
    None,
    /// gzip (one or more members)
    Gzip,
    /// zstd (one or more frames)
    Zstd,
}

impl Compression {
    /// Name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What a layer media type says about the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerFormat {
    /// compression of the tar
    pub compression: Compression,
    /// encrypted with ocicrypt (`+encrypted`)
    pub encrypted: bool,
}

/// Classifies a layer media type; `None` for types that are not image layers.
pub(crate) fn layer_format(media_type: &str) -> Option<LayerFormat> {
    let (plain, encrypted) = match media_type.strip_suffix(ENCRYPTED_SUFFIX) {
        Some(plain) => (plain, true),
        None => (media_type, false),
    };
    let compression = match plain {
        OCI_LAYER_TAR | OCI_LAYER_NONDISTRIBUTABLE_TAR => Compression::None,
        OCI_LAYER_GZIP | OCI_LAYER_NONDISTRIBUTABLE_GZIP => Compression::Gzip,
        OCI_LAYER_ZSTD | OCI_LAYER_NONDISTRIBUTABLE_ZSTD => Compression::Zstd,
        // Docker's types are never encrypted.
        DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER_GZIP if !encrypted => Compression::Gzip,
        _ => return None,
    };
    Some(LayerFormat {
        compression,
        encrypted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_type_including_zstd_encrypted_is_recognized() {
        let cases = [
            (
                "application/vnd.oci.image.layer.v1.tar",
                Compression::None,
                false,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
                false,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
                false,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+encrypted",
                Compression::None,
                true,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                Compression::Gzip,
                true,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd+encrypted",
                Compression::Zstd,
                true,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd+encrypted",
                Compression::Zstd,
                true,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
                false,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
                false,
            ),
        ];
        for (mt, compression, encrypted) in cases {
            assert_eq!(
                layer_format(mt),
                Some(LayerFormat {
                    compression,
                    encrypted
                }),
                "{mt}"
            );
        }
        for bad in [
            "",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
            "application/vnd.oci.image.layer.v1.tar+encrypted+encrypted",
            "application/vnd.dev.cosign.simplesigning.v1+json",
        ] {
            assert_eq!(layer_format(bad), None, "{bad}");
        }
    }
}
