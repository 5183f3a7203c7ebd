//! Input facts before typing: shapes pinned by the `input_shapes` load option, and a symbol for
//! every dimension the graph leaves unknown.

use crate::describe;
use cyxwiz_sdk::{serde_json, Error, LoadOptions, Result};
use tract_hir::infer::{Factoid, ShapeFactoid};
use tract_onnx::prelude::{InferenceModel, TDim, TVec, TractError};

/// Pins input shapes from the `input_shapes` load option (`{"x": [-1, 3, 48, 192]}`, where
/// `-1` stays dynamic), then gives every input dimension still unknown (`?` in ONNX) a symbol
/// of its own so tract can type the graph with dynamic dimensions.
pub(crate) fn fix_input_facts(model: &mut InferenceModel, options: &LoadOptions) -> Result<()> {
    let pinned = options.options.get("input_shapes");
    let pinned = match pinned {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(Error::invalid_input(format!(
                "load option `input_shapes` must be an object of input name to shape, got {other}"
            )))
        }
    };
    let runtime = |e: TractError| Error::runtime(describe(&e));
    let outlets = model.input_outlets().map_err(runtime)?.to_vec();
    let names: Vec<String> = outlets
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    if let Some(unknown) = pinned.keys().find(|k| !names.contains(k)) {
        return Err(Error::invalid_input(format!(
            "load option `input_shapes` names `{unknown}`, but the model's inputs are {names:?}"
        )));
    }
    for (ix, name) in names.iter().enumerate() {
        let mut fact = model.input_fact(ix).map_err(runtime)?.clone();
        if let Some(shape) = pinned.get(name) {
            let dims = shape
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(serde_json::Value::as_i64)
                        .collect::<Option<Vec<i64>>>()
                })
                .ok_or_else(|| {
                    Error::invalid_input(format!(
                        "load option `input_shapes.{name}` must be a list of integers, got {shape}"
                    ))
                })?;
            let dims: TVec<TDim> = dims
                .iter()
                .map(|d| {
                    if *d < 0 {
                        model.symbols.new_with_prefix("dim").into()
                    } else {
                        TDim::from(*d)
                    }
                })
                .collect();
            fact.shape = ShapeFactoid::from(dims);
        } else if fact.shape.is_open() {
            continue;
        } else {
            let unknown: Vec<usize> = fact
                .shape
                .dims()
                .enumerate()
                .filter(|(_, d)| {
                    d.concretize()
                        .is_none_or(|d| d.to_i64().is_ok_and(|v| v < 0))
                })
                .map(|(i, _)| i)
                .collect();
            if unknown.is_empty() {
                continue;
            }
            for i in unknown {
                fact.shape
                    .set_dim(i, model.symbols.new_with_prefix("dim").into());
            }
        }
        model.set_input_fact(ix, fact).map_err(runtime)?;
    }
    Ok(())
}
