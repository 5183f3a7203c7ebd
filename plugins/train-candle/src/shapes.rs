//! Checks a [`ModelSpec`] before anything is allocated: every layer's declared parameters
//! must fit the shape it receives, its declared output shape must be what it produces, the
//! last layer must be `classes` wide, and sizes must stay within bounds. The host validates
//! the same graph; this is the backend refusing a spec it cannot run instead of crashing.

use cyxwiz_sdk::training::{LayerKind, ModelSpec, NamedTensor};
use cyxwiz_sdk::{Error, Result};

/// The most trainable parameters a model may have (4 GiB of float32).
pub(crate) const MAX_PARAMETERS: u64 = 1 << 30;
/// The most values one sample's activation may hold at any layer.
pub(crate) const MAX_SAMPLE_VALUES: usize = 1 << 26;

fn refuse(spec: &ModelSpec, index: usize, why: String) -> Error {
    let layer = &spec.layers[index];
    Error::invalid_input(format!(
        "model layer {} ({}, id {:?}): {why}",
        index, layer.origin, layer.id
    ))
}

/// PyTorch's output size of a window: `floor((size + 2 * padding - kernel) / stride) + 1`.
fn window(size: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = size.checked_add(padding.checked_mul(2)?)?;
    if kernel == 0 || stride == 0 || kernel > padded {
        return None;
    }
    Some((padded - kernel) / stride + 1)
}

/// The output shape `kind` produces from `input`, or why it cannot take it.
fn output(kind: &LayerKind, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let image = |what: &str| match *input {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(format!(
            "{what} needs a [channels, height, width] input, got {input:?}"
        )),
    };
    Ok(match *kind {
        LayerKind::Dense { inputs, units } => {
            if input != [inputs] {
                return Err(format!(
                    "Dense expects {inputs} input features but receives shape {input:?}"
                ));
            }
            if units == 0 {
                return Err("Dense needs at least one unit".into());
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
            if c != in_channels {
                return Err(format!(
                    "Conv2d expects {in_channels} input channels but receives {c}"
                ));
            }
            if filters == 0 {
                return Err("Conv2d needs at least one filter".into());
            }
            match (
                window(h, kernel, stride, padding),
                window(w, kernel, stride, padding),
            ) {
                (Some(oh), Some(ow)) => vec![filters, oh, ow],
                _ => {
                    return Err(format!(
                        "Conv2d kernel {kernel}, stride {stride}, padding {padding} does not fit a {h}x{w} input"
                    ))
                }
            }
        }
        LayerKind::MaxPool2d { kernel, stride } | LayerKind::AvgPool2d { kernel, stride } => {
            let (c, h, w) = image("pooling")?;
            match (window(h, kernel, stride, 0), window(w, kernel, stride, 0)) {
                (Some(oh), Some(ow)) => vec![c, oh, ow],
                _ => {
                    return Err(format!(
                        "pool size {kernel}, stride {stride} does not fit a {h}x{w} input"
                    ))
                }
            }
        }
        LayerKind::Flatten => vec![input.iter().product()],
        LayerKind::Dropout { rate } => {
            if !(0.0..1.0).contains(&rate) {
                return Err(format!("Dropout rate {rate} is outside [0, 1)"));
            }
            input.to_vec()
        }
        LayerKind::BatchNorm {
            features,
            epsilon,
            momentum,
        } => {
            let got = match *input {
                [f] | [f, _, _] => f,
                _ => return Err(format!("BatchNorm cannot take shape {input:?}")),
            };
            if got != features {
                return Err(format!(
                    "BatchNorm has {features} features but receives {got}"
                ));
            }
            if !(epsilon > 0.0 && epsilon.is_finite() && (0.0..=1.0).contains(&momentum)) {
                return Err(format!(
                    "BatchNorm epsilon {epsilon} must be > 0 and momentum {momentum} in [0, 1]"
                ));
            }
            input.to_vec()
        }
        LayerKind::LeakyRelu { negative_slope } => {
            if !negative_slope.is_finite() {
                return Err(format!("LeakyReLU slope {negative_slope} is not finite"));
            }
            input.to_vec()
        }
        LayerKind::Softmax => {
            if input.len() != 1 {
                return Err(format!("Softmax needs a flat input, got {input:?}"));
            }
            input.to_vec()
        }
        LayerKind::Relu | LayerKind::Gelu | LayerKind::Sigmoid | LayerKind::Tanh => input.to_vec(),
    })
}

fn values(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Checks `spec` (see the module doc); `INVALID_INPUT` naming the layer otherwise.
pub(crate) fn check(spec: &ModelSpec) -> Result<()> {
    let input = &spec.input_shape;
    if !matches!(input.len(), 1 | 3) || input.contains(&0) {
        return Err(Error::invalid_input(format!(
            "model input shape {input:?} must be [features] or [channels, height, width] with no zero dimension"
        )));
    }
    if spec.classes == 0 {
        return Err(Error::invalid_input("model has 0 classes"));
    }
    let mut shape = input.clone();
    let mut parameters = 0u64;
    for (index, layer) in spec.layers.iter().enumerate() {
        let out = output(&layer.kind, &shape).map_err(|why| refuse(spec, index, why))?;
        if out != layer.output_shape {
            return Err(refuse(
                spec,
                index,
                format!(
                    "declares output shape {:?} but produces {out:?} from {shape:?}",
                    layer.output_shape
                ),
            ));
        }
        if values(&out).is_none_or(|n| n > MAX_SAMPLE_VALUES) {
            return Err(refuse(
                spec,
                index,
                format!("its output {out:?} holds more than {MAX_SAMPLE_VALUES} values per sample"),
            ));
        }
        parameters = parameters.saturating_add(layer.kind.parameter_count());
        shape = out;
    }
    if parameters > MAX_PARAMETERS {
        return Err(Error::invalid_input(format!(
            "model has {parameters} parameters, more than the {MAX_PARAMETERS} this backend takes"
        )));
    }
    if shape != [spec.classes] {
        return Err(Error::invalid_input(format!(
            "model output shape {shape:?} must be [{}] (one value per class)",
            spec.classes
        )));
    }
    Ok(())
}

/// The model tensors `spec` has, by name and shape, in spec order: trainable ones (weight,
/// bias) flagged `true`, BatchNorm running statistics `false`. Names as in
/// [`cyxwiz_sdk::training::initial_parameters`].
pub(crate) fn tensors(spec: &ModelSpec) -> Vec<(String, Vec<usize>, bool)> {
    let mut out = Vec::new();
    for layer in &spec.layers {
        let name = |suffix: &str| format!("{}.{suffix}", layer.id);
        match layer.kind {
            LayerKind::Dense { inputs, units } => {
                out.push((name("weight"), vec![units, inputs], true));
                out.push((name("bias"), vec![units], true));
            }
            LayerKind::Conv2d {
                in_channels,
                filters,
                kernel,
                ..
            } => {
                out.push((
                    name("weight"),
                    vec![filters, in_channels, kernel, kernel],
                    true,
                ));
                out.push((name("bias"), vec![filters], true));
            }
            LayerKind::BatchNorm { features, .. } => {
                out.push((name("weight"), vec![features], true));
                out.push((name("bias"), vec![features], true));
                out.push((name("running_mean"), vec![features], false));
                out.push((name("running_var"), vec![features], false));
            }
            _ => {}
        }
    }
    out
}

/// Picks `name` with `shape` out of `given`, or an `INVALID_INPUT` error naming it.
pub(crate) fn take(given: &mut Vec<NamedTensor>, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let at = given
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| Error::invalid_input(format!("tensor {name} is missing")))?;
    let t = given.swap_remove(at);
    if t.shape != shape || t.data.len() != values(shape).unwrap_or(usize::MAX) {
        return Err(Error::invalid_input(format!(
            "tensor {name} has shape {:?}, expected {shape:?}",
            t.shape
        )));
    }
    Ok(t.data)
}

#[cfg(test)]
pub(crate) mod tests;
