//! The network the shared loop drives: parameters as libtorch leaf tensors (`requires_grad`)
//! and BatchNorm running statistics as plain buffers on the job's device, the forward pass
//! through `layers`, the loss, backward by `torch.autograd.grad` (no `.grad` fields to zero)
//! and the update through `optim`. Per step only the batch (and each Dropout layer's mask)
//! crosses to the device, and two numbers (loss and correct count) come back in one copy.

use super::{
    layers::{check_shapes, op, slots, Op, Pass},
    optim::Optim,
    TorchResult,
};
use cyxwiz_sdk::{
    training::{Batch, Loss, ModelSpec, NamedTensor, Network, StepContext, StepStats, TensorFile},
    Error, Result,
};
use tch::{Device, Kind, Reduction, Tensor};

/// Where a model tensor lives.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Param(usize),
    Buffer(usize),
}

/// A model built from a [`ModelSpec`] on one device.
pub(crate) struct TorchNet {
    ops: Vec<Op>,
    params: Vec<Tensor>,
    buffers: Vec<Tensor>,
    /// Every model tensor by spec name, in spec order.
    names: Vec<(String, Slot)>,
    /// The spec name of each parameter.
    param_names: Vec<String>,
    optim: Optim,
    loss: Loss,
    classes: i64,
    /// One sample's shape and element count.
    sample: Vec<i64>,
    sample_len: usize,
    device: Device,
}

/// A host tensor on `device`.
fn to_device(t: &NamedTensor, device: Device) -> Result<Tensor> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_slice(&t.data)
        .and_then(|x| x.f_reshape(&shape))
        .and_then(|x| x.f_to_device(device))
        .or_fail(&format!("tensor {}", t.name))
}

fn dims(t: &Tensor) -> Vec<usize> {
    t.size().iter().map(|&d| d as usize).collect()
}

/// A device tensor copied back to the host as float32.
fn to_host(name: String, t: &Tensor) -> Result<NamedTensor> {
    let _guard = tch::no_grad_guard();
    let what = format!("reading tensor {name}");
    let host = t
        .f_to_device(Device::Cpu)
        .and_then(|x| x.f_to_kind(Kind::Float))
        .and_then(|x| x.f_contiguous())
        .or_fail(&what)?;
    let shape = dims(&host);
    let len = shape.iter().product();
    let mut data = vec![0f32; len];
    host.f_copy_data(&mut data, len).or_fail(&what)?;
    Ok(NamedTensor { name, shape, data })
}

impl TorchNet {
    /// The network of `spec` with `parameters` (every model tensor, by spec name) and the
    /// optimizer's `state` (missing tensors start at zero) on `device`.
    pub(crate) fn build(
        spec: &ModelSpec,
        parameters: Vec<NamedTensor>,
        state: Vec<NamedTensor>,
        device: Device,
    ) -> Result<Self> {
        check_shapes(spec)?;
        let model = TensorFile {
            tensors: parameters,
            metadata: Default::default(),
        };
        let (mut ops, mut params, mut buffers) = (Vec::new(), Vec::new(), Vec::new());
        let (mut names, mut param_names) = (Vec::new(), Vec::new());
        for layer in &spec.layers {
            let (trainable, stats) = slots(&layer.kind);
            ops.push(op(&layer.kind, params.len(), buffers.len()));
            for s in trainable {
                let name = format!("{}.{}", layer.id, s.suffix);
                let t = to_device(model.expect(&name, &s.shape)?, device)?
                    .f_set_requires_grad(true)
                    .or_fail(&name)?;
                names.push((name.clone(), Slot::Param(params.len())));
                param_names.push(name);
                params.push(t);
            }
            for s in stats {
                let name = format!("{}.{}", layer.id, s.suffix);
                let t = to_device(model.expect(&name, &s.shape)?, device)?;
                names.push((name, Slot::Buffer(buffers.len())));
                buffers.push(t);
            }
        }
        let saved = TensorFile {
            tensors: state,
            metadata: Default::default(),
        };
        let mut optim = Optim::new(&spec.optimizer);
        for (name, p) in param_names.iter().zip(&params) {
            let mut slots = Vec::new();
            for slot in optim.slot_names() {
                let key = format!("{name}.{slot}");
                let t = if saved.get(&key).is_some() {
                    to_device(saved.expect(&key, &dims(p))?, device)?
                } else {
                    p.f_zeros_like().or_fail(&key)?
                };
                slots.push(t);
            }
            optim.push_state(slots);
        }
        let sample: Vec<i64> = spec.input_shape.iter().map(|&d| d as i64).collect();
        Ok(Self {
            ops,
            params,
            buffers,
            names,
            param_names,
            optim,
            loss: spec.loss,
            classes: spec.classes as i64,
            sample_len: spec.input_shape.iter().product(),
            sample,
            device,
        })
    }

    /// The batch's inputs (in the model's input shape) and labels on the device.
    fn tensors(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let n = batch.labels.len();
        if n == 0 || batch.inputs.len() != n * self.sample_len {
            return Err(Error::invalid_input(format!(
                "a batch of {n} labels has {} input values; the model takes {} per sample",
                batch.inputs.len(),
                self.sample_len
            )));
        }
        if let Some(bad) = batch.labels.iter().find(|&&l| l < 0 || l >= self.classes) {
            return Err(Error::invalid_input(format!(
                "label {bad} is outside the model's {} classes",
                self.classes
            )));
        }
        let mut shape = vec![n as i64];
        shape.extend_from_slice(&self.sample);
        let x = Tensor::f_from_slice(&batch.inputs)
            .and_then(|x| x.f_reshape(&shape))
            .and_then(|x| x.f_to_device(self.device))
            .or_fail("batch inputs")?;
        let y = Tensor::f_from_slice(&batch.labels)
            .and_then(|y| y.f_to_device(self.device))
            .or_fail("batch labels")?;
        Ok((x, y))
    }

    fn forward(&self, x: Tensor, train: Option<&StepContext>) -> Result<Tensor> {
        let pass = Pass {
            params: &self.params,
            buffers: &self.buffers,
            device: self.device,
            train,
        };
        let mut x = x;
        for (index, op) in self.ops.iter().enumerate() {
            x = op.forward(index, &x, &pass)?;
        }
        Ok(x)
    }

    /// The mean loss of `out` against the labels.
    fn loss(&self, out: &Tensor, labels: &Tensor) -> Result<Tensor> {
        match self.loss {
            Loss::CrossEntropy => out
                .f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
                .or_fail("cross-entropy loss"),
            Loss::Mse => labels
                .f_one_hot(self.classes)
                .and_then(|t| t.f_to_kind(Kind::Float))
                .and_then(|t| out.f_mse_loss(&t, Reduction::Mean))
                .or_fail("MSE loss"),
        }
    }

    /// The loss and the number of correct samples as one two-element tensor, read later in
    /// one copy (one device sync per step).
    fn stats(&self, loss: &Tensor, out: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let correct = out
            .f_argmax(-1, false)
            .and_then(|a| a.f_eq_tensor(labels))
            .and_then(|c| c.f_sum(Kind::Double))
            .or_fail("accuracy")?;
        let loss = loss
            .f_detach()
            .and_then(|l| l.f_to_kind(Kind::Double))
            .or_fail("loss")?;
        Tensor::f_stack(&[loss, correct], 0).or_fail("step statistics")
    }

    fn read(stats: &Tensor, samples: usize) -> Result<StepStats> {
        let mut values = [0f64; 2];
        stats
            .f_to_device(Device::Cpu)
            .and_then(|s| s.f_copy_data(&mut values, 2))
            .or_fail("step statistics")?;
        Ok(StepStats {
            loss: values[0],
            correct: values[1] as u64,
            samples: samples as u64,
        })
    }
}

impl Network for TorchNet {
    fn train_step(&mut self, batch: &Batch, ctx: &StepContext) -> Result<StepStats> {
        let (x, y) = self.tensors(batch)?;
        let out = self.forward(x, Some(ctx))?;
        let loss = self.loss(&out, &y)?;
        let stats = self.stats(&loss, &out, &y)?;
        let grads =
            Tensor::f_run_backward(&[&loss], &self.params, false, false).or_fail("backward")?;
        self.optim.step(&mut self.params, &grads, ctx)?;
        Self::read(&stats, batch.len())
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<StepStats> {
        let _guard = tch::no_grad_guard();
        let (x, y) = self.tensors(batch)?;
        let out = self.forward(x, None)?;
        let loss = self.loss(&out, &y)?;
        let stats = self.stats(&loss, &out, &y)?;
        Self::read(&stats, batch.len())
    }

    fn parameters(&self) -> Result<Vec<NamedTensor>> {
        self.names
            .iter()
            .map(|(name, slot)| {
                let t = match *slot {
                    Slot::Param(i) => &self.params[i],
                    Slot::Buffer(i) => &self.buffers[i],
                };
                to_host(name.clone(), t)
            })
            .collect()
    }

    fn optimizer_state(&self) -> Result<Vec<NamedTensor>> {
        self.optim
            .state()
            .map(|(i, slot, t)| to_host(format!("{}.{slot}", self.param_names[i]), t))
            .collect()
    }
}
