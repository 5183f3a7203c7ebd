//! Finding plugin libraries: the configured directories, the data directory's `plugins/`, and
//! the directory of the node binary, opened one library at a time through abi_stable's
//! per-library header API so that any number of plugins coexist.

use super::{PluginEntry, PluginState};
use cyxwiz_plugin_host::PluginLibrary;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

/// A directory to scan and how much of it to trust.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDir {
    /// The directory.
    pub path: PathBuf,
    /// When true, only files named `libcyxwiz_plugin_*` are opened (used for the binary's own
    /// directory, which holds other libraries too); otherwise every shared library is.
    pub only_cyxwiz_named: bool,
}

/// The directories to scan, in order: configured ones, the data dir's `plugins/`, then the
/// directory holding the running binary.
pub fn search_dirs(configured: &[PathBuf], data_plugins: &Path) -> Vec<SearchDir> {
    let mut dirs: Vec<SearchDir> = configured
        .iter()
        .chain(std::iter::once(&data_plugins.to_path_buf()))
        .map(|p| SearchDir {
            path: p.clone(),
            only_cyxwiz_named: false,
        })
        .collect();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(SearchDir {
            path: exe_dir,
            only_cyxwiz_named: true,
        });
    }
    dirs
}

fn is_library(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(std::env::consts::DLL_SUFFIX) && path.is_file()
}

/// Opens every candidate library in `dirs`. The same file reached twice is opened once; a
/// second library with a name already loaded is reported as a duplicate.
pub(super) fn scan(dirs: &[SearchDir]) -> Vec<PluginEntry> {
    let mut entries: Vec<PluginEntry> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let listing = match std::fs::read_dir(&dir.path) {
            Ok(l) => l,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.path.display(), error = %e, "cannot scan plugin directory");
                }
                continue;
            }
        };
        let mut files: Vec<PathBuf> = listing
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_library(p))
            .filter(|p| {
                !dir.only_cyxwiz_named
                    || p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libcyxwiz_plugin_"))
            })
            .collect();
        files.sort();
        for file in files {
            let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
            if seen.contains(&canonical) {
                continue;
            }
            seen.push(canonical);
            let state = match PluginLibrary::open(&file) {
                Ok(lib) => {
                    let name = lib.metadata().name.clone();
                    let earlier = entries.iter().find_map(|e| match &e.state {
                        PluginState::Loaded(other) if other.metadata().name == name => {
                            Some(e.path.clone())
                        }
                        _ => None,
                    });
                    match earlier {
                        Some(first) => PluginState::Failed(format!(
                            "duplicate of plugin `{name}` already loaded from {}",
                            first.display()
                        )),
                        None => PluginState::Loaded(Arc::new(lib)),
                    }
                }
                Err(e) => PluginState::Failed(e.to_string()),
            };
            match &state {
                PluginState::Loaded(lib) => tracing::info!(
                    plugin = %lib.metadata().name,
                    version = %lib.metadata().version,
                    path = %file.display(),
                    "plugin loaded"
                ),
                PluginState::Failed(reason) => {
                    tracing::warn!(path = %file.display(), %reason, "plugin skipped")
                }
            }
            entries.push(PluginEntry { path: file, state });
        }
    }
    entries
}
