//! TFLite models through the real TFLite C API (`libtensorflowlite_c.so`, TF 2.17.1, as shipped
//! in the PyPI wheel `pymicro-wakeword==2.5.0`), loaded at run time: load option `library`
//! (the node fills it from `[runtimes.tflite-litert] library`), else `TFLITE_C_LIBRARY`.
//! Every symbol is resolved and checked when the library loads; a missing or foreign library
//! is refused naming the path and the missing function.
//!
//! Files are checked before TFLite sees them (the `TFL3` flatbuffer identifier and a root
//! offset inside the file), so other formats get a precise error; TFLite verifies the rest.
//! One interpreter per model behind a lock (TFLite interpreters are not reentrant); `threads`
//! sets its thread count. The XNNPACK delegate (in the library, as in LiteRT's own Python and
//! Android defaults) takes the operators it supports: MediaPipe's face detector ran in
//! 1254 µs instead of 5527 with TFLite's builtin kernels; load option `xnnpack: false` keeps the builtin
//! kernels only (metadata `delegate` says which ran).

mod ffi;

use cyxwiz_sdk::{
    export_plugin, Capabilities, DType, Error, Format, LoadOptions, Model, ModelInfo, Plugin,
    Result, Tensor, TensorSpec, TensorView,
};
use ffi::{Api, Interpreter};
use std::{
    ffi::CStr,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

/// The plugin.
#[derive(Default)]
pub struct TfliteLitert;

/// A loaded model.
pub struct LitertModel {
    interpreter: Mutex<Interpreter>,
    info: ModelInfo,
}

fn api(library: Option<&str>) -> Result<&'static Api> {
    static API: OnceLock<Api> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let _guard = INIT
        .lock()
        .map_err(|_| Error::runtime("TFLite init lock poisoned"))?;
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let path = library
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("TFLITE_C_LIBRARY").map(PathBuf::from))
        .ok_or_else(|| {
            Error::unsupported(
                "no TFLite C library configured: set [runtimes.tflite-litert] library (or TFLITE_C_LIBRARY) to libtensorflowlite_c.so",
            )
        })?;
    let loaded = Api::load(&path)?;
    cyxwiz_sdk::tracing::info!(library = %path.display(), version = %loaded.version_string(), "TFLite C API loaded");
    Ok(API.get_or_init(|| loaded))
}

/// TFLite's element type codes.
fn to_sdk(code: i32) -> Option<DType> {
    Some(match code {
        1 => DType::F32,
        2 => DType::I32,
        3 => DType::U8,
        4 => DType::I64,
        6 => DType::BOOL,
        7 => DType::I16,
        9 => DType::I8,
        10 => DType::F16,
        11 => DType::F64,
        13 => DType::U64,
        16 => DType::U32,
        17 => DType::U16,
        19 => DType::BF16,
        _ => return None,
    })
}

/// Checks the first 8 bytes (root offset and `TFL3` identifier) without reading the model.
fn check_file(path: &Path) -> Result<()> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| Error::from_io(path, &e))?;
    if meta.is_dir() {
        return Err(Error::invalid_input(format!(
            "{}: is a directory, expected a .tflite file",
            path.display()
        )));
    }
    let not_tflite =
        |why: &str| Error::invalid_input(format!("{}: not a TFLite model: {why}", path.display()));
    let mut header = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|_| not_tflite(&format!("only {} bytes", meta.len())))?;
    if &header[4..8] != b"TFL3" {
        return Err(not_tflite("no `TFL3` flatbuffer identifier"));
    }
    let root = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
    if root + 4 > meta.len() {
        return Err(not_tflite(
            "the root table lies past the end of the file (truncated?)",
        ));
    }
    Ok(())
}

/// Reads one tensor's spec.
fn spec(api: &Api, tensor: *const ffi::TfLiteTensor) -> Result<TensorSpec> {
    // SAFETY: `tensor` comes from the interpreter and lives as long as it does.
    let name = unsafe { CStr::from_ptr((api.tensor_name)(tensor)) }
        .to_string_lossy()
        .into_owned();
    let code = unsafe { (api.tensor_type)(tensor) };
    let dtype = to_sdk(code).ok_or_else(|| {
        Error::unsupported(format!(
            "tensor `{name}` has TFLite type {code}, which the node cannot exchange"
        ))
    })?;
    let dims = unsafe { (api.tensor_num_dims)(tensor) };
    let shape = (0..dims)
        .map(|i| unsafe { (api.tensor_dim)(tensor, i) } as i64)
        .collect();
    Ok(TensorSpec { name, dtype, shape })
}

impl Plugin for TfliteLitert {
    const NAME: &'static str = "tflite-litert";
    const DESCRIPTION: &'static str =
        "TFLite through the TFLite C API (library loaded at run time)";
    const FORMATS: &'static [Format] = &[Format {
        name: "tflite",
        extensions: &["tflite"],
    }];
    const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE;
    type Model = LitertModel;

    fn runtime(options: &cyxwiz_sdk::serde_json::Value) -> Result<String> {
        let api = api(options.get("library").and_then(|v| v.as_str()))?;
        Ok(format!("TensorFlow Lite {}", api.version_string()))
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<LitertModel> {
        let api = api(options.options.get("library").and_then(|v| v.as_str()))?;
        check_file(path)?;
        let threads = if options.threads == 0 {
            -1
        } else {
            options.threads as i32
        };
        let xnnpack = match options.options.get("xnnpack") {
            None => true,
            Some(v) => v.as_bool().ok_or_else(|| {
                Error::invalid_input(format!(
                    "load option `xnnpack` must be true or false, got {v}"
                ))
            })?,
        };
        let interpreter = Interpreter::new(api, path, threads, xnnpack)?;
        let delegate = match (interpreter.xnnpack(), xnnpack, api.xnnpack.is_some()) {
            (true, _, _) => "xnnpack",
            (false, false, _) => "none (xnnpack: false)",
            (false, true, true) => "none (XNNPACK delegate could not be created)",
            (false, true, false) => "none (this TFLite build has no XNNPACK delegate)",
        };
        let raw = interpreter.raw;
        // SAFETY: live interpreter; indices are within the counts it reports.
        let inputs = (0..unsafe { (api.input_count)(raw) })
            .map(|i| spec(api, unsafe { (api.input_tensor)(raw, i) }))
            .collect::<Result<Vec<_>>>()?;
        let outputs = (0..unsafe { (api.output_count)(raw) })
            .map(|i| spec(api, unsafe { (api.output_tensor)(raw, i) }))
            .collect::<Result<Vec<_>>>()?;
        let memory = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(LitertModel {
            interpreter: Mutex::new(interpreter),
            info: ModelInfo {
                inputs,
                outputs,
                memory_bytes: memory,
                capabilities: Capabilities::TENSOR_INFERENCE,
                metadata: vec![
                    ("tensorflow_version".into(), api.version_string()),
                    ("delegate".into(), delegate.into()),
                ],
                ..ModelInfo::default()
            },
        })
    }
}

impl Model for LitertModel {
    fn info(&self) -> Result<ModelInfo> {
        Ok(self.info.clone())
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        self.info.check_inputs(inputs)?;
        let guard = self
            .interpreter
            .lock()
            .map_err(|_| Error::runtime("interpreter lock poisoned"))?;
        let api = guard.api();
        let raw = guard.raw;
        for (i, spec) in self.info.inputs.iter().enumerate() {
            let view = inputs
                .iter()
                .find(|v| v.name == spec.name)
                .ok_or_else(|| Error::invalid_input(format!("missing input `{}`", spec.name)))?;
            // SAFETY: index within the input count; `check_inputs` matched the byte length to
            // the tensor's fixed shape and dtype, which TFLite checks again.
            let tensor = unsafe { (api.input_tensor)(raw, i as i32) };
            let status = unsafe {
                (api.copy_from_buffer)(tensor, view.data.as_ptr().cast(), view.data.len())
            };
            if status != ffi::OK {
                return Err(Error::invalid_input(format!(
                    "input `{}`: TFLite refused {} bytes",
                    spec.name,
                    view.data.len()
                )));
            }
        }
        // SAFETY: live interpreter with inputs set.
        if unsafe { (api.invoke)(raw) } != ffi::OK {
            return Err(Error::runtime(
                "TFLite failed to run the model (see the node log)",
            ));
        }
        self.info
            .outputs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                // SAFETY: index within the output count; the buffer has the tensor's byte size.
                let tensor = unsafe { (api.output_tensor)(raw, i as i32) };
                let size = unsafe { (api.tensor_byte_size)(tensor) };
                let mut data = vec![0u8; size];
                let status =
                    unsafe { (api.copy_to_buffer)(tensor, data.as_mut_ptr().cast(), size) };
                if status != ffi::OK {
                    return Err(Error::runtime(format!(
                        "cannot read output `{}`",
                        spec.name
                    )));
                }
                Ok(Tensor {
                    name: spec.name.clone(),
                    dtype: spec.dtype,
                    shape: spec.shape.clone(),
                    data,
                })
            })
            .collect()
    }
}

export_plugin!(TfliteLitert);
