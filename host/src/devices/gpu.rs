//! NVIDIA GPUs through NVML: the [`Gpus`] handle (NVML loaded once, at start), the static
//! facts of each GPU for the inventory, and the live readings the sampler takes. Without a
//! driver the handle is empty and every query answers "no GPUs"; it never fails or panics.
//!
//! `nvml-wrapper` opens `libnvidia-ml.so.1` at run time (dlopen), so the node builds and runs
//! on machines with no NVIDIA software at all.

use nvml_wrapper::{enum_wrappers::device::TemperatureSensor, error::NvmlError, Device, Nvml};
use serde::Serialize;

/// One GPU as the inventory reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gpu {
    /// NVML index (what `CUDA_VISIBLE_DEVICES` and the `gpu` metric label use).
    pub index: u32,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Stable identifier, e.g. "GPU-5c1b...".
    pub uuid: String,
    /// Installed memory; 0 when the driver does not say.
    pub memory_total_bytes: u64,
    /// Unallocated memory at probe time; 0 when the driver does not say.
    pub memory_free_bytes: u64,
    /// Driver version, e.g. "550.54.15".
    pub driver_version: String,
    /// Highest CUDA version the driver supports, e.g. "12.4".
    pub cuda_version: String,
    /// CUDA compute capability, e.g. 8.9; `None` when the driver does not say.
    pub compute_capability: Option<f64>,
    /// Maximum PCIe generation of the device and slot; `None` when not reported.
    pub pcie_generation: Option<u32>,
    /// Maximum PCIe link width (lanes); `None` when not reported.
    pub pcie_lanes: Option<u32>,
}

/// Live readings of one GPU; a reading the device does not support is `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSample {
    /// NVML index.
    pub index: u32,
    /// Share of the last sample period a kernel was running, 0-100.
    pub utilization_percent: Option<f32>,
    /// Allocated device memory.
    pub memory_used_bytes: Option<u64>,
    /// Installed device memory.
    pub memory_total_bytes: Option<u64>,
    /// Die temperature.
    pub temperature_c: Option<f32>,
    /// Board power draw.
    pub power_watts: Option<f32>,
}

/// The NVML handle, loaded once and shared (it is `Send + Sync`); empty without a driver.
#[derive(Debug)]
pub struct Gpus {
    nvml: Option<Nvml>,
    status: String,
}

impl Gpus {
    /// Loads NVML. Without a driver this takes tens of milliseconds and gives an empty
    /// handle whose [`status`](Self::status) says why; call it once at start.
    pub fn init() -> Self {
        match Nvml::init() {
            Ok(nvml) => {
                let version = nvml.sys_nvml_version().unwrap_or_else(|_| "?".to_string());
                let count = nvml.device_count().unwrap_or(0);
                let status = format!(
                    "NVML {version}, {count} GPU{}",
                    if count == 1 { "" } else { "s" }
                );
                Self {
                    nvml: Some(nvml),
                    status,
                }
            }
            Err(e) => Self::none(describe(&e)),
        }
    }

    /// An empty handle (no GPUs), with `status` saying why.
    pub fn none(status: impl Into<String>) -> Self {
        Self {
            nvml: None,
            status: status.into(),
        }
    }

    /// Whether NVML is loaded.
    pub fn available(&self) -> bool {
        self.nvml.is_some()
    }

    /// What loading NVML gave: "NVML 12.550.54.15, 1 GPU" or
    /// "NVML: libnvidia-ml.so.1 not found (no NVIDIA driver)".
    pub fn status(&self) -> &str {
        &self.status
    }

    fn devices(&self) -> impl Iterator<Item = (u32, Device<'_>)> + '_ {
        let nvml = self.nvml.as_ref();
        let count = nvml.and_then(|n| n.device_count().ok()).unwrap_or(0);
        (0..count).filter_map(move |i| {
            let device = nvml?.device_by_index(i);
            match device {
                Ok(d) => Some((i, d)),
                Err(e) => {
                    tracing::debug!(gpu = i, error = %e, "NVML cannot open the device");
                    None
                }
            }
        })
    }

    /// The static facts of every GPU NVML can open.
    pub fn inventory(&self) -> Vec<Gpu> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let driver_version = nvml.sys_driver_version().unwrap_or_default();
        let cuda_version = nvml
            .sys_cuda_driver_version()
            .map(|v| {
                format!(
                    "{}.{}",
                    nvml_wrapper::cuda_driver_version_major(v),
                    nvml_wrapper::cuda_driver_version_minor(v)
                )
            })
            .unwrap_or_default();
        self.devices()
            .map(|(index, d)| {
                let memory = d.memory_info().ok();
                Gpu {
                    index,
                    name: d.name().unwrap_or_default(),
                    uuid: d.uuid().unwrap_or_default(),
                    memory_total_bytes: memory.as_ref().map_or(0, |m| m.total),
                    memory_free_bytes: memory.as_ref().map_or(0, |m| m.free),
                    driver_version: driver_version.clone(),
                    cuda_version: cuda_version.clone(),
                    compute_capability: d
                        .cuda_compute_capability()
                        .ok()
                        .map(|c| f64::from(c.major * 10 + c.minor) / 10.0),
                    pcie_generation: d.max_pcie_link_gen().ok(),
                    pcie_lanes: d.max_pcie_link_width().ok(),
                }
            })
            .collect()
    }

    /// Current readings of every GPU; empty without NVML.
    pub fn sample(&self) -> Vec<GpuSample> {
        self.devices()
            .map(|(index, d)| {
                let memory = d.memory_info().ok();
                GpuSample {
                    index,
                    utilization_percent: d.utilization_rates().ok().map(|u| u.gpu as f32),
                    memory_used_bytes: memory.as_ref().map(|m| m.used),
                    memory_total_bytes: memory.as_ref().map(|m| m.total),
                    temperature_c: d.temperature(TemperatureSensor::Gpu).ok().map(|t| t as f32),
                    // NVML reports milliwatts.
                    power_watts: d.power_usage().ok().map(|mw| mw as f32 / 1000.0),
                }
            })
            .collect()
    }
}

/// A one-line reason for an NVML load failure, naming the library when it is simply absent.
fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(inner) => {
            let detail = inner.to_string();
            if detail.contains("No such file") || detail.contains("cannot open shared object") {
                "NVML: libnvidia-ml.so.1 not found (no NVIDIA driver)".to_string()
            } else {
                format!("NVML: cannot load libnvidia-ml.so.1: {detail}")
            }
        }
        NvmlError::DriverNotLoaded => "NVML: the NVIDIA driver is not loaded".to_string(),
        other => format!("NVML: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_handle_reports_no_gpus() {
        let gpus = Gpus::none("disabled");
        assert!(!gpus.available());
        assert_eq!(gpus.status(), "disabled");
        assert!(gpus.inventory().is_empty());
        assert!(gpus.sample().is_empty());
    }

    #[test]
    fn init_never_fails() {
        // With or without a driver: a status line, and samples that match the inventory.
        let gpus = Gpus::init();
        assert!(gpus.status().starts_with("NVML"), "{}", gpus.status());
        assert_eq!(gpus.inventory().len(), gpus.sample().len());
    }
}
