//! ONNX models through ONNX Runtime, loaded at run time (`ort` with `load-dynamic`) from the
//! library the node is pointed at: the load option `library` (the node fills it from
//! `[runtimes.onnx-ort] library`), else `ORT_DYLIB_PATH`.
//!
//! ONNX Runtime is initialised once per process through `ort::init_from`, whose error is
//! handled (the plain `ort::init` and `Session::builder` panic when the library is missing or
//! too old): a missing or too-old library is refused naming the path and both versions.
//! Threads: `LoadOptions.threads` intra-op threads (0: ONNX Runtime's default); load option
//! `inter_threads`. Devices (see `device`): `LoadOptions.device` `cpu` (default), `cuda[:N]`
//! or `auto` use the CUDA execution provider when the loaded ONNX Runtime has it and the GPU
//! works, and fall back to the CPU with a log line otherwise; the model's metadata
//! (`execution_provider`) says which provider runs it.

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
    if let Some(id) = cuda {
        builder = builder
            .with_execution_providers([device::cuda(id)])
            .map_err(|e| e.to_string())?;
    }
    Ok(builder)
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
        let outputs = session.run(values).map_err(|e| {
            Error::runtime(format!(
                "ONNX Runtime failed: {}",
                e.to_string().replace('\n', " ")
            ))
        })?;
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

export_plugin!(OnnxOrt);
