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
        plan.run(inputs)
            .map_err(|e| Error::runtime(format!("tract failed to run the model: {}", describe(&e))))
    }
}
