//! Our plain model-definition form (documented in the module doc): a list of layers, a loss and
//! an optimizer, with JSON numbers; unknown keys are refused so typos do not pass silently.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{GraphError, Site};
use super::params::Params;
use super::shapes::{assemble, LayerType, Pending, PendingOptimizer};
use super::MAX_NODES;
use cyxwiz_sdk::training::{DatasetShape, Loss, ModelSpec, OptimizerKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainModel {
    #[serde(default)]
    input: Option<Vec<usize>>,
    layers: Vec<Map<String, Value>>,
    loss: Option<String>,
    #[serde(default)]
    optimizer: Option<Map<String, Value>>,
}

/// A plain layer `type` and the keys it takes (besides `type`).
fn layer_type(name: &str) -> Option<(LayerType, &'static [&'static str])> {
    let conv: &[&str] = &[
        "type",
        "filters",
        "kernel_size",
        "stride",
        "padding",
        "activation",
    ];
    let pool: &[&str] = &["type", "pool_size", "stride"];
    let bare: &[&str] = &["type"];
    Some(match name.to_ascii_lowercase().as_str() {
        "dense" | "linear" => (LayerType::Dense, &["type", "units", "activation"]),
        "conv2d" => (LayerType::Conv2d, conv),
        "maxpool2d" | "max_pool2d" => (LayerType::MaxPool2d, pool),
        "avgpool2d" | "avg_pool2d" => (LayerType::AvgPool2d, pool),
        "flatten" => (LayerType::Flatten, bare),
        "dropout" => (LayerType::Dropout, &["type", "rate"]),
        "batchnorm" | "batch_norm" => (LayerType::BatchNorm, &["type", "epsilon", "momentum"]),
        "relu" => (LayerType::Relu, bare),
        "leaky_relu" | "leakyrelu" => (LayerType::LeakyRelu, &["type", "negative_slope"]),
        "gelu" => (LayerType::Gelu, bare),
        "sigmoid" => (LayerType::Sigmoid, bare),
        "tanh" => (LayerType::Tanh, bare),
        "softmax" => (LayerType::Softmax, bare),
        _ => return None,
    })
}

/// A layer's `activation` shorthand: `None` for "none"/"linear", else the activation layer.
fn activation(at: &Site, name: &str) -> Result<Option<LayerType>, GraphError> {
    Ok(Some(match name.to_ascii_lowercase().as_str() {
        "none" | "linear" | "" => return Ok(None),
        "relu" => LayerType::Relu,
        "leaky_relu" | "leakyrelu" => LayerType::LeakyRelu,
        "gelu" => LayerType::Gelu,
        "sigmoid" => LayerType::Sigmoid,
        "tanh" => LayerType::Tanh,
        "softmax" => LayerType::Softmax,
        other => {
            return Err(GraphError::param(
                at,
                "activation",
                format!(
                    "`{other}` is not one of none, relu, leaky_relu, gelu, sigmoid, tanh, softmax"
                ),
            ))
        }
    }))
}

/// Parses and validates a plain-form definition (see the module doc for the format).
pub fn parse_plain(
    json: &str,
    dataset: &DatasetShape,
    job_learning_rate: Option<f64>,
) -> Result<ModelSpec, GraphError> {
    let model: PlainModel =
        serde_json::from_str(json).map_err(|e| GraphError::Json(e.to_string()))?;
    if model.layers.len() > MAX_NODES {
        return Err(GraphError::TooLarge {
            what: "layers",
            count: model.layers.len(),
            max: MAX_NODES,
        });
    }
    let input_shape = match model.input {
        None => dataset.sample.clone(),
        Some(shape) => {
            let given: usize = shape.iter().product();
            let have: usize = dataset.sample.iter().product();
            if shape.is_empty() || given != have || !(shape.len() == 1 || shape.len() == 3) {
                return Err(GraphError::shape(
                    &Site::Field("input"),
                    format!(
                        "{shape:?} must be [features] or [channels, height, width] with as many values as the dataset's samples {:?}",
                        dataset.sample
                    ),
                ));
            }
            shape
        }
    };
    let empty = Map::new();
    let mut pending = Vec::with_capacity(model.layers.len());
    for (index, map) in model.layers.iter().enumerate() {
        let site = Site::Layer(index);
        let params = Params { at: &site, map };
        let name = params
            .string("type")?
            .ok_or_else(|| GraphError::param(&site, "type", "is required"))?;
        let (ty, keys) = layer_type(&name).ok_or_else(|| GraphError::Unsupported {
            at: site.clone(),
            name: format!("layer type `{name}`"),
            reason: "not supported (see the plain form's layer types)",
        })?;
        params.only(keys)?;
        let act = match params.string("activation")? {
            Some(name) => activation(&site, &name)?,
            None => None,
        };
        pending.push(Pending {
            id: format!("layers.{index}"),
            site: site.clone(),
            ty,
            params: map,
            default_units: None,
        });
        if let Some(ty) = act {
            pending.push(Pending {
                id: format!("layers.{index}.activation"),
                site,
                ty,
                params: &empty,
                default_units: None,
            });
        }
    }
    let loss_site = Site::Field("loss");
    let loss = match model
        .loss
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => return Err(GraphError::Missing("loss")),
        Some("cross_entropy" | "crossentropy") => Loss::CrossEntropy,
        Some("mse") => Loss::Mse,
        Some(other) => {
            return Err(GraphError::param(
                &loss_site,
                "loss",
                format!("`{other}` is not `cross_entropy` or `mse`"),
            ))
        }
    };
    let opt_site = Site::Field("optimizer");
    let optimizer = match &model.optimizer {
        None => None,
        Some(map) => {
            let params = Params { at: &opt_site, map };
            params.only(&[
                "type",
                "lr",
                "learning_rate",
                "momentum",
                "beta1",
                "beta2",
                "alpha",
                "epsilon",
                "weight_decay",
            ])?;
            let kind = match params
                .string("type")?
                .map(|t| t.to_ascii_lowercase())
                .as_deref()
            {
                None | Some("adam") => OptimizerKind::Adam,
                Some("sgd") => OptimizerKind::Sgd,
                Some("adamw") => OptimizerKind::AdamW,
                Some("rmsprop") => OptimizerKind::RmsProp,
                Some(other) => {
                    return Err(GraphError::param(
                        &opt_site,
                        "type",
                        format!("`{other}` is not one of sgd, adam, adamw, rmsprop"),
                    ))
                }
            };
            Some(PendingOptimizer {
                site: opt_site.clone(),
                kind,
                params: map,
            })
        }
    };
    assemble(
        dataset,
        input_shape,
        &pending,
        (loss, loss_site),
        optimizer.as_ref(),
        job_learning_rate,
    )
}
