//! The training backend: the SDK's shared loop ([`cyxwiz_sdk::training::run`]) driving a
//! network built from the host's `ModelSpec` on libtorch autograd. The layers and their
//! forward pass live in `layers`, the network (parameters, loss, the [`Network`] methods) in
//! `net`, the optimizers (written out, so their state can be checkpointed) in `optim`. The
//! loop, checkpoints, dropout masks and initial weights are the SDK's, so this backend and
//! `train-candle` see the same numbers.
//!
//! [`Network`]: cyxwiz_sdk::training::Network

mod layers;
mod net;
mod optim;

use crate::convert::first_line;
use cyxwiz_sdk::{
    training::{run, TrainingHost, TrainingJob, TrainingOutcome},
    Error, Result, Trainer,
};
use tch::Device;

/// libtorch's training backend.
#[derive(Debug, Default)]
pub struct TorchTrainer;

impl Trainer for TorchTrainer {
    fn train(&self, job: &TrainingJob, host: &mut dyn TrainingHost) -> Result<TrainingOutcome> {
        let device = device(&job.device)?;
        if job.threads > 0 {
            // libtorch's intra-op thread pool is process-wide: the last job (or model load)
            // that sets it decides for every job and model running in this process.
            tch::set_num_threads(i32::try_from(job.threads).unwrap_or(i32::MAX));
        }
        if let Device::Cuda(_) = device {
            // Deterministic kernels: no cuDNN autotuning, whose choice may vary between runs.
            tch::Cuda::cudnn_set_benchmark(false);
        }
        run(job, host, |spec, parameters, state| {
            net::TorchNet::build(spec, parameters, state, device)
        })
    }
}

/// The libtorch device of a job's `cpu` / `cuda:N`.
pub(crate) fn device(name: &str) -> Result<Device> {
    let index = match name {
        "" | "cpu" => return Ok(Device::Cpu),
        "cuda" => Some(0),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok()),
    };
    let Some(index) = index else {
        return Err(Error::invalid_input(format!(
            "device must be `cpu` or `cuda:N`, got `{name}`"
        )));
    };
    if !tch::Cuda::is_available() {
        return Err(Error::unsupported(format!(
            "device `{name}`: no CUDA device is available to this libtorch (a CPU-only build, or no GPU visible)"
        )));
    }
    let count = tch::Cuda::device_count();
    if i64::try_from(index).map_or(true, |i| i >= count) {
        return Err(Error::unsupported(format!(
            "device `{name}`: no such CUDA device, libtorch sees {count}"
        )));
    }
    Ok(Device::Cuda(index))
}

/// Turns libtorch's errors into runtime errors naming what failed.
pub(crate) trait TorchResult<T> {
    /// The value, or a runtime error `"{what}: {libtorch's message}"`.
    fn or_fail(self, what: &str) -> Result<T>;
}

impl<T> TorchResult<T> for std::result::Result<T, tch::TchError> {
    fn or_fail(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::runtime(format!("{what}: {}", first_line(&e.to_string()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyxwiz_sdk::ErrorKind;

    #[test]
    fn devices_parse_and_cuda_without_a_gpu_is_unsupported() {
        assert_eq!(device("cpu").unwrap(), Device::Cpu);
        assert_eq!(device("tpu:0").unwrap_err().kind, ErrorKind::INVALID_INPUT);
        assert_eq!(device("cuda:x").unwrap_err().kind, ErrorKind::INVALID_INPUT);
        if !tch::Cuda::is_available() {
            let err = device("cuda:0").unwrap_err();
            assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
            assert!(err.message.contains("no CUDA device"), "{err}");
        } else {
            let err = device("cuda:999").unwrap_err();
            assert_eq!(err.kind, ErrorKind::UNSUPPORTED, "{err}");
        }
    }
}
