//! Runnable plans: one plan with symbolic dimensions when tract can type the graph that way,
//! otherwise one plan per concrete input shape, compiled on first use and cached.
//!
//! Some exported graphs (PaddleOCR's classifier, for one) compute a `Reshape` target from
//! their input size in ways tract cannot follow symbolically; they still run once every
//! dimension is known, so they are specialised per shape instead of being refused.

use crate::describe;
use cyxwiz_sdk::{Error, Result};
use std::sync::{Arc, Mutex};
use tract_hir::infer::Factoid;
use tract_onnx::prelude::{
    InferenceFact, InferenceModel, InferenceModelExt, TValue, TVec, TractError, TractResult,
    TypedModel, TypedRunnableModel,
};
use tract_onnx::tract_core::model::IntoRunnable;

/// How many per-shape plans a model keeps.
const SHAPE_CACHE: usize = 16;

type ShapeKey = Vec<Vec<usize>>;

/// The plans of one model.
pub(crate) enum Plans {
    /// One plan for every input shape.
    Symbolic(Arc<TypedRunnableModel>),
    /// A plan per concrete input shape, built from the untyped graph.
    PerShape {
        template: InferenceModel,
        cache: Mutex<Vec<(ShapeKey, Arc<TypedRunnableModel>)>>,
    },
}

/// Types `model` with every symbolic input dimension set from `shapes`.
pub(crate) fn concretize(model: &InferenceModel, shapes: &[Vec<usize>]) -> TractResult<TypedModel> {
    let mut model = model.clone();
    for (ix, shape) in shapes.iter().enumerate() {
        let Some(dt) = model.input_fact(ix)?.datum_type.concretize() else {
            return Err(TractError::msg(format!("input {ix} has no element type")));
        };
        model.set_input_fact(ix, InferenceFact::dt_shape(dt, shape.as_slice()))?;
    }
    model.into_optimized()
}

impl Plans {
    /// Runs the plan matching the inputs' shapes, compiling it first if needed.
    pub(crate) fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>> {
        let plan = match self {
            Plans::Symbolic(plan) => plan.clone(),
            Plans::PerShape { template, cache } => {
                let key: ShapeKey = inputs.iter().map(|t| t.shape().to_vec()).collect();
                let cached = cache
                    .lock()
                    .map_err(|_| Error::runtime("plan cache poisoned"))?
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, p)| p.clone());
                match cached {
                    Some(plan) => plan,
                    None => {
                        let plan = concretize(template, &key)
                            .and_then(|m| m.into_runnable())
                            .map_err(|e| {
                                Error::invalid_input(format!(
                                    "the model cannot run on input shapes {key:?}: {}",
                                    describe(&e)
                                ))
                            })?;
                        let mut cache = cache
                            .lock()
                            .map_err(|_| Error::runtime("plan cache poisoned"))?;
                        if cache.len() >= SHAPE_CACHE {
                            cache.remove(0);
                        }
                        cache.push((key, plan.clone()));
                        plan
                    }
                }
            }
        };
        plan.run(inputs).map_err(|e| run_error(&e))
    }
}

/// The error of a plan that failed to run. The inputs matched the model's specs, and a
/// symbolic plan already ran at load on the probe (every dynamic dimension a distinct size), a
/// per-shape plan was compiled for exactly these shapes: what fails now is what this request
/// holds (sizes the graph's arithmetic cannot reconcile, such as two inputs that must share a
/// dimension and do not), so it is the caller's `INVALID_INPUT`, with tract's reason.
fn run_error(e: &TractError) -> Error {
    Error::invalid_input(format!(
        "tract cannot run the model on these inputs: {}",
        describe(e)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::ops::math::add;

    #[test]
    fn inputs_that_disagree_on_a_shared_dimension_are_the_callers_error() {
        // a[S] + b[S]: both inputs must have the same length.
        let mut model = TypedModel::default();
        let s = TDim::from(model.sym("S"));
        let a = model.add_source("a", f32::fact([s.clone()])).unwrap();
        let b = model.add_source("b", f32::fact([s])).unwrap();
        let sum = model.wire_node("sum", add(), &[a, b]).unwrap();
        model.select_output_outlets(&sum).unwrap();
        let plans = Plans::Symbolic(model.into_runnable().unwrap());
        let v = |values: &[f32]| Tensor::from(tract_ndarray::arr1(values)).into_tvalue();
        let ok = plans.run(tvec![v(&[1.0, 2.0]), v(&[3.0, 4.0])]).unwrap();
        assert_eq!(ok[0].shape(), &[2]);
        let e = plans
            .run(tvec![v(&[1.0, 2.0]), v(&[3.0, 4.0, 5.0])])
            .unwrap_err();
        assert_eq!(e.kind, cyxwiz_sdk::ErrorKind::INVALID_INPUT, "{e}");
        assert!(
            e.message
                .starts_with("tract cannot run the model on these inputs: "),
            "{e}"
        );
    }
}
