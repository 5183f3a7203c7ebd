//! The network under the SDK's loop: it learns, its checkpoint tensors rebuild it exactly,
//! and jobs it cannot run are refused.

use super::*;
use crate::shapes::tests::{layer, spec};
use cyxwiz_sdk::training::{
    initial_parameters, Checkpoint, DataSplit, Directive, LayerKind, ModelSpec, OptimizerKind,
    SplitMix64, TrainingProgress,
};

/// Three Gaussian blobs in 4 dimensions, 64 samples.
fn blobs(seed: u64) -> Batch {
    let mut rng = SplitMix64::new(seed);
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    for i in 0..64 {
        let class = i % 3;
        for d in 0..4 {
            let centre = if d == class { 3.0 } else { 0.0 };
            inputs.push(centre + (rng.unit() as f32 - 0.5) * 2.0);
        }
        labels.push(class as i64);
    }
    Batch {
        inputs,
        shape: vec![64, 4],
        labels,
    }
}

fn mlp(kind: OptimizerKind) -> ModelSpec {
    let mut s = spec(
        vec![4],
        3,
        vec![
            layer(
                "0",
                LayerKind::Dense {
                    inputs: 4,
                    units: 8,
                },
                vec![8],
            ),
            layer(
                "1",
                LayerKind::BatchNorm {
                    features: 8,
                    epsilon: 1e-5,
                    momentum: 0.1,
                },
                vec![8],
            ),
            layer("2", LayerKind::Tanh, vec![8]),
            layer("3", LayerKind::Dropout { rate: 0.25 }, vec![8]),
            layer(
                "4",
                LayerKind::Dense {
                    inputs: 8,
                    units: 3,
                },
                vec![3],
            ),
        ],
    );
    s.optimizer.kind = kind;
    s.optimizer.momentum = Some(0.5);
    s.optimizer.learning_rate = 0.05;
    s
}

fn trainee(spec: &ModelSpec, threads: u32) -> Trainee {
    let graph = Graph::new(spec).unwrap();
    Trainee::build(
        graph,
        initial_parameters(spec, 3),
        Vec::new(),
        pool(threads).unwrap(),
    )
    .unwrap()
}

fn ctx(step: u64) -> StepContext {
    StepContext {
        seed: 11,
        step,
        learning_rate: 0.05,
    }
}

#[test]
fn every_optimizer_learns_the_blobs() {
    for kind in [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
        OptimizerKind::RmsProp,
    ] {
        let mut net = trainee(&mlp(kind), 0);
        let first = net.train_step(&blobs(1), &ctx(1)).unwrap();
        for step in 2..=60 {
            net.train_step(&blobs(step), &ctx(step)).unwrap();
        }
        let end = net.evaluate(&blobs(1000)).unwrap();
        assert!(
            end.loss < first.loss / 3.0,
            "{kind:?}: {} -> {}",
            first.loss,
            end.loss
        );
        assert!(end.correct >= 60, "{kind:?}: {} of 64", end.correct);
    }
}

#[test]
fn checkpoint_tensors_rebuild_the_network_exactly() {
    let spec = mlp(OptimizerKind::Adam);
    let mut a = trainee(&spec, 2);
    for step in 1..=3 {
        a.train_step(&blobs(step), &ctx(step)).unwrap();
    }
    let params = a.parameters().unwrap();
    let names: Vec<_> = params.iter().map(|t| t.name.as_str()).collect();
    let want: Vec<_> = initial_parameters(&spec, 0)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, want);
    let state = a.optimizer_state().unwrap();
    assert!(state.iter().any(|t| t.name == "0.weight.exp_avg_sq"));
    assert_eq!(state.len(), 2 * 6);
    let mut b = Trainee::build(Graph::new(&spec).unwrap(), params, state, None).unwrap();
    let (la, lb) = (
        a.train_step(&blobs(4), &ctx(4)).unwrap(),
        b.train_step(&blobs(4), &ctx(4)).unwrap(),
    );
    assert_eq!(la, lb);
    assert_eq!(a.parameters().unwrap(), b.parameters().unwrap());
    assert_eq!(a.optimizer_state().unwrap(), b.optimizer_state().unwrap());
}

#[test]
fn bad_parameters_and_state_are_refused() {
    let spec = mlp(OptimizerKind::Sgd);
    let graph = || Graph::new(&spec).unwrap();
    let mut missing = initial_parameters(&spec, 1);
    missing.retain(|t| t.name != "1.running_var");
    let err = Trainee::build(graph(), missing, Vec::new(), None)
        .err()
        .unwrap();
    assert!(err.message.contains("1.running_var"), "{err}");
    let state = vec![NamedTensor::new(
        "0.weight.momentum_buffer",
        vec![2],
        vec![0.0; 2],
    )];
    let err = Trainee::build(graph(), initial_parameters(&spec, 1), state, None)
        .err()
        .unwrap();
    assert!(err.message.contains("momentum_buffer"), "{err}");
}

struct Once(Batch);

impl TrainingHost for Once {
    fn batch(&mut self, _: DataSplit, _: u32, _: u64) -> cyxwiz_sdk::Result<Batch> {
        Ok(self.0.clone())
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

fn job(spec: ModelSpec, device: &str) -> TrainingJob {
    TrainingJob {
        job_id: "t".into(),
        model: spec,
        epochs: 2,
        batch_size: 64,
        train_batches: 2,
        validation_batches: 1,
        seed: 5,
        device: device.into(),
        threads: 1,
        work_dir: std::env::temp_dir(),
        resume: Vec::new(),
    }
}

#[test]
fn jobs_run_on_the_cpu_only_and_need_a_spec_that_chains() {
    let out = train(&job(mlp(OptimizerKind::Adam), "cpu"), &mut Once(blobs(1))).unwrap();
    assert_eq!(out.epochs_done, 2);
    assert!(out.metrics.iter().any(|m| m.name == "val_accuracy"));
    let err = train(
        &job(mlp(OptimizerKind::Adam), "cuda:0"),
        &mut Once(blobs(1)),
    )
    .unwrap_err();
    assert_eq!(err.kind, cyxwiz_sdk::ErrorKind::UNSUPPORTED);
    assert!(err.message.contains("CPU only"), "{err}");
    let mut bad = mlp(OptimizerKind::Adam);
    bad.layers[4].kind = LayerKind::Dense {
        inputs: 5,
        units: 3,
    };
    let err = train(&job(bad, "cpu"), &mut Once(blobs(1))).unwrap_err();
    assert_eq!(err.kind, cyxwiz_sdk::ErrorKind::INVALID_INPUT);
    let mut wide = blobs(1);
    wide.shape = vec![64, 8];
    let err = train(&job(mlp(OptimizerKind::Adam), "cpu"), &mut Once(wide)).unwrap_err();
    assert!(err.message.contains("does not match"), "{err}");
}
