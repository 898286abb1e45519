//! `offline_fs_kbc`: KBS resources provisioned as local JSON files, for guests without a
//! KBS (and for tests).
//!
//! Each file is a JSON object `{ "<repo>/<type>/<tag>": "<standard base64>" }`. The files
//! are, in this order: [`DEFAULT_KEYS_FILE`], [`DEFAULT_RESOURCES_FILE`], then the
//! comma-separated list of [`EXTRA_FILES_ENV`]. A missing file is skipped; a later file
//! overwrites an earlier one's entry. A file that is present but malformed fails the whole
//! load with an error naming the file (and the key), rather than serving a partial store.
//! Everything is read once, when the KBC is built.

use std::{
    collections::HashMap,
    fmt,
    io::{self, Read},
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use base64::Engine as _;
use kbs_protocol::ResourceUri;
use serde_json::Value;
use tracing::debug;
use zeroize::{Zeroize, Zeroizing};

use crate::{Kbc, KbcError};

/// The key store of upstream's offline file-system KBC.
pub const DEFAULT_KEYS_FILE: &str = "/etc/aa-offline_fs_kbc-keys.json";
/// The resource store of upstream's offline file-system KBC.
pub const DEFAULT_RESOURCES_FILE: &str = "/etc/aa-offline_fs_kbc-resources.json";
/// Environment variable with extra comma-separated store files (read by the binary).
pub const EXTRA_FILES_ENV: &str = "OFFLINE_FS_KBC_EXTRA_FILE_PATH";
/// Largest store file accepted, in bytes.
pub(crate) const MAX_STORE_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// The files an [`OfflineFsKbc`] loads, in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineFsSources {
    /// Upstream's key store, loaded first.
    pub keys_file: PathBuf,
    /// Upstream's resource store, loaded second.
    pub resources_file: PathBuf,
    /// Loaded last, in order.
    pub extra_files: Vec<PathBuf>,
}

impl Default for OfflineFsSources {
    fn default() -> Self {
        Self {
            keys_file: PathBuf::from(DEFAULT_KEYS_FILE),
            resources_file: PathBuf::from(DEFAULT_RESOURCES_FILE),
            extra_files: Vec::new(),
        }
    }
}

impl OfflineFsSources {
    /// Splits the value of [`EXTRA_FILES_ENV`] (`a.json,b.json`) into paths; blanks around
    /// entries and empty entries are ignored.
    pub fn parse_extra_file_list(list: &str) -> Vec<PathBuf> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    fn in_load_order(&self) -> impl Iterator<Item = &Path> {
        [self.keys_file.as_path(), self.resources_file.as_path()]
            .into_iter()
            .chain(self.extra_files.iter().map(PathBuf::as_path))
    }
}

/// Why a store file (a JSON object of base64 values) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OfflineFsError {
    /// The file exists but could not be read.
    #[error("cannot read store {path}: {source}")]
    Read {
        /// the store file
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// The file is larger than [`MAX_STORE_FILE_SIZE`].
    #[error("store {path} is larger than {max} bytes")]
    TooLarge {
        /// the store file
        path: PathBuf,
        /// the limit
        max: u64,
    },
    /// The file is not JSON.
    #[error("store {path} is not valid JSON: {source}")]
    Json {
        /// the store file
        path: PathBuf,
        /// the parser's complaint
        source: serde_json::Error,
    },
    /// The file is JSON but not an object.
    #[error("store {path} is a JSON {found}, expected an object of \"<repo>/<type>/<tag>\": \"<base64>\" entries")]
    NotAnObject {
        /// the store file
        path: PathBuf,
        /// the JSON type found
        found: &'static str,
    },
    /// An entry's value is not a string.
    #[error("store {path}, key `{key}`: value is a JSON {found}, expected a base64 string")]
    NotAString {
        /// the store file
        path: PathBuf,
        /// the entry
        key: String,
        /// the JSON type found
        found: &'static str,
    },
    /// An entry's value is not standard base64.
    #[error("store {path}, key `{key}`: value is not standard base64: {source}")]
    BadBase64 {
        /// the store file
        path: PathBuf,
        /// the entry
        key: String,
        /// the decoder's complaint
        source: base64::DecodeError,
    },
}

/// Resources loaded from local JSON files; see the module documentation.
pub struct OfflineFsKbc {
    resources: HashMap<String, Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for OfflineFsKbc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // names only: the values are secrets
        let mut names: Vec<&str> = self.resources.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("OfflineFsKbc")
            .field("resources", &names)
            .finish()
    }
}

impl OfflineFsKbc {
    /// Loads every store file of `sources` (blocking file I/O, done once at startup).
    pub fn load(sources: &OfflineFsSources) -> Result<Self, OfflineFsError> {
        let mut resources = HashMap::new();
        for path in sources.in_load_order() {
            match load_store(path)? {
                Some(entries) => {
                    debug!(path = %path.display(), entries = entries.len(), "offline_fs_kbc store loaded");
                    resources.extend(entries);
                }
                None => debug!(path = %path.display(), "offline_fs_kbc store absent, skipped"),
            }
        }
        Ok(Self { resources })
    }
}

#[async_trait]
impl Kbc for OfflineFsKbc {
    async fn get_resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbcError> {
        uri.repo_type_tag()
            .and_then(|(repo, kind, tag)| self.resources.get(&format!("{repo}/{kind}/{tag}")))
            .map(|bytes| Zeroizing::new(bytes.to_vec()))
            .ok_or_else(|| KbcError::NotFound(uri.to_string()))
    }
}

/// A resource name and its decoded bytes.
pub(crate) type StoreEntry = (String, Zeroizing<Vec<u8>>);

/// The entries of the store file at `path` (`{ "<name>": "<standard base64>" }`), or
/// `None` if it does not exist. Blocking file I/O.
pub(crate) fn load_store(path: &Path) -> Result<Option<Vec<StoreEntry>>, OfflineFsError> {
    match read_store(path)? {
        Some(contents) => parse_store(path, &contents).map(Some),
        None => Ok(None),
    }
}

/// The file's bytes, or `None` if it does not exist.
fn read_store(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, OfflineFsError> {
    let read_err = |source| OfflineFsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let mut contents = Zeroizing::new(Vec::new());
    file.take(MAX_STORE_FILE_SIZE + 1)
        .read_to_end(&mut contents)
        .map_err(read_err)?;
    if contents.len() as u64 > MAX_STORE_FILE_SIZE {
        return Err(OfflineFsError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_STORE_FILE_SIZE,
        });
    }
    Ok(Some(contents))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse_store(path: &Path, contents: &[u8]) -> Result<Vec<StoreEntry>, OfflineFsError> {
    let mut value: Value =
        serde_json::from_slice(contents).map_err(|source| OfflineFsError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let result = decode_entries(path, &value);
    wipe_strings(&mut value);
    result
}

fn decode_entries(path: &Path, value: &Value) -> Result<Vec<StoreEntry>, OfflineFsError> {
    let Value::Object(map) = value else {
        return Err(OfflineFsError::NotAnObject {
            path: path.to_path_buf(),
            found: json_type(value),
        });
    };
    map.iter()
        .map(|(key, value)| {
            let Value::String(encoded) = value else {
                return Err(OfflineFsError::NotAString {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    found: json_type(value),
                });
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|source| OfflineFsError::BadBase64 {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    source,
                })?;
            Ok((key.clone(), Zeroizing::new(bytes)))
        })
        .collect()
}

/// Clears the base64 text of the secrets once decoded.
fn wipe_strings(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe_strings),
        Value::Object(map) => map.values_mut().for_each(wipe_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stores {
        dir: tempfile::TempDir,
        sources: OfflineFsSources,
    }

    fn stores() -> Stores {
        let dir = tempfile::tempdir().unwrap();
        let sources = OfflineFsSources {
            keys_file: dir.path().join("keys.json"),
            resources_file: dir.path().join("resources.json"),
            extra_files: vec![
                dir.path().join("extra1.json"),
                dir.path().join("extra2.json"),
            ],
        };
        Stores { dir, sources }
    }

    impl Stores {
        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    fn uri(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap()
    }

    async fn get(kbc: &OfflineFsKbc, s: &str) -> Result<Vec<u8>, KbcError> {
        kbc.get_resource(&uri(s)).await.map(|bytes| bytes.to_vec())
    }

    #[test]
    fn default_sources_are_upstreams_files() {
        let sources = OfflineFsSources::default();
        assert_eq!(
            sources.keys_file,
            Path::new("/etc/aa-offline_fs_kbc-keys.json")
        );
        assert_eq!(
            sources.resources_file,
            Path::new("/etc/aa-offline_fs_kbc-resources.json")
        );
        assert!(sources.extra_files.is_empty());
    }

    #[test]
    fn extra_file_list_is_comma_separated() {
        assert_eq!(
            OfflineFsSources::parse_extra_file_list("/a.json, /b c.json,,  ,/d.json,"),
            vec![
                PathBuf::from("/a.json"),
                PathBuf::from("/b c.json"),
                PathBuf::from("/d.json")
            ]
        );
        assert!(OfflineFsSources::parse_extra_file_list("").is_empty());
    }

    #[tokio::test]
    async fn looks_up_repo_type_tag() {
        let s = stores();
        s.write(
            "resources.json",
            r#"{"default/key/1": "AAEC/w==", "default/cosign-key/ak": "cHVibGlj"}"#,
        );
        let kbc = OfflineFsKbc::load(&s.sources).unwrap();
        assert_eq!(
            get(&kbc, "kbs:///default/key/1").await.unwrap(),
            [0, 1, 2, 255]
        );
        // the host part of the URI does not matter
        assert_eq!(
            get(&kbc, "kbs://kbs.example:8080/default/cosign-key/ak")
                .await
                .unwrap(),
            b"public"
        );
        assert_eq!(
            get(&kbc, "kbs+resource:///default/key/1").await.unwrap(),
            [0, 1, 2, 255]
        );
    }

    #[tokio::test]
    async fn unknown_resources_are_not_found() {
        let s = stores();
        s.write(
            "resources.json",
            r#"{"default/key/1": "c2VjcmV0", "a/b": "eA=="}"#,
        );
        let kbc = OfflineFsKbc::load(&s.sources).unwrap();
        for missing in [
            "kbs:///default/key/2",
            "kbs:///default/key",
            "kbs:///a/b",
            "kbs:///default/key/1/extra",
            "kbs+pkcs11:///default/key/1",
        ] {
            match get(&kbc, missing).await {
                Err(KbcError::NotFound(what)) => {
                    assert_eq!(what, uri(missing).to_string(), "{missing}")
                }
                other => panic!("{missing}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn later_files_overwrite_earlier_ones() {
        let s = stores();
        s.write(
            "keys.json",
            r#"{"r/t/a": "a2V5cw==", "r/t/b": "a2V5cw==", "r/t/c": "a2V5cw=="}"#,
        );
        s.write(
            "resources.json",
            r#"{"r/t/b": "cmVzb3VyY2Vz", "r/t/c": "cmVzb3VyY2Vz"}"#,
        );
        s.write("extra2.json", r#"{"r/t/c": "ZXh0cmEy"}"#);
        let kbc = OfflineFsKbc::load(&s.sources).unwrap();
        assert_eq!(get(&kbc, "kbs:///r/t/a").await.unwrap(), b"keys");
        assert_eq!(get(&kbc, "kbs:///r/t/b").await.unwrap(), b"resources");
        assert_eq!(get(&kbc, "kbs:///r/t/c").await.unwrap(), b"extra2");

        // and extras in list order
        s.write(
            "extra1.json",
            r#"{"r/t/a": "ZXh0cmEx", "r/t/c": "ZXh0cmEx"}"#,
        );
        let kbc = OfflineFsKbc::load(&s.sources).unwrap();
        assert_eq!(get(&kbc, "kbs:///r/t/a").await.unwrap(), b"extra1");
        assert_eq!(get(&kbc, "kbs:///r/t/c").await.unwrap(), b"extra2");
    }

    #[tokio::test]
    async fn missing_files_are_skipped() {
        let s = stores();
        let kbc = OfflineFsKbc::load(&s.sources).unwrap();
        assert!(matches!(
            get(&kbc, "kbs:///default/key/1").await,
            Err(KbcError::NotFound(_))
        ));
        s.write("extra2.json", r#"{"default/key/1": "b25seQ=="}"#);
        let kbc = OfflineFsKbc::load(&s.sources).unwrap();
        assert_eq!(get(&kbc, "kbs:///default/key/1").await.unwrap(), b"only");
    }

    #[test]
    fn debug_output_names_keys_not_values() {
        let s = stores();
        s.write("resources.json", r#"{"default/key/1": "c2VjcmV0"}"#);
        let kbc = OfflineFsKbc::load(&s.sources).unwrap();
        let debug = format!("{kbc:?}");
        assert!(debug.contains("default/key/1"), "{debug}");
        assert!(
            !debug.contains("secret") && !debug.contains("115"),
            "{debug}"
        );
    }

    fn load_err(contents: &str) -> (PathBuf, OfflineFsError) {
        let s = stores();
        s.write("keys.json", r#"{"fine/entry/here": "b2s="}"#);
        let path = s.write("extra1.json", contents);
        let err = OfflineFsKbc::load(&s.sources).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        (path, err)
    }

    #[test]
    fn malformed_json_names_the_file() {
        for bad in [
            "",
            "{",
            r#"{"a/b/c": "eA==""#,
            "not json",
            r#"{"a/b/c": "eA=="} trailing"#,
        ] {
            let (_, err) = load_err(bad);
            assert!(matches!(err, OfflineFsError::Json { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn a_non_object_file_is_refused() {
        for (bad, found) in [
            (r#"["a/b/c", "eA=="]"#, "array"),
            (r#""eA==""#, "string"),
            ("42", "number"),
            ("null", "null"),
        ] {
            match load_err(bad) {
                (_, OfflineFsError::NotAnObject { found: f, .. }) => assert_eq!(f, found),
                (_, other) => panic!("{bad}: {other}"),
            }
        }
    }

    #[test]
    fn non_string_values_name_the_key() {
        for (bad, found) in [
            (r#"{"ok/x/y": "eA==", "default/key/1": 5}"#, "number"),
            (r#"{"default/key/1": null}"#, "null"),
            (r#"{"default/key/1": ["eA=="]}"#, "array"),
            (r#"{"default/key/1": {"v": "eA=="}}"#, "object"),
            (r#"{"default/key/1": true}"#, "boolean"),
        ] {
            match load_err(bad) {
                (_, err @ OfflineFsError::NotAString { .. }) => {
                    let OfflineFsError::NotAString { key, found: f, .. } = &err else {
                        unreachable!()
                    };
                    assert_eq!(key, "default/key/1");
                    assert_eq!(*f, found);
                    assert!(err.to_string().contains("`default/key/1`"), "{err}");
                }
                (_, other) => panic!("{bad}: {other}"),
            }
        }
    }

    #[test]
    fn bad_base64_names_the_key() {
        for bad in [
            r#"{"default/key/1": "not base64!"}"#,
            r#"{"default/key/1": "YQ"}"#,   // unpadded
            r#"{"default/key/1": "-_8="}"#, // url-safe alphabet
            r#"{"default/key/1": "YWJj\nZA=="}"#,
        ] {
            match load_err(bad) {
                (_, err @ OfflineFsError::BadBase64 { .. }) => {
                    assert!(err.to_string().contains("`default/key/1`"), "{err}");
                }
                (_, other) => panic!("{bad}: {other}"),
            }
        }
    }

    #[test]
    fn an_unreadable_store_is_an_error() {
        let s = stores();
        std::fs::create_dir(s.dir.path().join("resources.json")).unwrap();
        let err = OfflineFsKbc::load(&s.sources).unwrap_err();
        assert!(
            matches!(err, OfflineFsError::Read { ref path, .. } if path.ends_with("resources.json")),
            "{err}"
        );
    }

    #[test]
    fn an_oversized_store_is_refused() {
        let s = stores();
        let file = std::fs::File::create(s.dir.path().join("keys.json")).unwrap();
        file.set_len(MAX_STORE_FILE_SIZE + 1).unwrap();
        let err = OfflineFsKbc::load(&s.sources).unwrap_err();
        assert!(matches!(err, OfflineFsError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn an_empty_object_is_a_valid_store() {
        let s = stores();
        s.write("keys.json", "{}");
        s.write("resources.json", " { } \n");
        let kbc = OfflineFsKbc::load(&s.sources).unwrap();
        assert!(kbc.resources.is_empty());
    }
}
