//! What the fuzz targets share: one current-thread runtime for the async parsers and a
//! scratch directory under `TMPDIR` (scripts/fuzz.sh gives each run its own and removes it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A current-thread runtime, made once per process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the fuzz target")
    })
}

/// A directory private to this process (created on first use).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coco-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the fuzz scratch directory");
        dir
    })
}

/// Writes `files` (name, contents) into a new directory `name` under [`scratch`].
pub fn scratch_files(name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = scratch().join(name);
    std::fs::create_dir_all(&dir).expect("a fuzz fixture directory");
    for (file, contents) in files {
        std::fs::write(dir.join(file), contents).expect("a fuzz fixture file");
    }
    dir
}

/// The input as text, when it is UTF-8.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
