//! One usable plugin: what it says about itself (read by a probe or from the cache, without
//! its library in this process) and its library, opened here on first use and then kept.
//!
//! abi_stable never unloads a library (its root module is `'static`), so a plugin opened for
//! a model stays mapped until the node exits, even after its last model unloads.

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{
    training::{TrainingHost, TrainingJob, TrainingOutcome},
    Error as PluginError, PluginMetadata,
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// A plugin found by discovery: metadata always, its library only once something needs it.
pub struct Plugin {
    path: PathBuf,
    metadata: PluginMetadata,
    /// The runtime line as the probe read it (`None`: ask the opened library).
    runtime: Option<Result<Option<String>, String>>,
    library: Mutex<Option<Arc<PluginLibrary>>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("metadata", &self.metadata)
            .field("open", &self.is_open())
            .finish()
    }
}

impl Plugin {
    /// A plugin known from a probe: its library is not open in this process.
    pub(super) fn probed(
        path: PathBuf,
        metadata: PluginMetadata,
        runtime: Result<Option<String>, String>,
    ) -> Self {
        Self {
            path,
            metadata,
            runtime: Some(runtime),
            library: Mutex::new(None),
        }
    }

    /// A plugin whose library is already open in this process.
    pub(super) fn opened(library: PluginLibrary) -> Self {
        Self {
            path: library.path().to_path_buf(),
            metadata: library.metadata().clone(),
            runtime: None,
            library: Mutex::new(Some(Arc::new(library))),
        }
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the plugin says about itself.
    pub fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    /// The runtime line the probe read, if the plugin was probed.
    pub(super) fn probed_runtime(&self) -> Option<&Result<Option<String>, String>> {
        self.runtime.as_ref()
    }

    /// Whether the library is open in this process.
    pub fn is_open(&self) -> bool {
        self.library.lock().map(|l| l.is_some()).unwrap_or(false)
    }

    /// The library, opened in this process on the first call (later calls return the same
    /// one). A failure is returned and not kept: the next call tries again.
    pub fn library(&self) -> Result<Arc<PluginLibrary>, PluginError> {
        let mut slot = self
            .library
            .lock()
            .map_err(|_| PluginError::runtime("plugin library lock poisoned"))?;
        if let Some(library) = slot.as_ref() {
            return Ok(library.clone());
        }
        let library = PluginLibrary::open(&self.path)
            .map_err(|e| PluginError::runtime(format!("{}: {e}", self.path.display())))?;
        if library.metadata().name != self.metadata.name {
            return Err(PluginError::runtime(format!(
                "{} changed since the node read it (it was plugin `{}`, it is now `{}`); restart the node",
                self.path.display(),
                self.metadata.name,
                library.metadata().name
            )));
        }
        tracing::info!(plugin = %self.metadata.name, path = %self.path.display(), "plugin library opened");
        let library = Arc::new(library);
        *slot = Some(library.clone());
        Ok(library)
    }
}

/// A plugin's training backend, started in the plugin on the first job.
pub struct Trainer {
    plugin: Arc<Plugin>,
    backend: Mutex<Option<Arc<cyxwiz_plugin_host::Trainer>>>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("plugin", &self.plugin.metadata.name)
            .finish()
    }
}

impl Trainer {
    /// The training backend of `plugin`, not started yet.
    pub fn new(plugin: Arc<Plugin>) -> Self {
        Self {
            plugin,
            backend: Mutex::new(None),
        }
    }

    fn backend(&self) -> Result<Arc<cyxwiz_plugin_host::Trainer>, PluginError> {
        let mut slot = self
            .backend
            .lock()
            .map_err(|_| PluginError::runtime("training backend lock poisoned"))?;
        if let Some(backend) = slot.as_ref() {
            return Ok(backend.clone());
        }
        let backend = Arc::new(self.plugin.library()?.training_backend()?);
        *slot = Some(backend.clone());
        Ok(backend)
    }

    /// Runs a training job on this thread until it ends (see
    /// [`cyxwiz_plugin_host::Trainer::train`]); opens the plugin's library and starts its
    /// backend first if no job did yet.
    pub fn train(
        &self,
        job: &TrainingJob,
        host: &mut dyn TrainingHost,
    ) -> Result<TrainingOutcome, PluginError> {
        self.backend()?.train(job, host)
    }
}
