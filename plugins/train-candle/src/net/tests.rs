//! The forward pass: BatchNorm in both modes, dropout masks, the losses.

use super::*;
use crate::shapes::tests::{layer, spec};

fn t(values: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn bn_spec() -> ModelSpec {
    spec(
        vec![2],
        2,
        vec![layer(
            "bn",
            LayerKind::BatchNorm {
                features: 2,
                epsilon: 1e-5,
                momentum: 0.1,
            },
            vec![2],
        )],
    )
}

#[test]
fn batch_norm_trains_on_batch_statistics_and_evaluates_on_running_ones() {
    let g = Graph::new(&bn_spec()).unwrap();
    let x = t(vec![1.0, 10.0, 3.0, 10.0, 5.0, 40.0], &[3, 2]);
    let params = [t(vec![2.0, 1.0], &[2]), t(vec![0.5, 0.0], &[2])];
    let running = [t(vec![0.0, 0.0], &[2]), t(vec![1.0, 1.0], &[2])];
    let mut updates = Vec::new();
    let mode = Mode::Train { seed: 1, step: 1 };
    let y = g
        .forward(x.clone(), &params, &running, mode, &mut updates)
        .unwrap();
    let y = y.to_vec2::<f32>().unwrap();
    // Feature 0: mean 3, biased variance 8/3.
    let s = (8.0f32 / 3.0 + 1e-5).sqrt();
    assert!((y[0][0] - (2.0 * -2.0 / s + 0.5)).abs() < 1e-5, "{y:?}");
    assert!((y[2][0] - (2.0 * 2.0 / s + 0.5)).abs() < 1e-5, "{y:?}");
    // Running statistics: 0.9 old + 0.1 batch (mean; unbiased variance 4 and 300).
    assert_eq!(updates.len(), 2);
    assert!((updates[0].values[0] - 0.3).abs() < 1e-6 && (updates[0].values[1] - 2.0).abs() < 1e-5);
    assert!(
        (updates[1].values[0] - (0.9 + 0.4)).abs() < 1e-5,
        "{updates:?}"
    );
    assert!(
        (updates[1].values[1] - (0.9 + 30.0)).abs() < 1e-3,
        "{updates:?}"
    );
    // Evaluation uses the running statistics given.
    let running = [t(vec![1.0, 2.0], &[2]), t(vec![4.0, 1.0], &[2])];
    let e = g
        .forward(x, &params, &running, Mode::Eval, &mut Vec::new())
        .unwrap();
    let e = e.to_vec2::<f32>().unwrap();
    assert!(
        (e[1][0] - (2.0 * 2.0 / (4.0f32 + 1e-5).sqrt() + 0.5)).abs() < 1e-5,
        "{e:?}"
    );
    // A batch of one cannot train BatchNorm (PyTorch refuses it too).
    let one = t(vec![1.0, 2.0], &[1, 2]);
    let err = g
        .forward(one, &params, &running, mode, &mut Vec::new())
        .unwrap_err();
    assert!(err.message.contains("more than one value"), "{err}");
}

#[test]
fn dropout_applies_the_sdk_mask_of_the_step_and_layer_in_training_only() {
    let s = spec(
        vec![4],
        4,
        vec![
            layer("r", LayerKind::Relu, vec![4]),
            layer("d", LayerKind::Dropout { rate: 0.5 }, vec![4]),
        ],
    );
    let g = Graph::new(&s).unwrap();
    let x = t((1..=12).map(|v| v as f32).collect(), &[3, 4]);
    let y = g
        .forward(
            x.clone(),
            &[],
            &[],
            Mode::Train { seed: 9, step: 4 },
            &mut Vec::new(),
        )
        .unwrap();
    let mask = dropout_mask(9, 4, 1, 12, 0.5);
    let want: Vec<f32> = (1..=12).zip(&mask).map(|(v, m)| v as f32 * m).collect();
    assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
    assert!(mask.contains(&0.0) && mask.contains(&2.0));
    let e = g
        .forward(x.clone(), &[], &[], Mode::Eval, &mut Vec::new())
        .unwrap();
    assert_eq!(
        e.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn losses_and_accuracy_follow_their_definitions() {
    let mut s = spec(vec![3], 3, vec![]);
    let out = t(vec![2.0, 1.0, 0.0, 0.0, 0.0, 3.0], &[2, 3]);
    let labels = [0i64, 1];
    let g = Graph::new(&s).unwrap();
    let ce = g.loss(&out, &labels).unwrap().to_scalar::<f32>().unwrap();
    let lse0 = (2f64.exp() + 1f64.exp() + 1.0).ln();
    let lse1 = (2.0 + 3f64.exp()).ln();
    let want = ((lse0 - 2.0) + lse1) / 2.0;
    assert!((f64::from(ce) - want).abs() < 1e-6, "{ce} vs {want}");
    s.loss = Loss::Mse;
    let g = Graph::new(&s).unwrap();
    let mse = g.loss(&out, &labels).unwrap().to_scalar::<f32>().unwrap();
    assert!((mse - (1.0 + 1.0 + 1.0 + 9.0) / 6.0).abs() < 1e-6, "{mse}");
    assert_eq!(correct(&out, &labels).unwrap(), 1);
    assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    let err = g.loss(&out, &[0, 3]).unwrap_err();
    assert!(err.message.contains("label 3"), "{err}");
}

#[test]
fn batches_of_the_wrong_shape_are_refused() {
    let g = Graph::new(&spec(vec![3], 3, vec![])).unwrap();
    assert!(g.input(&[0.0; 6], &[2, 3]).is_ok());
    for (values, shape) in [
        (6, vec![3, 2]),
        (6, vec![2, 3, 1]),
        (5, vec![2, 3]),
        (0, vec![0, 3]),
    ] {
        let err = g.input(&vec![0.0; values], &shape).unwrap_err();
        assert_eq!(err.kind, cyxwiz_sdk::ErrorKind::INVALID_INPUT, "{shape:?}");
    }
}
