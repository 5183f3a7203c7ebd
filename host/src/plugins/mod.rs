//! The plugin registry: which plugin libraries were found, which loaded and why others did
//! not, and which plugins to try, in order, for a model file.
//!
//! Discovery (`discovery`) never fails as a whole: a broken, foreign or incompatible library
//! becomes a failed entry with its reason. Loading a model tries every candidate plugin in
//! preference order and reports all their reasons together when none succeeds.

mod discovery;

pub use discovery::{search_dirs, SearchDir};

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

/// Whether a library loaded.
#[derive(Debug, Clone)]
pub enum PluginState {
    /// Opened and version-checked.
    Loaded(Arc<PluginLibrary>),
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

impl Registry {
    /// Scans `dirs` and opens every candidate library. `preference` comes from
    /// `[plugins.preference]`; formats it does not mention keep the built-in order
    /// ([`BUILTIN_PREFERENCE`]).
    pub fn discover(dirs: &[SearchDir], mut preference: BTreeMap<String, Vec<String>>) -> Self {
        for (format, order) in BUILTIN_PREFERENCE {
            preference
                .entry((*format).to_string())
                .or_insert_with(|| order.iter().map(|p| (*p).to_string()).collect());
        }
        Self {
            entries: discovery::scan(dirs),
            preference,
            runtime_options: BTreeMap::new(),
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

    /// The native runtime behind `lib` and its version, asked with its `[runtimes.<name>]`
    /// options: `Ok(None)` when the plugin names none, `Err` with the reason its runtime is
    /// unusable (e.g. a library path that does not exist).
    pub fn runtime_of(&self, lib: &PluginLibrary) -> Result<Option<String>, String> {
        let options = self
            .runtime_options
            .get(&lib.metadata().name)
            .cloned()
            .unwrap_or_default();
        lib.runtime(&serde_json::Value::Object(options))
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

    /// The loaded plugins, in discovery order.
    pub fn loaded(&self) -> impl Iterator<Item = &Arc<PluginLibrary>> {
        self.entries.iter().filter_map(|e| match &e.state {
            PluginState::Loaded(lib) => Some(lib),
            PluginState::Failed(_) => None,
        })
    }

    /// The loaded plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<PluginLibrary>> {
        self.loaded().find(|l| l.metadata().name == name)
    }

    /// Plugins that handle `path`'s extension, most preferred first: the names listed under
    /// `[plugins.preference]` for the extension or its format, then the rest in discovery order.
    pub fn candidates(&self, path: &Path) -> Vec<&Arc<PluginLibrary>> {
        let Some(ext) = extension_of(path) else {
            return Vec::new();
        };
        let handlers: Vec<&Arc<PluginLibrary>> = self
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
        let mut ordered: Vec<&Arc<PluginLibrary>> = Vec::new();
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
    /// succeeds.
    pub fn load(
        &self,
        path: &Path,
        plugin: Option<&str>,
        options: &LoadOptions,
    ) -> Result<(Arc<PluginLibrary>, LoadedModel), LoadError> {
        let candidates: Vec<&Arc<PluginLibrary>> = match plugin {
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
        for lib in candidates {
            match lib.load(path, &self.options_for(&lib.metadata().name, options)) {
                Ok(model) => return Ok((lib.clone(), model)),
                Err(err) => {
                    tracing::debug!(plugin = %lib.metadata().name, %err, "plugin could not load model");
                    failures.push((lib.metadata().name.clone(), err));
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
