//! Where a session runs: `LoadOptions.device` `cpu` (default), `cuda` / `cuda:N` (the CUDA
//! execution provider, falling back to the CPU with a warning when this ONNX Runtime build has
//! no CUDA provider or the GPU cannot be used), or `auto` / `auto:N` (CUDA when available,
//! else the CPU). The load option `gpu_memory_limit_mb` caps the CUDA memory arena.

use cyxwiz_sdk::{Error, Result};
use ort::ep::{ExecutionProvider, CUDA};

/// The requested device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// The GPU ordinal, and whether falling back to the CPU is silent (`auto`).
    Cuda {
        id: i32,
        auto: bool,
    },
}

impl Device {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Cuda { id: 0, auto: true }),
            "cuda" | "gpu" => Ok(Self::Cuda { id: 0, auto: false }),
            other => {
                let (auto, number) = match other.strip_prefix("auto:") {
                    Some(n) => (true, Some(n)),
                    None => (false, other.strip_prefix("cuda:")),
                };
                number
                    .and_then(|n| n.parse::<i32>().ok())
                    .filter(|n| *n >= 0)
                    .map(|id| Self::Cuda { id, auto })
                    .ok_or_else(|| {
                        Error::invalid_input(format!(
                            "device `{text}`: onnx-ort runs on `cpu`, `cuda`, `cuda:N`, `auto` or `auto:N`"
                        ))
                    })
            }
        }
    }
}

/// Why CUDA cannot be used with the loaded ONNX Runtime, if it cannot.
pub fn cuda_unavailable() -> Option<String> {
    match CUDA::is_available() {
        Ok(true) => None,
        Ok(false) => Some(
            "this ONNX Runtime build has no CUDA execution provider (the PyPI `onnxruntime` wheel is CPU-only; point [runtimes.onnx-ort] library at `onnxruntime-gpu`'s)"
                .to_string(),
        ),
        Err(e) => Some(format!("cannot list ONNX Runtime's execution providers: {e}")),
    }
}

/// The CUDA provider for GPU `id`, its memory arena capped at `memory_limit_mb` if given
/// (the node's `[devices] max_gpu_memory_mb`), failing (instead of ort's silent fallback)
/// when it cannot be registered, so the caller decides what to do.
pub fn cuda(id: i32, memory_limit_mb: Option<u64>) -> ort::ep::ExecutionProviderDispatch {
    let mut provider = CUDA::default().with_device_id(id);
    if let Some(mb) = memory_limit_mb {
        provider = provider
            .with_memory_limit(usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX));
    }
    provider.build().error_on_failure()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(Device::parse("cpu").ok(), Some(Device::Cpu));
        assert_eq!(Device::parse("").ok(), Some(Device::Cpu));
        assert_eq!(
            Device::parse("CUDA:1").ok(),
            Some(Device::Cuda { id: 1, auto: false })
        );
        assert_eq!(
            Device::parse("auto").ok(),
            Some(Device::Cuda { id: 0, auto: true })
        );
        assert_eq!(
            Device::parse("auto:2").ok(),
            Some(Device::Cuda { id: 2, auto: true })
        );
        assert!(Device::parse("cuda:-1").is_err());
        assert!(Device::parse("auto:x").is_err());
        assert!(Device::parse("tpu").is_err());
    }
}
