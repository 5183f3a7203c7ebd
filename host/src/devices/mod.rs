//! What hardware this node has: CPU, memory, disks, network interfaces and NVIDIA GPUs,
//! probed once at start ([`Inventory::probe`]). Live readings are the sampler's
//! (`metrics::sampler`), which reuses the same [`Gpus`] handle.

mod gpu;

pub use gpu::{Gpu, GpuSample, Gpus};

use serde::Serialize;
use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System,
};

/// A mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Where it is mounted.
    pub mount: String,
    /// Its size.
    pub total_bytes: u64,
    /// Space available to unprivileged users.
    pub available_bytes: u64,
    /// Filesystem type, e.g. "ext4".
    pub fs: String,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// Kernel name, e.g. "eth0".
    pub name: String,
    /// Hardware address, "00:00:00:00:00:00" when it has none.
    pub mac: String,
    /// Addresses with prefix length, e.g. "10.0.0.5/24".
    pub ips: Vec<String>,
}

/// The node's hardware, as probed at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Inventory {
    /// CPU brand string, e.g. "AMD EPYC 7763 64-Core Processor".
    pub cpu_model: String,
    /// Logical CPUs (hardware threads).
    pub cpu_cores: usize,
    /// Physical cores; `None` when the OS does not say.
    pub physical_cores: Option<usize>,
    /// Installed memory.
    pub ram_total_bytes: u64,
    /// Memory available for new work at probe time.
    pub ram_available_bytes: u64,
    /// Mounted filesystems, by mount point.
    pub disks: Vec<Disk>,
    /// Network interfaces, by name.
    pub interfaces: Vec<Interface>,
    /// NVIDIA GPUs, by index; empty without a driver.
    pub gpus: Vec<Gpu>,
    /// What the GPU probe found, e.g. "NVML 12.550.54.15, 1 GPU" or
    /// "NVML: libnvidia-ml.so.1 not found (no NVIDIA driver)".
    pub gpu_probe: String,
}

impl Inventory {
    /// Probes everything, loading NVML for the purpose. Never fails: what cannot be read is
    /// left empty, and GPU trouble is told in `gpu_probe`. A daemon that also samples should
    /// load NVML once with [`Gpus::init`] and call [`Inventory::probe_with`].
    pub fn probe() -> Self {
        Self::probe_with(&Gpus::init())
    }

    /// Probes everything, asking `gpus` for the GPUs.
    pub fn probe_with(gpus: &Gpus) -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let cpu_model = system
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default();

        let mut disks: Vec<Disk> =
            Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
                .list()
                .iter()
                .map(|d| Disk {
                    mount: d.mount_point().display().to_string(),
                    total_bytes: d.total_space(),
                    available_bytes: d.available_space(),
                    fs: d.file_system().to_string_lossy().into_owned(),
                })
                .collect();
        disks.sort_by(|a, b| a.mount.cmp(&b.mount));

        let mut interfaces: Vec<Interface> = Networks::new_with_refreshed_list()
            .list()
            .iter()
            .map(|(name, data)| Interface {
                name: name.clone(),
                mac: data.mac_address().to_string(),
                ips: data.ip_networks().iter().map(|n| n.to_string()).collect(),
            })
            .collect();
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));

        Self {
            cpu_model,
            cpu_cores: system.cpus().len(),
            physical_cores: System::physical_core_count(),
            ram_total_bytes: system.total_memory(),
            ram_available_bytes: system.available_memory(),
            disks,
            interfaces,
            gpus: gpus.inventory(),
            gpu_probe: gpus.status().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn probes_this_machine() {
        let gpus = Gpus::init();
        let started = Instant::now();
        let inventory = Inventory::probe_with(&gpus);
        let took = started.elapsed();
        eprintln!(
            "Inventory::probe_with took {took:?} (NVML init excluded)\n{}",
            serde_json::to_string_pretty(&inventory).expect("serialises")
        );
        assert!(inventory.cpu_cores >= 1);
        assert!(inventory.ram_total_bytes > 0);
        assert!(inventory.ram_available_bytes <= inventory.ram_total_bytes);
        assert!(!inventory.gpu_probe.is_empty());
        assert_eq!(inventory.gpus.len(), gpus.inventory().len());
    }

    #[test]
    fn a_full_probe_includes_loading_nvml() {
        let started = Instant::now();
        let inventory = Inventory::probe();
        eprintln!(
            "Inventory::probe took {:?}: {}",
            started.elapsed(),
            inventory.gpu_probe
        );
        assert!(inventory.gpu_probe.starts_with("NVML"));
    }
}
