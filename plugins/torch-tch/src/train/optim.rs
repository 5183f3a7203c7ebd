//! The optimizers, written out with PyTorch's update rules (`torch.optim`'s single-tensor
//! paths) rather than taken from `tch::nn::Optimizer`, so their state can be exported to
//! checkpoints and imported on resume: SGD (momentum, no dampening or Nesterov, L2 decay),
//! Adam (L2 decay, bias correction with the global step), AdamW (decoupled decay) and RMSprop
//! (`alpha` in `beta2`, eps after the square root, optional momentum, L2 decay). State tensors
//! are named `<param>.momentum_buffer`, `.exp_avg`, `.exp_avg_sq`, `.square_avg`.

use super::TorchResult;
use cyxwiz_sdk::{
    training::{Optimizer, OptimizerKind, StepContext},
    Result,
};
use tch::Tensor;

/// An optimizer with one set of state tensors per parameter.
pub(crate) struct Optim {
    kind: OptimizerKind,
    /// The settings; `lr` and `step` are set per step.
    hyper: Hyper,
    /// Per parameter, the state tensors named by [`Optim::slot_names`], in that order.
    state: Vec<Vec<Tensor>>,
}

/// An optimizer's settings for one step.
#[derive(Debug, Clone, Copy)]
struct Hyper {
    lr: f64,
    momentum: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    weight_decay: f64,
    step: u64,
}

impl Optim {
    /// PyTorch's defaults fill what the spec leaves out (the host fills them all).
    pub(crate) fn new(spec: &Optimizer) -> Self {
        let beta2_default = match spec.kind {
            OptimizerKind::RmsProp => 0.99,
            _ => 0.999,
        };
        Self {
            kind: spec.kind,
            hyper: Hyper {
                lr: spec.learning_rate,
                momentum: spec.momentum.unwrap_or(0.0),
                beta1: spec.beta1.unwrap_or(0.9),
                beta2: spec.beta2.unwrap_or(beta2_default),
                epsilon: spec.epsilon.unwrap_or(1e-8),
                weight_decay: spec.weight_decay.unwrap_or(0.0),
                step: 0,
            },
            state: Vec::new(),
        }
    }

    /// The state each parameter has, as name suffixes.
    pub(crate) fn slot_names(&self) -> &'static [&'static str] {
        let momentum = self.hyper.momentum != 0.0;
        match self.kind {
            OptimizerKind::Sgd if momentum => &["momentum_buffer"],
            OptimizerKind::Sgd => &[],
            OptimizerKind::Adam | OptimizerKind::AdamW => &["exp_avg", "exp_avg_sq"],
            OptimizerKind::RmsProp if momentum => &["square_avg", "momentum_buffer"],
            OptimizerKind::RmsProp => &["square_avg"],
        }
    }

    /// Adds the next parameter's state tensors, in [`Optim::slot_names`] order.
    pub(crate) fn push_state(&mut self, tensors: Vec<Tensor>) {
        self.state.push(tensors);
    }

    /// Every state tensor with its parameter's index and slot name.
    pub(crate) fn state(&self) -> impl Iterator<Item = (usize, &'static str, &Tensor)> + '_ {
        let names = self.slot_names();
        self.state
            .iter()
            .enumerate()
            .flat_map(move |(i, slots)| slots.iter().zip(names).map(move |(t, n)| (i, *n, t)))
    }

    /// One update of every parameter from its gradient. Runs without autograd.
    pub(crate) fn step(
        &mut self,
        params: &mut [Tensor],
        grads: &[Tensor],
        ctx: &StepContext,
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let h = Hyper {
            lr: ctx.learning_rate,
            step: ctx.step,
            ..self.hyper
        };
        for ((p, g), state) in params.iter_mut().zip(grads).zip(&mut self.state) {
            if !g.defined() {
                continue;
            }
            match self.kind {
                OptimizerKind::Sgd => sgd(p, g, state, &h),
                OptimizerKind::Adam => adam(p, g, state, &h, false),
                OptimizerKind::AdamW => adam(p, g, state, &h, true),
                OptimizerKind::RmsProp => rmsprop(p, g, state, &h),
            }
            .or_fail("optimizer step")?;
        }
        Ok(())
    }
}

type TchResult = std::result::Result<(), tch::TchError>;

/// `grad + weight_decay * param` (PyTorch's L2 form), or the gradient itself.
fn l2(p: &Tensor, g: &Tensor, weight_decay: f64) -> std::result::Result<Tensor, tch::TchError> {
    if weight_decay == 0.0 {
        Ok(g.shallow_clone())
    } else {
        g.f_add(&p.f_mul_scalar(weight_decay)?)
    }
}

fn sgd(p: &mut Tensor, g: &Tensor, state: &mut [Tensor], h: &Hyper) -> TchResult {
    let mut d = l2(p, g, h.weight_decay)?;
    if let Some(buf) = state.first_mut() {
        // buf = momentum * buf + d (dampening 0); a fresh buffer of zeros gives PyTorch's
        // first step, buf = d.
        let _ = buf.f_mul_scalar_(h.momentum)?;
        let _ = buf.f_add_(&d)?;
        d = buf.shallow_clone();
    }
    let _ = p.f_sub_(&d.f_mul_scalar(h.lr)?)?;
    Ok(())
}

fn adam(p: &mut Tensor, g: &Tensor, state: &mut [Tensor], h: &Hyper, decoupled: bool) -> TchResult {
    let g = if decoupled {
        if h.weight_decay != 0.0 {
            let _ = p.f_mul_scalar_(1.0 - h.lr * h.weight_decay)?;
        }
        g.shallow_clone()
    } else {
        l2(p, g, h.weight_decay)?
    };
    let [exp_avg, exp_avg_sq] = state else {
        return Ok(());
    };
    let _ = exp_avg.f_lerp_(&g, 1.0 - h.beta1)?;
    let _ = exp_avg_sq.f_mul_scalar_(h.beta2)?;
    let _ = exp_avg_sq.f_addcmul_(&g.f_mul_scalar(1.0 - h.beta2)?, &g)?;
    let t = i32::try_from(h.step).unwrap_or(i32::MAX);
    let bias_correction1 = 1.0 - h.beta1.powi(t);
    let bias_correction2 = 1.0 - h.beta2.powi(t);
    let step_size = h.lr / bias_correction1;
    let mut denom = exp_avg_sq.f_sqrt()?.f_div_scalar(bias_correction2.sqrt())?;
    let _ = denom.f_add_scalar_(h.epsilon)?;
    let _ = p.f_addcdiv_(&exp_avg.f_mul_scalar(-step_size)?, &denom)?;
    Ok(())
}

fn rmsprop(p: &mut Tensor, g: &Tensor, state: &mut [Tensor], h: &Hyper) -> TchResult {
    let g = l2(p, g, h.weight_decay)?;
    let Some((square_avg, rest)) = state.split_first_mut() else {
        return Ok(());
    };
    let alpha = h.beta2;
    let _ = square_avg.f_mul_scalar_(alpha)?;
    let _ = square_avg.f_addcmul_(&g.f_mul_scalar(1.0 - alpha)?, &g)?;
    let mut avg = square_avg.f_sqrt()?;
    let _ = avg.f_add_scalar_(h.epsilon)?;
    match rest.first_mut() {
        Some(buf) => {
            let _ = buf.f_mul_scalar_(h.momentum)?;
            let _ = buf.f_addcdiv_(&g, &avg)?;
            let _ = p.f_sub_(&buf.f_mul_scalar(h.lr)?)?;
        }
        None => {
            let _ = p.f_addcdiv_(&g.f_mul_scalar(-h.lr)?, &avg)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's update rules on scalars in f64, one parameter vector.
    fn reference(spec: &Optimizer, p: &mut [f64], grads: &[Vec<f64>]) {
        let (m, b1, b2, eps, wd) = (
            spec.momentum.unwrap_or(0.0),
            spec.beta1.unwrap_or(0.9),
            spec.beta2.unwrap_or(0.999),
            spec.epsilon.unwrap_or(1e-8),
            spec.weight_decay.unwrap_or(0.0),
        );
        let lr = spec.learning_rate;
        let n = p.len();
        let (mut s1, mut s2) = (vec![0.0; n], vec![0.0; n]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..n {
                let mut g = g[i];
                match spec.kind {
                    OptimizerKind::Sgd => {
                        g += wd * p[i];
                        if m != 0.0 {
                            s1[i] = if t == 1 { g } else { m * s1[i] + g };
                            g = s1[i];
                        }
                        p[i] -= lr * g;
                    }
                    OptimizerKind::Adam | OptimizerKind::AdamW => {
                        if spec.kind == OptimizerKind::AdamW {
                            p[i] *= 1.0 - lr * wd;
                        } else {
                            g += wd * p[i];
                        }
                        s1[i] = b1 * s1[i] + (1.0 - b1) * g;
                        s2[i] = b2 * s2[i] + (1.0 - b2) * g * g;
                        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                        p[i] -= lr / c1 * s1[i] / ((s2[i] / c2).sqrt() + eps);
                    }
                    OptimizerKind::RmsProp => {
                        g += wd * p[i];
                        s1[i] = b2 * s1[i] + (1.0 - b2) * g * g;
                        let avg = s1[i].sqrt() + eps;
                        if m != 0.0 {
                            s2[i] = m * s2[i] + g / avg;
                            p[i] -= lr * s2[i];
                        } else {
                            p[i] -= lr * g / avg;
                        }
                    }
                }
            }
        }
    }

    fn spec(kind: OptimizerKind, momentum: f64, weight_decay: f64) -> Optimizer {
        Optimizer {
            kind,
            learning_rate: 0.05,
            momentum: Some(momentum),
            beta1: Some(0.8),
            beta2: Some(if kind == OptimizerKind::RmsProp {
                0.9
            } else {
                0.95
            }),
            epsilon: Some(1e-6),
            weight_decay: Some(weight_decay),
        }
    }

    #[test]
    fn updates_follow_pytorch_rules() {
        let start = [0.5, -1.25, 2.0, 0.0, -0.3, 0.75];
        let grads: Vec<Vec<f64>> = (0..4)
            .map(|s| {
                (0..6)
                    .map(|i| ((i * 7 + s * 3) % 11) as f64 / 5.0 - 1.0)
                    .collect()
            })
            .collect();
        let cases = [
            spec(OptimizerKind::Sgd, 0.0, 0.0),
            spec(OptimizerKind::Sgd, 0.9, 0.01),
            spec(OptimizerKind::Adam, 0.0, 0.0),
            spec(OptimizerKind::Adam, 0.0, 0.1),
            spec(OptimizerKind::AdamW, 0.0, 0.1),
            spec(OptimizerKind::RmsProp, 0.0, 0.01),
            spec(OptimizerKind::RmsProp, 0.5, 0.0),
        ];
        for case in cases {
            let mut want = start.to_vec();
            reference(&case, &mut want, &grads);
            let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let mut params = vec![Tensor::from_slice(&f32s(&start))];
            let mut optim = Optim::new(&case);
            let slots = optim
                .slot_names()
                .iter()
                .map(|_| params[0].zeros_like())
                .collect();
            optim.push_state(slots);
            for (step, g) in grads.iter().enumerate() {
                let ctx = StepContext {
                    seed: 0,
                    step: step as u64 + 1,
                    learning_rate: case.learning_rate,
                };
                optim
                    .step(&mut params, &[Tensor::from_slice(&f32s(g))], &ctx)
                    .unwrap();
            }
            let got: Vec<f32> = Vec::try_from(&params[0]).unwrap();
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (f64::from(*a) - b).abs() < 1e-5,
                    "{:?} momentum {:?} decay {:?}: {got:?} vs {want:?}",
                    case.kind,
                    case.momentum,
                    case.weight_decay
                );
            }
        }
    }
}
