//! Shape inference and parameter resolution shared by both forms: each layer's parameters are
//! read against its input shape, its output shape inferred, and the whole model checked
//! (final width, Softmax folding, parameter bound). Also resolves the optimizer.

use serde_json::{Map, Value};

use super::error::{GraphError, Site};
use super::params::Params;
use super::{DEFAULT_LEARNING_RATE, MAX_CLASSES, MAX_PARAMETERS, MAX_UNITS};
use cyxwiz_sdk::training::{
    DatasetShape, Layer, LayerKind, Loss, ModelSpec, Optimizer, OptimizerKind,
};

/// The layer types both forms can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerType {
    Dense,
    Conv2d,
    MaxPool2d,
    AvgPool2d,
    Flatten,
    Dropout,
    BatchNorm,
    Relu,
    LeakyRelu,
    Gelu,
    Sigmoid,
    Tanh,
    Softmax,
}

/// A layer as written, before its input shape is known.
pub(crate) struct Pending<'a> {
    pub(crate) id: String,
    pub(crate) site: Site,
    pub(crate) ty: LayerType,
    pub(crate) params: &'a Map<String, Value>,
    /// Dense `units` when the definition has none (the Engine's default); `None`: required.
    pub(crate) default_units: Option<usize>,
}

/// The optimizer as written.
pub(crate) struct PendingOptimizer<'a> {
    pub(crate) site: Site,
    pub(crate) kind: OptimizerKind,
    pub(crate) params: &'a Map<String, Value>,
}

/// Checks the dataset's shape: `[features]` or `[C, H, W]`, at least 1 class.
fn check_dataset(dataset: &DatasetShape) -> Result<(), GraphError> {
    let at = Site::Field("dataset");
    let rank_ok = dataset.sample.len() == 1 || dataset.sample.len() == 3;
    if !rank_ok || dataset.sample.contains(&0) {
        return Err(GraphError::shape(
            &at,
            format!(
                "sample shape {:?} must be [features] or [channels, height, width] with no zero axis",
                dataset.sample
            ),
        ));
    }
    if dataset.classes == 0 || dataset.classes > MAX_CLASSES {
        return Err(GraphError::shape(
            &at,
            format!(
                "{} classes is out of range (1 to {MAX_CLASSES})",
                dataset.classes
            ),
        ));
    }
    Ok(())
}

/// Output side of a `kernel`/`stride`/`padding` window over `side`, or why it does not fit.
fn window(side: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = side + 2 * padding;
    (kernel <= padded).then(|| (padded - kernel) / stride + 1)
}

/// Requires an image input `[C, H, W]`.
fn image(at: &Site, what: &str, input: &[usize]) -> Result<(usize, usize, usize), GraphError> {
    match *input {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(GraphError::shape(
            at,
            format!("{what} needs an image input [channels, height, width], got {input:?}"),
        )),
    }
}

/// Resolves one layer against its input shape: its kind and output shape.
fn resolve(p: &Pending<'_>, input: &[usize]) -> Result<(LayerKind, Vec<usize>), GraphError> {
    let at = &p.site;
    let params = Params { at, map: p.params };
    let flat = |what: &str| -> Result<usize, GraphError> {
        match *input {
            [features] => Ok(features),
            _ => Err(GraphError::shape(
                at,
                format!("{what} needs a flat input, got {input:?}; add a Flatten before it"),
            )),
        }
    };
    Ok(match p.ty {
        LayerType::Dense => {
            let inputs = flat("Dense")?;
            let units = match p.default_units {
                Some(default) => params.int("units", default, 1, MAX_UNITS)?,
                None => match params.string("units")? {
                    None => return Err(GraphError::param(at, "units", "is required")),
                    Some(_) => params.int("units", 0, 1, MAX_UNITS)?,
                },
            };
            (LayerKind::Dense { inputs, units }, vec![units])
        }
        LayerType::Conv2d => {
            let (c, h, w) = image(at, "Conv2D", input)?;
            let filters = params.int("filters", 32, 1, 65_536)?;
            let kernel = params.int("kernel_size", 3, 1, 1024)?;
            let stride = params.int("stride", 1, 1, 1024)?;
            let padding_text = params.string("padding")?.unwrap_or_else(|| "same".into());
            let padding = match padding_text.to_ascii_lowercase().as_str() {
                "valid" => 0,
                "same" => {
                    if stride != 1 || kernel % 2 == 0 {
                        return Err(GraphError::param(
                            at,
                            "padding",
                            format!("`same` needs stride 1 and an odd kernel (stride {stride}, kernel {kernel})"),
                        ));
                    }
                    (kernel - 1) / 2
                }
                _ => params.int("padding", 0, 0, 1024).map_err(|_| {
                    GraphError::param(
                        at,
                        "padding",
                        format!("`{padding_text}` is not `same`, `valid` or an integer up to 1024"),
                    )
                })?,
            };
            let (Some(oh), Some(ow)) = (
                window(h, kernel, stride, padding),
                window(w, kernel, stride, padding),
            ) else {
                return Err(GraphError::param(
                    at,
                    "kernel_size",
                    format!("{kernel} is larger than the padded input {h}x{w} (padding {padding})"),
                ));
            };
            let kind = LayerKind::Conv2d {
                in_channels: c,
                filters,
                kernel,
                stride,
                padding,
            };
            (kind, vec![filters, oh, ow])
        }
        LayerType::MaxPool2d | LayerType::AvgPool2d => {
            let name = if p.ty == LayerType::MaxPool2d {
                "MaxPool2D"
            } else {
                "AvgPool2D"
            };
            let (c, h, w) = image(at, name, input)?;
            let kernel = params.int("pool_size", 2, 1, 1024)?;
            let stride = params.int("stride", kernel, 1, 1024)?;
            let (Some(oh), Some(ow)) = (window(h, kernel, stride, 0), window(w, kernel, stride, 0))
            else {
                return Err(GraphError::param(
                    at,
                    "pool_size",
                    format!("{kernel} is larger than the input {h}x{w}"),
                ));
            };
            let kind = if p.ty == LayerType::MaxPool2d {
                LayerKind::MaxPool2d { kernel, stride }
            } else {
                LayerKind::AvgPool2d { kernel, stride }
            };
            (kind, vec![c, oh, ow])
        }
        LayerType::Flatten => (LayerKind::Flatten, vec![input.iter().product()]),
        LayerType::Dropout => {
            let rate = params
                .float("rate", Some(0.5), "[0, 1)", |r| (0.0..1.0).contains(&r))?
                .unwrap_or(0.5);
            (LayerKind::Dropout { rate }, input.to_vec())
        }
        LayerType::BatchNorm => {
            let features = match *input {
                [features] | [features, _, _] => features,
                _ => {
                    return Err(GraphError::shape(
                        at,
                        format!("BatchNorm cannot take {input:?}"),
                    ))
                }
            };
            let epsilon = params
                .float("epsilon", Some(1e-5), "(0, 1)", |e| e > 0.0 && e < 1.0)?
                .unwrap_or(1e-5);
            let momentum = params
                .float("momentum", Some(0.1), "[0, 1]", |m| {
                    (0.0..=1.0).contains(&m)
                })?
                .unwrap_or(0.1);
            let kind = LayerKind::BatchNorm {
                features,
                epsilon,
                momentum,
            };
            (kind, input.to_vec())
        }
        LayerType::LeakyRelu => {
            let negative_slope = params
                .float("negative_slope", Some(0.01), "[0, 1]", |s| {
                    (0.0..=1.0).contains(&s)
                })?
                .unwrap_or(0.01);
            (LayerKind::LeakyRelu { negative_slope }, input.to_vec())
        }
        LayerType::Relu => (LayerKind::Relu, input.to_vec()),
        LayerType::Gelu => (LayerKind::Gelu, input.to_vec()),
        LayerType::Sigmoid => (LayerKind::Sigmoid, input.to_vec()),
        LayerType::Tanh => (LayerKind::Tanh, input.to_vec()),
        LayerType::Softmax => {
            flat("Softmax")?;
            (LayerKind::Softmax, input.to_vec())
        }
    })
}

/// Resolves the optimizer: `job_lr` first, else the definition's `learning_rate` (or `lr`),
/// else [`DEFAULT_LEARNING_RATE`]; Adam when the definition has none.
fn optimizer(
    pending: Option<&PendingOptimizer<'_>>,
    job_lr: Option<f64>,
) -> Result<Optimizer, GraphError> {
    let empty = Map::new();
    let (site, kind, map) = match pending {
        Some(p) => (p.site.clone(), p.kind, p.params),
        None => (Site::Field("optimizer"), OptimizerKind::Adam, &empty),
    };
    let params = Params { at: &site, map };
    let lr_ok = |lr: f64| lr > 0.0 && lr <= 10.0;
    if let Some(lr) = job_lr {
        if !lr.is_finite() || !lr_ok(lr) {
            return Err(GraphError::param(
                &Site::Field("hyperparameters"),
                "learning_rate",
                format!("{lr} is out of range (allowed (0, 10])"),
            ));
        }
    }
    let written = match params.float("learning_rate", None, "(0, 10]", lr_ok)? {
        Some(lr) => Some(lr),
        None => params.float("lr", None, "(0, 10]", lr_ok)?,
    };
    let unit = |v: f64| (0.0..1.0).contains(&v);
    let decay = |v: f64| (0.0..=1.0).contains(&v);
    let eps = |v: f64| v > 0.0 && v < 1.0;
    let (momentum, beta1, beta2, epsilon, weight_decay) = match kind {
        OptimizerKind::Sgd => (
            params.float("momentum", Some(0.0), "[0, 1)", unit)?,
            None,
            None,
            None,
            params.float("weight_decay", Some(0.0), "[0, 1]", decay)?,
        ),
        OptimizerKind::Adam | OptimizerKind::AdamW => (
            None,
            params.float("beta1", Some(0.9), "[0, 1)", unit)?,
            params.float("beta2", Some(0.999), "[0, 1)", unit)?,
            params.float("epsilon", Some(1e-8), "(0, 1)", eps)?,
            params.float(
                "weight_decay",
                Some(if kind == OptimizerKind::AdamW {
                    0.01
                } else {
                    0.0
                }),
                "[0, 1]",
                decay,
            )?,
        ),
        OptimizerKind::RmsProp => (
            params.float("momentum", Some(0.0), "[0, 1)", unit)?,
            None,
            params.float("alpha", Some(0.99), "[0, 1)", unit)?,
            params.float("epsilon", Some(1e-8), "(0, 1)", eps)?,
            params.float("weight_decay", Some(0.0), "[0, 1]", decay)?,
        ),
    };
    Ok(Optimizer {
        kind,
        learning_rate: job_lr.or(written).unwrap_or(DEFAULT_LEARNING_RATE),
        momentum,
        beta1,
        beta2,
        epsilon,
        weight_decay,
    })
}

/// Builds the validated model from the input shape, the layers in order, the loss (and the
/// site that declared it), and the optimizer.
pub(crate) fn assemble(
    dataset: &DatasetShape,
    input_shape: Vec<usize>,
    pending: &[Pending<'_>],
    loss: (Loss, Site),
    opt: Option<&PendingOptimizer<'_>>,
    job_lr: Option<f64>,
) -> Result<ModelSpec, GraphError> {
    check_dataset(dataset)?;
    let mut layers: Vec<Layer> = Vec::with_capacity(pending.len());
    let mut shape = input_shape.clone();
    let mut total: u64 = 0;
    for p in pending {
        let (kind, output_shape) = resolve(p, &shape)?;
        total = total.saturating_add(kind.parameter_count());
        if total > MAX_PARAMETERS {
            return Err(GraphError::TooManyParameters {
                count: total,
                max: MAX_PARAMETERS,
            });
        }
        shape = output_shape.clone();
        layers.push(Layer {
            id: p.id.clone(),
            origin: p.site.to_string(),
            kind,
            output_shape,
        });
    }
    let (loss, loss_site) = loss;
    let softmax_folded =
        loss == Loss::CrossEntropy && layers.last().is_some_and(|l| l.kind == LayerKind::Softmax);
    if softmax_folded {
        layers.pop();
    }
    let last = layers.last().map_or(&input_shape, |l| &l.output_shape);
    if last.as_slice() != [dataset.classes] {
        let from = layers
            .last()
            .map_or_else(|| Site::Field("input").to_string(), |l| l.origin.clone());
        return Err(GraphError::shape(
            &loss_site,
            format!(
                "the loss needs predictions of shape [{}] (one per class), but {from} gives {last:?}",
                dataset.classes
            ),
        ));
    }
    if loss == Loss::CrossEntropy && dataset.classes < 2 {
        return Err(GraphError::shape(
            &loss_site,
            "cross-entropy needs at least 2 classes",
        ));
    }
    Ok(ModelSpec {
        input_shape,
        classes: dataset.classes,
        layers,
        loss,
        softmax_folded,
        optimizer: optimizer(opt, job_lr)?,
    })
}
