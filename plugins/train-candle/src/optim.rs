//! The optimizers, written out element by element with PyTorch's update rules, defaults and
//! float32 arithmetic (`torch.optim`, single-tensor path), so every backend that follows the
//! same rules takes the same steps. State tensors carry PyTorch's names:
//! `momentum_buffer` (SGD, RMSprop with momentum), `exp_avg` and `exp_avg_sq` (Adam, AdamW),
//! `square_avg` (RMSprop); a state tensor missing at the start (a fresh job) is zeros.

use cyxwiz_sdk::training::{Optimizer, OptimizerKind};

/// An optimizer's settings with PyTorch's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    kind: OptimizerKind,
    momentum: f32,
    beta1: f64,
    beta2: f64,
    eps: f32,
    weight_decay: f32,
}

impl Settings {
    /// The settings of `spec`; unset fields take `torch.optim`'s defaults (SGD momentum 0,
    /// Adam betas (0.9, 0.999), eps 1e-8, RMSprop alpha 0.99, weight decay 0 and 0.01 for
    /// AdamW).
    pub(crate) fn new(spec: &Optimizer) -> Self {
        let adamw = spec.kind == OptimizerKind::AdamW;
        let rms = spec.kind == OptimizerKind::RmsProp;
        Self {
            kind: spec.kind,
            momentum: spec.momentum.unwrap_or(0.0) as f32,
            beta1: spec.beta1.unwrap_or(0.9),
            beta2: spec.beta2.unwrap_or(if rms { 0.99 } else { 0.999 }),
            eps: spec.epsilon.unwrap_or(1e-8) as f32,
            weight_decay: spec.weight_decay.unwrap_or(if adamw { 0.01 } else { 0.0 }) as f32,
        }
    }

    /// The state tensors each parameter keeps, by suffix, in the order [`update`] takes them.
    pub(crate) fn slots(&self) -> &'static [&'static str] {
        match self.kind {
            OptimizerKind::Sgd if self.momentum != 0.0 => &["momentum_buffer"],
            OptimizerKind::Sgd => &[],
            OptimizerKind::Adam | OptimizerKind::AdamW => &["exp_avg", "exp_avg_sq"],
            OptimizerKind::RmsProp if self.momentum > 0.0 => &["square_avg", "momentum_buffer"],
            OptimizerKind::RmsProp => &["square_avg"],
        }
    }

    /// One step on parameter `p` with gradient `grad` and its state `slots` (one vector per
    /// [`slots`](Self::slots) entry, as long as `p`); `step` is the 1-based global step.
    pub(crate) fn update(
        &self,
        p: &mut [f32],
        grad: &[f32],
        slots: &mut [Vec<f32>],
        lr: f64,
        step: u64,
    ) {
        let wd = self.weight_decay;
        // L2 decay joins the gradient (SGD, Adam, RMSprop); AdamW decays the weights first.
        let l2 = wd != 0.0 && self.kind != OptimizerKind::AdamW;
        let g = |i: usize, p: &[f32]| if l2 { grad[i] + wd * p[i] } else { grad[i] };
        match (self.kind, slots) {
            (OptimizerKind::Sgd, []) => {
                let alpha = -lr as f32;
                for i in 0..p.len() {
                    p[i] += alpha * g(i, p);
                }
            }
            (OptimizerKind::Sgd, [buf]) => {
                // The first step's buffer is the gradient itself: with dampening 0 that is
                // `momentum * 0 + g`, so a zero buffer gives the same result.
                let alpha = -lr as f32;
                for i in 0..p.len() {
                    buf[i] = buf[i] * self.momentum + g(i, p);
                    p[i] += alpha * buf[i];
                }
            }
            (OptimizerKind::Adam | OptimizerKind::AdamW, [m, v]) => {
                if self.kind == OptimizerKind::AdamW {
                    let keep = (1.0 - lr * f64::from(wd)) as f32;
                    p.iter_mut().for_each(|x| *x *= keep);
                }
                let t = step.min(i32::MAX as u64) as i32;
                let bias1 = 1.0 - self.beta1.powi(t);
                let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt() as f32;
                let step_size = -(lr / bias1) as f32;
                let w1 = (1.0 - self.beta1) as f32;
                let (b2, w2) = (self.beta2 as f32, (1.0 - self.beta2) as f32);
                for i in 0..p.len() {
                    let gi = g(i, p);
                    m[i] += w1 * (gi - m[i]); // lerp_(grad, 1 - beta1), weight < 0.5
                    v[i] = v[i] * b2 + w2 * gi * gi;
                    let denom = v[i].sqrt() / bias2_sqrt + self.eps;
                    p[i] += step_size * (m[i] / denom);
                }
            }
            (OptimizerKind::RmsProp, [square, rest @ ..]) => {
                let (alpha, w) = (self.beta2 as f32, (1.0 - self.beta2) as f32);
                let neg_lr = -lr as f32;
                for i in 0..p.len() {
                    let gi = g(i, p);
                    square[i] = square[i] * alpha + w * gi * gi;
                    let avg = square[i].sqrt() + self.eps;
                    match rest {
                        [buf] => {
                            buf[i] = buf[i] * self.momentum + gi / avg;
                            p[i] += neg_lr * buf[i];
                        }
                        _ => p[i] += neg_lr * (gi / avg),
                    }
                }
            }
            // `slots` always has the length `slots()` gives; nothing else reaches here.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
