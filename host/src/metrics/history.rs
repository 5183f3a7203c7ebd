//! The sampler's side of the metric history: turning a [`Sample`] into a stored point
//! (GPUs folded into one figure each) and deciding when to compact. The SQL — the table,
//! queries, retention and downsampling — lives in `store::metrics`.

use super::sampler::Sample;
use crate::store::{metrics::HistoryPoint, Store, StoreError};
use std::time::{Duration, Instant};

/// How often the history is compacted (besides once at start).
pub const COMPACT_EVERY: Duration = Duration::from_secs(3600);

/// A sample as one history point covering `resolution_secs`: GPU utilisation is the mean over
/// GPUs, GPU memory and power the sums; all three are `None` without GPUs (or readings).
pub fn point(sample: &Sample, resolution_secs: u32) -> HistoryPoint {
    let utilisation: Vec<f64> = sample
        .gpus
        .iter()
        .filter_map(|g| g.utilization_percent.map(f64::from))
        .collect();
    let gpu_percent = (!utilisation.is_empty())
        .then(|| utilisation.iter().sum::<f64>() / utilisation.len() as f64);
    let sum_some = |values: Vec<f64>| (!values.is_empty()).then(|| values.iter().sum::<f64>());
    HistoryPoint {
        ts: sample.timestamp,
        resolution: resolution_secs,
        cpu_percent: f64::from(sample.cpu_percent),
        ram_used_bytes: sample.ram_used_bytes,
        ram_total_bytes: sample.ram_total_bytes,
        net_rx_bps: sample.net_rx_bytes_per_s,
        net_tx_bps: sample.net_tx_bytes_per_s,
        gpu_percent,
        gpu_memory_used_bytes: sum_some(
            sample
                .gpus
                .iter()
                .filter_map(|g| g.memory_used_bytes.map(|v| v as f64))
                .collect(),
        )
        .map(|v| v as u64),
        gpu_power_watts: sum_some(
            sample
                .gpus
                .iter()
                .filter_map(|g| g.power_watts.map(f64::from))
                .collect(),
        ),
    }
}

/// Writes samples to a store connection of its own and compacts it when due.
#[derive(Debug)]
pub struct History {
    store: Store,
    resolution_secs: u32,
    retention_secs: i64,
    compacted_at: Option<Instant>,
}

impl History {
    /// A writer of points covering `resolution_secs` each, keeping `retention_secs`.
    pub fn new(store: Store, resolution_secs: u32, retention_secs: i64) -> Self {
        Self {
            store,
            resolution_secs,
            retention_secs,
            compacted_at: None,
        }
    }

    /// Stores `sample`, then compacts if this is the first write or [`COMPACT_EVERY`] has
    /// passed, taking the sample's timestamp as now.
    pub fn record(&mut self, sample: &Sample) -> Result<(), StoreError> {
        self.store
            .record_metric_point(&point(sample, self.resolution_secs))?;
        if self
            .compacted_at
            .is_none_or(|at| at.elapsed() >= COMPACT_EVERY)
        {
            self.compacted_at = Some(Instant::now());
            let done = self
                .store
                .compact_metrics(sample.timestamp, self.retention_secs)?;
            tracing::debug!(?done, "metric history compacted");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::GpuSample;

    fn sample(gpus: Vec<GpuSample>) -> Sample {
        Sample {
            timestamp: 1_000,
            cpu_percent: 50.0,
            per_core_percent: vec![50.0],
            ram_used_bytes: 1,
            ram_total_bytes: 2,
            process_rss_bytes: 3,
            net_rx_bytes_per_s: 4.0,
            net_tx_bytes_per_s: 5.0,
            gpus,
        }
    }

    fn gpu(index: u32, util: Option<f32>, mem: u64, watts: f32) -> GpuSample {
        GpuSample {
            index,
            utilization_percent: util,
            memory_used_bytes: Some(mem),
            memory_total_bytes: Some(mem * 2),
            temperature_c: None,
            power_watts: Some(watts),
        }
    }

    #[test]
    fn folds_gpus_into_one_figure_each() {
        let p = point(
            &sample(vec![
                gpu(0, Some(20.0), 100, 50.0),
                gpu(1, Some(60.0), 300, 150.0),
                gpu(2, None, 0, 0.0),
            ]),
            5,
        );
        assert_eq!(p.gpu_percent, Some(40.0));
        assert_eq!(p.gpu_memory_used_bytes, Some(400));
        assert_eq!(p.gpu_power_watts, Some(200.0));
        assert_eq!((p.ts, p.resolution, p.cpu_percent), (1_000, 5, 50.0));

        let none = point(&sample(Vec::new()), 5);
        assert_eq!(
            (
                none.gpu_percent,
                none.gpu_memory_used_bytes,
                none.gpu_power_watts
            ),
            (None, None, None)
        );
    }
}
