//! The network of a [`ModelSpec`] as candle operations: a checked, compiled list of layers,
//! the forward pass in training mode (seeded dropout masks, BatchNorm batch statistics) and in
//! evaluation mode (no dropout, running statistics), and the losses. Training (`train`) and
//! serving (`serve`) share it, so a served model computes exactly what training evaluated.

use crate::{ops, shapes};
use candle_core::{Device, Tensor};
use cyxwiz_sdk::training::{dropout_mask, LayerKind, Loss, ModelSpec};
use cyxwiz_sdk::{Error, Result};

/// A candle error as a runtime error.
pub(crate) fn runtime(e: candle_core::Error) -> Error {
    Error::runtime(format!("candle: {e}"))
}

/// One compiled layer; numbers index the trainable tensors and the running statistics.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Dense {
        weight: usize,
        bias: usize,
    },
    Conv {
        weight: usize,
        bias: usize,
        stride: usize,
        padding: usize,
    },
    Pool {
        max: bool,
        kernel: usize,
        stride: usize,
    },
    Flatten,
    Dropout {
        rate: f64,
        layer: usize,
    },
    BatchNorm {
        weight: usize,
        bias: usize,
        mean: usize,
        var: usize,
        epsilon: f64,
        momentum: f64,
    },
    Relu,
    LeakyRelu(f64),
    Gelu,
    Sigmoid,
    Tanh,
    Softmax,
}

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// Training step `step` of a job seeded with `seed`.
    Train { seed: u64, step: u64 },
    /// Evaluation and serving.
    Eval,
}

/// BatchNorm running statistics after a training forward pass: the new values of running
/// tensor `index`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunningUpdate {
    pub index: usize,
    pub values: Vec<f32>,
}

/// A checked, compiled [`ModelSpec`].
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    pub spec: ModelSpec,
    steps: Vec<Step>,
    /// Trainable tensors by name and shape, in spec order.
    pub trainable: Vec<(String, Vec<usize>)>,
    /// BatchNorm running statistics by name and shape, in spec order.
    pub running: Vec<(String, Vec<usize>)>,
}

impl Graph {
    /// Checks `spec` (see [`shapes::check`]) and compiles it.
    pub(crate) fn new(spec: &ModelSpec) -> Result<Self> {
        shapes::check(spec)?;
        let (mut trainable, mut running) = (Vec::new(), Vec::new());
        for (name, shape, train) in shapes::tensors(spec) {
            if train {
                trainable.push((name, shape));
            } else {
                running.push((name, shape));
            }
        }
        let index = |list: &[(String, Vec<usize>)], name: String| {
            list.iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| Error::runtime(format!("tensor {name} was not listed")))
        };
        let mut steps = Vec::with_capacity(spec.layers.len());
        for (layer_index, layer) in spec.layers.iter().enumerate() {
            let t = |suffix: &str| index(&trainable, format!("{}.{suffix}", layer.id));
            steps.push(match layer.kind {
                LayerKind::Dense { .. } => Step::Dense {
                    weight: t("weight")?,
                    bias: t("bias")?,
                },
                LayerKind::Conv2d {
                    stride, padding, ..
                } => Step::Conv {
                    weight: t("weight")?,
                    bias: t("bias")?,
                    stride,
                    padding,
                },
                LayerKind::MaxPool2d { kernel, stride } => Step::Pool {
                    max: true,
                    kernel,
                    stride,
                },
                LayerKind::AvgPool2d { kernel, stride } => Step::Pool {
                    max: false,
                    kernel,
                    stride,
                },
                LayerKind::Flatten => Step::Flatten,
                LayerKind::Dropout { rate } => Step::Dropout {
                    rate,
                    layer: layer_index,
                },
                LayerKind::BatchNorm {
                    epsilon, momentum, ..
                } => Step::BatchNorm {
                    weight: t("weight")?,
                    bias: t("bias")?,
                    mean: index(&running, format!("{}.running_mean", layer.id))?,
                    var: index(&running, format!("{}.running_var", layer.id))?,
                    epsilon,
                    momentum,
                },
                LayerKind::Relu => Step::Relu,
                LayerKind::LeakyRelu { negative_slope } => Step::LeakyRelu(negative_slope),
                LayerKind::Gelu => Step::Gelu,
                LayerKind::Sigmoid => Step::Sigmoid,
                LayerKind::Tanh => Step::Tanh,
                LayerKind::Softmax => Step::Softmax,
            });
        }
        Ok(Self {
            spec: spec.clone(),
            steps,
            trainable,
            running,
        })
    }

    /// The input tensor of a batch: `values` must hold `n` samples of the input shape.
    pub(crate) fn input(&self, values: &[f32], shape: &[usize]) -> Result<Tensor> {
        let n = shape.first().copied().unwrap_or(0);
        let want: Vec<usize> = std::iter::once(n)
            .chain(self.spec.input_shape.iter().copied())
            .collect();
        if n == 0 || shape != want.as_slice() {
            return Err(Error::invalid_input(format!(
                "batch shape {shape:?} does not match the model input [n, {}] with n > 0",
                self.spec
                    .input_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let count = want
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|c| *c == values.len())
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "batch holds {} values, shape {want:?} needs {}",
                    values.len(),
                    want.iter().product::<usize>()
                ))
            })?;
        if count > 1 << 31 {
            return Err(Error::invalid_input(format!(
                "batch of {count} values is too large"
            )));
        }
        Tensor::from_slice(values, want, &Device::Cpu).map_err(runtime)
    }

    /// The forward pass from `x` to the last layer's output, `[n, classes]`. `params` and
    /// `running` are indexed like [`trainable`](Self::trainable) and
    /// [`running`](Self::running); in training mode the new running statistics are pushed
    /// onto `updates`.
    pub(crate) fn forward(
        &self,
        x: Tensor,
        params: &[Tensor],
        running: &[Tensor],
        mode: Mode,
        updates: &mut Vec<RunningUpdate>,
    ) -> Result<Tensor> {
        let mut x = x;
        for step in &self.steps {
            x = self.layer(step, x, params, running, mode, updates)?;
        }
        Ok(x)
    }

    fn layer(
        &self,
        step: &Step,
        x: Tensor,
        p: &[Tensor],
        running: &[Tensor],
        mode: Mode,
        updates: &mut Vec<RunningUpdate>,
    ) -> Result<Tensor> {
        let out = match *step {
            Step::Dense { weight, bias } => x
                .matmul(&p[weight].t().map_err(runtime)?)
                .and_then(|y| y.broadcast_add(&p[bias])),
            Step::Conv {
                weight,
                bias,
                stride,
                padding,
            } => ops::conv2d(&x, &p[weight], &p[bias], stride, padding),
            Step::Pool {
                max,
                kernel,
                stride,
            } => ops::pool(&x, max, kernel, stride),
            Step::Flatten => x.flatten_from(1),
            Step::Dropout { rate, layer } => match mode {
                Mode::Train { seed, step } if rate > 0.0 => {
                    ops::masked(&x, dropout_mask(seed, step, layer, x.elem_count(), rate))
                }
                _ => Ok(x),
            },
            Step::BatchNorm {
                weight,
                bias,
                mean,
                var,
                epsilon,
                momentum,
            } => {
                return batch_norm(
                    &x,
                    (&p[weight], &p[bias]),
                    (mean, var, &running[mean], &running[var]),
                    (epsilon, momentum),
                    mode,
                    updates,
                )
            }
            Step::Relu => ops::relu(&x),
            Step::LeakyRelu(slope) => ops::leaky_relu(&x, slope),
            Step::Gelu => ops::gelu(&x),
            Step::Sigmoid => ops::sigmoid(&x),
            Step::Tanh => ops::tanh(&x),
            Step::Softmax => ops::softmax(&x),
        };
        out.map_err(runtime)
    }

    /// The mean loss of `out` (`[n, classes]`) against `labels`, as a scalar tensor.
    pub(crate) fn loss(&self, out: &Tensor, labels: &[i64]) -> Result<Tensor> {
        let n = labels.len();
        let classes = self.spec.classes;
        let mut onehot = vec![0f32; n * classes];
        for (row, &label) in labels.iter().enumerate() {
            onehot[row * classes + label_index(label, classes)?] = 1.0;
        }
        let onehot = Tensor::from_vec(onehot, (n, classes), &Device::Cpu).map_err(runtime)?;
        let loss = match self.spec.loss {
            Loss::CrossEntropy => ops::log_softmax(out)
                .and_then(|l| l.mul(&onehot))
                .and_then(|l| l.sum_all())
                .and_then(|l| l.affine(-1.0 / n as f64, 0.0)),
            Loss::Mse => out
                .sub(&onehot)
                .and_then(|d| d.sqr())
                .and_then(|d| d.mean_all()),
        };
        loss.map_err(runtime)
    }
}

/// `label` as a class index, or `INVALID_INPUT` when it is outside `0..classes`.
pub(crate) fn label_index(label: i64, classes: usize) -> Result<usize> {
    usize::try_from(label)
        .ok()
        .filter(|&l| l < classes)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "label {label} is outside the model's classes 0..{classes}"
            ))
        })
}

/// How many rows of `out` (`[n, classes]`) have their first highest value at the label.
pub(crate) fn correct(out: &Tensor, labels: &[i64]) -> Result<u64> {
    let rows = out.to_vec2::<f32>().map_err(runtime)?;
    Ok(rows
        .iter()
        .zip(labels)
        .filter(|(row, &label)| argmax(row) as i64 == label)
        .count() as u64)
}

/// The index of the first highest value (NaN counts as highest, as PyTorch's argmax).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || (v.is_nan() && !row[best].is_nan()) {
            best = i;
        }
    }
    best
}

/// `BatchNorm1d` on `[n, f]`, `BatchNorm2d` on `[n, c, h, w]`, with PyTorch's semantics:
/// training normalises with the batch's biased variance and moves the running statistics
/// by `momentum` towards the batch mean and unbiased variance; evaluation uses the running
/// statistics.
fn batch_norm(
    x: &Tensor,
    (weight, bias): (&Tensor, &Tensor),
    (mean_index, var_index, running_mean, running_var): (usize, usize, &Tensor, &Tensor),
    (epsilon, momentum): (f64, f64),
    mode: Mode,
    updates: &mut Vec<RunningUpdate>,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let features = dims.get(1).copied().unwrap_or(0);
    let image = dims.len() == 4;
    let per_feature: Vec<usize> = if image {
        vec![1, features, 1, 1]
    } else {
        vec![1, features]
    };
    let axes: &[usize] = if image { &[0, 2, 3] } else { &[0] };
    let count = x.elem_count() / features.max(1);
    let r = |t: &Tensor| t.reshape(per_feature.as_slice());
    let normalised = match mode {
        Mode::Train { .. } => {
            if count < 2 {
                return Err(Error::invalid_input(format!(
                    "BatchNorm needs more than one value per channel in training, got a batch of shape {dims:?}"
                )));
            }
            let go = || -> candle_core::Result<(Tensor, Vec<f32>, Vec<f32>)> {
                let mean = x.mean_keepdim(axes)?;
                let centered = x.broadcast_sub(&mean)?;
                let var = centered.sqr()?.mean_keepdim(axes)?;
                let normalised = centered.broadcast_div(&var.affine(1.0, epsilon)?.sqrt()?)?;
                Ok((
                    normalised,
                    mean.flatten_all()?.to_vec1()?,
                    var.flatten_all()?.to_vec1()?,
                ))
            };
            let (normalised, mean, var) = go().map_err(runtime)?;
            let unbias = count as f64 / (count - 1) as f64;
            let old_mean = running_mean.to_vec1::<f32>().map_err(runtime)?;
            let old_var = running_var.to_vec1::<f32>().map_err(runtime)?;
            let blend =
                |old: f32, new: f64| ((1.0 - momentum) * f64::from(old) + momentum * new) as f32;
            updates.push(RunningUpdate {
                index: mean_index,
                values: old_mean
                    .iter()
                    .zip(&mean)
                    .map(|(&o, &m)| blend(o, f64::from(m)))
                    .collect(),
            });
            updates.push(RunningUpdate {
                index: var_index,
                values: old_var
                    .iter()
                    .zip(&var)
                    .map(|(&o, &v)| blend(o, f64::from(v) * unbias))
                    .collect(),
            });
            normalised
        }
        Mode::Eval => {
            let go = || {
                let centered = x.broadcast_sub(&r(running_mean)?)?;
                centered.broadcast_div(&r(running_var)?.affine(1.0, epsilon)?.sqrt()?)
            };
            go().map_err(runtime)?
        }
    };
    let go = || {
        normalised
            .broadcast_mul(&r(weight)?)?
            .broadcast_add(&r(bias)?)
    };
    go().map_err(runtime)
}

#[cfg(test)]
mod tests;
