//! The spec's layers as libtorch operations, in PyTorch's semantics: which parameters each
//! layer owns (by index into the network's parameter list) and its forward pass. Dropout
//! multiplies in the SDK's seeded mask, never libtorch's RNG, so every backend drops the same
//! units. Parameter storage, the loss and the optimizer belong to `net` and `optim`.

use super::TorchResult;
use cyxwiz_sdk::{
    training::{dropout_mask, LayerKind, ModelSpec, StepContext},
    Error, Result,
};
use tch::{Device, Kind, Tensor};

/// One layer, its parameters referred to by index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Dense {
        weight: usize,
        bias: usize,
    },
    Conv2d {
        weight: usize,
        bias: usize,
        stride: i64,
        padding: i64,
    },
    MaxPool2d {
        kernel: i64,
        stride: i64,
    },
    AvgPool2d {
        kernel: i64,
        stride: i64,
    },
    Flatten,
    Dropout {
        rate: f64,
    },
    /// `running` indexes the network's buffers: mean at `running`, variance at `running + 1`.
    BatchNorm {
        weight: usize,
        bias: usize,
        running: usize,
        epsilon: f64,
        momentum: f64,
    },
    Relu,
    LeakyRelu {
        slope: f64,
    },
    Gelu,
    Sigmoid,
    Tanh,
    Softmax,
}

/// Checks that the spec's shapes chain as PyTorch computes them, from the input to an output
/// of `[classes]`; an error names the layer. (The host validates specs; a backend must not
/// trust a job it did not parse, and libtorch would fail mid-step otherwise.)
pub(crate) fn check_shapes(spec: &ModelSpec) -> Result<()> {
    let mut shape = spec.input_shape.clone();
    for layer in &spec.layers {
        let bad =
            |why: String| Error::invalid_input(format!("{} (`{}`): {why}", layer.origin, layer.id));
        let image = |what: &str| match shape[..] {
            [c, h, w] => Ok((c, h, w)),
            _ => Err(bad(format!("{what} takes [C, H, W], gets {shape:?}"))),
        };
        let window = |n: usize, k: usize, s: usize, p: usize| {
            (k > 0 && s > 0 && n + 2 * p >= k).then(|| (n + 2 * p - k) / s + 1)
        };
        let out = match layer.kind {
            LayerKind::Dense { inputs, units } => {
                if shape != [inputs] {
                    return Err(bad(format!("Dense takes [{inputs}], gets {shape:?}")));
                }
                vec![units]
            }
            LayerKind::Conv2d {
                in_channels,
                filters,
                kernel,
                stride,
                padding,
            } => {
                let (c, h, w) = image("Conv2d")?;
                match (window(h, kernel, stride, padding), window(w, kernel, stride, padding)) {
                    (Some(oh), Some(ow)) if c == in_channels => vec![filters, oh, ow],
                    _ => {
                        return Err(bad(format!(
                            "Conv2d({in_channels}, {filters}, kernel {kernel}, stride {stride}, padding {padding}) does not fit {shape:?}"
                        )))
                    }
                }
            }
            LayerKind::MaxPool2d { kernel, stride } | LayerKind::AvgPool2d { kernel, stride } => {
                let (c, h, w) = image("pooling")?;
                match (window(h, kernel, stride, 0), window(w, kernel, stride, 0)) {
                    (Some(oh), Some(ow)) => vec![c, oh, ow],
                    _ => {
                        return Err(bad(format!(
                            "pooling window {kernel}, stride {stride} does not fit {shape:?}"
                        )))
                    }
                }
            }
            LayerKind::Flatten => vec![shape.iter().product()],
            LayerKind::Dropout { rate } if !(0.0..1.0).contains(&rate) => {
                return Err(bad(format!("dropout rate must be in [0, 1), got {rate}")))
            }
            LayerKind::BatchNorm { features, .. } if !matches!(shape[..], [f] | [f, _, _] if f == features) => {
                return Err(bad(format!("BatchNorm({features}) does not fit {shape:?}")))
            }
            LayerKind::Softmax if shape.len() != 1 => {
                return Err(bad(format!("Softmax takes a flat input, gets {shape:?}")))
            }
            _ => shape.clone(),
        };
        if out != layer.output_shape {
            return Err(bad(format!(
                "declared output shape {:?}, computed {out:?}",
                layer.output_shape
            )));
        }
        shape = out;
    }
    if shape != [spec.classes] {
        return Err(Error::invalid_input(format!(
            "the model's output has shape {shape:?}; the loss takes [{}] (the classes)",
            spec.classes
        )));
    }
    Ok(())
}

/// A tensor a layer owns: its spec-name suffix and shape.
pub(crate) struct Slot {
    pub suffix: &'static str,
    pub shape: Vec<usize>,
}

/// The trainable tensors (`weight`, `bias`) and buffers (running statistics) of a layer.
pub(crate) fn slots(kind: &LayerKind) -> (Vec<Slot>, Vec<Slot>) {
    let slot = |suffix, shape| Slot { suffix, shape };
    match *kind {
        LayerKind::Dense { inputs, units } => (
            vec![
                slot("weight", vec![units, inputs]),
                slot("bias", vec![units]),
            ],
            vec![],
        ),
        LayerKind::Conv2d {
            in_channels,
            filters,
            kernel,
            ..
        } => (
            vec![
                slot("weight", vec![filters, in_channels, kernel, kernel]),
                slot("bias", vec![filters]),
            ],
            vec![],
        ),
        LayerKind::BatchNorm { features, .. } => (
            vec![slot("weight", vec![features]), slot("bias", vec![features])],
            vec![
                slot("running_mean", vec![features]),
                slot("running_var", vec![features]),
            ],
        ),
        _ => (vec![], vec![]),
    }
}

/// The op of `kind` whose parameters start at index `param` and buffers at `buffer`.
pub(crate) fn op(kind: &LayerKind, param: usize, buffer: usize) -> Op {
    let i = |v: usize| v as i64;
    match *kind {
        LayerKind::Dense { .. } => Op::Dense {
            weight: param,
            bias: param + 1,
        },
        LayerKind::Conv2d {
            stride, padding, ..
        } => Op::Conv2d {
            weight: param,
            bias: param + 1,
            stride: i(stride),
            padding: i(padding),
        },
        LayerKind::MaxPool2d { kernel, stride } => Op::MaxPool2d {
            kernel: i(kernel),
            stride: i(stride),
        },
        LayerKind::AvgPool2d { kernel, stride } => Op::AvgPool2d {
            kernel: i(kernel),
            stride: i(stride),
        },
        LayerKind::Flatten => Op::Flatten,
        LayerKind::Dropout { rate } => Op::Dropout { rate },
        LayerKind::BatchNorm {
            epsilon, momentum, ..
        } => Op::BatchNorm {
            weight: param,
            bias: param + 1,
            running: buffer,
            epsilon,
            momentum,
        },
        LayerKind::Relu => Op::Relu,
        LayerKind::LeakyRelu { negative_slope } => Op::LeakyRelu {
            slope: negative_slope,
        },
        LayerKind::Gelu => Op::Gelu,
        LayerKind::Sigmoid => Op::Sigmoid,
        LayerKind::Tanh => Op::Tanh,
        LayerKind::Softmax => Op::Softmax,
    }
}

/// What a forward pass reads besides its input.
pub(crate) struct Pass<'a> {
    pub params: &'a [Tensor],
    pub buffers: &'a [Tensor],
    pub device: Device,
    /// `Some` for a training step (dropout on, batch statistics), `None` for evaluation.
    pub train: Option<&'a StepContext>,
}

impl Op {
    /// Applies the layer at spec index `index` to `x` (batch axis first).
    pub(crate) fn forward(&self, index: usize, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let p = |i: usize| &pass.params[i];
        let what = "forward";
        match *self {
            Op::Dense { weight, bias } => x.f_linear(p(weight), Some(p(bias))).or_fail(what),
            Op::Conv2d {
                weight,
                bias,
                stride,
                padding,
            } => x
                .f_conv2d(
                    p(weight),
                    Some(p(bias)),
                    [stride, stride],
                    [padding, padding],
                    [1, 1],
                    1,
                )
                .or_fail(what),
            Op::MaxPool2d { kernel, stride } => x
                .f_max_pool2d([kernel, kernel], [stride, stride], [0, 0], [1, 1], false)
                .or_fail(what),
            Op::AvgPool2d { kernel, stride } => x
                .f_avg_pool2d(
                    [kernel, kernel],
                    [stride, stride],
                    [0, 0],
                    false,
                    true,
                    None,
                )
                .or_fail(what),
            Op::Flatten => x.f_flatten(1, -1).or_fail(what),
            Op::Dropout { rate } => match pass.train {
                Some(ctx) if rate > 0.0 => {
                    let shape = x.size();
                    let len = shape.iter().product::<i64>() as usize;
                    let mask = dropout_mask(ctx.seed, ctx.step, index, len, rate);
                    let mask = Tensor::f_from_slice(&mask)
                        .and_then(|m| m.f_reshape(&shape))
                        .and_then(|m| m.f_to_device(pass.device))
                        .or_fail("dropout mask")?;
                    x.f_mul(&mask).or_fail(what)
                }
                _ => Ok(x.shallow_clone()),
            },
            Op::BatchNorm {
                weight,
                bias,
                running,
                epsilon,
                momentum,
            } => x
                .f_batch_norm(
                    Some(p(weight)),
                    Some(p(bias)),
                    Some(&pass.buffers[running]),
                    Some(&pass.buffers[running + 1]),
                    pass.train.is_some(),
                    momentum,
                    epsilon,
                    true,
                )
                .or_fail(what),
            Op::Relu => x.f_relu().or_fail(what),
            Op::LeakyRelu { slope } => {
                // tch has no slope argument for leaky_relu: x where x > 0, else slope * x,
                // which is PyTorch's definition and gradient.
                let positive = x.f_gt(0.0).or_fail(what)?;
                let scaled = x.f_mul_scalar(slope).or_fail(what)?;
                x.f_where_self(&positive, &scaled).or_fail(what)
            }
            Op::Gelu => x.f_gelu("none").or_fail(what),
            Op::Sigmoid => x.f_sigmoid().or_fail(what),
            Op::Tanh => x.f_tanh().or_fail(what),
            Op::Softmax => x.f_softmax(-1, Kind::Float).or_fail(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyxwiz_sdk::{
        training::{Layer, Loss, Optimizer, OptimizerKind},
        ErrorKind,
    };

    fn spec(layers: Vec<(LayerKind, Vec<usize>)>) -> ModelSpec {
        ModelSpec {
            input_shape: vec![1, 8, 8],
            classes: 3,
            layers: layers
                .into_iter()
                .enumerate()
                .map(|(i, (kind, output_shape))| Layer {
                    id: i.to_string(),
                    origin: format!("node {i}"),
                    kind,
                    output_shape,
                })
                .collect(),
            loss: Loss::CrossEntropy,
            softmax_folded: false,
            optimizer: Optimizer {
                kind: OptimizerKind::Sgd,
                learning_rate: 0.1,
                momentum: Some(0.0),
                beta1: None,
                beta2: None,
                epsilon: None,
                weight_decay: Some(0.0),
            },
        }
    }

    fn conv(in_channels: usize, kernel: usize, padding: usize) -> LayerKind {
        LayerKind::Conv2d {
            in_channels,
            filters: 2,
            kernel,
            stride: 1,
            padding,
        }
    }

    #[test]
    fn shapes_must_chain_to_the_classes() {
        let pool = LayerKind::MaxPool2d {
            kernel: 2,
            stride: 2,
        };
        let good = vec![
            (conv(1, 3, 1), vec![2, 8, 8]),
            (pool.clone(), vec![2, 4, 4]),
            (LayerKind::Flatten, vec![32]),
            (
                LayerKind::Dense {
                    inputs: 32,
                    units: 3,
                },
                vec![3],
            ),
        ];
        check_shapes(&spec(good.clone())).unwrap();
        let broken = |i: usize, layer: (LayerKind, Vec<usize>)| {
            let mut layers = good.clone();
            layers[i] = layer;
            let err = check_shapes(&spec(layers)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::INVALID_INPUT, "{err}");
            err.message
        };
        assert!(broken(0, (conv(3, 3, 1), vec![2, 8, 8])).contains("node 0"));
        assert!(broken(0, (conv(1, 11, 1), vec![2, 8, 8])).contains("does not fit"));
        assert!(broken(1, (pool, vec![2, 3, 3])).contains("computed [2, 4, 4]"));
        let err = broken(
            3,
            (
                LayerKind::Dense {
                    inputs: 32,
                    units: 4,
                },
                vec![4],
            ),
        );
        assert!(err.contains("[3]"), "{err}");
        assert!(broken(2, (LayerKind::Softmax, vec![2, 4, 4])).contains("flat"));
    }
}
