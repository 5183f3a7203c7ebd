//! Single steps against values worked out by hand from `torch.optim`'s update rules.

use super::*;

fn settings(kind: OptimizerKind, momentum: Option<f64>, beta2: Option<f64>, wd: f64) -> Settings {
    Settings::new(&Optimizer {
        kind,
        learning_rate: 0.1,
        momentum,
        beta1: None,
        beta2,
        epsilon: None,
        weight_decay: Some(wd),
    })
}

fn close(a: &[f32], b: &[f32]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

fn zeros(s: &Settings, n: usize) -> Vec<Vec<f32>> {
    s.slots().iter().map(|_| vec![0.0; n]).collect()
}

#[test]
fn sgd_with_momentum_and_l2() {
    let s = settings(OptimizerKind::Sgd, Some(0.9), None, 0.5);
    assert_eq!(s.slots(), ["momentum_buffer"]);
    let (mut p, mut slots) = (vec![1.0f32, -2.0], zeros(&s, 2));
    // d = g + 0.5 p = [1.5, -1.5]; buf = d; p -= 0.1 d.
    s.update(&mut p, &[1.0, -0.5], &mut slots, 0.1, 1);
    close(&p, &[0.85, -1.85]);
    close(&slots[0], &[1.5, -1.5]);
    // d = [1 + 0.425, -0.5 - 0.925]; buf = 0.9 buf + d.
    s.update(&mut p, &[1.0, -0.5], &mut slots, 0.1, 2);
    close(&slots[0], &[2.775, -2.775]);
    close(&p, &[0.5725, -1.5725]);
    assert!(settings(OptimizerKind::Sgd, Some(0.0), None, 0.0)
        .slots()
        .is_empty());
}

#[test]
fn adam_first_steps_are_bias_corrected() {
    let s = settings(OptimizerKind::Adam, None, None, 0.0);
    let (mut p, mut slots) = (vec![1.0f32, 1.0], zeros(&s, 2));
    // Step 1: m = 0.1 g, v = 0.001 g²; m̂ / sqrt(v̂) = sign(g): p -= 0.1 sign(g).
    s.update(&mut p, &[0.5, -3.0], &mut slots, 0.1, 1);
    close(&p, &[0.9, 1.1]);
    close(&slots[0], &[0.05, -0.3]);
    close(&slots[1], &[0.00025, 0.009]);
    // Step 2 with gradient 0: m = 0.9 m, v = 0.999 v; bias corrections of step 2.
    s.update(&mut p, &[0.0, 0.0], &mut slots, 0.1, 2);
    let m = 0.045f64;
    let v = 0.000_249_75f64;
    let step = 0.1 / (1.0 - 0.81) * m / ((v).sqrt() / (1.0 - 0.998_001f64).sqrt() + 1e-8);
    close(&p, &[(0.9 - step) as f32, (1.1 + step) as f32]);
}

#[test]
fn adamw_decays_the_weights_before_the_step() {
    let s = settings(OptimizerKind::AdamW, None, None, 0.5);
    let (mut p, mut slots) = (vec![2.0f32], zeros(&s, 1));
    // p *= 1 - 0.1 * 0.5, then the plain Adam step (the decay stays out of the moments).
    s.update(&mut p, &[1.0], &mut slots, 0.1, 1);
    close(&p, &[2.0 * 0.95 - 0.1]);
    close(&slots[0], &[0.1]);
    // Defaults: AdamW decays by 0.01 when the spec says nothing.
    let d = Settings::new(&Optimizer {
        kind: OptimizerKind::AdamW,
        learning_rate: 0.1,
        momentum: None,
        beta1: None,
        beta2: None,
        epsilon: None,
        weight_decay: None,
    });
    assert_eq!(d.weight_decay, 0.01);
}

#[test]
fn rmsprop_uses_beta2_as_alpha_with_optional_momentum() {
    let s = settings(OptimizerKind::RmsProp, None, Some(0.9), 0.0);
    assert_eq!(s.slots(), ["square_avg"]);
    let (mut p, mut slots) = (vec![1.0f32], zeros(&s, 1));
    // square = 0.1 g² = 0.4; p -= 0.1 * 2 / (sqrt(0.4) + 1e-8).
    s.update(&mut p, &[2.0], &mut slots, 0.1, 1);
    close(&slots[0], &[0.4]);
    close(&p, &[1.0 - 0.2 / 0.4f32.sqrt()]);

    let s = settings(OptimizerKind::RmsProp, Some(0.5), Some(0.9), 0.0);
    assert_eq!(s.slots(), ["square_avg", "momentum_buffer"]);
    let (mut p, mut slots) = (vec![1.0f32], zeros(&s, 1));
    s.update(&mut p, &[2.0], &mut slots, 0.1, 1);
    s.update(&mut p, &[2.0], &mut slots, 0.1, 2);
    // square: 0.4, then 0.76; buf: 2/sqrt(0.4), then 0.5 buf + 2/sqrt(0.76).
    let b1 = 2.0 / 0.4f32.sqrt();
    let b2 = 0.5 * b1 + 2.0 / 0.76f32.sqrt();
    close(&slots[1], &[b2]);
    close(&p, &[1.0 - 0.1 * b1 - 0.1 * b2]);
}
