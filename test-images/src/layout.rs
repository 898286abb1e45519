//! An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`) written from
//! image descriptions: layers are streamed through the tar writer, the compressor and two
//! hashers (diff_id and blob digest) straight into their blob files.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use oci_model::{
    Algorithm, Digest, ImageIndex, ImageManifest, DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_TAR,
    OCI_LAYER_ZSTD,
};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::hashing::HashingWriter;
use crate::tarball::{Entry, TarWriter};

pub use oci_model::{Descriptor, Platform};
pub(crate) use oci_model::{
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
    REF_NAME_ANNOTATION,
};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// plain tar
    None,
    /// gzip
    Gzip,
    /// zstd
    Zstd,
}

/// Media type family of the manifest and its descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestFormat {
    /// OCI image spec media types
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2 media types
    Docker,
}

impl ManifestFormat {
    fn layer_media_type(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (ManifestFormat::Docker, Compression::Gzip) => DOCKER_LAYER_GZIP,
            (_, Compression::Gzip) => OCI_LAYER_GZIP,
            (_, Compression::Zstd) => OCI_LAYER_ZSTD,
            (_, Compression::None) => OCI_LAYER_TAR,
        }
    }
}

/// `linux/<architecture>[/<variant>]`.
pub(crate) fn linux(architecture: &str, variant: Option<&str>) -> Platform {
    Platform {
        os: "linux".into(),
        architecture: architecture.into(),
        variant: variant.map(str::to_string),
        os_version: None,
    }
}

/// The layer blob: built from entries, or given as raw bytes (malformed blobs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerContent {
    /// tar entries, compressed with the layer's compression
    Entries(Vec<Entry>),
    /// exact blob bytes and the diff_id to record for them
    Raw {
        /// the blob
        blob: Vec<u8>,
        /// the diff_id written into the image config
        diff_id: String,
    },
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// compression (ignored for raw blobs, except for the default media type)
    pub compression: Compression,
    /// the content
    pub content: LayerContent,
    /// gzip/zstd level (`None` = the library default)
    pub level: Option<u32>,
    /// a media type other than the one the compression implies
    pub media_type: Option<String>,
    /// descriptor annotations
    pub annotations: BTreeMap<String, String>,
}

impl LayerSpec {
    /// A layer of `entries`.
    pub fn new(compression: Compression, entries: Vec<Entry>) -> Self {
        Self {
            compression,
            content: LayerContent::Entries(entries),
            level: None,
            media_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// A layer whose blob is exactly `blob` (recorded with `diff_id`).
    pub fn raw(compression: Compression, blob: Vec<u8>, diff_id: String) -> Self {
        Self {
            compression,
            content: LayerContent::Raw { blob, diff_id },
            level: None,
            media_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The entries, if built from entries.
    pub fn entries(&self) -> &[Entry] {
        match &self.content {
            LayerContent::Entries(entries) => entries,
            LayerContent::Raw { .. } => &[],
        }
    }

    /// With this compression level.
    pub fn level(mut self, level: u32) -> Self {
        self.level = Some(level);
        self
    }

    /// With this media type.
    pub fn media_type(mut self, media_type: &str) -> Self {
        self.media_type = Some(media_type.to_string());
        self
    }
}

/// The `config` object of the image config (the runtime defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSpec {
    /// `Entrypoint`
    pub entrypoint: Vec<String>,
    /// `Cmd`
    pub cmd: Vec<String>,
    /// `Env`
    pub env: Vec<String>,
    /// `User`
    pub user: Option<String>,
    /// `WorkingDir`
    pub working_dir: Option<String>,
    /// `Labels`
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`
    pub stop_signal: Option<String>,
    /// `ExposedPorts` keys
    pub exposed_ports: Vec<String>,
    /// `Volumes` keys
    pub volumes: Vec<String>,
}

/// An image to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// layers, bottom first
    pub layers: Vec<LayerSpec>,
    /// runtime defaults
    pub config: ConfigSpec,
    /// platform recorded in the image config
    pub platform: Platform,
    /// media type family
    pub format: ManifestFormat,
    /// leave the manifest's top-level `mediaType` out (as skopeo sometimes does)
    pub omit_manifest_media_type: bool,
    /// diff_ids to write instead of the computed ones (hostile fixtures)
    pub diff_ids_override: Option<Vec<String>>,
}

impl ImageSpec {
    /// A linux/amd64 OCI image of `layers`.
    pub fn new(layers: Vec<LayerSpec>) -> Self {
        Self {
            layers,
            config: ConfigSpec::default(),
            platform: linux("amd64", None),
            format: ManifestFormat::Oci,
            omit_manifest_media_type: false,
            diff_ids_override: None,
        }
    }

    /// With these runtime defaults.
    pub fn config(mut self, config: ConfigSpec) -> Self {
        self.config = config;
        self
    }

    /// For this platform.
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// With this media type family.
    pub fn format(mut self, format: ManifestFormat) -> Self {
        self.format = format;
        self
    }
}

/// What writing an image produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// the manifest
    pub manifest: Descriptor,
    /// the image config
    pub config: Descriptor,
    /// the layers, bottom first
    pub layers: Vec<Descriptor>,
    /// the diff_ids recorded in the config
    pub diff_ids: Vec<String>,
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

enum Compressor<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    fn new(compression: Compression, level: Option<u32>, out: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compressor::None(out),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                level.map_or_else(flate2::Compression::default, flate2::Compression::new),
            )),
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(
                out,
                level.map_or(3, |l| l as i32),
            )?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl OciLayout {
    /// Creates (or reuses) a layout at `root`.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(Error::io("create layout", &blobs))?;
        let marker = root.join("oci-layout");
        fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(Error::io("write", &marker))?;
        let index = root.join("index.json");
        if !index.exists() {
            let empty = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
            fs::write(&index, serde_json::to_vec_pretty(&empty)?)
                .map_err(Error::io("write", &index))?;
        }
        Ok(Self { root })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob of `digest` (`sha256:<hex>`) lives.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let digest = Digest::parse(digest).map_err(|e| Error::InvalidImage(e.to_string()))?;
        if digest.algorithm() != Algorithm::Sha256 {
            return Err(Error::InvalidImage(format!(
                "{digest}: this layout stores sha256 blobs only"
            )));
        }
        Ok(self.root.join("blobs").join("sha256").join(digest.hex()))
    }

    /// The bytes of a blob.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(|_| Error::MissingBlob(digest.to_string()))
    }

    /// Stores `data` as a blob and describes it.
    pub fn write_blob(&self, data: &[u8], media_type: &str) -> Result<Descriptor> {
        let digest = Digest::sha256_of(data);
        let path = self.blob_path(digest.as_str())?;
        fs::write(&path, data).map_err(Error::io("write blob", &path))?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: data.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        })
    }

    /// Writes one layer blob; returns its descriptor and diff_id.
    pub fn write_layer(
        &self,
        layer: &LayerSpec,
        format: ManifestFormat,
    ) -> Result<(Descriptor, String)> {
        let media_type = layer
            .media_type
            .clone()
            .unwrap_or_else(|| format.layer_media_type(layer.compression).to_string());
        let (mut descriptor, diff_id) = match &layer.content {
            LayerContent::Raw { blob, diff_id } => {
                (self.write_blob(blob, &media_type)?, diff_id.clone())
            }
            LayerContent::Entries(entries) => {
                let tmp = tempfile::NamedTempFile::new_in(self.root.join("blobs"))
                    .map_err(Error::io("create temporary blob", self.root.join("blobs")))?;
                let file = tmp
                    .reopen()
                    .map_err(Error::io("open temporary blob", tmp.path()))?;
                let blob_hasher = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
                let compressor = Compressor::new(layer.compression, layer.level, blob_hasher)?;
                let mut tar = TarWriter::new(HashingWriter::new(compressor));
                for entry in entries {
                    tar.append(entry)?;
                }
                let (compressor, diff_id, _) = tar.finish()?.finish();
                let (mut file, digest, size) = compressor.finish()?.finish();
                file.flush()?;
                let path = self.blob_path(digest.as_str())?;
                tmp.persist(&path)
                    .map_err(|e| Error::io("store blob", &path)(e.error))?;
                (
                    Descriptor {
                        media_type,
                        digest,
                        size,
                        annotations: BTreeMap::new(),
                        platform: None,
                    },
                    diff_id.to_string(),
                )
            }
        };
        descriptor.annotations = layer.annotations.clone();
        Ok((descriptor, diff_id))
    }

    /// Writes an image (layers in parallel, then config and manifest) and returns what
    /// was written. The manifest is not tagged: see [`OciLayout::tag`].
    pub fn write_image(&self, image: &ImageSpec) -> Result<BuiltImage> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut results: Vec<Option<Result<(Descriptor, String)>>> =
            (0..image.layers.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            for (chunk_index, chunk) in results
                .chunks_mut(image.layers.len().div_ceil(workers).max(1))
                .enumerate()
            {
                let base = chunk_index * image.layers.len().div_ceil(workers).max(1);
                scope.spawn(move || {
                    for (offset, slot) in chunk.iter_mut().enumerate() {
                        *slot = Some(self.write_layer(&image.layers[base + offset], image.format));
                    }
                });
            }
        });
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for result in results {
            let (descriptor, diff_id) = result
                .ok_or_else(|| Error::InvalidImage("a layer worker did not finish".into()))??;
            layers.push(descriptor);
            diff_ids.push(diff_id);
        }
        let recorded = image
            .diff_ids_override
            .clone()
            .unwrap_or_else(|| diff_ids.clone());
        let config_json = image_config_json(image, &recorded);
        let config_type = match image.format {
            ManifestFormat::Oci => OCI_CONFIG,
            ManifestFormat::Docker => DOCKER_CONFIG,
        };
        let config = self.write_blob(&serde_json::to_vec(&config_json)?, config_type)?;
        let manifest_type = match image.format {
            ManifestFormat::Oci => OCI_MANIFEST,
            ManifestFormat::Docker => DOCKER_MANIFEST,
        };
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: (!image.omit_manifest_media_type).then(|| manifest_type.to_string()),
            config: config.clone(),
            layers: layers.clone(),
            annotations: BTreeMap::new(),
        };
        let manifest = self.write_blob(&serde_json::to_vec(&manifest)?, manifest_type)?;
        Ok(BuiltImage {
            manifest,
            config,
            layers,
            diff_ids: recorded,
        })
    }

    /// Writes an index of `manifests` (each with its platform).
    pub fn write_index(
        &self,
        manifests: &[(Descriptor, Platform)],
        format: ManifestFormat,
    ) -> Result<Descriptor> {
        let media_type = match format {
            ManifestFormat::Oci => OCI_INDEX,
            ManifestFormat::Docker => DOCKER_MANIFEST_LIST,
        };
        let entries: Vec<Descriptor> = manifests
            .iter()
            .map(|(d, p)| Descriptor {
                platform: Some(p.clone()),
                ..d.clone()
            })
            .collect();
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            manifests: entries,
        };
        self.write_blob(&serde_json::to_vec(&index)?, media_type)
    }

    /// Names `descriptor` `tag` in `index.json` (replacing an earlier entry of that name).
    pub fn tag(&self, tag: &str, descriptor: &Descriptor) -> Result<()> {
        let path = self.root.join("index.json");
        let mut index: Value =
            serde_json::from_slice(&fs::read(&path).map_err(Error::io("read", &path))?)?;
        let manifests = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| Error::InvalidImage("index.json has no manifests array".into()))?;
        manifests.retain(|m| m["annotations"][REF_NAME_ANNOTATION] != tag);
        let mut entry = descriptor.clone();
        entry.platform = None;
        entry
            .annotations
            .insert(REF_NAME_ANNOTATION.to_string(), tag.to_string());
        manifests.push(serde_json::to_value(entry)?);
        fs::write(&path, serde_json::to_vec_pretty(&index)?).map_err(Error::io("write", &path))?;
        Ok(())
    }

    /// The descriptor tagged `tag` in `index.json`.
    pub fn resolve_tag(&self, tag: &str) -> Result<Descriptor> {
        let path = self.root.join("index.json");
        let index: Value =
            serde_json::from_slice(&fs::read(&path).map_err(Error::io("read", &path))?)?;
        let found = index["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter()
                    .find(|m| m["annotations"][REF_NAME_ANNOTATION] == tag)
            })
            .ok_or_else(|| Error::MissingBlob(format!("tag {tag}")))?;
        Ok(serde_json::from_value(found.clone())?)
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|_| Error::MissingBlob(digest.to_string()))
    }
}

fn image_config_json(image: &ImageSpec, diff_ids: &[String]) -> Value {
    let c = &image.config;
    let mut config = serde_json::Map::new();
    if !c.entrypoint.is_empty() {
        config.insert("Entrypoint".into(), json!(c.entrypoint));
    }
    if !c.cmd.is_empty() {
        config.insert("Cmd".into(), json!(c.cmd));
    }
    if !c.env.is_empty() {
        config.insert("Env".into(), json!(c.env));
    }
    if let Some(user) = &c.user {
        config.insert("User".into(), json!(user));
    }
    if let Some(dir) = &c.working_dir {
        config.insert("WorkingDir".into(), json!(dir));
    }
    if !c.labels.is_empty() {
        config.insert("Labels".into(), json!(c.labels));
    }
    if let Some(signal) = &c.stop_signal {
        config.insert("StopSignal".into(), json!(signal));
    }
    if !c.exposed_ports.is_empty() {
        let ports: serde_json::Map<String, Value> = c
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        config.insert("ExposedPorts".into(), Value::Object(ports));
    }
    if !c.volumes.is_empty() {
        let volumes: serde_json::Map<String, Value> =
            c.volumes.iter().map(|v| (v.clone(), json!({}))).collect();
        config.insert("Volumes".into(), Value::Object(volumes));
    }
    let mut out = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": image.platform.architecture,
        "os": image.platform.os,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "test-images"})).collect::<Vec<_>>(),
    });
    if let Some(variant) = &image.platform.variant {
        out["variant"] = json!(variant);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn an_image_is_written_with_consistent_digests() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let image = ImageSpec::new(vec![
            LayerSpec::new(Compression::Gzip, vec![Entry::file("a", "alpha")]),
            LayerSpec::new(Compression::Zstd, vec![Entry::file("b", "beta")]),
            LayerSpec::new(Compression::None, vec![Entry::file("c", "gamma")]),
        ]);
        let built = layout.write_image(&image).unwrap();
        assert_eq!(built.layers.len(), 3);
        for (layer, diff_id) in built.layers.iter().zip(&built.diff_ids) {
            let blob = layout.read_blob(layer.digest.as_str()).unwrap();
            assert_eq!(Digest::sha256_of(&blob), layer.digest);
            assert_eq!(blob.len() as u64, layer.size);
            let mut tar = Vec::new();
            match layer.media_type.as_str() {
                "application/vnd.oci.image.layer.v1.tar+gzip" => {
                    flate2::read::GzDecoder::new(&blob[..])
                        .read_to_end(&mut tar)
                        .unwrap();
                }
                "application/vnd.oci.image.layer.v1.tar+zstd" => {
                    tar = zstd::decode_all(&blob[..]).unwrap();
                }
                "application/vnd.oci.image.layer.v1.tar" => tar = blob.clone(),
                other => panic!("unexpected media type {other}"),
            }
            assert_eq!(Digest::sha256_of(&tar), *diff_id);
        }
        let manifest: Value =
            serde_json::from_slice(&layout.read_blob(built.manifest.digest.as_str()).unwrap())
                .unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["config"]["digest"], built.config.digest.as_str());
        assert!(manifest.get("annotations").is_none());
        let config: Value =
            serde_json::from_slice(&layout.read_blob(built.config.digest.as_str()).unwrap())
                .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"], json!(built.diff_ids));
        assert_eq!(config["architecture"], "amd64");

        layout.tag("v1", &built.manifest).unwrap();
        layout.tag("v1", &built.manifest).unwrap();
        assert_eq!(
            layout.resolve_tag("v1").unwrap().digest,
            built.manifest.digest
        );
        let index: Value =
            serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn docker_format_and_missing_media_type_are_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let mut image = ImageSpec::new(vec![LayerSpec::new(
            Compression::Gzip,
            vec![Entry::file("a", "x")],
        )])
        .format(ManifestFormat::Docker);
        image.omit_manifest_media_type = true;
        let built = layout.write_image(&image).unwrap();
        let manifest: Value =
            serde_json::from_slice(&layout.read_blob(built.manifest.digest.as_str()).unwrap())
                .unwrap();
        assert!(manifest.get("mediaType").is_none());
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(manifest["config"]["mediaType"], DOCKER_CONFIG);
    }

    #[test]
    fn blob_paths_reject_non_digests() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        assert!(layout.blob_path("sha256:../../etc/passwd").is_err());
        assert!(layout.blob_path("md5:abc").is_err());
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert!(matches!(
            layout.blob_path(&sha512),
            Err(Error::InvalidImage(_))
        ));
        let upper = Digest::sha256_of(b"x")
            .as_str()
            .to_ascii_uppercase()
            .replace("SHA256", "sha256");
        assert!(layout.blob_path(&upper).is_err());
        assert!(matches!(
            layout.read_blob(Digest::sha256_of(b"nope").as_str()),
            Err(Error::MissingBlob(_))
        ));
    }
}
