//! Real data through the plugin ABI: an MLP (Flatten → Dense 128 → ReLU → Dropout 0.2 →
//! Dense 10, Adam) trained for one epoch on the first 12,800 Fashion-MNIST training images
//! (Debian's `dataset-fashion-mnist`), validated on 2,000 test images; then the weights it
//! left are served through the plugin's loader and classify those images as training's
//! evaluation did.
#![allow(clippy::unwrap_used)]

use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::training::{
    derive_seed, permutation, Batch, Checkpoint, CheckpointReason, DataSplit, Directive, Layer,
    LayerKind, Loss, ModelSpec, Optimizer, OptimizerKind, TensorFile, TrainingHost, TrainingJob,
    TrainingProgress,
};
use cyxwiz_sdk::{LoadOptions, Tensor};
use cyxwiz_testkit::cdylib_path;
use std::io::Read;

const DIR: &str = "/usr/share/datasets/fashion-mnist";
const PIXELS: usize = 784;
const BATCH: usize = 64;

/// The first `count` images (pixels / 255) and labels of an IDX pair.
fn idx(prefix: &str, count: usize) -> (Vec<f32>, Vec<i64>) {
    let read = |name: String, len: usize| {
        let file = std::fs::File::open(format!("{DIR}/{name}"))
            .unwrap_or_else(|e| panic!("{DIR}/{name}: {e} (install dataset-fashion-mnist)"));
        let mut bytes = vec![0u8; len];
        flate2::read::GzDecoder::new(file)
            .read_exact(&mut bytes)
            .unwrap();
        bytes
    };
    let images = read(
        format!("{prefix}-images-idx3-ubyte.gz"),
        16 + count * PIXELS,
    );
    let labels = read(format!("{prefix}-labels-idx1-ubyte.gz"), 8 + count);
    assert_eq!(&images[..4], &[0, 0, 8, 3]);
    (
        images[16..].iter().map(|&p| f32::from(p) / 255.0).collect(),
        labels[8..].iter().map(|&l| i64::from(l)).collect(),
    )
}

struct Host {
    train: (Vec<f32>, Vec<i64>),
    validation: (Vec<f32>, Vec<i64>),
    last: Option<Checkpoint>,
    end: Option<TrainingProgress>,
}

impl TrainingHost for Host {
    fn batch(&mut self, split: DataSplit, epoch: u32, index: u64) -> cyxwiz_sdk::Result<Batch> {
        let (set, order) = if split == DataSplit::TRAIN {
            let n = self.train.1.len();
            (
                &self.train,
                permutation(n, derive_seed(&[3, u64::from(epoch)])),
            )
        } else {
            (&self.validation, (0..self.validation.1.len()).collect())
        };
        let rows = &order[index as usize * BATCH..((index as usize + 1) * BATCH).min(order.len())];
        let mut inputs = Vec::with_capacity(rows.len() * PIXELS);
        for &i in rows {
            inputs.extend_from_slice(&set.0[i * PIXELS..(i + 1) * PIXELS]);
        }
        Ok(Batch {
            inputs,
            shape: vec![rows.len(), 1, 28, 28],
            labels: rows.iter().map(|&i| set.1[i]).collect(),
        })
    }

    fn report(&mut self, progress: &TrainingProgress) -> Directive {
        if progress.epoch_end {
            self.end = Some(progress.clone());
        }
        Directive::CONTINUE
    }

    fn checkpoint(&mut self, checkpoint: Checkpoint) -> cyxwiz_sdk::Result<()> {
        self.last = Some(checkpoint);
        Ok(())
    }

    fn wait_while_paused(&mut self) -> Directive {
        Directive::CONTINUE
    }
}

fn layer(id: usize, kind: LayerKind, output_shape: Vec<usize>) -> Layer {
    Layer {
        id: id.to_string(),
        origin: format!("node {id}"),
        kind,
        output_shape,
    }
}

fn mlp() -> ModelSpec {
    ModelSpec {
        input_shape: vec![1, 28, 28],
        classes: 10,
        layers: vec![
            layer(0, LayerKind::Flatten, vec![784]),
            layer(
                1,
                LayerKind::Dense {
                    inputs: 784,
                    units: 128,
                },
                vec![128],
            ),
            layer(2, LayerKind::Relu, vec![128]),
            layer(3, LayerKind::Dropout { rate: 0.2 }, vec![128]),
            layer(
                4,
                LayerKind::Dense {
                    inputs: 128,
                    units: 10,
                },
                vec![10],
            ),
        ],
        loss: Loss::CrossEntropy,
        softmax_folded: true,
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

#[test]
fn an_mlp_learns_fashion_mnist_and_serves_what_it_learned() {
    let lib = PluginLibrary::open(&cdylib_path("cyxwiz_plugin_train_candle")).unwrap();
    let mut host = Host {
        train: idx("train", 12_800),
        validation: idx("t10k", 2_000),
        last: None,
        end: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let job = TrainingJob {
        job_id: "fashion".into(),
        model: mlp(),
        epochs: 1,
        batch_size: BATCH as u32,
        train_batches: 12_800 / BATCH as u64,
        validation_batches: (2_000 / BATCH as u64) + 1,
        seed: 42,
        device: "cpu".into(),
        threads: 2,
        work_dir: dir.path().to_path_buf(),
        resume: Vec::new(),
    };
    let out = lib
        .training_backend()
        .unwrap()
        .train(&job, &mut host)
        .unwrap();
    assert_eq!(out.epochs_done, 1);
    let end = host.end.clone().unwrap();
    let accuracy = end.metric("val_accuracy").unwrap();
    println!("Fashion-MNIST, 1 epoch on 12,800 images: {:?}", end.metrics);
    assert!(accuracy >= 0.78, "validation accuracy {accuracy}");

    let last = host.last.take().unwrap();
    assert_eq!(last.reason, CheckpointReason::FINAL);
    let weights = TensorFile::decode(&last.data).unwrap().weights_only();
    let path = dir.path().join("weights.safetensors");
    std::fs::write(&path, weights.encode()).unwrap();
    let model = lib.load(&path, &LoadOptions::default()).unwrap();
    let (images, labels) = &host.validation;
    let x = Tensor::from_f32("input", vec![2_000, 1, 28, 28], images);
    let out = model.infer(&[x.view()]).unwrap();
    let probabilities = out.iter().find(|t| t.name == "probabilities").unwrap();
    assert_eq!(probabilities.shape, vec![2_000, 10]);
    let p = probabilities.to_f32_vec().unwrap();
    let correct = p
        .chunks(10)
        .zip(labels)
        .filter(|(row, &label)| {
            let best = (0..10).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            best as i64 == label
        })
        .count();
    assert_eq!(correct as f64 / 2_000.0, accuracy);
}
