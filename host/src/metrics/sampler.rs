//! Sampling the machine: the [`Sampler`] reads CPU, memory, this process's resident memory,
//! network rates and GPU readings; [`run_sampler`] does so every interval on a blocking
//! thread, writes each [`Sample`] to the history (`history`) and publishes it to
//! [`Metrics`]. Configuration parsing is the caller's; this takes [`MetricsSettings`].

use super::{history::History, Metrics};
use crate::{devices::Gpus, store::Store};
use serde::Serialize;
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate,
    RefreshKind, System, MINIMUM_CPU_UPDATE_INTERVAL,
};
use tokio::sync::watch;

pub use crate::devices::GpuSample;

/// One reading of the machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken (Unix seconds).
    pub timestamp: i64,
    /// CPU busy time since the previous reading, all cores, 0-100.
    pub cpu_percent: f32,
    /// The same by logical core.
    pub per_core_percent: Vec<f32>,
    /// Memory in use (total minus available).
    pub ram_used_bytes: u64,
    /// Memory installed.
    pub ram_total_bytes: u64,
    /// Resident memory of this process; 0 if it could not be read.
    pub process_rss_bytes: u64,
    /// Bytes received per second since the previous reading, non-loopback interfaces.
    pub net_rx_bytes_per_s: f64,
    /// Bytes sent per second since the previous reading, non-loopback interfaces.
    pub net_tx_bytes_per_s: f64,
    /// GPU readings, by index; empty without NVML.
    pub gpus: Vec<GpuSample>,
}

/// How the sampler runs (from the `[metrics]` config section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Time between samples; below one second is raised to one second.
    pub interval: Duration,
    /// How long history is kept.
    pub retention: Duration,
}

impl Default for MetricsSettings {
    /// Every 5 seconds, kept 7 days.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Reads the machine. Owns its sysinfo state, so the CPU and network figures are rates since
/// the previous [`sample`](Self::sample); refreshes only this process, never the process list.
#[derive(Debug)]
pub struct Sampler {
    system: System,
    networks: Networks,
    network_read_at: Instant,
    pid: Option<Pid>,
    gpus: Arc<Gpus>,
}

impl Sampler {
    /// Takes the first CPU and network readings, so the first [`sample`](Self::sample) has
    /// real rates. Blocks for sysinfo's minimum CPU interval (200 ms on Linux).
    pub fn new(gpus: Arc<Gpus>) -> Self {
        let mut system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let networks = Networks::new_with_refreshed_list();
        let network_read_at = Instant::now();
        std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL);
        system.refresh_cpu_usage();
        Self {
            system,
            networks,
            network_read_at,
            pid: sysinfo::get_current_pid().ok(),
            gpus,
        }
    }

    /// Reads the machine now. CPU usage is measured since the previous call (or since
    /// construction); calls closer than 200 ms apart repeat the previous CPU figures.
    pub fn sample(&mut self) -> Sample {
        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let process_rss_bytes = self.pid.map_or(0, |pid| {
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_memory(),
            );
            self.system.process(pid).map_or(0, |p| p.memory())
        });

        self.networks.refresh(true);
        let seconds = self.network_read_at.elapsed().as_secs_f64();
        self.network_read_at = Instant::now();
        let (rx, tx) = self
            .networks
            .list()
            .iter()
            .filter(|(name, data)| {
                name.as_str() != "lo" && !data.ip_networks().iter().any(|n| n.addr.is_loopback())
            })
            .fold((0u64, 0u64), |(rx, tx), (_, data)| {
                (rx + data.received(), tx + data.transmitted())
            });
        let rate = |bytes: u64| {
            if seconds > 0.0 {
                bytes as f64 / seconds
            } else {
                0.0
            }
        };

        let total = self.system.total_memory();
        Sample {
            timestamp: unix_now(),
            cpu_percent: self.system.global_cpu_usage(),
            per_core_percent: self.system.cpus().iter().map(|c| c.cpu_usage()).collect(),
            ram_used_bytes: total.saturating_sub(self.system.available_memory()),
            ram_total_bytes: total,
            process_rss_bytes,
            net_rx_bytes_per_s: rate(rx),
            net_tx_bytes_per_s: rate(tx),
            gpus: self.gpus.sample(),
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Samples every `settings.interval` until `stop` turns true (or its sender is dropped):
/// each sample is written to `store` (a connection of its own), published with
/// [`Metrics::set_system`], and the history is compacted at start and hourly. Sampling and
/// SQLite run on tokio's blocking pool, never on the async threads. A failed write is
/// logged and sampling goes on.
pub async fn run_sampler(
    settings: MetricsSettings,
    store: Store,
    gpus: Arc<Gpus>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = settings.interval.max(Duration::from_secs(1));
    let resolution = u32::try_from(interval.as_secs()).unwrap_or(u32::MAX);
    let retention = i64::try_from(settings.retention.as_secs()).unwrap_or(i64::MAX);
    let started = tokio::task::spawn_blocking(move || {
        (
            Sampler::new(gpus),
            History::new(store, resolution, retention),
        )
    })
    .await;
    let mut state = match started {
        Ok(state) => state,
        Err(e) => {
            tracing::error!(error = %e, "the system sampler failed to start");
            return;
        }
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        }
        let (mut sampler, mut history) = state;
        let job = tokio::task::spawn_blocking(move || {
            let sample = sampler.sample();
            if let Err(e) = history.record(&sample) {
                tracing::warn!(error = %e, "cannot write the metric history");
            }
            (sampler, history, sample)
        });
        match job.await {
            Ok((sampler, history, sample)) => {
                metrics.set_system(sample);
                state = (sampler, history);
            }
            Err(e) => {
                tracing::error!(error = %e, "the system sampler failed; sampling stops");
                return;
            }
        }
    }
    tracing::debug!("system sampler stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_samples_are_sane() {
        let started = Instant::now();
        let mut sampler = Sampler::new(Arc::new(Gpus::none("test")));
        let built = started.elapsed();
        std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL);
        let started = Instant::now();
        let first = sampler.sample();
        let took = started.elapsed();
        std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL);
        let second = sampler.sample();
        eprintln!("Sampler::new took {built:?}, sample() took {took:?}\n{first:?}");
        for s in [&first, &second] {
            assert!((0.0..=100.0).contains(&s.cpu_percent), "{}", s.cpu_percent);
            assert!(!s.per_core_percent.is_empty());
            assert!(s.per_core_percent.iter().all(|c| (0.0..=100.0).contains(c)));
            assert!(s.ram_total_bytes > 0);
            assert!(s.ram_used_bytes <= s.ram_total_bytes);
            assert!(s.process_rss_bytes > 0);
            assert!(s.net_rx_bytes_per_s >= 0.0 && s.net_tx_bytes_per_s >= 0.0);
            assert!(s.gpus.is_empty());
            assert!(s.timestamp > 1_600_000_000);
        }
        assert!(second.timestamp >= first.timestamp);
    }

    #[tokio::test]
    async fn runs_records_publishes_and_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        let store = Store::open(&path).expect("open");
        let reader = Store::open(&path).expect("second connection");
        let metrics = Arc::new(Metrics::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_sampler(
            MetricsSettings {
                interval: Duration::from_secs(1),
                retention: Duration::from_secs(3600),
            },
            store,
            Arc::new(Gpus::none("test")),
            metrics.clone(),
            stop_rx,
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.system().is_none() {
            assert!(Instant::now() < deadline, "no sample within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_tx.send(true).expect("send");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops promptly")
            .expect("no panic");
        let points = reader.metric_history(0, i64::MAX, 100).expect("history");
        assert!(!points.is_empty());
        assert_eq!(points[0].resolution, 1);
        assert!(metrics
            .render(&[], |_| 0)
            .contains("# TYPE cyxwiz_node_cpu_usage_percent gauge"));
    }
}
