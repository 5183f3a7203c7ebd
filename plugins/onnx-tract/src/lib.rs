//! ONNX models through tract: pure Rust, needs no native library, runs anywhere the node does.
//!
//! Loading reads the whole file (no memory map, so a file changed underneath cannot fault the
//! node), decodes the protobuf, types and optimises the graph, and keeps runnable plans that
//! every thread shares (see `plans`). Errors are classified: a missing file is `NOT_FOUND`, a file that is
//! not an ONNX protobuf is `INVALID_INPUT`, and a valid graph tract cannot run (control flow
//! with branch-dependent shapes, unknown operators) is `UNSUPPORTED` with tract's reason, which
//! names the node. A plan that fails at request time (it ran on the load-time probe, so the
//! request's values or sizes are what it cannot take) is `INVALID_INPUT`.

mod dtype;
mod facts;
mod plans;

use cyxwiz_sdk::{
    export_plugin, Capabilities, Error, Format, LoadOptions, Model, ModelInfo, Plugin, Result,
    Tensor, TensorSpec, TensorView,
};
use plans::Plans;
use std::path::Path;
use tract_hir::infer::Factoid;
use tract_onnx::prelude::{
    Framework, InferenceModel, InferenceModelExt, IntoTValue, TValue, TVec, TractResult, TypedFact,
    TypedModel,
};
use tract_onnx::tract_core::model::IntoRunnable;

/// The plugin: stateless; every model owns its plan.
#[derive(Default)]
pub struct OnnxTract;

/// A loaded, optimised ONNX graph.
pub struct OnnxModel {
    plans: Plans,
    info: ModelInfo,
}

fn describe(err: &tract_onnx::prelude::TractError) -> String {
    let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    chain.join(": ").replace('\n', " ")
}

fn spec(name: String, one: &TypedFact, two: &TypedFact) -> Result<TensorSpec> {
    Ok(TensorSpec {
        dtype: dtype::to_sdk(one.datum_type).ok_or_else(|| {
            Error::unsupported(format!(
                "tensor `{name}` has element type {:?}, which the node cannot exchange",
                one.datum_type
            ))
        })?,
        shape: one
            .shape
            .iter()
            .zip(two.shape.iter())
            .map(|(a, b)| match (a.to_i64(), b.to_i64()) {
                (Ok(a), Ok(b)) if a == b => a,
                _ => -1,
            })
            .collect(),
        name,
    })
}

/// Input and output specs of a typed model; `one` and `two` are the same graph typed at two
/// sizes (or twice the same symbolic model), and dimensions that differ are dynamic.
fn specs(
    one: &TypedModel,
    two: &TypedModel,
) -> TractResult<Result<(Vec<TensorSpec>, Vec<TensorSpec>)>> {
    let mut inputs = Vec::new();
    for (ix, outlet) in one.input_outlets()?.iter().enumerate() {
        let name = one.node(outlet.node).name.clone();
        match spec(name, one.input_fact(ix)?, two.input_fact(ix)?) {
            Ok(s) => inputs.push(s),
            Err(e) => return Ok(Err(e)),
        }
    }
    let mut outputs = Vec::new();
    for (ix, outlet) in one.output_outlets()?.iter().enumerate() {
        let name = one
            .outlet_label(*outlet)
            .map(str::to_string)
            .unwrap_or_else(|| one.node(outlet.node).name.clone());
        match spec(name, one.output_fact(ix)?, two.output_fact(ix)?) {
            Ok(s) => outputs.push(s),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok((inputs, outputs)))
}

/// Each input's dimensions: `Some(n)` when fixed, `None` when symbolic.
fn dynamic_shapes(model: &InferenceModel) -> Vec<Vec<Option<usize>>> {
    (0..model.input_outlets().map(|o| o.len()).unwrap_or(0))
        .map(|ix| {
            model
                .input_fact(ix)
                .map(|f| {
                    f.shape
                        .dims()
                        .map(|d| {
                            d.concretize()
                                .and_then(|d| d.to_i64().ok())
                                .and_then(|d| usize::try_from(d).ok())
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

impl Plugin for OnnxTract {
    const NAME: &'static str = "onnx-tract";
    const DESCRIPTION: &'static str = "ONNX through tract (pure Rust, CPU)";
    const FORMATS: &'static [Format] = &[Format {
        name: "onnx",
        extensions: &["onnx"],
    }];
    const CAPABILITIES: Capabilities = Capabilities::TENSOR_INFERENCE;
    type Model = OnnxModel;

    fn runtime(_options: &cyxwiz_sdk::serde_json::Value) -> Result<String> {
        Ok("tract 0.23.9".to_string())
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<OnnxModel> {
        if path.is_dir() {
            return Err(Error::invalid_input(format!(
                "{}: is a directory, expected an .onnx file",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::from_io(path, &e))?;
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(|e| {
                Error::invalid_input(format!(
                    "{}: not a valid ONNX model: {}",
                    path.display(),
                    describe(&e)
                ))
            })?;
        if proto.graph.is_none() {
            return Err(Error::invalid_input(format!(
                "{}: not a valid ONNX model: it has no graph",
                path.display()
            )));
        }
        let unsupported = |e: tract_onnx::prelude::TractError| {
            Error::unsupported(format!(
                "{}: tract cannot run this model: {}",
                path.display(),
                describe(&e)
            ))
        };
        let dir = path.parent().and_then(Path::to_str);
        let parsed = onnx.parse(&proto, dir).map_err(unsupported)?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(Error::unsupported(format!(
                "{}: inputs referenced but never defined: {:?}",
                path.display(),
                parsed.unresolved_inputs
            )));
        }
        let mut model = parsed.model;
        facts::fix_input_facts(&mut model, options)?;
        let (plans, inputs, outputs) = match model.clone().into_optimized() {
            Ok(typed) => {
                let (inputs, outputs) = specs(&typed, &typed).map_err(unsupported)??;
                let plan = typed.into_runnable().map_err(unsupported)?;
                (Plans::Symbolic(plan), inputs, outputs)
            }
            Err(symbolic_err) => {
                // Type it twice with every dynamic dimension at 1, then 2: dimensions that
                // differ are dynamic in the specs. Failing that, report the symbolic error.
                let dynamic = dynamic_shapes(&model);
                let at = |v: usize| -> Vec<Vec<usize>> {
                    dynamic
                        .iter()
                        .map(|dims| dims.iter().map(|d| d.unwrap_or(v)).collect())
                        .collect()
                };
                let typed = match (
                    plans::concretize(&model, &at(1)),
                    plans::concretize(&model, &at(2)),
                ) {
                    (Ok(one), Ok(two)) if dynamic.iter().flatten().any(Option::is_none) => {
                        (one, two)
                    }
                    _ => {
                        let hint = if model_has_dynamic_inputs(&proto) {
                            " (if a dynamic input dimension is the cause, pin it with the load option `input_shapes`)"
                        } else {
                            ""
                        };
                        return Err(Error::unsupported(format!(
                            "{}: tract cannot run this model: {}{hint}",
                            path.display(),
                            describe(&symbolic_err)
                        )));
                    }
                };
                let (inputs, outputs) = specs(&typed.0, &typed.1).map_err(unsupported)??;
                let plans = Plans::PerShape {
                    template: model,
                    cache: std::sync::Mutex::new(Vec::new()),
                };
                (plans, inputs, outputs)
            }
        };
        if let Plans::Symbolic(plan) = &plans {
            if options.options.get("probe") != Some(&cyxwiz_sdk::serde_json::Value::Bool(false)) {
                probe(plan, &inputs).map_err(|why| {
                    Error::unsupported(format!(
                        "{}: tract types this graph but cannot run it: {why} (load option `probe: false` skips this check)",
                        path.display()
                    ))
                })?;
            }
        }
        let mut metadata = vec![("ir_version".to_string(), proto.ir_version.to_string())];
        if !proto.producer_name.is_empty() {
            metadata.push(("producer".to_string(), proto.producer_name.clone()));
        }
        for opset in &proto.opset_import {
            let domain = if opset.domain.is_empty() {
                "ai.onnx"
            } else {
                &opset.domain
            };
            metadata.push((format!("opset.{domain}"), opset.version.to_string()));
        }
        Ok(OnnxModel {
            plans,
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

/// Runs a symbolically typed plan once on zeros, every dynamic dimension set to a distinct
/// size (2, 3, ...), so a graph tract types wrongly fails here, at load, rather than on the
/// first real request (measured: the MiniLM int8 export types but fails at run time).
fn probe(
    plan: &std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    inputs: &[TensorSpec],
) -> std::result::Result<(), String> {
    if !inputs.iter().any(|s| s.shape.contains(&-1)) {
        return Ok(());
    }
    let mut next = 2usize;
    let mut values: TVec<TValue> = TVec::new();
    for spec in inputs {
        let shape: Vec<usize> = spec
            .shape
            .iter()
            .map(|d| {
                if *d < 0 {
                    next += 1;
                    next - 1
                } else {
                    *d as usize
                }
            })
            .collect();
        let dt = dtype::to_tract(spec.dtype)
            .ok_or_else(|| format!("input `{}` has no tract type", spec.name))?;
        let tensor = tract_onnx::prelude::Tensor::zero_dt(dt, &shape).map_err(|e| describe(&e))?;
        values.push(tensor.into_tvalue());
    }
    plan.run(values).map(|_| ()).map_err(|e| describe(&e))
}

fn model_has_dynamic_inputs(proto: &tract_onnx::pb::ModelProto) -> bool {
    let Some(graph) = &proto.graph else {
        return false;
    };
    graph.input.iter().any(|input| {
        let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return false;
        };
        t.shape.as_ref().is_some_and(|s| {
            s.dim.iter().any(|d| match &d.value {
                Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v)) => *v < 0,
                _ => true,
            })
        })
    })
}

fn to_tract(view: &TensorView<'_>) -> Result<TValue> {
    let dt = dtype::to_tract(view.dtype).ok_or_else(|| {
        Error::unsupported(format!(
            "input `{}`: dtype {} is not supported",
            view.name, view.dtype
        ))
    })?;
    if view.dtype == cyxwiz_sdk::DType::BOOL && view.data.iter().any(|b| *b > 1) {
        return Err(Error::invalid_input(format!(
            "input `{}`: bool elements must be 0 or 1",
            view.name
        )));
    }
    let shape: Vec<usize> = view.shape.iter().map(|d| *d as usize).collect();
    // SAFETY: `dt` is a plain numeric (or validated bool) type and `check_inputs` verified
    // that `data` holds exactly `product(shape) * size_of(dt)` bytes; `from_raw_dt` copies.
    let tensor = unsafe { tract_onnx::prelude::Tensor::from_raw_dt(dt, &shape, view.data) }
        .map_err(|e| Error::invalid_input(format!("input `{}`: {}", view.name, describe(&e))))?;
    Ok(tensor.into_tvalue())
}

impl Model for OnnxModel {
    fn info(&self) -> Result<ModelInfo> {
        Ok(self.info.clone())
    }

    fn infer(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        self.info.check_inputs(inputs)?;
        let mut ordered: TVec<TValue> = TVec::new();
        for spec in &self.info.inputs {
            let view = inputs
                .iter()
                .find(|v| v.name == spec.name)
                .ok_or_else(|| Error::invalid_input(format!("missing input `{}`", spec.name)))?;
            ordered.push(to_tract(view)?);
        }
        let outputs = self.plans.run(ordered)?;
        outputs
            .iter()
            .zip(&self.info.outputs)
            .map(|(value, spec)| {
                let dtype = dtype::to_sdk(value.datum_type()).ok_or_else(|| {
                    Error::runtime(format!(
                        "output `{}` came back as {:?}",
                        spec.name,
                        value.datum_type()
                    ))
                })?;
                Ok(Tensor {
                    name: spec.name.clone(),
                    dtype,
                    shape: value.shape().iter().map(|d| *d as i64).collect(),
                    data: value.as_bytes().to_vec(),
                })
            })
            .collect()
    }
}

export_plugin!(OnnxTract);
