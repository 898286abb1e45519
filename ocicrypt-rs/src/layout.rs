//! Encrypting and decrypting a whole image in an OCI image layout on disk
//! (`oci:DIR[:tag]`, as skopeo names it): every layer, then the manifest(s) and the index,
//! with digests and sizes rewritten.
//!
//! Layer streaming runs on tokio's blocking pool; key wrapping on the caller's task. The
//! destination's `index.json` is replaced last and atomically; if anything fails, blobs
//! created by the operation are removed again, so a failed run leaves the destination as
//! it was.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_model::{Algorithm, Digest, Hasher, MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST};
use serde_json::{Map, Value};

use crate::blockcipher::{DecryptingReader, EncryptingReader, LayerBlockCipherOptions};
use crate::error::{Error, Result};
use crate::keywrap::KeyWrappers;
use crate::spec;

/// `org.opencontainers.image.ref.name`
pub(crate) use oci_model::REF_NAME_ANNOTATION as ANNOTATION_REF_NAME;
/// Largest manifest or index accepted (the distribution spec's limit is 4 MiB).
const MAX_MANIFEST: u64 = MAX_MANIFEST_BYTES as u64;
/// Deepest nesting of indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

/// `oci:DIR[:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutReference {
    /// the layout directory
    pub dir: PathBuf,
    /// the `org.opencontainers.image.ref.name` to select or write
    pub tag: Option<String>,
}

impl LayoutReference {
    /// Parses `oci:DIR[:tag]` (the `oci:` prefix is optional); the directory ends at the
    /// first `:`, as in containers/image.
    pub fn parse(text: &str) -> Result<Self> {
        let rest = text.strip_prefix("oci:").unwrap_or(text);
        let (dir, tag) = match rest.split_once(':') {
            Some((dir, tag)) => (dir, Some(tag)),
            None => (rest, None),
        };
        let bad = |reason: &str| Error::Layout {
            path: text.chars().take(300).collect(),
            reason: reason.into(),
        };
        if dir.is_empty() {
            return Err(bad("no directory (expected oci:DIR[:tag])"));
        }
        if let Some(tag) = tag {
            if tag.is_empty() || tag.len() > 128 || tag.chars().any(|c| c.is_control() || c == '/')
            {
                return Err(bad(
                    "the tag is empty, too long, or has `/` or control characters",
                ));
            }
        }
        Ok(LayoutReference {
            dir: PathBuf::from(dir),
            tag: tag.map(str::to_string),
        })
    }
}

/// What an image operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// the new top-level manifest (or index) digest written to the destination
    pub digest: String,
    /// layers encrypted or decrypted
    pub layers_changed: usize,
    /// layers copied unchanged (already plain when decrypting)
    pub layers_unchanged: usize,
}

fn layout_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Layout {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Blobs created in the destination, removed again unless the operation commits.
struct Transaction {
    dst: PathBuf,
    created: Vec<PathBuf>,
    committed: bool,
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.committed {
            for path in &self.created {
                let _ = fs::remove_file(path);
            }
        }
    }
}

fn blob_path(root: &Path, digest: &str) -> Result<PathBuf> {
    let parsed = Digest::parse(digest)?;
    Ok(root
        .join("blobs")
        .join(parsed.algorithm().name())
        .join(parsed.hex()))
}

fn read_json_blob(root: &Path, digest: &str) -> Result<(Vec<u8>, Map<String, Value>)> {
    let path = blob_path(root, digest)?;
    let file = fs::File::open(&path).map_err(|e| layout_err(&path, e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| layout_err(&path, e.to_string()))?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(layout_err(&path, "larger than 4 MiB"));
    }
    let expected = Digest::parse(digest)?;
    let mut hasher = Hasher::new(expected.algorithm());
    hasher.update(&bytes);
    if hasher.finish() != expected {
        return Err(layout_err(&path, "content does not match its digest"));
    }
    let json = serde_json::from_slice(&bytes)
        .map_err(|e| layout_err(&path, format!("not a JSON object: {e}")))?;
    Ok((bytes, json))
}

fn read_index(root: &Path) -> Result<Map<String, Value>> {
    let path = root.join("index.json");
    let meta = fs::metadata(&path).map_err(|e| layout_err(&path, e.to_string()))?;
    if meta.len() > MAX_MANIFEST {
        return Err(layout_err(&path, "larger than 4 MiB"));
    }
    let bytes = fs::read(&path).map_err(|e| layout_err(&path, e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| layout_err(&path, format!("not a JSON object: {e}")))
}

impl Transaction {
    fn new(dst: &Path) -> Result<Self> {
        let blobs = dst.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| layout_err(&blobs, e.to_string()))?;
        let marker = dst.join("oci-layout");
        if !marker.exists() {
            fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|e| layout_err(&marker, e.to_string()))?;
        }
        Ok(Transaction {
            dst: dst.to_path_buf(),
            created: Vec::new(),
            committed: false,
        })
    }

    /// Moves a finished temporary file to its content address.
    fn place(&mut self, tmp: &Path, digest: &Digest) -> Result<PathBuf> {
        let path = blob_path(&self.dst, digest.as_str())?;
        if path.exists() {
            let _ = fs::remove_file(tmp);
        } else {
            fs::rename(tmp, &path).map_err(|e| layout_err(&path, e.to_string()))?;
            self.created.push(path.clone());
        }
        Ok(path)
    }

    fn write_blob(&mut self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        let tmp = temp_path(&self.dst);
        fs::write(&tmp, bytes).map_err(|e| layout_err(&tmp, e.to_string()))?;
        self.place(&tmp, &digest)?;
        Ok(digest)
    }

    fn copy_blob(&mut self, src: &Path, digest: &str) -> Result<()> {
        let from = blob_path(src, digest)?;
        let to = blob_path(&self.dst, digest)?;
        if to.exists() {
            return Ok(());
        }
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|e| layout_err(parent, e.to_string()))?;
        }
        fs::copy(&from, &to).map_err(|e| layout_err(&from, e.to_string()))?;
        self.created.push(to);
        Ok(())
    }
}

fn temp_path(dst: &Path) -> PathBuf {
    use rand_core::RngCore;
    let mut id = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut id);
    dst.join("blobs")
        .join("sha256")
        .join(format!(".tmp-{}", hex::encode(id)))
}

/// Streams `reader` into a new temporary blob file, returning its path, digest and size.
fn stream_to_temp(dst: &Path, reader: &mut dyn Read) -> Result<(PathBuf, Digest, u64)> {
    let tmp = temp_path(dst);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])?;
            size += n as u64;
        }
        file.sync_all()?;
        Ok((hasher.finish(), size))
    })();
    match result {
        Ok((digest, size)) => Ok((tmp, digest, size)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(Error::from_io_error(e))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

struct Job<'a> {
    src: PathBuf,
    wrappers: &'a KeyWrappers,
    direction: Direction,
    changed: usize,
    unchanged: usize,
}

fn str_field<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v str> {
    obj.get(name).and_then(Value::as_str)
}

impl Job<'_> {
    /// Processes the manifest or index that `desc` points to; returns its new descriptor.
    async fn process_descriptor(
        &mut self,
        tx: &mut Transaction,
        desc: &Map<String, Value>,
        depth: usize,
    ) -> Result<Map<String, Value>> {
        let digest = str_field(desc, "digest")
            .ok_or_else(|| layout_err(&self.src, "descriptor without digest"))?;
        let (_, doc) = read_json_blob(&self.src, digest)?;
        let media_type = str_field(desc, "mediaType")
            .or_else(|| str_field(&doc, "mediaType"))
            .unwrap_or(if doc.contains_key("manifests") {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            })
            .to_string();
        let new_doc = match media_type.as_str() {
            OCI_INDEX => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(layout_err(&self.src, "image indexes nested too deeply"));
                }
                let mut doc = doc;
                let manifests = doc
                    .get("manifests")
                    .and_then(Value::as_array)
                    .cloned()
                    .ok_or_else(|| layout_err(&self.src, format!("index {digest} has no manifests")))?;
                let mut out = Vec::with_capacity(manifests.len());
                for m in manifests {
                    let m = m.as_object().ok_or_else(|| layout_err(&self.src, "index entry is not an object"))?;
                    out.push(Value::Object(Box::pin(self.process_descriptor(tx, m, depth + 1)).await?));
                }
                doc.insert("manifests".into(), Value::Array(out));
                doc
            }
            OCI_MANIFEST => self.process_manifest(tx, doc).await?,
            other => {
                return Err(layout_err(
                    &self.src,
                    format!("manifest media type `{other}` is not an OCI manifest or index; convert the image to OCI first"),
                ))
            }
        };
        let bytes = serde_json::to_vec(&new_doc).map_err(Error::json("manifest"))?;
        let new_digest = tx.write_blob(&bytes)?;
        let mut new_desc = desc.clone();
        new_desc.insert("digest".into(), Value::String(new_digest.to_string()));
        new_desc.insert("size".into(), Value::from(bytes.len() as u64));
        Ok(new_desc)
    }

    async fn process_manifest(
        &mut self,
        tx: &mut Transaction,
        mut doc: Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let config_digest = doc
            .get("config")
            .and_then(Value::as_object)
            .and_then(|c| str_field(c, "digest"))
            .ok_or_else(|| layout_err(&self.src, "manifest without config digest"))?
            .to_string();
        tx.copy_blob(&self.src, &config_digest)?;
        let layers = doc
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| layout_err(&self.src, "manifest without layers"))?;
        let mut out = Vec::with_capacity(layers.len());
        for layer in layers {
            let layer = layer
                .as_object()
                .ok_or_else(|| layout_err(&self.src, "layer is not an object"))?;
            out.push(Value::Object(self.process_layer(tx, layer).await?));
        }
        doc.insert("layers".into(), Value::Array(out));
        Ok(doc)
    }

    async fn process_layer(
        &mut self,
        tx: &mut Transaction,
        layer: &Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let media_type = str_field(layer, "mediaType")
            .unwrap_or_default()
            .to_string();
        let digest = str_field(layer, "digest")
            .ok_or_else(|| layout_err(&self.src, "layer without digest"))?
            .to_string();
        let annotations: BTreeMap<String, String> = layer
            .get("annotations")
            .and_then(Value::as_object)
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let src_blob = blob_path(&self.src, &digest)?;
        let mut new_layer = layer.clone();
        match self.direction {
            Direction::Encrypt => {
                let new_type = spec::encrypted_media_type(&media_type)?;
                let dst = tx.dst.clone();
                let (tmp, blob_digest, size, opts) =
                    tokio::task::spawn_blocking(move || -> Result<_> {
                        let file = fs::File::open(&src_blob)
                            .map_err(|e| layout_err(&src_blob, e.to_string()))?;
                        let mut reader =
                            EncryptingReader::new(io::BufReader::new(file), Some(&digest))?;
                        let (tmp, blob_digest, size) = stream_to_temp(&dst, &mut reader)?;
                        match reader.finish() {
                            Ok(opts) => Ok((tmp, blob_digest, size, opts)),
                            Err(e) => {
                                let _ = fs::remove_file(&tmp);
                                Err(e)
                            }
                        }
                    })
                    .await
                    .map_err(|e| layout_err(&self.src, format!("layer task failed: {e}")))??;
                let finished =
                    crate::layer::finalize_encryption(&opts, &new_type, self.wrappers).await;
                let encrypted = match finished {
                    Ok(encrypted) => encrypted,
                    Err(e) => {
                        let _ = fs::remove_file(&tmp);
                        return Err(e);
                    }
                };
                tx.place(&tmp, &blob_digest)?;
                let mut all = annotations;
                all.extend(encrypted.annotations);
                new_layer.insert("mediaType".into(), Value::String(encrypted.media_type));
                new_layer.insert("digest".into(), Value::String(blob_digest.to_string()));
                new_layer.insert("size".into(), Value::from(size));
                new_layer.insert(
                    "annotations".into(),
                    serde_json::to_value(all).map_err(Error::json("annotations"))?,
                );
            }
            Direction::Decrypt => {
                if !spec::is_encrypted_media_type(&media_type) {
                    tx.copy_blob(&self.src, &digest)?;
                    self.unchanged += 1;
                    return Ok(new_layer);
                }
                let new_type = spec::decrypted_media_type(&media_type)?;
                let opts: LayerBlockCipherOptions =
                    crate::layer::unwrap_layer_options(&annotations, self.wrappers).await?;
                let dst = tx.dst.clone();
                let (tmp, blob_digest, size) = tokio::task::spawn_blocking(move || -> Result<_> {
                    let file = fs::File::open(&src_blob)
                        .map_err(|e| layout_err(&src_blob, e.to_string()))?;
                    // No plaintext digest check: skopeo records the digest of the uncompressed
                    // layer for a layer it compressed while encrypting. The HMAC decides.
                    let mut reader = DecryptingReader::new(io::BufReader::new(file), &opts)?;
                    let (tmp, blob_digest, size) = stream_to_temp(&dst, &mut reader)?;
                    match reader.finish() {
                        Ok(_) => Ok((tmp, blob_digest, size)),
                        Err(e) => {
                            let _ = fs::remove_file(&tmp);
                            Err(e)
                        }
                    }
                })
                .await
                .map_err(|e| layout_err(&self.src, format!("layer task failed: {e}")))??;
                tx.place(&tmp, &blob_digest)?;
                let kept = crate::layer::strip_encryption_annotations(&annotations);
                new_layer.insert("mediaType".into(), Value::String(new_type));
                new_layer.insert("digest".into(), Value::String(blob_digest.to_string()));
                new_layer.insert("size".into(), Value::from(size));
                if kept.is_empty() {
                    new_layer.remove("annotations");
                } else {
                    new_layer.insert(
                        "annotations".into(),
                        serde_json::to_value(kept).map_err(Error::json("annotations"))?,
                    );
                }
            }
        }
        self.changed += 1;
        Ok(new_layer)
    }
}

/// Selects the top-level descriptor of `index.json` for `tag` (or the only one).
fn select_descriptor(
    src: &LayoutReference,
    index: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| layout_err(&src.dir, "index.json has no manifests"))?;
    let candidates: Vec<&Map<String, Value>> = manifests
        .iter()
        .filter_map(Value::as_object)
        .filter(|d| match &src.tag {
            Some(tag) => {
                d.get("annotations")
                    .and_then(Value::as_object)
                    .and_then(|a| str_field(a, ANNOTATION_REF_NAME))
                    == Some(tag.as_str())
            }
            None => true,
        })
        .collect();
    match candidates[..] {
        [one] => Ok(one.clone()),
        [] => Err(layout_err(
            &src.dir,
            format!("no image tagged {:?}", src.tag),
        )),
        _ => Err(layout_err(
            &src.dir,
            "several images in the layout; name one with oci:DIR:tag",
        )),
    }
}

async fn run(
    src: &LayoutReference,
    dst: &LayoutReference,
    wrappers: &KeyWrappers,
    direction: Direction,
) -> Result<ImageSummary> {
    let index = read_index(&src.dir)?;
    let top = select_descriptor(src, &index)?;
    let dst_index = if dst.dir.join("index.json").exists() {
        Some(read_index(&dst.dir)?)
    } else {
        None
    };
    let mut tx = Transaction::new(&dst.dir)?;
    let mut job = Job {
        src: src.dir.clone(),
        wrappers,
        direction,
        changed: 0,
        unchanged: 0,
    };
    let mut new_top = job.process_descriptor(&mut tx, &top, 0).await?;
    let tag = dst.tag.clone().or_else(|| src.tag.clone());
    let mut annotations = new_top
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.remove(ANNOTATION_REF_NAME);
    if let Some(tag) = &tag {
        annotations.insert(ANNOTATION_REF_NAME.into(), Value::String(tag.clone()));
    }
    if annotations.is_empty() {
        new_top.remove("annotations");
    } else {
        new_top.insert("annotations".into(), Value::Object(annotations));
    }
    // The destination index keeps its other images; one with the same tag is replaced.
    let mut out_index = dst_index.unwrap_or_else(|| {
        let mut m = Map::new();
        m.insert("schemaVersion".into(), Value::from(2));
        m.insert("mediaType".into(), Value::String(OCI_INDEX.into()));
        m
    });
    let mut manifests: Vec<Value> = out_index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    manifests.retain(|d| {
        let name = d
            .get("annotations")
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .and_then(Value::as_str);
        match (&tag, name) {
            (Some(tag), Some(name)) => name != tag,
            (None, _) => false,
            (Some(_), None) => true,
        }
    });
    let digest = str_field(&new_top, "digest")
        .unwrap_or_default()
        .to_string();
    manifests.push(Value::Object(new_top));
    out_index.insert("manifests".into(), Value::Array(manifests));
    let bytes = serde_json::to_vec(&out_index).map_err(Error::json("index.json"))?;
    let tmp = dst.dir.join(".index.json.tmp");
    fs::write(&tmp, &bytes).map_err(|e| layout_err(&tmp, e.to_string()))?;
    fs::rename(&tmp, dst.dir.join("index.json"))
        .map_err(|e| layout_err(&dst.dir, e.to_string()))?;
    tx.committed = true;
    Ok(ImageSummary {
        digest,
        layers_changed: job.changed,
        layers_unchanged: job.unchanged,
    })
}

/// Encrypts every layer of the image `src` for the recipients of `wrappers` into `dst`.
pub async fn encrypt_image(
    src: &LayoutReference,
    dst: &LayoutReference,
    wrappers: &KeyWrappers,
) -> Result<ImageSummary> {
    if !wrappers.iter().any(|w| w.can_wrap()) {
        return Err(Error::NoRecipients);
    }
    run(src, dst, wrappers, Direction::Encrypt).await
}

/// Decrypts every encrypted layer of the image `src` with `wrappers` into `dst`.
pub async fn decrypt_image(
    src: &LayoutReference,
    dst: &LayoutReference,
    wrappers: &KeyWrappers,
) -> Result<ImageSummary> {
    run(src, dst, wrappers, Direction::Decrypt).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn references_parse() {
        let r = LayoutReference::parse("oci:/tmp/x:v1").unwrap();
        assert_eq!(r.dir, PathBuf::from("/tmp/x"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(LayoutReference::parse("dir").unwrap().tag, None);
        for bad in ["oci:", "oci::tag", "oci:/x:", "oci:/x:a/b", "oci:/x:a\nb"] {
            assert!(
                matches!(LayoutReference::parse(bad), Err(Error::Layout { .. })),
                "{bad}"
            );
        }
    }
}
