//! Finding plugin libraries: the configured directories, the data directory's `plugins/`, and
//! the directory of the node binary. Each library's metadata is read either by a probe in a
//! child process (the node: nothing is mapped here until a model needs it; answers cached,
//! see `cache`) or by opening it in this process (embedders and tests without a node binary),
//! one library at a time through abi_stable's per-library header API so that any number of
//! plugins coexist.

use super::{
    cache::{Cache, Fingerprint},
    probe::{self, Answer, ProbeSettings},
    Plugin, PluginEntry, PluginState,
};
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

/// How discovery reads a library's metadata.
pub(super) enum Reader<'a> {
    /// Opens it in this process.
    InProcess,
    /// Probes it in a child process, with the `[runtimes]` table (plugin name to options).
    Probe(
        &'a ProbeSettings,
        &'a serde_json::Map<String, serde_json::Value>,
    ),
}

/// Candidate library files in `dirs`, in scan order; the same file reached twice once.
fn candidates(dirs: &[SearchDir]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
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
            out.push(file);
        }
    }
    out
}

/// Opens `file` in this process.
fn open_here(file: &Path) -> Result<Plugin, String> {
    PluginLibrary::open(file)
        .map(Plugin::opened)
        .map_err(|e| e.to_string())
}

/// Probes every file (those the cache does not answer, all at once, each in its own child
/// process) and updates the cache.
fn probe_all(
    files: &[PathBuf],
    settings: &ProbeSettings,
    runtimes: &serde_json::Map<String, serde_json::Value>,
) -> Vec<Result<Plugin, String>> {
    let mut cache = Cache::open(settings.cache.as_deref());
    let prints: Vec<Fingerprint> = files.iter().map(|f| Fingerprint::of(f)).collect();
    let mut answers: Vec<Option<Answer>> = prints
        .iter()
        .map(|p| cache.get(p, runtimes).cloned().map(Answer::Plugin))
        .collect();
    let cached = answers.iter().filter(|a| a.is_some()).count();
    let runtimes_json = serde_json::Value::Object(runtimes.clone()).to_string();
    std::thread::scope(|scope| {
        let probes: Vec<_> = answers
            .iter_mut()
            .zip(files)
            .filter(|(a, _)| a.is_none())
            .map(|(slot, file)| {
                let json = &runtimes_json;
                (slot, scope.spawn(move || probe::run(settings, file, json)))
            })
            .collect();
        for (slot, probe) in probes {
            *slot = Some(probe.join().unwrap_or_else(|_| {
                Answer::Failed("the plugin probe's thread panicked".to_string())
            }));
        }
    });
    tracing::info!(
        probed = files.len() - cached,
        cached,
        "plugin metadata read"
    );
    let mut out = Vec::new();
    for ((file, print), answer) in files.iter().zip(prints).zip(answers) {
        let answer =
            answer.unwrap_or_else(|| Answer::Failed("the plugin was not probed".to_string()));
        out.push(match answer {
            Answer::Plugin(described) => {
                cache.put(print, runtimes, &described);
                Ok(Plugin::probed(
                    file.clone(),
                    described.metadata(),
                    described.runtime(),
                ))
            }
            Answer::Failed(reason) => {
                cache.forget(&print);
                Err(reason)
            }
        });
    }
    cache.save();
    out
}

/// Reads every candidate library in `dirs` with `reader`. A second library with a name
/// already found is reported as a duplicate.
pub(super) fn scan(dirs: &[SearchDir], reader: Reader<'_>) -> Vec<PluginEntry> {
    let files = candidates(dirs);
    let read: Vec<Result<Plugin, String>> = match reader {
        Reader::InProcess => files.iter().map(|f| open_here(f)).collect(),
        Reader::Probe(settings, runtimes) => probe_all(&files, settings, runtimes),
    };
    let mut entries: Vec<PluginEntry> = Vec::new();
    for (file, result) in files.into_iter().zip(read) {
        let state = match result {
            Ok(plugin) => {
                let name = plugin.metadata().name.clone();
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
                    None => PluginState::Loaded(Arc::new(plugin)),
                }
            }
            Err(reason) => PluginState::Failed(reason),
        };
        match &state {
            PluginState::Loaded(plugin) => tracing::info!(
                plugin = %plugin.metadata().name,
                version = %plugin.metadata().version,
                path = %file.display(),
                open = plugin.is_open(),
                "plugin found"
            ),
            PluginState::Failed(reason) => {
                tracing::warn!(path = %file.display(), %reason, "plugin skipped")
            }
        }
        entries.push(PluginEntry { path: file, state });
    }
    entries
}
