//! TorchScript models (`.pt`, `.jit` archives written by `torch.jit.save`) through libtorch via
//! `tch`. The plugin links the libtorch 2.13.0 that `scripts/fetch-models.py` assembles from
//! PyPI wheels, found through an rpath set at build time (see build.rs).
//!
//! TorchScript keeps argument names and types but no shapes: the node reads `forward`'s
//! signature from the archive (see `archive`), exposes every argument as an input, and takes
//! tensor shapes and dtypes from the load options `input_shapes` (`{"x": [-1, 512]}`, `-1`
//! free) and `input_dtypes` (`{"x": "f32"}`, default f32). `int`, `float` and `bool`
//! arguments are rank-0 `i64`, `f64` and `bool` inputs. `reset_method` names a method run
//! before every call, for modules that keep state between calls (e.g. silero-vad's
//! `reset_states`), so each request starts from the same state.
//!
//! The plugin is also a training backend ([`TorchTrainer`], module `train`): the host's
//! validated `ModelSpec` built on libtorch autograd, on the CPU or a CUDA device.

mod archive;
mod convert;
mod train;

use archive::Signature;
use cyxwiz_sdk::{
    export_plugin, Capabilities, DType, Error, Format, LoadOptions, Model, ModelInfo, Plugin,
    Result, Tensor, TensorSpec, TensorView, Trainer,
};
use std::{path::Path, sync::Mutex};
use tch::{CModule, IValue};
pub use train::TorchTrainer;

/// The libtorch version this plugin is built against (torch-sys checks it at build time).
pub const LIBTORCH_VERSION: &str = "2.13.0";

/// The plugin.
#[derive(Default)]
pub struct TorchTch;

/// A loaded TorchScript module.
pub struct TorchModel {
    module: Mutex<CModule>,
    /// Per input: the TorchScript argument type (`Tensor`, `int`, `float`, `bool`).
    kinds: Vec<String>,
    reset: Option<String>,
    info: ModelInfo,
}

/// An input spec for one `forward` argument.
fn input_spec(
    arg: &archive::Arg,
    shapes: &cyxwiz_sdk::serde_json::Map<String, cyxwiz_sdk::serde_json::Value>,
    dtypes: &cyxwiz_sdk::serde_json::Map<String, cyxwiz_sdk::serde_json::Value>,
    sig: &Signature,
) -> Result<TensorSpec> {
    let scalar = |dtype| TensorSpec {
        name: arg.name.clone(),
        dtype,
        shape: vec![],
    };
    match arg.ty.as_str() {
        "int" => return Ok(scalar(DType::I64)),
        "float" => return Ok(scalar(DType::F64)),
        "bool" => return Ok(scalar(DType::BOOL)),
        "Tensor" => {}
        other => {
            return Err(Error::unsupported(format!(
            "argument `{}` of {} has type `{other}`; the node passes Tensor, int, float and bool",
            arg.name,
            sig.describe()
        )))
        }
    }
    let shape = shapes.get(&arg.name).ok_or_else(|| {
        Error::invalid_input(format!(
            "TorchScript keeps no tensor shapes: give the load option `input_shapes` for `{}` of {} (e.g. {{\"{}\": [-1, 512]}}, -1 = any size)",
            arg.name,
            sig.describe(),
            arg.name
        ))
    })?;
    let shape: Vec<i64> = shape
        .as_array()
        .and_then(|dims| dims.iter().map(|d| d.as_i64()).collect::<Option<Vec<_>>>())
        .filter(|dims| dims.iter().all(|d| *d == -1 || *d > 0))
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "load option `input_shapes.{}` must be a list of positive sizes or -1, got {shape}",
                arg.name
            ))
        })?;
    let dtype = match dtypes.get(&arg.name) {
        None => DType::F32,
        Some(v) => v
            .as_str()
            .and_then(DType::parse)
            .filter(|d| convert::to_kind(*d).is_some())
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "load option `input_dtypes.{}` must be a dtype libtorch has (f32, f64, f16, bf16, i8, i16, i32, i64, u8, bool), got {v}",
                    arg.name
                ))
            })?,
    };
    Ok(TensorSpec {
        name: arg.name.clone(),
        dtype,
        shape,
    })
}

fn object_option(
    options: &LoadOptions,
    key: &str,
) -> Result<cyxwiz_sdk::serde_json::Map<String, cyxwiz_sdk::serde_json::Value>> {
    match options.options.get(key) {
        None => Ok(Default::default()),
        Some(cyxwiz_sdk::serde_json::Value::Object(map)) => Ok(map.clone()),
        Some(other) => Err(Error::invalid_input(format!(
            "load option `{key}` must be an object keyed by argument name, got {other}"
        ))),
    }
}

impl Plugin for TorchTch {
    const NAME: &'static str = "torch-tch";
    const DESCRIPTION: &'static str = "TorchScript through libtorch 2.13.0 (tch)";
    const FORMATS: &'static [Format] = &[Format {
        name: "torchscript",
        extensions: &["pt", "jit", "torchscript"],
    }];
    const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE.union(Capabilities::TRAINING);
    type Model = TorchModel;

    fn training_backend(&self) -> Result<Box<dyn Trainer>> {
        Ok(Box::new(TorchTrainer))
    }

    fn runtime(_options: &cyxwiz_sdk::serde_json::Value) -> Result<String> {
        Ok(format!(
            "libtorch {LIBTORCH_VERSION} (CPU, {} threads)",
            tch::get_num_threads()
        ))
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<TorchModel> {
        if path.is_dir() {
            return Err(Error::invalid_input(format!(
                "{}: is a directory, expected a TorchScript archive",
                path.display()
            )));
        }
        let sig = archive::read_signature(path)?;
        let shapes = object_option(options, "input_shapes")?;
        let dtypes = object_option(options, "input_dtypes")?;
        for key in shapes.keys().chain(dtypes.keys()) {
            if !sig.args.iter().any(|a| &a.name == key) {
                return Err(Error::invalid_input(format!(
                    "load options name `{key}`, but the model is {}",
                    sig.describe()
                )));
            }
        }
        let inputs = sig
            .args
            .iter()
            .map(|arg| input_spec(arg, &shapes, &dtypes, &sig))
            .collect::<Result<Vec<_>>>()?;
        let device = match options.device.as_str() {
            "" | "cpu" => tch::Device::Cpu,
            other => {
                return Err(Error::unsupported(format!(
                    "device `{other}`: this libtorch build runs on the CPU only"
                )))
            }
        };
        if options.threads > 0 {
            // libtorch's intra-op pool is process-wide: the last model loaded sets it.
            tch::set_num_threads(options.threads as i32);
        }
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            Error::invalid_input(format!(
                "{}: libtorch cannot load this archive: {}",
                path.display(),
                convert::first_line(&e.to_string())
            ))
        })?;
        module.f_set_eval().map_err(|e| {
            Error::runtime(format!(
                "cannot switch to eval mode: {}",
                convert::first_line(&e.to_string())
            ))
        })?;
        let reset = match options.options.get("reset_method") {
            None => None,
            Some(v) => Some(v.as_str().map(str::to_string).ok_or_else(|| {
                Error::invalid_input(format!(
                    "load option `reset_method` must be a method name, got {v}"
                ))
            })?),
        };
        if let Some(method) = &reset {
            module.method_is::<IValue>(method, &[]).map_err(|e| {
                Error::invalid_input(format!(
                    "load option `reset_method`: calling `{method}()` failed: {}",
                    convert::first_line(&e.to_string())
                ))
            })?;
        }
        let memory = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(TorchModel {
            module: Mutex::new(module),
            kinds: sig.args.iter().map(|a| a.ty.clone()).collect(),
            reset,
            info: ModelInfo {
                inputs,
                outputs: Vec::new(),
                memory_bytes: memory,
                capabilities: Capabilities::TENSOR_INFERENCE,
                metadata: vec![
                    ("libtorch_version".into(), LIBTORCH_VERSION.into()),
                    ("signature".into(), sig.describe()),
                ],
                ..ModelInfo::default()
            },
        })
    }
}

impl Model for TorchModel {
    fn info(&self) -> Result<ModelInfo> {
        Ok(self.info.clone())
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        self.info.check_inputs(inputs)?;
        let mut args = Vec::with_capacity(self.info.inputs.len());
        for (spec, kind) in self.info.inputs.iter().zip(&self.kinds) {
            let view = inputs
                .iter()
                .find(|v| v.name == spec.name)
                .ok_or_else(|| Error::invalid_input(format!("missing input `{}`", spec.name)))?;
            args.push(match kind.as_str() {
                "Tensor" => IValue::Tensor(convert::tensor_in(view)?),
                scalar => convert::scalar_in(view, scalar)?,
            });
        }
        let module = self
            .module
            .lock()
            .map_err(|_| Error::runtime("module lock poisoned"))?;
        if let Some(method) = &self.reset {
            module.method_is::<IValue>(method, &[]).map_err(|e| {
                Error::runtime(format!(
                    "`{method}()` failed: {}",
                    convert::first_line(&e.to_string())
                ))
            })?;
        }
        let _no_grad = tch::no_grad_guard();
        // The model's own checks (wrong sizes, sample rates) surface as exceptions: the
        // request is at fault, not the node.
        let value = module.forward_is(&args).map_err(|e| {
            Error::invalid_input(format!(
                "the model refused the input: {}",
                convert::first_line(&e.to_string())
            ))
        })?;
        drop(module);
        convert::outputs(value)
    }
}

export_plugin!(TorchTch);
