//! torch-tch's training backend through the plugin ABI on real data (the first 4096
//! Fashion-MNIST training images, 1024 test images for validation): an MLP and a small CNN
//! learn; every layer kind and optimizer trains; STOP is honoured with a checkpoint; a job
//! resumed from an epoch-end or a mid-epoch checkpoint gives the next step's loss of the
//! uninterrupted run; bad jobs are clean errors.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cnn, fashion, job, mlp, optimizer, spec, trainer, Data, MemHost};
use cyxwiz_sdk::Trainer as _;
use cyxwiz_sdk::{
    training::{
        CheckpointReason, LayerKind, Loss, ModelSpec, OptimizerKind, TensorFile, TrainingJob,
    },
    ErrorKind,
};
use std::time::Instant;

fn host(batch_size: usize, seed: u64) -> MemHost {
    let (train, validation) = fashion().clone();
    MemHost::new(train, validation, batch_size, seed)
}

fn small_host(train: usize, validation: usize, seed: u64) -> MemHost {
    let (t, v) = fashion();
    let cut = |d: &Data, n: usize| Data {
        sample: d.sample.clone(),
        inputs: d.inputs[..n * 784].to_vec(),
        labels: d.labels[..n].to_vec(),
    };
    MemHost::new(cut(t, train), cut(v, validation), 64, seed)
}

/// Each step's own loss, from the running means of the step reports (full batches of 64).
fn step_losses(host: &MemHost) -> Vec<f64> {
    let (mut sum, mut seen) = (0.0, 0.0);
    let mut out = Vec::new();
    for r in host.steps() {
        if r.step == 1 {
            (sum, seen) = (0.0, 0.0);
        }
        seen += 64.0;
        let total = r.metric("loss").unwrap() * seen;
        out.push((total - sum) / 64.0);
        sum = total;
    }
    out
}

fn train_and_time(model: ModelSpec, epochs: u32) -> (MemHost, f64) {
    let mut host = host(64, 7);
    let job = job(model, &host, epochs, 7);
    let started = Instant::now();
    let outcome = trainer().train(&job, &mut host).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(outcome.epochs_done, epochs);
    assert!(!outcome.stopped);
    let samples = host.steps().last().unwrap().samples as f64;
    (host, samples / seconds)
}

#[test]
fn an_mlp_learns_fashion_mnist_with_adam() {
    let (host, rate) = train_and_time(mlp(optimizer(OptimizerKind::Adam, 1e-3)), 2);
    println!("torch-tch MLP 784-128-10, batch 64, default threads: {rate:.0} samples/s (with validation)");
    let epochs = host.epochs();
    assert_eq!(epochs.len(), 2);
    let first = step_losses(&host)[0];
    assert!((first - 10f64.ln()).abs() < 0.3, "first loss {first}");
    let (l1, l2) = (
        epochs[0].metric("loss").unwrap(),
        epochs[1].metric("loss").unwrap(),
    );
    assert!(l2 < l1 && l1 < first, "losses {first} → {l1} → {l2}");
    let accuracy = epochs[1].metric("val_accuracy").unwrap();
    assert!(accuracy > 0.75, "validation accuracy {accuracy}");
    // One checkpoint per epoch, the last FINAL, holding every model tensor and Adam's moments.
    let reasons: Vec<_> = host.checkpoints.iter().map(|c| c.reason).collect();
    assert_eq!(reasons, [CheckpointReason::EPOCH, CheckpointReason::FINAL]);
    let file = TensorFile::decode(&host.checkpoints[1].data).unwrap();
    file.expect("2.weight", &[128, 784]).unwrap();
    file.expect("5.bias", &[10]).unwrap();
    file.expect("state.2.weight.exp_avg", &[128, 784]).unwrap();
    file.expect("state.5.bias.exp_avg_sq", &[10]).unwrap();
    assert_eq!(file.tensors.len(), 12);
}

#[test]
fn a_cnn_with_batchnorm_learns_fashion_mnist_with_sgd_momentum() {
    let mut sgd = optimizer(OptimizerKind::Sgd, 0.05);
    sgd.momentum = Some(0.9);
    let (host, rate) = train_and_time(cnn(sgd), 1);
    println!("torch-tch CNN conv8-bn-pool-conv16-pool-dense10, batch 64, default threads: {rate:.0} samples/s (with validation)");
    let losses = step_losses(&host);
    let head: f64 = losses[..8].iter().sum::<f64>() / 8.0;
    let tail: f64 = losses[losses.len() - 8..].iter().sum::<f64>() / 8.0;
    assert!(tail < head * 0.6, "loss {head} → {tail}");
    let accuracy = host.epochs()[0].metric("val_accuracy").unwrap();
    assert!(accuracy > 0.65, "validation accuracy {accuracy}");
    let file = TensorFile::decode(&host.checkpoints[0].data).unwrap();
    let var = file.expect("2.running_var", &[8]).unwrap();
    assert!(
        var.data.iter().all(|v| *v > 0.0 && *v != 1.0),
        "{:?}",
        var.data
    );
    file.expect("state.1.weight.momentum_buffer", &[8, 1, 3, 3])
        .unwrap();
}

/// Every activation, BatchNorm1d, Softmax before MSE.
fn zoo(optimizer: cyxwiz_sdk::training::Optimizer, loss: Loss) -> ModelSpec {
    let mut layers = vec![
        LayerKind::Flatten,
        LayerKind::Dense {
            inputs: 784,
            units: 64,
        },
        LayerKind::BatchNorm {
            features: 64,
            epsilon: 1e-5,
            momentum: 0.1,
        },
        LayerKind::Gelu,
        LayerKind::Dropout { rate: 0.1 },
        LayerKind::Dense {
            inputs: 64,
            units: 32,
        },
        LayerKind::LeakyRelu {
            negative_slope: 0.1,
        },
        LayerKind::Dense {
            inputs: 32,
            units: 32,
        },
        LayerKind::Tanh,
        LayerKind::Dense {
            inputs: 32,
            units: 32,
        },
        LayerKind::Sigmoid,
        LayerKind::Dense {
            inputs: 32,
            units: 10,
        },
    ];
    if loss == Loss::Mse {
        layers.push(LayerKind::Softmax);
    }
    spec(&[1, 28, 28], 10, layers, loss, optimizer)
}

#[test]
fn every_layer_kind_and_optimizer_trains() {
    let mut cases = vec![
        (optimizer(OptimizerKind::Sgd, 0.5), Loss::CrossEntropy),
        (optimizer(OptimizerKind::Adam, 3e-3), Loss::CrossEntropy),
        (optimizer(OptimizerKind::AdamW, 3e-3), Loss::Mse),
        (optimizer(OptimizerKind::RmsProp, 1e-3), Loss::CrossEntropy),
    ];
    let mut sgd = optimizer(OptimizerKind::Sgd, 0.1);
    sgd.momentum = Some(0.9);
    sgd.weight_decay = Some(1e-4);
    cases.push((sgd, Loss::CrossEntropy));
    let mut rms = optimizer(OptimizerKind::RmsProp, 5e-4);
    rms.momentum = Some(0.5);
    rms.weight_decay = Some(1e-4);
    cases.push((rms, Loss::CrossEntropy));
    let mut results = Vec::new();
    for (opt, loss) in cases {
        let label = format!("{:?} {:?}", opt.kind, loss);
        let mut host = small_host(1024, 256, 3);
        let job = job(zoo(opt, loss), &host, 3, 3);
        trainer().train(&job, &mut host).unwrap();
        let epochs = host.epochs();
        let (first, last) = (
            epochs[0].metric("loss").unwrap(),
            epochs[2].metric("loss").unwrap(),
        );
        let accuracy = epochs[2].metric("val_accuracy").unwrap();
        println!("{label}: loss {first:.4} → {last:.4}, validation accuracy {accuracy:.3}");
        results.push((label, first, last, accuracy));
    }
    for (label, first, last, accuracy) in results {
        assert!(last < first, "{label}: loss {first} → {last}");
        assert!(accuracy > 0.3, "{label}: validation accuracy {accuracy}");
    }
}

#[test]
fn stop_is_honoured_with_a_checkpoint() {
    let mut host = small_host(1024, 128, 5);
    host.stop_after = Some(5);
    let job = job(mlp(optimizer(OptimizerKind::Adam, 1e-3)), &host, 2, 5);
    let outcome = trainer().train(&job, &mut host).unwrap();
    assert!(outcome.stopped);
    assert_eq!(outcome.epochs_done, 0);
    assert_eq!(host.steps().len(), 5);
    let last = host.checkpoints.last().unwrap();
    assert_eq!(last.reason, CheckpointReason::STOPPED);
    assert_eq!(last.steps_done, 5);
    assert!(outcome.metrics.iter().any(|m| m.name == "loss"));
}

/// Runs `model` uninterrupted, and again from a checkpoint: the epoch-end one of the
/// uninterrupted run, or (with `stop_after`) one written on STOP after that many steps. The
/// resumed run's next step report matches the uninterrupted run's, and so does its end.
fn resume_matches(model: ModelSpec, stop_after: Option<u64>) {
    let mut whole = small_host(1024, 128, 11);
    let full = job(model, &whole, 2, 11);
    trainer().train(&full, &mut whole).unwrap();
    let checkpoint = match stop_after {
        Some(steps) => {
            let mut first = small_host(1024, 128, 11);
            first.stop_after = Some(steps);
            trainer().train(&full, &mut first).unwrap();
            let c = first.checkpoints.last().unwrap().clone();
            assert_eq!(c.reason, CheckpointReason::STOPPED);
            c
        }
        None => {
            let c = whole.checkpoints[0].clone();
            assert_eq!(c.reason, CheckpointReason::EPOCH);
            c
        }
    };
    let done = checkpoint.steps_done as usize;

    let mut second = small_host(1024, 128, 11);
    let resumed = TrainingJob {
        resume: checkpoint.data,
        ..full
    };
    let outcome = trainer().train(&resumed, &mut second).unwrap();
    assert_eq!(outcome.epochs_done, 2);
    let want = whole.steps()[done];
    let got = second.steps()[0];
    assert_eq!((got.epoch, got.step), (want.epoch, want.step));
    let (a, b) = (got.metric("loss").unwrap(), want.metric("loss").unwrap());
    assert!((a - b).abs() < 1e-5, "resumed {a} vs uninterrupted {b}");
    let (a, b) = (
        second.epochs().last().unwrap().metric("val_loss").unwrap(),
        whole.epochs().last().unwrap().metric("val_loss").unwrap(),
    );
    assert!((a - b).abs() < 1e-5, "final validation loss {a} vs {b}");
}

#[test]
fn resume_mid_epoch_gives_the_same_next_step_loss() {
    // Dropout masks by global step, Adam's moments and step count, the epoch's running totals.
    resume_matches(mlp(optimizer(OptimizerKind::Adam, 1e-3)), Some(5));
}

#[test]
fn resume_after_an_epoch_gives_the_same_next_step_loss() {
    // BatchNorm running statistics and SGD's momentum buffers.
    let mut sgd = optimizer(OptimizerKind::Sgd, 0.05);
    sgd.momentum = Some(0.9);
    resume_matches(cnn(sgd), None);
}

#[test]
fn bad_jobs_are_clean_errors() {
    let mut host = small_host(128, 64, 1);
    let good = job(mlp(optimizer(OptimizerKind::Adam, 1e-3)), &host, 1, 1);

    let cuda = TrainingJob {
        device: "cuda:0".into(),
        ..good.clone()
    };
    // A CUDA job runs where libtorch has a device, and is refused cleanly where it has none.
    if let Err(err) = trainer().train(&cuda, &mut host) {
        assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
        assert!(err.message.contains("no CUDA device"), "{err}");
    }
    let err = trainer()
        .train(
            &TrainingJob {
                device: "tpu".into(),
                ..good.clone()
            },
            &mut host,
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");

    let garbage = TrainingJob {
        resume: b"not a checkpoint".to_vec(),
        ..good.clone()
    };
    let err = trainer().train(&garbage, &mut host).unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");

    host.train.labels[3] = 10;
    let err = trainer().train(&good, &mut host).unwrap_err();
    assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
    assert!(err.message.contains("label 10"), "{err}");
}

/// Training samples/s of the MLP and the CNN above (no validation; the epoch-end checkpoint
/// included), best of epochs 2 and 3, at 1 and 2 threads, through the plugin ABI and
/// in-process; printed, not asserted. In a plain debug build the workspace crates are
/// unoptimised, and the SDK's batch conversion at the boundary and its dropout masks dominate;
/// for numbers that mean something, optimise them as a release build would:
/// `cargo test -p cyxwiz-plugin-torch-tch --test training throughput --config
/// profile.dev.package.cyxwiz-sdk.opt-level=3 --config
/// profile.dev.package.cyxwiz-plugin-host.opt-level=3 --config
/// profile.dev.package.cyxwiz-plugin-torch-tch.opt-level=3 -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand"]
fn throughput() {
    let mut sgd = optimizer(OptimizerKind::Sgd, 0.01);
    sgd.momentum = Some(0.9);
    let models = [
        ("MLP Adam", mlp(optimizer(OptimizerKind::Adam, 1e-3))),
        ("MLP SGD", mlp(sgd.clone())),
        ("CNN Adam", cnn(optimizer(OptimizerKind::Adam, 1e-3))),
        ("CNN SGD", cnn(sgd)),
    ];
    let abi = trainer();
    for threads in [1, 2] {
        for (name, model) in &models {
            for through_abi in [true, false] {
                let mut host = host(64, 1);
                let mut job = job(model.clone(), &host, 3, 1);
                job.validation_batches = 0;
                job.threads = threads;
                let started = Instant::now();
                if through_abi {
                    abi.train(&job, &mut host).unwrap();
                } else {
                    cyxwiz_plugin_torch_tch::TorchTrainer
                        .train(&job, &mut host)
                        .unwrap();
                }
                let mut ends = vec![started];
                ends.extend(&host.epoch_ends);
                let best = ends[1..]
                    .windows(2)
                    .map(|w| (w[1] - w[0]).as_secs_f64())
                    .fold(f64::MAX, f64::min);
                println!(
                    "torch-tch {name}, batch 64, {threads} thread(s), {}: {:.0} samples/s",
                    if through_abi {
                        "plugin ABI"
                    } else {
                        "in-process"
                    },
                    host.train.len() as f64 / best
                );
            }
        }
    }
}
