//! Deterministic randomness every backend shares: the initial weights of a spec and the
//! dropout masks of each step, both functions of the job's seed alone. Two backends given the
//! same job therefore start from the same weights and drop the same units, and a resumed job
//! draws the masks an uninterrupted one would have.

use super::spec::{LayerKind, ModelSpec};
use super::tensors::NamedTensor;

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast and well mixed; written out so a
/// seed gives the same numbers on every platform and build.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`), by Lemire's multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform value in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One seed from several numbers (each mixed in turn).
pub fn derive_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3, |acc, &p| {
        SplitMix64::new(acc ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
    })
}

/// The spec's initial parameters, named `<layer id>.weight` / `.bias` (and BatchNorm's
/// `.running_mean` / `.running_var`) in PyTorch layout. Dense and Conv2D follow PyTorch's
/// default (uniform in `±1/sqrt(fan_in)` for weight and bias); BatchNorm starts at weight 1,
/// bias 0, mean 0, variance 1.
pub fn initial_parameters(spec: &ModelSpec, seed: u64) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    for (index, layer) in spec.layers.iter().enumerate() {
        let uniform = |which: u64, shape: Vec<usize>, fan_in: usize| {
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            let mut rng = SplitMix64::new(derive_seed(&[seed, 1, index as u64, which]));
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
                .collect();
            (shape, data)
        };
        let name = |suffix: &str| format!("{}.{suffix}", layer.id);
        match layer.kind {
            LayerKind::Dense { inputs, units } => {
                let (shape, data) = uniform(0, vec![units, inputs], inputs);
                out.push(NamedTensor::new(name("weight"), shape, data));
                let (shape, data) = uniform(1, vec![units], inputs);
                out.push(NamedTensor::new(name("bias"), shape, data));
            }
            LayerKind::Conv2d {
                in_channels,
                filters,
                kernel,
                ..
            } => {
                let fan_in = in_channels * kernel * kernel;
                let (shape, data) = uniform(0, vec![filters, in_channels, kernel, kernel], fan_in);
                out.push(NamedTensor::new(name("weight"), shape, data));
                let (shape, data) = uniform(1, vec![filters], fan_in);
                out.push(NamedTensor::new(name("bias"), shape, data));
            }
            LayerKind::BatchNorm { features, .. } => {
                out.push(NamedTensor::new(
                    name("weight"),
                    vec![features],
                    vec![1.0; features],
                ));
                out.push(NamedTensor::new(
                    name("bias"),
                    vec![features],
                    vec![0.0; features],
                ));
                out.push(NamedTensor::new(
                    name("running_mean"),
                    vec![features],
                    vec![0.0; features],
                ));
                out.push(NamedTensor::new(
                    name("running_var"),
                    vec![features],
                    vec![1.0; features],
                ));
            }
            _ => {}
        }
    }
    out
}

/// The dropout mask of layer `layer` (its index in the spec) at one training step: `len`
/// values, each 0 with probability `rate` and `1 / (1 - rate)` otherwise (inverted dropout,
/// as PyTorch). `step` is the job's 1-based global training step.
pub fn dropout_mask(seed: u64, step: u64, layer: usize, len: usize, rate: f64) -> Vec<f32> {
    let keep = (1.0 / (1.0 - rate)) as f32;
    let mut rng = SplitMix64::new(derive_seed(&[seed, 2, step, layer as u64]));
    (0..len)
        .map(|_| if rng.unit() < rate { 0.0 } else { keep })
        .collect()
}

/// `0..n` in an order fixed by `seed` (Fisher–Yates with [`SplitMix64`]).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::spec::{Layer, Loss, Optimizer, OptimizerKind};

    fn spec() -> ModelSpec {
        ModelSpec {
            input_shape: vec![4],
            classes: 3,
            layers: vec![Layer {
                id: "fc".into(),
                origin: "layers[0]".into(),
                kind: LayerKind::Dense {
                    inputs: 4,
                    units: 3,
                },
                output_shape: vec![3],
            }],
            loss: Loss::CrossEntropy,
            softmax_folded: false,
            optimizer: Optimizer {
                kind: OptimizerKind::Sgd,
                learning_rate: 0.1,
                momentum: Some(0.0),
                beta1: None,
                beta2: None,
                epsilon: None,
                weight_decay: Some(0.0),
            },
        }
    }

    #[test]
    fn initial_parameters_are_seeded_and_bounded() {
        let a = initial_parameters(&spec(), 7);
        assert_eq!(a, initial_parameters(&spec(), 7));
        assert_ne!(a, initial_parameters(&spec(), 8));
        assert_eq!(a[0].shape, vec![3, 4]);
        assert!(a[0].data.iter().all(|v| v.abs() <= 0.5));
        assert_eq!(a[1].name, "fc.bias");
    }

    #[test]
    fn dropout_masks_are_seeded_and_scaled() {
        let m = dropout_mask(1, 5, 2, 10_000, 0.2);
        assert_eq!(m, dropout_mask(1, 5, 2, 10_000, 0.2));
        assert_ne!(m, dropout_mask(1, 6, 2, 10_000, 0.2));
        let dropped = m.iter().filter(|v| **v == 0.0).count();
        assert!((1700..2300).contains(&dropped), "{dropped}");
        assert!(m.iter().all(|v| *v == 0.0 || (*v - 1.25).abs() < 1e-6));
    }

    #[test]
    fn permutation_is_a_seeded_permutation() {
        let p = permutation(100, 3);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(p, permutation(100, 3));
    }
}
