//! Probe answers kept between starts (`<data dir>/plugin-cache.json`), so a node whose plugins
//! did not change starts without spawning a probe. An answer is reused only while everything
//! it depends on is unchanged: the library file (canonical path, size, modification time),
//! the host's plugin interface version and node version, the plugin's `[runtimes.<name>]`
//! options and the files they name, and the environment variables that steer library loading
//! ([`ENV`]). Failed probes are not kept: a library that could not load is tried again on the
//! next start (its dependency may have been installed since).

use super::probe::Described;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

/// Bumped when the file's layout or the meaning of an answer changes.
const FORMAT: u32 = 1;

/// Environment variables whose value is part of every answer's key.
pub const ENV: &[&str] = &["LD_LIBRARY_PATH", "LD_PRELOAD", "ORT_DYLIB_PATH"];

/// A file as far as the cache cares: where, how big, when last changed (`None`: missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Fingerprint {
    path: PathBuf,
    size: Option<u64>,
    modified: Option<(u64, u32)>,
}

impl Fingerprint {
    /// The file at `path`, symlinks resolved.
    pub fn of(path: &Path) -> Self {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let meta = std::fs::metadata(&path).ok();
        let modified = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| (d.as_secs(), d.subsec_nanos()));
        Self {
            size: meta.map(|m| m.len()),
            modified,
            path,
        }
    }
}

/// What every answer also depends on, the same for all libraries of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Context {
    interface: String,
    node: String,
    env: BTreeMap<String, Option<String>>,
}

impl Context {
    fn current() -> Self {
        Self {
            interface: cyxwiz_sdk::INTERFACE_VERSION.to_string(),
            node: env!("CARGO_PKG_VERSION").to_string(),
            env: ENV
                .iter()
                .map(|k| (k.to_string(), std::env::var(k).ok()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    library: Fingerprint,
    context: Context,
    /// The plugin's `[runtimes.<name>]` options when it was probed.
    options: serde_json::Value,
    /// The files those options name, as they were.
    option_files: Vec<Fingerprint>,
    answer: Described,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    entries: Vec<Entry>,
}

/// The cache as read at start; [`Cache::save`] writes it back if anything changed.
#[derive(Debug)]
pub(super) struct Cache {
    path: Option<PathBuf>,
    file: CacheFile,
    context: Context,
    changed: bool,
}

/// A plugin's options from the `[runtimes]` table (an empty object when it has none).
fn options_of(
    runtimes: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> serde_json::Value {
    runtimes
        .get(name)
        .cloned()
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()))
}

/// Every string in `options` that names a path (contains a `/`), fingerprinted.
fn files_named(options: &serde_json::Value) -> Vec<Fingerprint> {
    fn walk(value: &serde_json::Value, out: &mut Vec<Fingerprint>) {
        match value {
            serde_json::Value::String(s) if s.contains('/') => {
                out.push(Fingerprint::of(Path::new(s)))
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(options, &mut out);
    out
}

impl Cache {
    /// Reads the cache at `path` (`None`: a cache that keeps nothing). A missing, unreadable
    /// or outdated file is an empty cache.
    pub fn open(path: Option<&Path>) -> Self {
        let file = path
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|f| f.format == FORMAT)
            .unwrap_or_default();
        Self {
            path: path.map(Path::to_path_buf),
            file,
            context: Context::current(),
            changed: false,
        }
    }

    /// The kept answer for `library`, if nothing it depends on changed.
    pub fn get(
        &self,
        library: &Fingerprint,
        runtimes: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<&Described> {
        let entry = self
            .file
            .entries
            .iter()
            .find(|e| &e.library == library && e.context == self.context)?;
        let options = options_of(runtimes, &entry.answer.name);
        (entry.options == options && entry.option_files == files_named(&options))
            .then_some(&entry.answer)
    }

    /// Keeps `answer` for `library`, replacing what was kept for the same path.
    pub fn put(
        &mut self,
        library: Fingerprint,
        runtimes: &serde_json::Map<String, serde_json::Value>,
        answer: &Described,
    ) {
        let options = options_of(runtimes, &answer.name);
        self.file.entries.retain(|e| e.library.path != library.path);
        self.file.entries.push(Entry {
            library,
            context: self.context.clone(),
            option_files: files_named(&options),
            options,
            answer: answer.clone(),
        });
        self.changed = true;
    }

    /// Forgets what was kept for `library`'s path (it failed this time).
    pub fn forget(&mut self, library: &Fingerprint) {
        let before = self.file.entries.len();
        self.file.entries.retain(|e| e.library.path != library.path);
        self.changed |= self.file.entries.len() != before;
    }

    /// Writes the cache back if it changed, dropping entries whose library is gone. Writes a
    /// temporary file and renames it, so a reader never sees half a file; only into a
    /// directory that exists. A failure is logged: the next start probes again.
    pub fn save(mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        let before = self.file.entries.len();
        self.file.entries.retain(|e| e.library.path.is_file());
        if !self.changed && self.file.entries.len() == before {
            return;
        }
        if !path.parent().is_some_and(Path::is_dir) {
            return;
        }
        self.file.format = FORMAT;
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let written = serde_json::to_vec_pretty(&self.file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "cannot write the plugin cache");
        }
    }
}

#[cfg(test)]
mod tests;
