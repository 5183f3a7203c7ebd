//! Shared pieces of the training tests: a small reader for the Debian Fashion-MNIST IDX files,
//! an in-memory `TrainingHost` (seeded shuffling, recorded reports, checkpoints and epoch
//! times), model specs written out with their shapes, and the plugin's trainer.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::{PluginLibrary, Trainer};
use cyxwiz_sdk::{
    training::{
        derive_seed, permutation, Batch, Checkpoint, DataSplit, Directive, Layer, LayerKind, Loss,
        ModelSpec, Optimizer, OptimizerKind, TrainingHost, TrainingJob, TrainingProgress,
    },
    Result,
};
use cyxwiz_testkit::cdylib_path;
use std::{io::Read, path::Path, sync::OnceLock, time::Instant};

/// Labelled samples, row-major.
#[derive(Clone)]
pub struct Data {
    pub sample: Vec<usize>,
    pub inputs: Vec<f32>,
    pub labels: Vec<i64>,
}

impl Data {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    fn sample_len(&self) -> usize {
        self.sample.iter().product()
    }
}

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn gunzip_prefix(path: &Path, len: usize) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (install the Debian package dataset-fashion-mnist: scripts/install-deps)",
            path.display()
        )
    });
    let mut out = vec![0u8; len];
    flate2::read::GzDecoder::new(file)
        .read_exact(&mut out)
        .unwrap();
    out
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// `count` samples of a Fashion-MNIST split (`train` or `t10k`) from `skip` on, as
/// `[1, 28, 28]` images scaled to [0, 1].
pub fn fashion_mnist(split: &str, skip: usize, count: usize) -> Data {
    let dir = Path::new(FASHION);
    let images = gunzip_prefix(
        &dir.join(format!("{split}-images-idx3-ubyte.gz")),
        16 + (skip + count) * 784,
    );
    assert_eq!(be32(&images[0..4]), 0x0803, "IDX image magic");
    assert!(be32(&images[4..8]) >= skip + count);
    assert_eq!((be32(&images[8..12]), be32(&images[12..16])), (28, 28));
    let labels = gunzip_prefix(
        &dir.join(format!("{split}-labels-idx1-ubyte.gz")),
        8 + skip + count,
    );
    assert_eq!(be32(&labels[0..4]), 0x0801, "IDX label magic");
    Data {
        sample: vec![1, 28, 28],
        inputs: images[16 + skip * 784..]
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect(),
        labels: labels[8 + skip..].iter().map(|&l| i64::from(l)).collect(),
    }
}

/// 4096 training and 1024 validation images, read once per test binary.
pub fn fashion() -> &'static (Data, Data) {
    static DATA: OnceLock<(Data, Data)> = OnceLock::new();
    DATA.get_or_init(|| {
        (
            fashion_mnist("train", 0, 4096),
            fashion_mnist("t10k", 0, 1024),
        )
    })
}

/// A host serving batches from memory: the training split shuffled per epoch with the job's
/// seed, validation in order; it records every report and checkpoint.
pub struct MemHost {
    pub train: Data,
    pub validation: Data,
    pub batch_size: usize,
    pub seed: u64,
    pub reports: Vec<TrainingProgress>,
    pub checkpoints: Vec<Checkpoint>,
    /// When each epoch-end report arrived.
    pub epoch_ends: Vec<Instant>,
    order: Option<(u32, Vec<usize>)>,
}

impl MemHost {
    pub fn new(train: Data, validation: Data, batch_size: usize, seed: u64) -> Self {
        Self {
            train,
            validation,
            batch_size,
            seed,
            reports: Vec::new(),
            checkpoints: Vec::new(),
            epoch_ends: Vec::new(),
            order: None,
        }
    }

    pub fn train_batches(&self) -> u64 {
        self.train.len().div_ceil(self.batch_size) as u64
    }

    pub fn validation_batches(&self) -> u64 {
        self.validation.len().div_ceil(self.batch_size) as u64
    }

    /// The per-step (not epoch-end) reports.
    pub fn steps(&self) -> Vec<&TrainingProgress> {
        self.reports.iter().filter(|r| !r.epoch_end).collect()
    }

    /// The epoch-end reports.
    pub fn epochs(&self) -> Vec<&TrainingProgress> {
        self.reports.iter().filter(|r| r.epoch_end).collect()
    }
}

impl TrainingHost for MemHost {
    fn batch(&mut self, split: DataSplit, epoch: u32, index: u64) -> Result<Batch> {
        let (data, order) = if split == DataSplit::TRAIN {
            if self.order.as_ref().map(|(e, _)| *e) != Some(epoch) {
                let seed = derive_seed(&[self.seed, u64::from(epoch)]);
                self.order = Some((epoch, permutation(self.train.len(), seed)));
            }
            (&self.train, self.order.as_ref().map(|(_, o)| o.as_slice()))
        } else {
            (&self.validation, None)
        };
        let start = index as usize * self.batch_size;
        let end = (start + self.batch_size).min(data.len());
        let width = data.sample_len();
        let mut batch = Batch {
            inputs: Vec::with_capacity((end - start) * width),
            shape: [vec![end - start], data.sample.clone()].concat(),
            labels: Vec::with_capacity(end - start),
        };
        for i in start..end {
            let row = order.map_or(i, |o| o[i]);
            batch
                .inputs
                .extend_from_slice(&data.inputs[row * width..(row + 1) * width]);
            batch.labels.push(data.labels[row]);
        }
        Ok(batch)
    }

    fn report(&mut self, progress: &TrainingProgress) -> Directive {
        self.reports.push(progress.clone());
        if progress.epoch_end {
            self.epoch_ends.push(Instant::now());
        }
        Directive::CONTINUE
    }

    fn checkpoint(&mut self, checkpoint: Checkpoint) -> Result<()> {
        self.checkpoints.push(checkpoint);
        Ok(())
    }

    fn wait_while_paused(&mut self) -> Directive {
        Directive::CONTINUE
    }
}

/// A spec of `layers` on `input`, ids `1`, `2`, … as the Engine's node ids, output shapes
/// inferred as PyTorch would.
pub fn spec(
    input: &[usize],
    classes: usize,
    layers: Vec<LayerKind>,
    loss: Loss,
    optimizer: Optimizer,
) -> ModelSpec {
    let mut shape = input.to_vec();
    let layers = layers
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let out = |n: usize, k: usize, s: usize, p: usize| (n + 2 * p - k) / s + 1;
            shape = match kind {
                LayerKind::Dense { units, .. } => vec![units],
                LayerKind::Conv2d {
                    filters,
                    kernel,
                    stride,
                    padding,
                    ..
                } => vec![
                    filters,
                    out(shape[1], kernel, stride, padding),
                    out(shape[2], kernel, stride, padding),
                ],
                LayerKind::MaxPool2d { kernel, stride }
                | LayerKind::AvgPool2d { kernel, stride } => {
                    vec![
                        shape[0],
                        out(shape[1], kernel, stride, 0),
                        out(shape[2], kernel, stride, 0),
                    ]
                }
                LayerKind::Flatten => vec![shape.iter().product()],
                _ => shape.clone(),
            };
            Layer {
                id: (i + 1).to_string(),
                origin: format!("node {}", i + 1),
                kind,
                output_shape: shape.clone(),
            }
        })
        .collect();
    ModelSpec {
        input_shape: input.to_vec(),
        classes,
        layers,
        loss,
        softmax_folded: false,
        optimizer,
    }
}

/// An optimizer with PyTorch's defaults for `kind`.
pub fn optimizer(kind: OptimizerKind, learning_rate: f64) -> Optimizer {
    let adam = matches!(kind, OptimizerKind::Adam | OptimizerKind::AdamW);
    Optimizer {
        kind,
        learning_rate,
        momentum: (!adam).then_some(0.0),
        beta1: adam.then_some(0.9),
        beta2: match kind {
            OptimizerKind::RmsProp => Some(0.99),
            _ if adam => Some(0.999),
            _ => None,
        },
        epsilon: (kind != OptimizerKind::Sgd).then_some(1e-8),
        weight_decay: Some(if kind == OptimizerKind::AdamW {
            0.01
        } else {
            0.0
        }),
    }
}

/// Flatten → Dense(128) → ReLU → Dropout(0.2) → Dense(10) on 28×28 images.
pub fn mlp(optimizer: Optimizer) -> ModelSpec {
    spec(
        &[1, 28, 28],
        10,
        vec![
            LayerKind::Flatten,
            LayerKind::Dense {
                inputs: 784,
                units: 128,
            },
            LayerKind::Relu,
            LayerKind::Dropout { rate: 0.2 },
            LayerKind::Dense {
                inputs: 128,
                units: 10,
            },
        ],
        Loss::CrossEntropy,
        optimizer,
    )
}

/// Conv(8, 3×3, pad 1) → BatchNorm → ReLU → MaxPool(2) → Conv(16, 3×3) → ReLU →
/// AvgPool(2) → Flatten → Dense(10) on 28×28 images.
pub fn cnn(optimizer: Optimizer) -> ModelSpec {
    spec(
        &[1, 28, 28],
        10,
        vec![
            LayerKind::Conv2d {
                in_channels: 1,
                filters: 8,
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            LayerKind::BatchNorm {
                features: 8,
                epsilon: 1e-5,
                momentum: 0.1,
            },
            LayerKind::Relu,
            LayerKind::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
            LayerKind::Conv2d {
                in_channels: 8,
                filters: 16,
                kernel: 3,
                stride: 1,
                padding: 0,
            },
            LayerKind::Relu,
            LayerKind::AvgPool2d {
                kernel: 2,
                stride: 2,
            },
            LayerKind::Flatten,
            LayerKind::Dense {
                inputs: 16 * 6 * 6,
                units: 10,
            },
        ],
        Loss::CrossEntropy,
        optimizer,
    )
}

/// A job for `model` on `host`'s data.
pub fn job(model: ModelSpec, host: &MemHost, epochs: u32, seed: u64) -> TrainingJob {
    TrainingJob {
        job_id: "test".into(),
        model,
        epochs,
        batch_size: host.batch_size as u32,
        train_batches: host.train_batches(),
        validation_batches: host.validation_batches(),
        seed,
        device: "cpu".into(),
        threads: 0,
        work_dir: std::env::temp_dir(),
        resume: Vec::new(),
    }
}

/// The plugin library (opened once; plugin libraries are never unloaded).
pub fn library() -> &'static PluginLibrary {
    static LIB: OnceLock<PluginLibrary> = OnceLock::new();
    LIB.get_or_init(|| PluginLibrary::open(&cdylib_path("cyxwiz_plugin_torch_tch")).unwrap())
}

/// The plugin's training backend, through the plugin ABI.
pub fn trainer() -> Trainer {
    library().training_backend().unwrap()
}
