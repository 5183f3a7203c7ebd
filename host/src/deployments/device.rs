//! Which device a deployment runs on: the deployment's `device` (`cpu`, `auto`, `cuda`,
//! `cuda:N`) resolved against the node's device pool, the NVIDIA GPUs the probe found that
//! `[devices] gpu_ids` allows. `cuda` takes the pool's first GPU, `cuda:N` must be in the
//! pool, `auto` is the first GPU with a quiet CPU fallback. Where the probe found no GPU at
//! all (no driver), a GPU request goes to the plugin as it is, which runs on the CPU and logs
//! why. `[devices] max_gpu_memory_mb` reaches the plugin as the load option
//! `gpu_memory_limit_mb`.

use crate::{
    config::{DeviceRequest as Request, DevicesSection},
    devices::Inventory,
};

/// The GPUs deployments may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevicePool {
    /// GPU indices the probe found, in order.
    found: Vec<u32>,
    /// `[devices] gpu_ids` (empty: every GPU found).
    allowed: Vec<u32>,
    /// `[devices] max_gpu_memory_mb` (0: no cap).
    max_gpu_memory_mb: u64,
}

impl DevicePool {
    /// The pool of `inventory`'s GPUs under `[devices]`.
    pub fn new(devices: &DevicesSection, inventory: &Inventory) -> Self {
        Self {
            found: inventory.gpus.iter().map(|g| g.index).collect(),
            allowed: devices.gpu_ids.clone(),
            max_gpu_memory_mb: devices.max_gpu_memory_mb,
        }
    }

    /// The GPUs deployments may use.
    pub fn gpus(&self) -> Vec<u32> {
        self.found
            .iter()
            .copied()
            .filter(|i| self.allowed.is_empty() || self.allowed.contains(i))
            .collect()
    }

    /// The device string the plugin gets for `device`, or why it cannot be had.
    pub fn resolve(&self, device: &str) -> Result<String, String> {
        let request = Request::parse(device)?;
        let pool = self.gpus();
        if self.found.is_empty() {
            // No driver: the plugin decides (a GPU request runs on the CPU with a warning).
            return Ok(match request {
                Request::Cpu => "cpu".into(),
                Request::Auto => "auto".into(),
                Request::Cuda(None) => "cuda".into(),
                Request::Cuda(Some(n)) => format!("cuda:{n}"),
            });
        }
        match request {
            Request::Cpu => Ok("cpu".into()),
            Request::Auto => Ok(pool
                .first()
                .map_or_else(|| "cpu".into(), |n| format!("auto:{n}"))),
            Request::Cuda(None) => pool.first().map(|n| format!("cuda:{n}")).ok_or_else(|| {
                format!(
                    "device `{device}`: no GPU of this node is allowed ([devices] gpu_ids = {:?})",
                    self.allowed
                )
            }),
            Request::Cuda(Some(n)) if pool.contains(&n) => Ok(format!("cuda:{n}")),
            Request::Cuda(Some(n)) if self.found.contains(&n) => Err(format!(
                "device `{device}`: GPU {n} is not in [devices] gpu_ids = {:?}",
                self.allowed
            )),
            Request::Cuda(Some(n)) => Err(format!(
                "device `{device}`: this node has no GPU {n} (it has {:?})",
                self.found
            )),
        }
    }

    /// The per-GPU memory cap in MiB, if any.
    pub fn gpu_memory_limit_mb(&self) -> Option<u64> {
        (self.max_gpu_memory_mb > 0).then_some(self.max_gpu_memory_mb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Gpu;

    fn pool(found: &[u32], allowed: &[u32]) -> DevicePool {
        let inventory = Inventory {
            gpus: found
                .iter()
                .map(|&index| Gpu {
                    index,
                    ..Gpu::default()
                })
                .collect(),
            ..Inventory::default()
        };
        let devices = DevicesSection {
            gpu_ids: allowed.to_vec(),
            max_gpu_memory_mb: 512,
            ..DevicesSection::default()
        };
        DevicePool::new(&devices, &inventory)
    }

    #[test]
    fn devices_resolve_against_the_pool() {
        // Two GPUs, only GPU 1 allowed.
        let p = pool(&[0, 1], &[1]);
        assert_eq!(p.gpus(), vec![1]);
        assert_eq!(p.resolve("cpu").unwrap(), "cpu");
        assert_eq!(p.resolve("cuda").unwrap(), "cuda:1");
        assert_eq!(p.resolve("auto").unwrap(), "auto:1");
        assert_eq!(p.resolve("CUDA:1").unwrap(), "cuda:1");
        assert!(p.resolve("cuda:0").unwrap_err().contains("gpu_ids"));
        assert!(p.resolve("cuda:7").unwrap_err().contains("no GPU 7"));
        assert!(p.resolve("tpu").unwrap_err().contains("must be"));
        assert_eq!(p.gpu_memory_limit_mb(), Some(512));
        // Every GPU allowed.
        assert_eq!(pool(&[0, 1], &[]).resolve("cuda").unwrap(), "cuda:0");
        // GPUs found, none allowed: `auto` quietly runs on the CPU, `cuda` is refused.
        let none = pool(&[0], &[3]);
        assert_eq!(none.resolve("auto").unwrap(), "cpu");
        assert!(none.resolve("cuda").is_err());
        // No driver at all: the plugin falls back to the CPU and says why.
        let cpu_only = pool(&[], &[]);
        assert_eq!(cpu_only.resolve("cuda").unwrap(), "cuda");
        assert_eq!(cpu_only.resolve("cuda:2").unwrap(), "cuda:2");
    }
}
