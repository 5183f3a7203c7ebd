//! The training job's model definition: the CyxWiz Engine's node graph or our plain form,
//! parsed and validated into one [`ModelSpec`] before anything is queued. Building, training
//! and weights belong to the executor and the training plugins.
//!
//! Both forms take the dataset's [`DatasetShape`] (one sample's shape and the class count, from
//! the dataset, since the Engine's DatasetInput only names it) and the job's learning rate if
//! its hyperparameters set one. Shapes never include the batch axis; image samples are
//! `[channels, height, width]`, flat ones `[features]`.
//!
//! # The Engine's node graph
//! `{"nodes":[{"id":1,"type":77,"name":"Dataset Input","parameters":{…}}, …],
//! "links":[{"from_node":1,"from_pin_index":0,"to_node":2,"to_pin_index":0}, …]}` (other fields
//! such as `version`, `pos_x` or a link's `from_pin` are ignored; a missing pin index is 0).
//! Parameter values are strings as the Engine writes them (`"units":"128"`); numbers are
//! accepted too. The graph must be one chain: DatasetInput (77) data pin 0 → layers → the loss's
//! predictions pin 0, DatasetInput labels pin 1 → the loss's targets pin 1, and optionally the
//! loss → one optimizer. Mapping, with the keys read (Engine defaults when absent):
//!
//! | Engine node (type) | layer | keys |
//! |---|---|---|
//! | Dense (0) | `Linear` | `units` (else the number in the name "Dense (128)", else 128) |
//! | Conv2D (2) | `Conv2d` | `filters` [32], `kernel_size` [3], `stride` [1], `padding` [`same`]: `same`, `valid` or an integer |
//! | MaxPool2D (5), AvgPool2D (6) | pooling | `pool_size` [2], `stride` [= `pool_size`] |
//! | BatchNorm (10) | `BatchNorm1d` / `BatchNorm2d` by input | `epsilon` [1e-5], `momentum` [0.1] |
//! | Dropout (14) | `Dropout` | `rate` [0.5], in `[0, 1)` |
//! | Flatten (15) | flatten | |
//! | ReLU (29), LeakyReLU (30), GELU (34), Sigmoid (37), Tanh (38), Softmax (39) | activation | LeakyReLU `negative_slope` [0.01] |
//! | Output (50), Identity (74) | nothing (pass-through) | |
//! | MSELoss (51), CrossEntropyLoss (52) | the loss | |
//! | SGD (59), Adam (60), AdamW (61), RMSprop (62) | the optimizer | `learning_rate`, `momentum`, `beta1`, `beta2`, `epsilon`, `weight_decay`, RMSprop `alpha` |
//!
//! A layer's id (the prefix of its weight names) is its node id. The Engine's `activation`
//! property on Dense and Conv2D is ignored, as the Engine itself ignores it: activations are
//! their own nodes. Lambda (73) and Subgraph (84) are refused; every other known type (other
//! layers, losses, optimizers, schedulers, regularization and data-pipeline nodes) is refused by
//! name as not supported yet; an unknown type number is refused as unknown.
//!
//! # The plain form
//! ```json
//! {"input": [1, 28, 28],
//!  "layers": [{"type": "flatten"},
//!             {"type": "dense", "units": 128, "activation": "relu"},
//!             {"type": "dropout", "rate": 0.2},
//!             {"type": "dense", "units": 10}],
//!  "loss": "cross_entropy",
//!  "optimizer": {"type": "adam", "lr": 0.001}}
//! ```
//! `input` is optional (default: the dataset's sample shape); when given it must be `[features]`
//! or `[C, H, W]` with as many values as a sample, which is then read in that shape (so `[784]`
//! takes 28×28 images flat). Layer `type`s: `dense`/`linear` (`units`, required),
//! `conv2d` (`filters`, `kernel_size`, `stride`, `padding`), `maxpool2d`, `avgpool2d`
//! (`pool_size`, `stride`), `flatten`, `dropout` (`rate`), `batchnorm` (`epsilon`, `momentum`),
//! `relu`, `leaky_relu` (`negative_slope`), `gelu`, `sigmoid`, `tanh`, `softmax`, with the
//! defaults of the table above. `dense` and `conv2d` take an `activation` shorthand (`relu`,
//! `leaky_relu`, `gelu`, `sigmoid`, `tanh`, `softmax`, `none`) that adds that layer after them.
//! `loss` is `cross_entropy` or `mse` (required); `optimizer.type` is `sgd`, `adam` (default),
//! `adamw` or `rmsprop`, with `lr` (or `learning_rate`) and the Engine's keys. Unknown keys
//! are refused. Layer ids are `layers.<index>` (`layers.<index>.activation` for the shorthand).
//!
//! # Rules both forms share
//! - Dense, Softmax need a flat input: a Dense after Conv2D/pooling needs a Flatten first (the
//!   error says so), rather than applying to the last axis as PyTorch would. Conv2D and pooling
//!   need an image input `[C, H, W]`; a kernel or pool larger than the (padded) input is refused.
//!   `same` padding needs stride 1 and an odd kernel.
//! - The last layer must give `[classes]`. With CrossEntropy a trailing Softmax is dropped and
//!   [`ModelSpec::softmax_folded`] set (the loss applies it); MSE compares against one-hot targets.
//! - Learning rate: the job's hyperparameter, else the optimizer's, else
//!   [`DEFAULT_LEARNING_RATE`]; in `(0, 10]`. No optimizer means Adam with PyTorch's defaults.
//! - Bounds: `units` 1 to [`MAX_UNITS`], `filters` 1 to 65,536, kernel, stride and pool up to
//!   1024, rates and momenta in `[0, 1)`, at most [`MAX_PARAMETERS`] trainable parameters,
//!   [`MAX_NODES`] nodes (or plain layers) and [`MAX_LINKS`] links. The caller refuses a
//!   definition longer than [`MAX_DEFINITION_BYTES`] before parsing ([`parse_model_definition`]
//!   checks it too).
//!
//! Every refusal is a [`GraphError`] whose message names the node (`node 3`), layer
//! (`layers[2]`) or field at fault and the reason.

mod engine;
mod error;
mod params;
mod plain;
mod shapes;
#[cfg(test)]
mod tests;

pub use cyxwiz_sdk::training::{
    DatasetShape, Layer, LayerKind, Loss, ModelSpec, Optimizer, OptimizerKind,
};
pub use engine::parse_engine;
pub use error::{GraphError, Site};
pub use plain::parse_plain;

/// The longest model definition accepted, in bytes (the caller checks before reading it all).
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;
/// The most nodes in an Engine graph, and the most layers in the plain form.
pub const MAX_NODES: usize = 1000;
/// The most links in an Engine graph.
pub const MAX_LINKS: usize = 4000;
/// The most trainable parameters a model may have.
pub const MAX_PARAMETERS: u64 = 100_000_000;
/// The most units a Dense layer may have.
pub const MAX_UNITS: usize = 1_000_000;
/// The most classes a dataset may have.
pub const MAX_CLASSES: usize = 1_000_000;
/// The learning rate when neither the job nor the definition sets one.
pub const DEFAULT_LEARNING_RATE: f64 = 0.001;

/// Parses either form: an object with `nodes` is an Engine graph, one with `layers` the plain
/// form. Refuses text longer than [`MAX_DEFINITION_BYTES`].
pub fn parse_model_definition(
    json: &str,
    dataset: &DatasetShape,
    job_learning_rate: Option<f64>,
) -> Result<ModelSpec, GraphError> {
    if json.len() > MAX_DEFINITION_BYTES {
        return Err(GraphError::TooLong {
            len: json.len(),
            max: MAX_DEFINITION_BYTES,
        });
    }
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| GraphError::Json(e.to_string()))?;
    if value.get("nodes").is_some() {
        parse_engine(json, dataset, job_learning_rate)
    } else if value.get("layers").is_some() {
        parse_plain(json, dataset, job_learning_rate)
    } else {
        Err(GraphError::Json(
            "expected an Engine graph (`nodes`, `links`) or the plain form (`layers`)".into(),
        ))
    }
}
