//! The traits plugin authors implement, and the adapters that lift them into the ABI with a
//! `catch_unwind` guard around every call.
//!
//! Authors implement [`Plugin`] (loading) and [`Model`] (running), then call
//! [`export_plugin!`](crate::export_plugin). Everything here that touches `abi_stable` is
//! hidden from them.

use crate::{
    convert,
    error::{Error, Result},
    training::{
        Batch, Checkpoint, DataSplit, Directive, TrainingHost, TrainingJob, TrainingOutcome,
        TrainingProgress,
    },
    types::{
        Capabilities, Embeddings, Format, GenerateOutput, GenerateRequest, LoadOptions, ModelInfo,
        Tensor, TensorView,
    },
};
use cyxwiz_plugin_api::{
    self as abi,
    abi_stable::{
        sabi_trait::TD_Opaque,
        sabi_types::RMut,
        std_types::{RErr, ROk, RResult, RSlice, RStr, RString, RVec},
    },
    ErrorKind, LoaderBox, PluginError, SelfTest,
};
use std::{
    mem::ManuallyDrop,
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
};

/// Receives generated text. Return `false` to ask the model to stop.
pub trait TokenSink {
    /// One piece of generated text.
    fn emit(&mut self, text: &str) -> bool;
}

impl<F: FnMut(&str) -> bool> TokenSink for F {
    fn emit(&mut self, text: &str) -> bool {
        self(text)
    }
}

/// A plugin: metadata plus a loader. Implement this once and pass the type to
/// [`export_plugin!`](crate::export_plugin). The value is created once per process with
/// `Default`.
pub trait Plugin: Default + Send + Sync + 'static {
    /// Unique plugin name, e.g. `onnx-tract`.
    const NAME: &'static str;
    /// One line describing the runtime behind it.
    const DESCRIPTION: &'static str;
    /// Formats and extensions it loads.
    const FORMATS: &'static [Format];
    /// What its models can do.
    const CAPABILITIES: Capabilities;
    /// The loaded model type.
    type Model: Model;

    /// Loads the model at `path`. Errors: `NOT_FOUND` for a missing file, `INVALID_INPUT` for
    /// a malformed one, `UNSUPPORTED` for a valid file this runtime cannot run.
    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Self::Model>;

    /// The native runtime behind the plugin and its version, e.g. `ONNX Runtime 1.31.1`.
    /// `options` is the host's `[runtimes.<plugin>]` table (a JSON object); a plugin whose
    /// runtime library loads lazily loads it here, and an error says why it cannot.
    fn runtime(options: &serde_json::Value) -> Result<String> {
        let _ = options;
        Ok(String::new())
    }

    /// The training backend, if the plugin has one.
    fn training_backend(&self) -> Result<Box<dyn Trainer>> {
        Err(Error::unsupported(format!(
            "plugin `{}` has no training backend",
            Self::NAME
        )))
    }
}

/// A loaded model. Methods may be called from several threads at once; the defaults answer
/// `UNSUPPORTED`.
pub trait Model: Send + Sync + 'static {
    /// Specs, memory use and capabilities.
    fn info(&self) -> Result<ModelInfo>;

    /// Runs the model on named tensors.
    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        let _ = inputs;
        Err(Error::unsupported(
            "this model does not run tensor inference",
        ))
    }

    /// Generates text into `sink`.
    fn generate(
        &self,
        request: &GenerateRequest,
        sink: &mut dyn TokenSink,
    ) -> Result<GenerateOutput> {
        let _ = (request, sink);
        Err(Error::unsupported("this model does not generate text"))
    }

    /// Embeds a batch of texts.
    fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let _ = texts;
        Err(Error::unsupported("this model does not compute embeddings"))
    }

    /// Tokenizes a text.
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let _ = (text, add_special);
        Err(Error::unsupported("this model has no tokenizer"))
    }
}

/// A training backend. Most implement [`crate::training::Network`] and call
/// [`crate::training::run`] here, which drives the shared loop.
pub trait Trainer: Send + Sync + 'static {
    /// Runs `job` with data, progress, checkpoints and control through `host`.
    fn train(&self, job: &TrainingJob, host: &mut dyn TrainingHost) -> Result<TrainingOutcome>;
}

/// Renders a panic payload as text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

thread_local! {
    /// Depth of guarded calls on this thread, and where the last panic inside one happened.
    static GUARDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once per plugin image: each cdylib has its own std) a panic hook that records the
/// location of panics inside guarded calls instead of printing them, so the host gets one
/// error line; panics outside guarded calls go to the previous hook unchanged.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) > 0 {
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(location));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning an error into a `PluginError` and a panic into `PANICKED`.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> RResult<T, PluginError> {
    install_panic_hook();
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get().saturating_sub(1)));
    match result {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(err)) => RErr(err.into()),
        Err(payload) => {
            let location = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_default();
            RErr(PluginError::new(
                ErrorKind::PANICKED,
                format!(
                    "plugin panicked in {what}{location}: {}",
                    panic_message(&*payload)
                ),
            ))
        }
    }
}

struct AbiTokenSink<'a, 'b>(abi::TokenSink_TO<'a, RMut<'b, ()>>);

impl TokenSink for AbiTokenSink<'_, '_> {
    fn emit(&mut self, text: &str) -> bool {
        self.0.emit(text.into())
    }
}

struct AbiTrainingSink<'a, 'b>(abi::TrainingSink_TO<'a, RMut<'b, ()>>);

impl TrainingHost for AbiTrainingSink<'_, '_> {
    fn batch(&mut self, split: DataSplit, epoch: u32, index: u64) -> Result<Batch> {
        let request = abi::BatchRequest {
            split,
            epoch,
            index,
        };
        let batch = self.0.batch(&request).into_result()?;
        convert::batch_from_abi(&batch)
    }

    fn report(&mut self, progress: &TrainingProgress) -> Directive {
        self.0.report(&convert::progress_to_abi(progress))
    }

    fn checkpoint(&mut self, checkpoint: Checkpoint) -> Result<()> {
        self.0
            .checkpoint(&convert::checkpoint_to_abi(checkpoint))
            .into_result()
            .map_err(Error::from)
    }

    fn wait_while_paused(&mut self) -> Directive {
        self.0.wait_while_paused()
    }
}

/// Lifts an SDK [`Model`] into the ABI trait. The inner model is dropped under a guard too.
struct ModelAdapter<M: Model>(ManuallyDrop<M>);

impl<M: Model> Drop for ModelAdapter<M> {
    fn drop(&mut self) {
        // SAFETY: `self.0` is never used again after this point.
        let inner = unsafe { ManuallyDrop::take(&mut self.0) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
    }
}

impl<M: Model> abi::Model for ModelAdapter<M> {
    fn info(&self) -> RResult<abi::ModelInfo, PluginError> {
        guard("info", || self.0.info().map(|i| convert::info_to_abi(&i)))
    }

    fn infer(
        &self,
        inputs: RSlice<'_, abi::TensorRef<'_>>,
    ) -> RResult<RVec<abi::Tensor>, PluginError> {
        guard("infer", || {
            let views: Vec<TensorView<'_>> = inputs.iter().map(convert::view_from_abi).collect();
            let outputs = self.0.infer(&views)?;
            Ok(outputs.into_iter().map(convert::tensor_to_abi).collect())
        })
    }

    fn generate(
        &self,
        request: &abi::GenerateRequest,
        sink: abi::TokenSink_TO<'_, RMut<'_, ()>>,
    ) -> RResult<abi::GenerateOutput, PluginError> {
        guard("generate", || {
            let request = convert::generate_from_abi(request);
            let mut sink = AbiTokenSink(sink);
            self.0
                .generate(&request, &mut sink)
                .map(convert::output_to_abi)
        })
    }

    fn embed(&self, texts: RSlice<'_, RStr<'_>>) -> RResult<abi::Embeddings, PluginError> {
        guard("embed", || {
            let texts: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
            convert::embeddings_to_abi(self.0.embed(&texts)?)
        })
    }

    fn tokenize(&self, text: RStr<'_>, add_special: bool) -> RResult<RVec<u32>, PluginError> {
        guard("tokenize", || {
            self.0.tokenize(text.as_str(), add_special).map(RVec::from)
        })
    }
}

struct TrainerAdapter(ManuallyDrop<Box<dyn Trainer>>);

impl Drop for TrainerAdapter {
    fn drop(&mut self) {
        // SAFETY: `self.0` is never used again after this point.
        let inner = unsafe { ManuallyDrop::take(&mut self.0) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
    }
}

impl abi::TrainingBackend for TrainerAdapter {
    fn train(
        &self,
        job: &abi::TrainingJob,
        sink: abi::TrainingSink_TO<'_, RMut<'_, ()>>,
    ) -> RResult<abi::TrainingOutcome, PluginError> {
        guard("train", || {
            let job = convert::job_from_abi(job)?;
            let mut sink = AbiTrainingSink(sink);
            self.0.train(&job, &mut sink).map(convert::outcome_to_abi)
        })
    }
}

struct LoaderAdapter<P: Plugin>(P);

impl<P: Plugin> abi::ModelLoader for LoaderAdapter<P> {
    fn load(&self, request: &abi::LoadRequest) -> RResult<abi::ModelBox, PluginError> {
        guard("load", || {
            let options = convert::load_from_abi(request)?;
            let model = self.0.load(Path::new(request.path.as_str()), &options)?;
            Ok(abi::Model_TO::from_value(
                ModelAdapter(ManuallyDrop::new(model)),
                TD_Opaque,
            ))
        })
    }

    fn training_backend(&self) -> RResult<abi::TrainingBackendBox, PluginError> {
        guard("training_backend", || {
            let trainer = self.0.training_backend()?;
            Ok(abi::TrainingBackend_TO::from_value(
                TrainerAdapter(ManuallyDrop::new(trainer)),
                TD_Opaque,
            ))
        })
    }
}

/// Builds the [`abi::PluginInfo`] of `P`; `version` is the plugin crate's version.
#[doc(hidden)]
pub fn plugin_info<P: Plugin>(version: &str) -> abi::PluginInfo {
    abi::PluginInfo {
        name: P::NAME.into(),
        version: version.into(),
        description: P::DESCRIPTION.into(),
        formats: P::FORMATS
            .iter()
            .map(|f| abi::FormatSpec {
                name: f.name.into(),
                extensions: f.extensions.iter().map(|e| (*e).into()).collect(),
            })
            .collect(),
        capabilities: P::CAPABILITIES,
        interface_version: abi::INTERFACE_VERSION.into(),
    }
}

/// Creates the plugin's loader under the guard.
pub(crate) extern "C" fn new_loader<P: Plugin>() -> RResult<LoaderBox, PluginError> {
    guard("new_loader", || {
        let plugin = P::default();
        Ok(abi::ModelLoader_TO::from_value(
            LoaderAdapter(plugin),
            TD_Opaque,
        ))
    })
}

/// Runs a boundary self-test under the same guard every call uses.
/// Answers the root module's `runtime` entry for `P` under the guard.
pub(crate) extern "C" fn runtime<P: Plugin>(options: RStr<'_>) -> RResult<RString, PluginError> {
    guard("runtime", || {
        let options: serde_json::Value = serde_json::from_str(options.as_str())
            .map_err(|e| Error::invalid_input(format!("runtime options are not JSON: {e}")))?;
        P::runtime(&options).map(RString::from)
    })
}

pub(crate) extern "C" fn self_test(test: SelfTest) -> RResult<(), PluginError> {
    guard("self_test", || match test {
        SelfTest::ECHO => Ok(()),
        SelfTest::PANIC => panic!("self-test panic requested by the host"),
        other => Err(Error::unsupported(format!("unknown self-test {}", other.0))),
    })
}
