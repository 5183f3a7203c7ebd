//! TFLite models in pure Rust through tract (`tract-tflite`): no native library, runs wherever
//! the node does. tract-tflite translates plain fp32 (and simple quantised) graphs; real
//! models often use operators it lacks (MediaPipe's `DEQUANTIZE`, `PRELU`, ...). Those are
//! refused as `UNSUPPORTED` naming every missing operator, so the registry falls through to
//! the next `.tflite` plugin (tflite-litert) by the default preference order.
//!
//! Loading reads the file, checks the `TFL3` header and the flatbuffer, checks the graph for
//! everything tract indexes unchecked (see `check`), converts, optimises and keeps one plan
//! that every thread shares.

mod check;

use cyxwiz_sdk::{
    export_plugin, Capabilities, DType, Error, Format, LoadOptions, Model, ModelInfo, Plugin,
    Result, Tensor, TensorSpec, TensorView,
};
use std::path::Path;
use tract_tflite::internal::tract_core::model::IntoRunnable;
use tract_tflite::prelude::{
    DatumType, Framework, IntoTValue, TValue, TVec, TypedFact, TypedRunnableModel,
};

/// The tract-tflite version this plugin is pinned to.
pub const TRACT_VERSION: &str = "0.23.9";

/// The plugin.
#[derive(Default)]
pub struct TfliteTract;

/// A loaded, optimised TFLite graph.
pub struct TractTfliteModel {
    plan: std::sync::Arc<TypedRunnableModel>,
    /// tract's datum type per input (quantised types keep their parameters).
    input_types: Vec<DatumType>,
    info: ModelInfo,
}

fn describe(err: &tract_tflite::prelude::TractError) -> String {
    // tract's contexts embed Debug dumps of whole operators; the root cause and the
    // outermost context say what failed.
    let chain: Vec<String> = err
        .chain()
        .map(|c| c.to_string().lines().next().unwrap_or("").to_string())
        .collect();
    let text = match (chain.first(), chain.last()) {
        (Some(first), Some(last)) if chain.len() > 1 => format!("{first}: {last}"),
        (Some(first), _) => first.clone(),
        _ => "unknown error".to_string(),
    };
    text.chars().take(400).collect()
}

/// The SDK dtype of a tract datum type; quantised 8-bit values travel as their raw integers.
fn to_sdk(dt: DatumType) -> Option<DType> {
    Some(match dt.unquantized() {
        DatumType::F32 => DType::F32,
        DatumType::F64 => DType::F64,
        DatumType::F16 => DType::F16,
        DatumType::I8 => DType::I8,
        DatumType::I16 => DType::I16,
        DatumType::I32 => DType::I32,
        DatumType::I64 => DType::I64,
        DatumType::U8 => DType::U8,
        DatumType::U16 => DType::U16,
        DatumType::U32 => DType::U32,
        DatumType::U64 => DType::U64,
        DatumType::Bool => DType::BOOL,
        _ => return None,
    })
}

fn spec(name: String, fact: &TypedFact) -> Result<TensorSpec> {
    Ok(TensorSpec {
        dtype: to_sdk(fact.datum_type).ok_or_else(|| {
            Error::unsupported(format!(
                "tensor `{name}` has element type {:?}, which the node cannot exchange",
                fact.datum_type
            ))
        })?,
        shape: fact
            .shape
            .iter()
            .map(|d| d.to_i64().unwrap_or(-1))
            .collect(),
        name,
    })
}

/// Checks the `TFL3` identifier and root offset, so other formats get a precise error.
fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let not_tflite =
        |why: &str| Error::invalid_input(format!("{}: not a TFLite model: {why}", path.display()));
    if bytes.len() < 8 {
        return Err(not_tflite(&format!("only {} bytes", bytes.len())));
    }
    if &bytes[4..8] != b"TFL3" {
        return Err(not_tflite("no `TFL3` flatbuffer identifier"));
    }
    let root = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if root.saturating_add(4) > bytes.len() {
        return Err(not_tflite(
            "the root table lies past the end of the file (truncated?)",
        ));
    }
    Ok(())
}

impl Plugin for TfliteTract {
    const NAME: &'static str = "tflite-tract";
    const DESCRIPTION: &'static str = "TFLite through tract 0.23.9 (pure Rust, CPU)";
    const FORMATS: &'static [Format] = &[Format {
        name: "tflite",
        extensions: &["tflite"],
    }];
    const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE;
    type Model = TractTfliteModel;

    fn runtime(_options: &cyxwiz_sdk::serde_json::Value) -> Result<String> {
        Ok(format!("tract-tflite {TRACT_VERSION}"))
    }

    fn load(&self, path: &Path, _options: &LoadOptions) -> Result<TractTfliteModel> {
        if path.is_dir() {
            return Err(Error::invalid_input(format!(
                "{}: is a directory, expected a .tflite file",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::from_io(path, &e))?;
        check_header(path, &bytes)?;
        let root = tract_tflite::tflite::root_as_model(&bytes).map_err(|e| {
            Error::invalid_input(format!(
                "{}: not a valid TFLite flatbuffer: {e}",
                path.display()
            ))
        })?;
        check::check(&root)
            .map_err(|e| Error::new(e.kind, format!("{}: {}", path.display(), e.message)))?;
        let description = root.description().map(str::to_string);
        let tflite = tract_tflite::tflite();
        let unsupported = |e: tract_tflite::prelude::TractError| {
            Error::unsupported(format!(
                "{}: tract cannot run this model: {}",
                path.display(),
                describe(&e)
            ))
        };
        let proto = tflite
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(unsupported)?;
        let typed = tflite
            .model_for_proto_model(&proto)
            .and_then(|m| m.into_optimized())
            .map_err(unsupported)?;
        let mut inputs = Vec::new();
        let mut input_types = Vec::new();
        for (ix, outlet) in typed
            .input_outlets()
            .map_err(unsupported)?
            .iter()
            .enumerate()
        {
            let fact = typed.input_fact(ix).map_err(unsupported)?;
            input_types.push(fact.datum_type);
            inputs.push(spec(typed.node(outlet.node).name.clone(), fact)?);
        }
        let mut outputs = Vec::new();
        for (ix, outlet) in typed
            .output_outlets()
            .map_err(unsupported)?
            .iter()
            .enumerate()
        {
            let name = typed
                .outlet_label(*outlet)
                .map(str::to_string)
                .unwrap_or_else(|| typed.node(outlet.node).name.clone());
            outputs.push(spec(name, typed.output_fact(ix).map_err(unsupported)?)?);
        }
        let plan = typed.into_runnable().map_err(unsupported)?;
        let mut metadata = vec![("tract_version".to_string(), TRACT_VERSION.to_string())];
        if let Some(d) = description {
            metadata.push(("description".to_string(), d));
        }
        Ok(TractTfliteModel {
            plan,
            input_types,
            info: ModelInfo {
                inputs,
                outputs,
                memory_bytes: bytes.len() as u64,
                capabilities: Capabilities::TENSOR_INFERENCE,
                metadata,
                ..ModelInfo::default()
            },
        })
    }
}

impl Model for TractTfliteModel {
    fn info(&self) -> Result<ModelInfo> {
        Ok(self.info.clone())
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        self.info.check_inputs(inputs)?;
        let mut ordered: TVec<TValue> = TVec::new();
        for (spec, dt) in self.info.inputs.iter().zip(&self.input_types) {
            let view = inputs
                .iter()
                .find(|v| v.name == spec.name)
                .ok_or_else(|| Error::invalid_input(format!("missing input `{}`", spec.name)))?;
            if view.dtype == DType::BOOL && view.data.iter().any(|b| *b > 1) {
                return Err(Error::invalid_input(format!(
                    "input `{}`: bool elements must be 0 or 1",
                    view.name
                )));
            }
            let shape: Vec<usize> = view.shape.iter().map(|d| *d as usize).collect();
            // SAFETY: `check_inputs` matched the dtype (the unquantised form of `dt`) and
            // verified that `data` holds exactly product(shape) elements; `from_raw_dt` copies.
            let tensor =
                unsafe { tract_tflite::prelude::Tensor::from_raw_dt(*dt, &shape, view.data) }
                    .map_err(|e| {
                        Error::invalid_input(format!("input `{}`: {}", view.name, describe(&e)))
                    })?;
            ordered.push(tensor.into_tvalue());
        }
        let outputs = self.plan.run(ordered).map_err(|e| {
            Error::runtime(format!("tract failed to run the model: {}", describe(&e)))
        })?;
        outputs
            .iter()
            .zip(&self.info.outputs)
            .map(|(value, spec)| {
                Ok(Tensor {
                    name: spec.name.clone(),
                    dtype: spec.dtype,
                    shape: value.shape().iter().map(|d| *d as i64).collect(),
                    data: value.as_bytes().to_vec(),
                })
            })
            .collect()
    }
}

export_plugin!(TfliteTract);
