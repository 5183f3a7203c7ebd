//! The plugin registry: which plugin libraries were found, which are usable and why others
//! are not, and which plugins to try, in order, for a model file.
//!
//! Discovery (`discovery`) never fails as a whole: a broken, foreign or incompatible library
//! becomes a failed entry with its reason. The node reads each library's metadata in a child
//! process (`probe`, answers kept by `cache`) and opens a library in its own process only
//! when a model load or a training job needs it (`plugin`); libraries are never unloaded.
//! Loading a model tries every candidate plugin in preference order and reports all their
//! reasons together when none succeeds.

mod cache;
mod discovery;
mod plugin;
mod probe;

pub use discovery::{search_dirs, SearchDir};
pub use plugin::{Plugin, Trainer};
pub use probe::{answer as probe_answer, ProbeSettings, DEFAULT_TIMEOUT, SUBCOMMAND};

use cyxwiz_plugin_host::{LoadedModel, PluginLibrary};
use cyxwiz_sdk::{Error as PluginError, ErrorKind, LoadOptions};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

/// One library found during discovery.
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// The library file.
    pub path: PathBuf,
    /// Loaded, or why not.
    pub state: PluginState,
}

/// Whether a library is usable.
#[derive(Debug, Clone)]
pub enum PluginState {
    /// Opened (by a probe or here) and version-checked; its metadata is known. Its library is
    /// open in this process only once something used it ([`Plugin::is_open`]).
    Loaded(Arc<Plugin>),
    /// Skipped, with the reason.
    Failed(String),
}

/// Why no plugin could load a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No loaded plugin handles the file's extension.
    #[error("no plugin handles `{ext}` files ({path}); loaded plugins handle: {known}")]
    NoPlugin {
        /// The model path.
        path: String,
        /// Its extension.
        ext: String,
        /// Extensions the loaded plugins handle.
        known: String,
    },
    /// The requested plugin is not loaded.
    #[error("plugin `{name}` is not loaded; loaded plugins: {available}")]
    UnknownPlugin {
        /// Requested name.
        name: String,
        /// Loaded plugin names.
        available: String,
    },
    /// Every candidate failed; their reasons in order.
    #[error("{}", describe_failures(.path, .failures))]
    Failed {
        /// The model path.
        path: String,
        /// Each plugin tried and its error.
        failures: Vec<(String, PluginError)>,
    },
}

fn describe_failures(path: &str, failures: &[(String, PluginError)]) -> String {
    match failures {
        [(plugin, err)] => format!("{plugin}: {}", err.message),
        _ => {
            let reasons: Vec<String> = failures
                .iter()
                .map(|(p, e)| format!("{p}: {}", e.message))
                .collect();
            format!("no plugin could load {path}: {}", reasons.join("; "))
        }
    }
}

impl LoadError {
    /// The error kind, for mapping to exit codes and HTTP/gRPC statuses: the most preferred
    /// plugin's kind, `NOT_FOUND` for an unknown plugin, `UNSUPPORTED` for no plugin.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::NoPlugin { .. } => ErrorKind::UNSUPPORTED,
            LoadError::UnknownPlugin { .. } => ErrorKind::NOT_FOUND,
            LoadError::Failed { failures, .. } => failures
                .first()
                .map(|(_, e)| e.kind)
                .unwrap_or(ErrorKind::RUNTIME),
        }
    }
}

/// Found plugins and the preference order per format.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Vec<PluginEntry>,
    preference: BTreeMap<String, Vec<String>>,
    runtime_options: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// Built-in preference per format, used unless `[plugins.preference]` sets that format:
/// `.tflite` tries tract in process first and falls through to the TFLite C API for the
/// operators tract lacks.
pub const BUILTIN_PREFERENCE: &[(&str, &[&str])] =
    &[("tflite", &["tflite-tract", "tflite-litert"])];

/// The lower-case extension of `path`, without the dot.
pub fn extension_of(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// `preference` with the built-in order for the formats it does not set.
fn with_builtin(mut preference: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    for (format, order) in BUILTIN_PREFERENCE {
        preference
            .entry((*format).to_string())
            .or_insert_with(|| order.iter().map(|p| (*p).to_string()).collect());
    }
    preference
}

impl Registry {
    /// Scans `dirs` and opens every candidate library in this process (for embedders and
    /// tests without a node binary to probe with; the node uses [`Registry::discover_probed`]).
    /// `preference` comes from `[plugins.preference]`; formats it does not mention keep the
    /// built-in order ([`BUILTIN_PREFERENCE`]).
    pub fn discover(dirs: &[SearchDir], preference: BTreeMap<String, Vec<String>>) -> Self {
        Self {
            entries: discovery::scan(dirs, discovery::Reader::InProcess),
            preference: with_builtin(preference),
            runtime_options: BTreeMap::new(),
        }
    }

    /// Scans `dirs` and reads every candidate library's metadata and runtime line (asked with
    /// its `runtime_options`) through `probe`: a child process per library not answered by
    /// the cache. No library is opened in this process until a model or job needs it.
    pub fn discover_probed(
        dirs: &[SearchDir],
        preference: BTreeMap<String, Vec<String>>,
        runtime_options: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
        probe: &ProbeSettings,
    ) -> Self {
        let runtimes: serde_json::Map<String, serde_json::Value> = runtime_options
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::Object(v.clone())))
            .collect();
        Self {
            entries: discovery::scan(dirs, discovery::Reader::Probe(probe, &runtimes)),
            preference: with_builtin(preference),
            runtime_options,
        }
    }

    /// Sets options merged into every load through plugin `name` (from `[runtimes.<name>]`);
    /// a deployment's own options win on conflict.
    pub fn with_runtime_options(
        mut self,
        options: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    ) -> Self {
        self.runtime_options = options;
        self
    }

    /// The native runtime behind `plugin` and its version, asked with its
    /// `[runtimes.<name>]` options: `Ok(None)` when the plugin names none, `Err` with the
    /// reason its runtime is unusable (e.g. a library path that does not exist). A probed
    /// plugin answers from its probe; one opened here is asked now.
    pub fn runtime_of(&self, plugin: &Plugin) -> Result<Option<String>, String> {
        if let Some(answer) = plugin.probed_runtime() {
            return answer.clone();
        }
        let options = self
            .runtime_options
            .get(&plugin.metadata().name)
            .cloned()
            .unwrap_or_default();
        plugin
            .library()
            .map_err(|e| e.to_string())?
            .runtime(&serde_json::Value::Object(options))
            .map_err(|e| e.to_string())
    }

    fn options_for(&self, plugin: &str, options: &LoadOptions) -> LoadOptions {
        let mut merged = options.clone();
        if let (Some(defaults), serde_json::Value::Object(own)) =
            (self.runtime_options.get(plugin), &mut merged.options)
        {
            for (key, value) in defaults {
                own.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        merged
    }

    /// Every library found, loaded or not, in discovery order.
    pub fn entries(&self) -> &[PluginEntry] {
        &self.entries
    }

    /// The usable plugins, in discovery order.
    pub fn loaded(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.entries.iter().filter_map(|e| match &e.state {
            PluginState::Loaded(lib) => Some(lib),
            PluginState::Failed(_) => None,
        })
    }

    /// The usable plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.loaded().find(|l| l.metadata().name == name)
    }

    /// Plugins that handle `path`'s extension, most preferred first: the names listed under
    /// `[plugins.preference]` for the extension or its format, then the rest in discovery order.
    pub fn candidates(&self, path: &Path) -> Vec<&Arc<Plugin>> {
        let Some(ext) = extension_of(path) else {
            return Vec::new();
        };
        let handlers: Vec<&Arc<Plugin>> = self
            .loaded()
            .filter(|l| l.metadata().extensions().any(|e| e == ext))
            .collect();
        let formats: Vec<&str> = handlers
            .iter()
            .flat_map(|l| l.metadata().formats.iter())
            .filter(|(_, exts)| exts.contains(&ext))
            .map(|(f, _)| f.as_str())
            .collect();
        let preferred: Vec<&String> = std::iter::once(ext.as_str())
            .chain(formats)
            .filter_map(|key| self.preference.get(key))
            .flatten()
            .collect();
        let mut ordered: Vec<&Arc<Plugin>> = Vec::new();
        for name in preferred {
            if let Some(lib) = handlers.iter().find(|l| &l.metadata().name == name) {
                if !ordered.iter().any(|o| Arc::ptr_eq(o, lib)) {
                    ordered.push(lib);
                }
            }
        }
        for lib in handlers {
            if !ordered.iter().any(|o| Arc::ptr_eq(o, lib)) {
                ordered.push(lib);
            }
        }
        ordered
    }

    /// Loads `path` with `plugin` if given, otherwise with each candidate in turn until one
    /// succeeds. A candidate's library is opened in this process on its first use.
    pub fn load(
        &self,
        path: &Path,
        plugin: Option<&str>,
        options: &LoadOptions,
    ) -> Result<(Arc<PluginLibrary>, LoadedModel), LoadError> {
        let candidates: Vec<&Arc<Plugin>> = match plugin {
            Some(name) => vec![self.get(name).ok_or_else(|| LoadError::UnknownPlugin {
                name: name.to_string(),
                available: self.names().join(", "),
            })?],
            None => self.candidates(path),
        };
        if candidates.is_empty() {
            let mut known: Vec<&str> = self
                .loaded()
                .flat_map(|l| l.metadata().extensions())
                .collect();
            known.sort_unstable();
            known.dedup();
            return Err(LoadError::NoPlugin {
                path: path.display().to_string(),
                ext: extension_of(path).unwrap_or_else(|| "(no extension)".to_string()),
                known: if known.is_empty() {
                    "nothing (no plugin loaded)".to_string()
                } else {
                    known.join(", ")
                },
            });
        }
        let mut failures = Vec::new();
        for plugin in candidates {
            let name = &plugin.metadata().name;
            let loaded = plugin.library().and_then(|lib| {
                lib.load(path, &self.options_for(name, options))
                    .map(|model| (lib, model))
            });
            match loaded {
                Ok(done) => return Ok(done),
                Err(err) => {
                    tracing::debug!(plugin = %name, %err, "plugin could not load model");
                    failures.push((name.clone(), err));
                }
            }
        }
        Err(LoadError::Failed {
            path: path.display().to_string(),
            failures,
        })
    }

    fn names(&self) -> Vec<String> {
        self.loaded().map(|l| l.metadata().name.clone()).collect()
    }
}
