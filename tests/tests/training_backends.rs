//! The two training backends agree: torch-tch (libtorch autograd) and train-candle (pure
//! Rust) run the same jobs (same seed, so the same initial weights and dropout masks; the same
//! batches from one deterministic in-memory host) for one epoch, through the plugin ABI, and
//! their losses match: the first step's within 1e-5, the epoch's mean and the validation loss
//! within 1e-4. Jobs: an MLP with Dropout and a small CNN with BatchNorm, each with Adam and
//! with SGD (momentum), and a net of every other flat layer with AdamW + MSE and RMSprop.
//! The data is a seeded synthetic 10-class image problem (class prototypes plus noise).

mod common;

use common::plugin_lib;
use cyxwiz_plugin_host::{PluginLibrary, Trainer};
use cyxwiz_sdk::{
    training::{
        derive_seed, permutation, Batch, Checkpoint, DataSplit, Directive, Layer, LayerKind, Loss,
        ModelSpec, Optimizer, OptimizerKind, SplitMix64, TensorFile, TrainingHost, TrainingJob,
        TrainingProgress,
    },
    Result,
};

const SIDE: usize = 12;
const CLASSES: usize = 10;
const BATCH: usize = 64;

/// Samples of `[1, SIDE, SIDE]` images: a random prototype per class, plus noise.
struct Data {
    inputs: Vec<f32>,
    labels: Vec<i64>,
}

fn synthetic(count: usize, seed: u64) -> Data {
    let pixels = SIDE * SIDE;
    let mut rng = SplitMix64::new(derive_seed(&[0xC1A55, 0]));
    let prototypes: Vec<f32> = (0..CLASSES * pixels).map(|_| rng.unit() as f32).collect();
    let mut rng = SplitMix64::new(seed);
    let mut data = Data {
        inputs: Vec::with_capacity(count * pixels),
        labels: Vec::with_capacity(count),
    };
    for _ in 0..count {
        let class = rng.below(CLASSES);
        let proto = &prototypes[class * pixels..(class + 1) * pixels];
        data.inputs
            .extend(proto.iter().map(|p| 0.6 * p + 0.4 * rng.unit() as f32));
        data.labels.push(class as i64);
    }
    data
}

/// Serves the same batches to every backend: training data shuffled per epoch with the
/// job's seed, validation in order. Records the reports.
struct Host<'d> {
    train: &'d Data,
    validation: &'d Data,
    seed: u64,
    /// The training order of the epoch it was drawn for.
    order: Option<(u32, Vec<usize>)>,
    reports: Vec<TrainingProgress>,
    checkpoints: Vec<Checkpoint>,
}

impl<'d> Host<'d> {
    fn new(train: &'d Data, validation: &'d Data, seed: u64) -> Self {
        Self {
            train,
            validation,
            seed,
            order: None,
            reports: Vec::new(),
            checkpoints: Vec::new(),
        }
    }
}

impl TrainingHost for Host<'_> {
    fn batch(&mut self, split: DataSplit, epoch: u32, index: u64) -> Result<Batch> {
        let data = if split == DataSplit::TRAIN {
            if self.order.as_ref().map(|(e, _)| *e) != Some(epoch) {
                let seed = derive_seed(&[self.seed, u64::from(epoch)]);
                self.order = Some((epoch, permutation(self.train.labels.len(), seed)));
            }
            self.train
        } else {
            self.validation
        };
        let order = self.order.as_ref().map(|(_, o)| o);
        let n = data.labels.len();
        let start = index as usize * BATCH;
        let rows: Vec<usize> = (start..(start + BATCH).min(n))
            .map(|i| match order {
                Some(o) if split == DataSplit::TRAIN => o[i],
                _ => i,
            })
            .collect();
        let pixels = SIDE * SIDE;
        Ok(Batch {
            inputs: rows
                .iter()
                .flat_map(|&r| data.inputs[r * pixels..(r + 1) * pixels].iter().copied())
                .collect(),
            shape: vec![rows.len(), 1, SIDE, SIDE],
            labels: rows.iter().map(|&r| data.labels[r]).collect(),
        })
    }

    fn report(&mut self, progress: &TrainingProgress) -> Directive {
        self.reports.push(progress.clone());
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

/// `layers` on `[1, SIDE, SIDE]` with PyTorch's output shapes, ids `1`, `2`, …
fn spec(layers: Vec<LayerKind>, loss: Loss, optimizer: Optimizer) -> ModelSpec {
    let mut shape = vec![1, SIDE, SIDE];
    let out = |n: usize, k: usize, s: usize, p: usize| (n + 2 * p - k) / s + 1;
    let layers = layers
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
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
                | LayerKind::AvgPool2d { kernel, stride } => vec![
                    shape[0],
                    out(shape[1], kernel, stride, 0),
                    out(shape[2], kernel, stride, 0),
                ],
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
        input_shape: vec![1, SIDE, SIDE],
        classes: CLASSES,
        layers,
        loss,
        softmax_folded: false,
        optimizer,
    }
}

fn optimizer(kind: OptimizerKind, learning_rate: f64, momentum: f64) -> Optimizer {
    let adam = matches!(kind, OptimizerKind::Adam | OptimizerKind::AdamW);
    Optimizer {
        kind,
        learning_rate,
        momentum: (!adam).then_some(momentum),
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

fn mlp(optimizer: Optimizer) -> ModelSpec {
    let features = SIDE * SIDE;
    spec(
        vec![
            LayerKind::Flatten,
            LayerKind::Dense {
                inputs: features,
                units: 64,
            },
            LayerKind::Relu,
            LayerKind::Dropout { rate: 0.25 },
            LayerKind::Dense {
                inputs: 64,
                units: CLASSES,
            },
        ],
        Loss::CrossEntropy,
        optimizer,
    )
}

fn cnn(optimizer: Optimizer) -> ModelSpec {
    spec(
        vec![
            LayerKind::Conv2d {
                in_channels: 1,
                filters: 6,
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            LayerKind::BatchNorm {
                features: 6,
                epsilon: 1e-5,
                momentum: 0.1,
            },
            LayerKind::Relu,
            LayerKind::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
            LayerKind::Conv2d {
                in_channels: 6,
                filters: 8,
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
                inputs: 8 * 2 * 2,
                units: CLASSES,
            },
        ],
        Loss::CrossEntropy,
        optimizer,
    )
}

/// Every flat layer the MLP and CNN leave out, Softmax before MSE.
fn zoo(optimizer: Optimizer, loss: Loss) -> ModelSpec {
    let mut layers = vec![
        LayerKind::Flatten,
        LayerKind::Dense {
            inputs: SIDE * SIDE,
            units: 32,
        },
        LayerKind::BatchNorm {
            features: 32,
            epsilon: 1e-5,
            momentum: 0.1,
        },
        LayerKind::Gelu,
        LayerKind::Dropout { rate: 0.1 },
        LayerKind::Dense {
            inputs: 32,
            units: 24,
        },
        LayerKind::LeakyRelu {
            negative_slope: 0.05,
        },
        LayerKind::Dense {
            inputs: 24,
            units: 24,
        },
        LayerKind::Tanh,
        LayerKind::Dense {
            inputs: 24,
            units: 16,
        },
        LayerKind::Sigmoid,
        LayerKind::Dense {
            inputs: 16,
            units: CLASSES,
        },
    ];
    if loss == Loss::Mse {
        layers.push(LayerKind::Softmax);
    }
    spec(layers, loss, optimizer)
}

/// What one backend's epoch came to.
struct Run {
    first_step_loss: f64,
    epoch_loss: f64,
    val_loss: f64,
    weights: TensorFile,
}

fn run(trainer: &Trainer, model: &ModelSpec, train: &Data, validation: &Data) -> Run {
    let seed = 42;
    let mut host = Host::new(train, validation, seed);
    let job = TrainingJob {
        job_id: "agreement".into(),
        model: model.clone(),
        epochs: 1,
        batch_size: BATCH as u32,
        train_batches: train.labels.len().div_ceil(BATCH) as u64,
        validation_batches: validation.labels.len().div_ceil(BATCH) as u64,
        seed,
        device: "cpu".into(),
        threads: 1,
        work_dir: std::env::temp_dir(),
        resume: Vec::new(),
    };
    let outcome = trainer.train(&job, &mut host).unwrap();
    assert_eq!(outcome.epochs_done, 1);
    let first = host.reports.iter().find(|r| !r.epoch_end).unwrap();
    assert_eq!(first.step, 1);
    let end = host.reports.iter().find(|r| r.epoch_end).unwrap();
    let weights = TensorFile::decode(&host.checkpoints.last().unwrap().data)
        .unwrap()
        .weights_only();
    Run {
        first_step_loss: first.metric("loss").unwrap(),
        epoch_loss: end.metric("loss").unwrap(),
        val_loss: end.metric("val_loss").unwrap(),
        weights,
    }
}

/// Tensors the two backends may drift apart on: the bias of a layer right before a
/// BatchNorm, and that BatchNorm's running mean (which tracks it). In training mode BatchNorm
/// subtracts the batch mean, so that bias's gradient is zero up to float noise; Adam and
/// RMSprop divide by its running magnitude and take full-size steps in the noise's direction,
/// which differs between any two implementations (PyTorch's own included). The loss does not
/// depend on the bias; the validation loss does only slightly, through the running mean.
fn noise_driven(model: &ModelSpec) -> Vec<String> {
    model
        .layers
        .windows(2)
        .filter(|w| matches!(w[1].kind, LayerKind::BatchNorm { .. }))
        .flat_map(|w| {
            [
                format!("{}.bias", w[0].id),
                format!("{}.running_mean", w[1].id),
            ]
        })
        .collect()
}

/// The largest absolute difference between the two runs' final weights, and where, leaving
/// out the tensors named in `skip`.
fn weight_gap(a: &TensorFile, b: &TensorFile, skip: &[String]) -> (f32, String) {
    assert_eq!(a.tensors.len(), b.tensors.len());
    let mut worst = (0.0, String::new());
    for t in a.tensors.iter().filter(|t| !skip.contains(&t.name)) {
        let u = b.expect(&t.name, &t.shape).unwrap();
        for (x, y) in t.data.iter().zip(&u.data) {
            if (x - y).abs() > worst.0 {
                worst = ((x - y).abs(), t.name.clone());
            }
        }
    }
    worst
}

fn trainers() -> (Trainer, Trainer) {
    let open = |name: &str| {
        PluginLibrary::open(&plugin_lib(name))
            .unwrap()
            .training_backend()
            .unwrap()
    };
    (
        open("cyxwiz_plugin_torch_tch"),
        open("cyxwiz_plugin_train_candle"),
    )
}

#[test]
fn torch_tch_and_train_candle_agree_on_the_first_epoch() {
    let (torch, candle) = trainers();
    let train = synthetic(1024, 1);
    let validation = synthetic(256, 2);
    let cases = [
        (
            "MLP+Dropout Adam",
            mlp(optimizer(OptimizerKind::Adam, 1e-3, 0.0)),
        ),
        (
            "MLP+Dropout SGD",
            mlp(optimizer(OptimizerKind::Sgd, 0.05, 0.9)),
        ),
        (
            "CNN+BatchNorm Adam",
            cnn(optimizer(OptimizerKind::Adam, 2e-3, 0.0)),
        ),
        (
            "CNN+BatchNorm SGD",
            cnn(optimizer(OptimizerKind::Sgd, 0.05, 0.9)),
        ),
        (
            "every flat layer AdamW MSE",
            zoo(optimizer(OptimizerKind::AdamW, 2e-3, 0.0), Loss::Mse),
        ),
        (
            "every flat layer RMSprop",
            zoo(
                optimizer(OptimizerKind::RmsProp, 1e-3, 0.5),
                Loss::CrossEntropy,
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (name, model) in cases {
        let a = run(&torch, &model, &train, &validation);
        let b = run(&candle, &model, &train, &validation);
        let skip = noise_driven(&model);
        let (gap, at) = weight_gap(&a.weights, &b.weights, &skip);
        let (all, all_at) = weight_gap(&a.weights, &b.weights, &[]);
        println!(
            "{name}: first step {:.7} vs {:.7}, epoch {:.7} vs {:.7}, validation {:.7} vs {:.7}, \
             largest weight gap {gap:.1e} ({at}), {all:.1e} ({all_at}) with noise-driven biases",
            a.first_step_loss,
            b.first_step_loss,
            a.epoch_loss,
            b.epoch_loss,
            a.val_loss,
            b.val_loss
        );
        // The job must have learnt something for the comparison to mean much.
        assert!(
            a.epoch_loss < a.first_step_loss,
            "{name}: torch-tch did not learn"
        );
        let mut check = |what: &str, x: f64, y: f64, tolerance: f64| {
            if (x - y).abs() > tolerance {
                failures.push(format!("{name}: {what} {x} vs {y}, beyond {tolerance:e}"));
            }
        };
        check(
            "first-step loss",
            a.first_step_loss,
            b.first_step_loss,
            1e-5,
        );
        check("epoch mean loss", a.epoch_loss, b.epoch_loss, 1e-4);
        // Running means that follow a noise-driven bias move the validation loss a little.
        check("validation loss", a.val_loss, b.val_loss, 1e-3);
        check("final weights", f64::from(gap), 0.0, 1e-4);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
