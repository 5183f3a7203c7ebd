//! Training throughput of train-candle alone: samples/s on Fashion-MNIST (the first 6,400
//! training images, batch 64, pixels / 255) for the MLP 784-128-10 and a small CNN, with 1
//! and 2 threads (`TrainingJob.threads`), Adam 1e-3, through the plugin's trainer and the
//! SDK's loop (progress reports and the closing checkpoint included). The cross-backend
//! table against torch-tch and PyTorch is `tests/benches/training.rs`.
//!
//! `cargo bench -p cyxwiz-plugin-train-candle --bench throughput --profile release`

use cyxwiz_plugin_train_candle::TrainCandle;
use cyxwiz_sdk::training::{
    Batch, Checkpoint, DataSplit, Directive, Layer, LayerKind, Loss, ModelSpec, Optimizer,
    OptimizerKind, TrainingHost, TrainingJob, TrainingProgress,
};
use cyxwiz_sdk::Plugin;
use std::{io::Read, time::Instant};

const BATCH: usize = 64;
const IMAGES: usize = 6_400;

fn fashion() -> (Vec<f32>, Vec<i64>) {
    let read = |name: &str, len: usize| -> Vec<u8> {
        let path = format!("/usr/share/datasets/fashion-mnist/{name}");
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut bytes = vec![0u8; len];
        flate2::read::GzDecoder::new(file)
            .read_exact(&mut bytes)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        bytes
    };
    let images = read("train-images-idx3-ubyte.gz", 16 + IMAGES * 784);
    let labels = read("train-labels-idx1-ubyte.gz", 8 + IMAGES);
    (
        images[16..].iter().map(|&p| f32::from(p) / 255.0).collect(),
        labels[8..].iter().map(|&l| i64::from(l)).collect(),
    )
}

struct Host<'d>(&'d (Vec<f32>, Vec<i64>));

impl TrainingHost for Host<'_> {
    fn batch(&mut self, _: DataSplit, _: u32, index: u64) -> cyxwiz_sdk::Result<Batch> {
        let start = index as usize * BATCH;
        Ok(Batch {
            inputs: self.0 .0[start * 784..(start + BATCH) * 784].to_vec(),
            shape: vec![BATCH, 1, 28, 28],
            labels: self.0 .1[start..start + BATCH].to_vec(),
        })
    }
    fn report(&mut self, _: &TrainingProgress) -> Directive {
        Directive::CONTINUE
    }
    fn checkpoint(&mut self, _: Checkpoint) -> cyxwiz_sdk::Result<()> {
        Ok(())
    }
    fn wait_while_paused(&mut self) -> Directive {
        Directive::CONTINUE
    }
}

fn spec(layers: Vec<(LayerKind, Vec<usize>)>) -> ModelSpec {
    ModelSpec {
        input_shape: vec![1, 28, 28],
        classes: 10,
        layers: layers
            .into_iter()
            .enumerate()
            .map(|(i, (kind, output_shape))| Layer {
                id: i.to_string(),
                origin: format!("layers[{i}]"),
                kind,
                output_shape,
            })
            .collect(),
        loss: Loss::CrossEntropy,
        softmax_folded: false,
        optimizer: Optimizer {
            kind: OptimizerKind::Adam,
            learning_rate: 1e-3,
            momentum: None,
            beta1: Some(0.9),
            beta2: Some(0.999),
            epsilon: Some(1e-8),
            weight_decay: Some(0.0),
        },
    }
}

fn mlp() -> ModelSpec {
    spec(vec![
        (LayerKind::Flatten, vec![784]),
        (
            LayerKind::Dense {
                inputs: 784,
                units: 128,
            },
            vec![128],
        ),
        (LayerKind::Relu, vec![128]),
        (
            LayerKind::Dense {
                inputs: 128,
                units: 10,
            },
            vec![10],
        ),
    ])
}

fn cnn() -> ModelSpec {
    let conv = |i, f| LayerKind::Conv2d {
        in_channels: i,
        filters: f,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let pool = LayerKind::MaxPool2d {
        kernel: 2,
        stride: 2,
    };
    spec(vec![
        (conv(1, 8), vec![8, 28, 28]),
        (LayerKind::Relu, vec![8, 28, 28]),
        (pool.clone(), vec![8, 14, 14]),
        (conv(8, 16), vec![16, 14, 14]),
        (LayerKind::Relu, vec![16, 14, 14]),
        (pool, vec![16, 7, 7]),
        (LayerKind::Flatten, vec![784]),
        (
            LayerKind::Dense {
                inputs: 784,
                units: 10,
            },
            vec![10],
        ),
    ])
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let data = fashion();
    let trainer = TrainCandle.training_backend().expect("training backend");
    println!("| model | threads | samples/s | CPU s per wall s |");
    println!("|---|---|---|---|");
    for (name, model, batches) in [
        ("MLP 784-128-10", mlp(), IMAGES / BATCH),
        ("CNN 8-16", cnn(), 30),
    ] {
        for threads in [1u32, 2] {
            let job = TrainingJob {
                job_id: "bench".into(),
                model: model.clone(),
                epochs: 1,
                batch_size: BATCH as u32,
                train_batches: batches as u64,
                validation_batches: 0,
                seed: 1,
                device: "cpu".into(),
                threads,
                work_dir: std::env::temp_dir(),
                resume: Vec::new(),
            };
            let (cpu, started) = (cpu_seconds(), Instant::now());
            trainer.train(&job, &mut Host(&data)).expect("training");
            let wall = started.elapsed().as_secs_f64();
            let rate = (batches * BATCH) as f64 / wall;
            let busy = (cpu_seconds() - cpu) / wall;
            println!("| {name} | {threads} | {rate:.0} | {busy:.2} |");
        }
    }
}
