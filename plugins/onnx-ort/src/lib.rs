//! ONNX models through ONNX Runtime, loaded at run time (`ort` with `load-dynamic`) from the
//! library the node is pointed at: the load option `library` (the node fills it from
//! `[runtimes.onnx-ort] library`), else `ORT_DYLIB_PATH`.
//!
//! ONNX Runtime is initialised once per process through `ort::init_from`, whose error is
//! handled (the plain `ort::init` and `Session::builder` panic when the library is missing or
//! too old): a missing or too-old library is refused naming the path and both versions.
//! Threads: `LoadOptions.threads` intra-op threads (0: ONNX Runtime's default); load options
//! `inter_threads` and `spinning` (whether idle intra-op threads spin: `false` by default,
//! `"run"` only during a run, `true` as ONNX Runtime does by default). Devices (see `device`): `LoadOptions.device` `cpu` (default), `cuda[:N]`
//! or `auto` use the CUDA execution provider when the loaded ONNX Runtime has it and the GPU
//! works, and fall back to the CPU with a log line otherwise; the model's metadata
//! (`execution_provider`) says which provider runs it.
//!
//! Run failures are classified by ONNX Runtime's error code (see [`run_error`]): inputs it
//! refuses (`INVALID_ARGUMENT`: token ids out of range, shapes that do not fit together) are
//! the caller's (`INVALID_INPUT`, a 400 on HTTP), allocation failures are `OUT_OF_MEMORY`, and
//! the rest are the runtime's own.

mod device;
mod dtype;

use cyxwiz_sdk::{
    export_plugin, Capabilities, Error, Format, LoadOptions, Model, ModelInfo, Plugin, Result,
    Tensor, TensorSpec, TensorView,
};
use ort::{
    environment::Environment,
    session::Session,
    value::{DynValue, ValueType},
    ErrorCode,
};
use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

/// The plugin.
#[derive(Default)]
pub struct OnnxOrt;

/// A loaded session. ONNX Runtime runs one call at a time per `ort::Session` (`run` takes
/// `&mut`); its intra-op threads parallelise each call.
pub struct OrtModel {
    session: Mutex<Session>,
    info: ModelInfo,
}

/// The process's ONNX Runtime: the library it came from and its one environment.
struct Runtime {
    path: PathBuf,
    version: String,
    environment: Environment,
}

/// The library's own version string (`OrtGetApiBase()->GetVersionString()`, e.g. `1.31.1`).
fn library_version(path: &Path) -> Option<String> {
    // SAFETY: the library was just loaded and validated by `ort::init_from` (dlopen returns
    // the same handle); `OrtGetApiBase` returns a pointer to a static struct whose
    // `GetVersionString` returns a static NUL-terminated string.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let get: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase\0").ok()?;
        let base = get();
        if base.is_null() {
            return None;
        }
        let text = ((*base).GetVersionString)();
        (!text.is_null()).then(|| {
            std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// The runtime, initialised on first success. A failed attempt is not remembered, so a
/// corrected library path works without restarting the node.
fn init(library: Option<&str>) -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(runtime) = RUNTIME.get() {
        if let Some(asked) = library {
            if Path::new(asked) != runtime.path {
                tracing::warn!(
                    asked,
                    using = %runtime.path.display(),
                    "ONNX Runtime is initialised once per process; keeping the first library"
                );
            }
        }
        return Ok(runtime);
    }
    let _guard = INIT
        .lock()
        .map_err(|_| Error::runtime("ONNX Runtime init lock poisoned"))?;
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let path = library
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .ok_or_else(|| {
            Error::unsupported(
                "no ONNX Runtime library configured: set [runtimes.onnx-ort] library (or ORT_DYLIB_PATH) to libonnxruntime.so",
            )
        })?;
    if !path.is_file() {
        return Err(Error::unsupported(format!(
            "ONNX Runtime library {} does not exist",
            path.display()
        )));
    }
    let environment = ort::init_from(&path)
        .map_err(|e| Error::unsupported(format!("ONNX Runtime library: {e}")))?
        .with_name("cyxwiz-node")
        .build()
        .map_err(|e| Error::runtime(format!("cannot create the ONNX Runtime environment: {e}")))?;
    let version = library_version(&path).unwrap_or_else(|| "(unknown version)".to_string());
    tracing::info!(library = %path.display(), %version, "ONNX Runtime initialised");
    Ok(RUNTIME.get_or_init(|| Runtime {
        path,
        version,
        environment,
    }))
}

fn spec(name: &str, ty: &ValueType) -> Result<TensorSpec> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
            name: name.to_string(),
            dtype: dtype::to_sdk(*ty).ok_or_else(|| {
                Error::unsupported(format!(
                    "tensor `{name}` has element type {ty:?}, which the node cannot exchange"
                ))
            })?,
            shape: shape.iter().copied().collect(),
        }),
        other => Err(Error::unsupported(format!(
            "`{name}` is a {other:?}, not a tensor; only tensor inputs and outputs are served"
        ))),
    }
}

impl Plugin for OnnxOrt {
    const NAME: &'static str = "onnx-ort";
    const DESCRIPTION: &'static str = "ONNX through ONNX Runtime (library loaded at run time)";
    const FORMATS: &'static [Format] = &[Format {
        name: "onnx",
        extensions: &["onnx"],
    }];
    const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE;
    type Model = OrtModel;

    fn runtime(options: &cyxwiz_sdk::serde_json::Value) -> Result<String> {
        let runtime = init(options.get("library").and_then(|v| v.as_str()))?;
        Ok(format!("ONNX Runtime {}", runtime.version))
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<OrtModel> {
        let library = options.options.get("library").and_then(|v| v.as_str());
        let runtime = init(library)?;
        if path.is_dir() {
            return Err(Error::invalid_input(format!(
                "{}: is a directory, expected an .onnx file",
                path.display()
            )));
        }
        let device = device::Device::parse(&options.device)?;
        let bytes = std::fs::read(path).map_err(|e| Error::from_io(path, &e))?;
        let mut provider = "CPU".to_string();
        if let device::Device::Cuda { id, auto } = device {
            let attempt = match device::cuda_unavailable() {
                Some(why) => Err(why),
                None => builder(&runtime.environment, options, Some(id))
                    .and_then(|mut b| b.commit_from_memory(&bytes).map_err(|e| e.to_string())),
            };
            match attempt {
                Ok(session) => return finish(session, &bytes, runtime, format!("CUDA:{id}")),
                Err(why) if auto => {
                    tracing::info!(model = %path.display(), reason = %why, "no usable CUDA; running on the CPU");
                }
                Err(why) => {
                    tracing::warn!(model = %path.display(), reason = %why, "CUDA requested but unusable; running on the CPU");
                    provider = format!("CPU (CUDA:{id} unusable: {why})");
                }
            }
        }
        let session = builder(&runtime.environment, options, None)
            .map_err(|e| Error::invalid_input(format!("ONNX Runtime session options: {e}")))?
            .commit_from_memory(&bytes)
            .map_err(|e| {
                let text = e.to_string().replace('\n', " ");
                if text.contains("NOT_IMPLEMENTED") || text.contains("not implemented") {
                    Error::unsupported(format!(
                        "{}: ONNX Runtime cannot run this model: {text}",
                        path.display()
                    ))
                } else {
                    Error::invalid_input(format!(
                        "{}: ONNX Runtime cannot load this model: {text}",
                        path.display()
                    ))
                }
            })?;
        finish(session, &bytes, runtime, provider)
    }
}

/// A session builder with the thread settings of `options`, and the CUDA provider on GPU
/// `cuda` if given (a registration failure is an error here, not ort's silent fallback).
fn builder(
    environment: &Environment,
    options: &LoadOptions,
    cuda: Option<i32>,
) -> std::result::Result<ort::session::builder::SessionBuilder, String> {
    let mut builder = Session::builder(environment).map_err(|e| e.to_string())?;
    if options.threads > 0 {
        builder = builder
            .with_intra_threads(options.threads as usize)
            .map_err(|e| format!("threads: {e}"))?;
    }
    if let Some(n) = options
        .options
        .get("inter_threads")
        .and_then(|v| v.as_u64())
    {
        builder = builder
            .with_inter_threads(n as usize)
            .map_err(|e| format!("inter_threads: {e}"))?;
    }
    builder = match spinning(&options.options)? {
        Spinning::Always => builder,
        Spinning::Never => builder
            .with_intra_op_spinning(false)
            .map_err(|e| format!("spinning: {e}"))?,
        Spinning::DuringRuns => builder
            .with_config_entry("session.force_spinning_stop", "1")
            .map_err(|e| format!("spinning: {e}"))?,
    };
    if let Some(id) = cuda {
        let limit = options
            .options
            .get("gpu_memory_limit_mb")
            .and_then(|v| v.as_u64());
        builder = builder
            .with_execution_providers([device::cuda(id, limit)])
            .map_err(|e| e.to_string())?;
    }
    Ok(builder)
}

/// Whether ONNX Runtime's intra-op threads spin while waiting for work (load option
/// `spinning`). Off by default: a spinning thread holds a core that the node's HTTP threads
/// and the host's other processes need; on the 2-core dev VM, under load, spinning halved
/// the embedding throughput at 16 clients (100/s against 200-223/s without).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spinning {
    /// Spin between and during runs (ONNX Runtime's default).
    Always,
    /// Spin during a run only; stop when it returns.
    DuringRuns,
    /// Never spin: sleep until woken.
    Never,
}

/// Reads `spinning`: `true` (ONNX Runtime's own default: always), `"run"` (during runs
/// only) or `false` (never, the default).
fn spinning(options: &cyxwiz_sdk::serde_json::Value) -> std::result::Result<Spinning, String> {
    match options.get("spinning") {
        None => Ok(Spinning::Never),
        Some(v) if v.as_bool() == Some(true) => Ok(Spinning::Always),
        Some(v) if v.as_bool() == Some(false) => Ok(Spinning::Never),
        Some(v) if v.as_str() == Some("run") => Ok(Spinning::DuringRuns),
        Some(v) => Err(format!("spinning must be true, false or \"run\", got {v}")),
    }
}

/// The loaded model around a committed session; `provider` names where it runs.
fn finish(session: Session, bytes: &[u8], runtime: &Runtime, provider: String) -> Result<OrtModel> {
    let inputs = session
        .inputs()
        .iter()
        .map(|o| spec(o.name(), o.dtype()))
        .collect::<Result<Vec<_>>>()?;
    let outputs = session
        .outputs()
        .iter()
        .map(|o| spec(o.name(), o.dtype()))
        .collect::<Result<Vec<_>>>()?;
    let info = ModelInfo {
        inputs,
        outputs,
        memory_bytes: bytes.len() as u64,
        capabilities: Capabilities::TENSOR_INFERENCE,
        metadata: vec![
            (
                "onnxruntime_library".into(),
                runtime.path.display().to_string(),
            ),
            ("execution_provider".into(), provider),
        ],
        ..ModelInfo::default()
    };
    Ok(OrtModel {
        session: Mutex::new(session),
        info,
    })
}

impl Model for OrtModel {
    fn info(&self) -> Result<ModelInfo> {
        Ok(self.info.clone())
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        self.info.check_inputs(inputs)?;
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(inputs.len());
        for spec in &self.info.inputs {
            let view = inputs
                .iter()
                .find(|v| v.name == spec.name)
                .ok_or_else(|| Error::invalid_input(format!("missing input `{}`", spec.name)))?;
            values.push((spec.name.clone(), dtype::to_value(view)?));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::runtime("the session lock is poisoned"))?;
        let outputs = session
            .run(values)
            .map_err(|e| run_error(e.code(), e.message()))?;
        self.info
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs
                    .get(spec.name.as_str())
                    .ok_or_else(|| Error::runtime(format!("output `{}` missing", spec.name)))?;
                dtype::from_value(&spec.name, value)
            })
            .collect()
    }
}

/// The error of a failed `Session::run`, by ONNX Runtime's `code` and message. Kernels check
/// their inputs and either fail with `INVALID_ARGUMENT` (a Gather index out of range: a token
/// id beyond the vocabulary; an input of the wrong type or rank) or throw, which the executor
/// reports as `FAIL` or `RUNTIME_EXCEPTION` with "Non-zero status code returned while running
/// <op> node" (shapes that cannot be broadcast or reshaped together, such as token type ids of
/// another length than the ids). The model was checked when it loaded and the inputs match its
/// declared specs, so such kernel failures come from the values the caller sent: they are
/// `INVALID_INPUT`. Allocation failures are `OUT_OF_MEMORY`; device and execution-provider
/// failures and anything else stay runtime errors.
fn run_error(code: ErrorCode, message: &str) -> Error {
    let text = message.replace('\n', " ");
    let lower = text.to_ascii_lowercase();
    let memory = ["failed to allocate", "bad_alloc", "out of memory"]
        .iter()
        .any(|m| lower.contains(m));
    let device = ["cuda", "cudnn", "cublas", "device", "execution provider"]
        .iter()
        .any(|m| lower.contains(m));
    let kernel = lower.contains("non-zero status code returned while running");
    match code {
        _ if memory => Error::out_of_memory(format!("ONNX Runtime ran out of memory: {text}")),
        _ if device => Error::runtime(format!("ONNX Runtime failed ({code:?}): {text}")),
        ErrorCode::InvalidArgument => {
            Error::invalid_input(format!("ONNX Runtime refused the inputs: {text}"))
        }
        ErrorCode::GenericFailure | ErrorCode::RuntimeException if kernel => {
            Error::invalid_input(format!("ONNX Runtime cannot run these inputs: {text}"))
        }
        _ => Error::runtime(format!("ONNX Runtime failed ({code:?}): {text}")),
    }
}

export_plugin!(OnnxOrt);

#[cfg(test)]
mod tests {
    use super::*;
    use cyxwiz_sdk::ErrorKind;

    #[test]
    fn spinning_is_off_unless_asked_for() {
        use cyxwiz_sdk::serde_json::json;
        assert_eq!(spinning(&json!({})), Ok(Spinning::Never));
        assert_eq!(spinning(&json!({"spinning": false})), Ok(Spinning::Never));
        assert_eq!(spinning(&json!({"spinning": true})), Ok(Spinning::Always));
        assert_eq!(
            spinning(&json!({"spinning": "run"})),
            Ok(Spinning::DuringRuns)
        );
        assert_eq!(
            spinning(&json!({"spinning": 1})),
            Err("spinning must be true, false or \"run\", got 1".to_string())
        );
    }

    #[test]
    fn run_failures_are_classified_by_code() {
        let kind = |code, message| run_error(code, message).kind;
        let gather = "Non-zero status code returned while running Gather node. Name:'e' Status \
                      Message: indices element out of data bounds, idx=30522 must be within the \
                      inclusive range [-30522,30521]";
        assert_eq!(
            kind(ErrorCode::InvalidArgument, gather),
            ErrorKind::INVALID_INPUT
        );
        let add = "Non-zero status code returned while running Add node. Name:'a' Status \
                   Message: Attempting to broadcast an axis by a dimension other than 1. 2 by 4";
        assert_eq!(
            kind(ErrorCode::GenericFailure, add),
            ErrorKind::INVALID_INPUT
        );
        assert_eq!(
            kind(ErrorCode::RuntimeException, add),
            ErrorKind::INVALID_INPUT
        );
        assert_eq!(
            kind(
                ErrorCode::InvalidArgument,
                "Invalid rank for input: x Got: 3 Expected: 4"
            ),
            ErrorKind::INVALID_INPUT
        );
        assert_eq!(
            kind(
                ErrorCode::GenericFailure,
                "Non-zero status code returned while running Conv node. Status Message: Failed \
                 to allocate memory for requested buffer of size 123456789"
            ),
            ErrorKind::OUT_OF_MEMORY
        );
        assert_eq!(
            kind(
                ErrorCode::GenericFailure,
                "Non-zero status code returned while running Conv node. Status Message: CUDA \
                 failure 700: an illegal memory access was encountered"
            ),
            ErrorKind::RUNTIME
        );
        assert_eq!(
            kind(ErrorCode::ExecutionProviderFailure, "the provider failed"),
            ErrorKind::RUNTIME
        );
        assert_eq!(kind(ErrorCode::GenericFailure, "?"), ErrorKind::RUNTIME);
        assert_eq!(kind(ErrorCode::DeviceReset, "reset"), ErrorKind::RUNTIME);
        let e = run_error(ErrorCode::InvalidArgument, "two\nlines");
        assert_eq!(e.message, "ONNX Runtime refused the inputs: two lines");
    }
}
