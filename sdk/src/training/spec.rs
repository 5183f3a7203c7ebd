//! The validated model the host sends a training backend: layers in PyTorch terms with their
//! weight-name prefixes and inferred shapes, the loss and the optimizer. The host's parser
//! (the Engine's node graph or the plain form) produces it; backends deserialize it from
//! [`TrainingJob::model`](super::TrainingJob).

use serde::{Deserialize, Serialize};

/// What the dataset tells the parser: one sample's shape (no batch axis) and the class count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetShape {
    /// One sample's shape: `[features]` or `[channels, height, width]`.
    pub sample: Vec<usize>,
    /// The number of label classes (the width the last layer must have).
    pub classes: usize,
}

/// One resolved layer, in PyTorch terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerKind {
    /// `Linear(in, out)`; weight `[out, in]`, bias `[out]`.
    Dense {
        /// Input features.
        inputs: usize,
        /// Output features (`units`).
        units: usize,
    },
    /// `Conv2d(in, out, kernel, stride, padding)`; weight `[out, in, k, k]`, bias `[out]`.
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Output channels (`filters`).
        filters: usize,
        /// Square kernel side.
        kernel: usize,
        /// Stride, both axes.
        stride: usize,
        /// Zero padding on every side.
        padding: usize,
    },
    /// `MaxPool2d(kernel, stride)`.
    MaxPool2d {
        /// Square window side.
        kernel: usize,
        /// Stride, both axes.
        stride: usize,
    },
    /// `AvgPool2d(kernel, stride)`.
    AvgPool2d {
        /// Square window side.
        kernel: usize,
        /// Stride, both axes.
        stride: usize,
    },
    /// Flattens everything but the batch axis.
    Flatten,
    /// Dropout with probability `rate` (training only).
    Dropout {
        /// In `[0, 1)`.
        rate: f64,
    },
    /// `BatchNorm1d` on a flat input, `BatchNorm2d` on `[C, H, W]`; weight and bias `[features]`.
    BatchNorm {
        /// Features (flat) or channels (image).
        features: usize,
        /// Added to the variance.
        epsilon: f64,
        /// Running-statistics momentum (PyTorch's convention).
        momentum: f64,
    },
    /// `ReLU`.
    Relu,
    /// `LeakyReLU(negative_slope)`.
    LeakyRelu {
        /// Slope for negative inputs.
        negative_slope: f64,
    },
    /// `GELU` (exact, erf form).
    Gelu,
    /// `Sigmoid`.
    Sigmoid,
    /// `Tanh`.
    Tanh,
    /// `Softmax` over the feature axis (only on flat inputs).
    Softmax,
}

impl LayerKind {
    /// The number of trainable parameters (weights and biases; not BatchNorm's running stats).
    pub fn parameter_count(&self) -> u64 {
        let n = |v: usize| v as u64;
        match *self {
            LayerKind::Dense { inputs, units } => n(inputs) * n(units) + n(units),
            LayerKind::Conv2d {
                in_channels,
                filters,
                kernel,
                ..
            } => n(filters) * n(in_channels) * n(kernel) * n(kernel) + n(filters),
            LayerKind::BatchNorm { features, .. } => 2 * n(features),
            _ => 0,
        }
    }
}

/// One layer of the validated model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// The weight-name prefix: the Engine node id (`"3"`), or `"layers.2"` in the plain form
    /// (`"layers.2.activation"` for a layer's `activation` shorthand).
    pub id: String,
    /// Where it came from, for messages: `node 3`, `layers[2]`.
    pub origin: String,
    /// What it is, with its resolved parameters.
    pub kind: LayerKind,
    /// Its output shape for one sample (no batch axis).
    pub output_shape: Vec<usize>,
}

/// The training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy on logits against class indices (softmax included).
    CrossEntropy,
    /// Mean squared error against one-hot targets of width `classes`.
    Mse,
}

/// The optimizer algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD, with `momentum`.
    Sgd,
    /// Adam.
    Adam,
    /// AdamW (decoupled weight decay).
    AdamW,
    /// RMSprop.
    RmsProp,
}

/// The optimizer and its settings. Fields the algorithm does not use are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    /// The algorithm.
    pub kind: OptimizerKind,
    /// The job's learning rate if given, else the definition's, else 0.001.
    pub learning_rate: f64,
    /// SGD and RMSprop momentum.
    pub momentum: Option<f64>,
    /// Adam/AdamW first-moment decay.
    pub beta1: Option<f64>,
    /// Adam/AdamW second-moment decay (RMSprop's `alpha` is stored here too).
    pub beta2: Option<f64>,
    /// Adam/AdamW/RMSprop epsilon.
    pub epsilon: Option<f64>,
    /// L2 (SGD, Adam, RMSprop) or decoupled (AdamW) weight decay.
    pub weight_decay: Option<f64>,
}

/// A validated model definition: everything a backend needs to build and train the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// One sample's input shape (no batch axis).
    pub input_shape: Vec<usize>,
    /// The number of classes (the last layer's width).
    pub classes: usize,
    /// The layers in order, with their inferred output shapes.
    pub layers: Vec<Layer>,
    /// The loss.
    pub loss: Loss,
    /// True when a trailing Softmax was dropped because [`Loss::CrossEntropy`] includes it.
    pub softmax_folded: bool,
    /// The optimizer.
    pub optimizer: Optimizer,
}

impl ModelSpec {
    /// The total number of trainable parameters.
    pub fn parameter_count(&self) -> u64 {
        self.layers.iter().map(|l| l.kind.parameter_count()).sum()
    }

    /// The last layer's output shape (the input shape for a model with no layers).
    pub fn output_shape(&self) -> &[usize] {
        self.layers
            .last()
            .map_or(&self.input_shape, |l| &l.output_shape)
    }
}
