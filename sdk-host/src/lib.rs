//! The host side of the plugin boundary: open a plugin library, check its interface version,
//! load models and call them with the std types of `cyxwiz-sdk`. Used by the node and by the
//! conformance testkit; plugin authors depend on `cyxwiz-sdk` alone.
//!
//! Libraries are opened with abi_stable's per-library header API (`lib_header_from_path` +
//! `init_root_module`), so any number of plugins load side by side. They are never unloaded.

#![deny(missing_docs)]

use cyxwiz_plugin_api::{
    self as abi,
    abi_stable::{
        library::{lib_header_from_path, LibraryError, RootModule},
        sabi_trait::TD_Opaque,
        sabi_types::RMut,
        sabi_types::{VersionNumber, VersionStrings},
        std_types::{RErr, ROk, RResult, RSlice, RStr},
    },
    LoaderBox, LogLevel, ModelBox, PluginModRef, SelfTest, TrainingBackendBox,
};
use cyxwiz_sdk::training::{Directive, TrainingHost, TrainingJob, TrainingOutcome};
use cyxwiz_sdk::{
    convert, Embeddings, Error, GenerateOutput, GenerateRequest, LoadOptions, ModelInfo,
    PluginMetadata, Result, Tensor, TensorView, TokenSink,
};
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// Why a library could not be opened as a plugin.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The dynamic loader refused the file (not a shared library, missing dependency, ...).
    #[error("cannot load library: {0}")]
    Load(String),
    /// A shared library, but not a cyxwiz plugin (no abi_stable root module).
    #[error("not a cyxwiz plugin: {0}")]
    NotAPlugin(String),
    /// Built against another plugin-api version.
    #[error(
        "built against cyxwiz-plugin-api {plugin}, but this host speaks {host}; rebuild the plugin against cyxwiz-plugin-api {host}"
    )]
    IncompatibleVersion {
        /// The version the plugin was built against.
        plugin: String,
        /// The version the host was built against.
        host: String,
    },
    /// Same version, but the type layouts differ.
    #[error("incompatible plugin ABI: {0}")]
    Layout(String),
    /// The plugin's root module failed to initialise.
    #[error("plugin failed to initialise: {0}")]
    Init(String),
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_string()
}

fn classify(err: LibraryError) -> OpenError {
    match err {
        LibraryError::OpenError { err, .. } => OpenError::Load(first_line(&err.to_string())),
        LibraryError::GetSymbolError { .. } => OpenError::NotAPlugin(
            "it does not export an abi_stable root module (was it built with export_plugin!?)"
                .to_string(),
        ),
        LibraryError::InvalidAbiHeader(header) => OpenError::NotAPlugin(format!(
            "its abi_stable header is invalid or from abi_stable {}.{}",
            header.abi_major, header.abi_minor
        )),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => OpenError::IncompatibleVersion {
            plugin: actual_version.to_string(),
            host: expected_version.to_string(),
        },
        LibraryError::AbiInstability(e) => OpenError::Layout(first_line(&e.to_string())),
        LibraryError::RootModule { err, .. } => OpenError::Init(first_line(&err.to_string())),
        other => OpenError::Init(first_line(&other.to_string())),
    }
}

/// Enforces the interface versioning rule: the same major version and, while the interface
/// is `0.x`, the same minor version (abi_stable alone would accept a newer 0.x minor).
fn check_interface_version(plugin: VersionStrings) -> std::result::Result<(), OpenError> {
    let parse = |v: VersionStrings| {
        VersionNumber::new(v)
            .map_err(|e| OpenError::NotAPlugin(format!("bad interface version: {e}")))
    };
    let plugin = parse(plugin)?;
    let host = parse(PluginModRef::VERSION_STRINGS)?;
    let compatible = plugin.major == host.major && (host.major != 0 || plugin.minor == host.minor);
    if compatible {
        Ok(())
    } else {
        Err(OpenError::IncompatibleVersion {
            plugin: plugin.to_string(),
            host: host.to_string(),
        })
    }
}

/// An opened plugin library.
pub struct PluginLibrary {
    path: PathBuf,
    module: PluginModRef,
    metadata: PluginMetadata,
    loader: OnceLock<std::result::Result<LoaderBox, Error>>,
}

impl std::fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("path", &self.path)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl PluginLibrary {
    /// Opens the library at `path`, checks its interface version and type layout, and reads
    /// its metadata. Never panics on a bad file.
    pub fn open(path: &Path) -> std::result::Result<Self, OpenError> {
        let header = lib_header_from_path(path).map_err(classify)?;
        check_interface_version(header.version_strings())?;
        let module = header
            .init_root_module::<PluginModRef>()
            .map_err(classify)?;
        let info_fn = module.info();
        let metadata = catch_unwind(AssertUnwindSafe(|| convert::metadata_from_abi(&info_fn())))
            .map_err(|_| OpenError::Init("the plugin's info() panicked".to_string()))?;
        // Plugins built against 0.1.0 have no log sink entry; they simply log nowhere.
        if let Some(set_log_sink) = module.set_log_sink() {
            let sink = HostLogSink {
                plugin: metadata.name.clone(),
            };
            set_log_sink(abi::LogSink_TO::from_value(sink, TD_Opaque));
        }
        Ok(Self {
            path: path.to_path_buf(),
            module,
            metadata,
            loader: OnceLock::new(),
        })
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the plugin says about itself.
    pub fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    fn loader(&self) -> Result<&LoaderBox> {
        self.loader
            .get_or_init(|| {
                (self.module.new_loader())()
                    .into_result()
                    .map_err(Error::from)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Loads a model with this plugin.
    pub fn load(&self, path: &Path, options: &LoadOptions) -> Result<LoadedModel> {
        let path_str = path.to_str().ok_or_else(|| {
            Error::invalid_input(format!("{}: path is not valid UTF-8", path.display()))
        })?;
        let request = convert::load_to_abi(path_str, options);
        let inner = self.loader()?.load(&request).into_result()?;
        let info = inner.info().into_result()?;
        Ok(LoadedModel {
            inner,
            info: convert::info_from_abi(&info),
        })
    }

    /// The plugin's training backend.
    pub fn training_backend(&self) -> Result<Trainer> {
        let inner = self.loader()?.training_backend().into_result()?;
        Ok(Trainer { inner })
    }

    /// The native runtime behind the plugin and its version (`ONNX Runtime 1.31.1`), asked
    /// with `options` (the host's `[runtimes.<plugin>]` table); `Ok(None)` for plugins built
    /// before the interface had the entry (0.1.1) or that name no runtime.
    pub fn runtime(&self, options: &serde_json::Value) -> Result<Option<String>> {
        let Some(runtime) = self.module.runtime() else {
            return Ok(None);
        };
        let text = options.to_string();
        let answer = runtime(RStr::from_str(&text))
            .into_result()
            .map_err(Error::from)?;
        Ok(Some(answer.into_string()).filter(|s| !s.is_empty()))
    }

    /// Runs a boundary self-test; [`SelfTest::PANIC`] must come back as `PANICKED`.
    pub fn self_test(&self, test: SelfTest) -> Result<()> {
        (self.module.self_test())(test)
            .into_result()
            .map_err(Error::from)
    }
}

/// A loaded model, callable from any thread.
pub struct LoadedModel {
    inner: ModelBox,
    info: ModelInfo,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("info", &self.info)
            .finish()
    }
}

struct HostTokenSink<'s>(&'s mut dyn TokenSink);

impl abi::TokenSink for HostTokenSink<'_> {
    fn emit(&mut self, text: RStr<'_>) -> bool {
        // A panic here would unwind through an `extern "C"` frame and abort: stop instead.
        catch_unwind(AssertUnwindSafe(|| self.0.emit(text.as_str()))).unwrap_or(false)
    }
}

/// The host's side of a training job, handed to the plugin. Panics in the host's code are
/// caught here: unwinding through the plugin's `extern "C"` frames would abort.
struct HostTrainingSink<'s>(&'s mut dyn TrainingHost);

fn panicked(what: &str) -> abi::PluginError {
    abi::PluginError::new(
        abi::ErrorKind::PANICKED,
        format!("the host panicked in {what}"),
    )
}

impl abi::TrainingSink for HostTrainingSink<'_> {
    fn batch(&mut self, request: &abi::BatchRequest) -> RResult<abi::Batch, abi::PluginError> {
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.0.batch(request.split, request.epoch, request.index)
        }));
        match result {
            Ok(Ok(batch)) => ROk(convert::batch_to_abi(&batch)),
            Ok(Err(e)) => RErr(e.into()),
            Err(_) => RErr(panicked("batch")),
        }
    }

    fn report(&mut self, progress: &abi::TrainingProgress) -> Directive {
        let progress = convert::progress_from_abi(progress);
        catch_unwind(AssertUnwindSafe(|| self.0.report(&progress))).unwrap_or(Directive::STOP)
    }

    fn checkpoint(&mut self, checkpoint: &abi::Checkpoint) -> RResult<(), abi::PluginError> {
        let checkpoint = convert::checkpoint_from_abi(checkpoint);
        match catch_unwind(AssertUnwindSafe(|| self.0.checkpoint(checkpoint))) {
            Ok(Ok(())) => ROk(()),
            Ok(Err(e)) => RErr(e.into()),
            Err(_) => RErr(panicked("checkpoint")),
        }
    }

    fn wait_while_paused(&mut self) -> Directive {
        catch_unwind(AssertUnwindSafe(|| self.0.wait_while_paused())).unwrap_or(Directive::STOP)
    }
}

impl LoadedModel {
    /// Specs, memory use and capabilities, as read at load time.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Runs tensor inference. Inputs are passed by reference, not copied.
    pub fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        let refs: Vec<abi::TensorRef<'_>> = inputs.iter().map(convert::view_to_abi).collect();
        let outputs = self.inner.infer(RSlice::from_slice(&refs)).into_result()?;
        Ok(outputs.into_iter().map(convert::tensor_from_abi).collect())
    }

    /// Generates text, calling `sink` for each piece; `sink` returning `false` cancels.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateOutput> {
        let request = convert::generate_to_abi(request);
        let mut host_sink = HostTokenSink(sink);
        let sink = abi::TokenSink_TO::from_ptr(RMut::new(&mut host_sink), TD_Opaque);
        let out = self.inner.generate(&request, sink).into_result()?;
        Ok(convert::output_from_abi(out))
    }

    /// Embeds a batch of texts.
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let texts: Vec<RStr<'_>> = texts.iter().map(|t| RStr::from(*t)).collect();
        let out = self.inner.embed(RSlice::from_slice(&texts)).into_result()?;
        Ok(convert::embeddings_from_abi(out))
    }

    /// Tokenizes a text.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let out = self
            .inner
            .tokenize(text.into(), add_special)
            .into_result()?;
        Ok(out.into_vec())
    }
}

/// A plugin's training backend.
pub struct Trainer {
    inner: TrainingBackendBox,
}

impl Trainer {
    /// Runs a training job on this thread until it ends, serving the plugin's batches,
    /// progress, checkpoints and pauses through `host`.
    pub fn train(&self, job: &TrainingJob, host: &mut dyn TrainingHost) -> Result<TrainingOutcome> {
        let job = convert::job_to_abi(job)?;
        let mut host_sink = HostTrainingSink(host);
        let sink = abi::TrainingSink_TO::from_ptr(RMut::new(&mut host_sink), TD_Opaque);
        let out = self.inner.train(&job, sink).into_result()?;
        Ok(convert::outcome_from_abi(out))
    }
}

/// The host's end of a plugin's log sink: records land in the host's `tracing` log, tagged
/// with the plugin's name and the module that emitted them.
struct HostLogSink {
    plugin: String,
}

impl abi::LogSink for HostLogSink {
    fn max_level(&self) -> LogLevel {
        use tracing::level_filters::LevelFilter;
        match LevelFilter::current() {
            LevelFilter::OFF => LogLevel::OFF,
            LevelFilter::ERROR => LogLevel::ERROR,
            LevelFilter::WARN => LogLevel::WARN,
            LevelFilter::INFO => LogLevel::INFO,
            LevelFilter::DEBUG => LogLevel::DEBUG,
            _ => LogLevel::TRACE,
        }
    }

    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let (plugin, target, message) = (&self.plugin, target.as_str(), message.as_str());
        match level {
            LogLevel::ERROR => tracing::error!(plugin, target, "{message}"),
            LogLevel::WARN => tracing::warn!(plugin, target, "{message}"),
            LogLevel::INFO => tracing::info!(plugin, target, "{message}"),
            LogLevel::DEBUG => tracing::debug!(plugin, target, "{message}"),
            _ => tracing::trace!(plugin, target, "{message}"),
        }
    }
}
