//! The kit's synthetic, seeded training problems and the model specs it trains on them:
//! Gaussian blobs in 8 dimensions (three classes) for the MLPs, and 8x8 one-channel images
//! of bars and squares for the conv net. Small enough to train in seconds on any backend,
//! separable enough that every optimizer must learn them.

use cyxwiz_sdk::training::{
    Layer, LayerKind, Loss, ModelSpec, Optimizer, OptimizerKind, SplitMix64,
};

/// Samples and labels of one split, row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Split {
    pub inputs: Vec<f32>,
    pub labels: Vec<i64>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
}

/// A dataset: one sample's shape, the class count, training and validation splits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dataset {
    pub sample: Vec<usize>,
    pub classes: usize,
    pub train: Split,
    pub validation: Split,
}

/// Samples per training split (a whole number of batches of [`BATCH`]).
pub(crate) const TRAIN: usize = 384;
/// Samples per validation split.
pub(crate) const VALIDATION: usize = 96;
/// Samples per batch.
pub(crate) const BATCH: usize = 32;

/// A standard normal value (Box–Muller).
fn normal(rng: &mut SplitMix64) -> f32 {
    let u = rng.unit().max(1e-12);
    let v = rng.unit();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn split(
    n: usize,
    rng: &mut SplitMix64,
    sample: impl Fn(usize, &mut SplitMix64) -> Vec<f32>,
) -> Split {
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let class = rng.below(3);
        inputs.extend(sample(class, rng));
        labels.push(class as i64);
    }
    Split { inputs, labels }
}

/// Three Gaussian blobs (unit variance) in 8 dimensions; class `k`'s centre is 2.5 on the
/// dimensions `d` with `d % 3 == k`.
pub(crate) fn blobs(seed: u64) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let sample = |class: usize, rng: &mut SplitMix64| {
        (0..8)
            .map(|d| if d % 3 == class { 2.5 } else { 0.0 } + normal(rng))
            .collect()
    };
    Dataset {
        sample: vec![8],
        classes: 3,
        train: split(TRAIN, &mut rng, sample),
        validation: split(VALIDATION, &mut rng, sample),
    }
}

/// 8x8 images with noise: a horizontal bar (class 0), a vertical bar (1) or a 3x3 square
/// (2) at a random place.
pub(crate) fn images(seed: u64) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let sample = |class: usize, rng: &mut SplitMix64| {
        let (a, b) = (1 + rng.below(5), 1 + rng.below(5));
        (0..64)
            .map(|i| {
                let (y, x) = (i / 8, i % 8);
                let on = match class {
                    0 => y == a,
                    1 => x == a,
                    _ => (a..a + 3).contains(&y) && (b..b + 3).contains(&x),
                };
                f32::from(u8::from(on)) + 0.2 * normal(rng)
            })
            .collect()
    };
    Dataset {
        sample: vec![1, 8, 8],
        classes: 3,
        train: split(TRAIN, &mut rng, sample),
        validation: split(VALIDATION, &mut rng, sample),
    }
}

fn layer(index: usize, kind: LayerKind, output_shape: Vec<usize>) -> Layer {
    Layer {
        id: index.to_string(),
        origin: format!("layers[{index}]"),
        kind,
        output_shape,
    }
}

/// An optimizer with the settings the host would resolve (PyTorch's defaults).
pub(crate) fn optimizer(kind: OptimizerKind, learning_rate: f64) -> Optimizer {
    let (momentum, beta1, beta2, epsilon, weight_decay) = match kind {
        OptimizerKind::Sgd => (Some(0.9), None, None, None, Some(1e-4)),
        OptimizerKind::Adam => (None, Some(0.9), Some(0.999), Some(1e-8), Some(0.0)),
        OptimizerKind::AdamW => (None, Some(0.9), Some(0.999), Some(1e-8), Some(0.01)),
        OptimizerKind::RmsProp => (Some(0.5), None, Some(0.99), Some(1e-8), Some(0.0)),
    };
    Optimizer {
        kind,
        learning_rate,
        momentum,
        beta1,
        beta2,
        epsilon,
        weight_decay,
    }
}

fn model(
    input_shape: Vec<usize>,
    layers: Vec<(LayerKind, Vec<usize>)>,
    loss: Loss,
    opt: Optimizer,
) -> ModelSpec {
    ModelSpec {
        input_shape,
        classes: 3,
        layers: layers
            .into_iter()
            .enumerate()
            .map(|(i, (kind, shape))| layer(i, kind, shape))
            .collect(),
        loss,
        softmax_folded: false,
        optimizer: opt,
    }
}

fn dense(inputs: usize, units: usize) -> (LayerKind, Vec<usize>) {
    (LayerKind::Dense { inputs, units }, vec![units])
}

fn same(kind: LayerKind, shape: &[usize]) -> (LayerKind, Vec<usize>) {
    (kind, shape.to_vec())
}

/// 8 → Dense(16) → ReLU → Dense(3), cross-entropy.
pub(crate) fn mlp(opt: Optimizer) -> ModelSpec {
    let layers = vec![dense(8, 16), same(LayerKind::Relu, &[16]), dense(16, 3)];
    model(vec![8], layers, Loss::CrossEntropy, opt)
}

/// 8 → Dense(16) → Tanh → Dense(3) → Softmax, MSE against one-hot targets.
pub(crate) fn mlp_mse(opt: Optimizer) -> ModelSpec {
    let layers = vec![
        dense(8, 16),
        same(LayerKind::Tanh, &[16]),
        dense(16, 3),
        same(LayerKind::Softmax, &[3]),
    ];
    model(vec![8], layers, Loss::Mse, opt)
}

/// Every flat layer kind: Dense → BatchNorm → LeakyReLU → Dropout → Dense → GELU → Dense →
/// Sigmoid → Dense, cross-entropy.
pub(crate) fn mlp_mixed(opt: Optimizer) -> ModelSpec {
    let layers = vec![
        dense(8, 16),
        same(
            LayerKind::BatchNorm {
                features: 16,
                epsilon: 1e-5,
                momentum: 0.1,
            },
            &[16],
        ),
        same(
            LayerKind::LeakyRelu {
                negative_slope: 0.01,
            },
            &[16],
        ),
        same(LayerKind::Dropout { rate: 0.25 }, &[16]),
        dense(16, 16),
        same(LayerKind::Gelu, &[16]),
        dense(16, 8),
        same(LayerKind::Sigmoid, &[8]),
        dense(8, 3),
    ];
    model(vec![8], layers, Loss::CrossEntropy, opt)
}

/// [1, 8, 8] → Conv(4, k3, p1) → BatchNorm → ReLU → MaxPool(2) → Conv(8, k3, s2, p1) →
/// AvgPool(2, stride 1) → Flatten → Dropout → Dense(3), cross-entropy.
pub(crate) fn cnn(opt: Optimizer) -> ModelSpec {
    let conv = |in_channels, filters, stride, padding| LayerKind::Conv2d {
        in_channels,
        filters,
        kernel: 3,
        stride,
        padding,
    };
    let layers = vec![
        (conv(1, 4, 1, 1), vec![4, 8, 8]),
        same(
            LayerKind::BatchNorm {
                features: 4,
                epsilon: 1e-5,
                momentum: 0.1,
            },
            &[4, 8, 8],
        ),
        same(LayerKind::Relu, &[4, 8, 8]),
        (
            LayerKind::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
            vec![4, 4, 4],
        ),
        (conv(4, 8, 2, 1), vec![8, 2, 2]),
        (
            LayerKind::AvgPool2d {
                kernel: 2,
                stride: 1,
            },
            vec![8, 1, 1],
        ),
        (LayerKind::Flatten, vec![8]),
        same(LayerKind::Dropout { rate: 0.1 }, &[8]),
        dense(8, 3),
    ];
    model(vec![1, 8, 8], layers, Loss::CrossEntropy, opt)
}
