//! `NodeInfo.uptime_percentage` (10 % of the central server's job-matching score): the share
//! of time the node was up over the last 30 days or since its first metric point, whichever is
//! shorter, read from the metric history in the store (the sampler writes a point every
//! `[metrics] interval_seconds` while the node runs; compaction keeps 1- and 10-minute points).
//! Sampling and compaction are `metrics::history`'s; this module only reads the points.

use crate::store::{Store, StoreError};
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// The longest period the figure covers.
pub const WINDOW_SECS: i64 = 30 * 86_400;

/// How long a computed figure is reused (heartbeats come every few seconds; it moves slowly).
const REFRESH: Duration = Duration::from_secs(60);

/// The percentage of time the node was up, from the `(ts, resolution)` of its metric points
/// (any order), given that the running process has been up since `up_since` (Unix seconds) and
/// it is `now`.
///
/// A point at `ts` stands for `[ts, ts + resolution]`; the node counts as up until the next
/// point when it arrives within two resolutions (a late sample is not an outage), so an outage
/// is counted from one resolution after the last point before it. The period is from the
/// first point (or `up_since`, if earlier) to `now`, at most [`WINDOW_SECS`]. A node with no
/// gap in its history is at 100.
pub fn uptime_percent(points: &[(i64, u32)], up_since: i64, now: i64) -> f64 {
    let first = points.iter().map(|p| p.0).min().unwrap_or(up_since);
    let start = first.min(up_since).max(now.saturating_sub(WINDOW_SECS));
    if now <= start {
        return 100.0;
    }
    let mut spans: Vec<(i64, i64)> = points
        .iter()
        .map(|&(ts, resolution)| {
            let reach = 2 * i64::from(resolution.max(1));
            (ts, ts.saturating_add(reach))
        })
        .collect();
    spans.push((up_since, now));
    spans.sort_unstable();
    // The length of the union of the spans within [start, now].
    let (mut covered, mut reach) = (0i64, start);
    for (from, to) in spans {
        let (from, to) = (from.max(reach), to.min(now));
        if to > from {
            covered += to - from;
            reach = to;
        }
    }
    (100.0 * covered as f64 / (now - start) as f64).clamp(0.0, 100.0)
}

/// The uptime figure of a running node, recomputed from the store at most once a minute.
pub struct Uptime {
    database: PathBuf,
    up_since: i64,
    cached: Option<(Instant, f64)>,
}

impl Uptime {
    /// For the node whose store is `database`, running since `up_since` (Unix seconds).
    pub fn new(database: PathBuf, up_since: i64) -> Self {
        Self {
            database,
            up_since,
            cached: None,
        }
    }

    /// The figure as of now (the store is read off the async runtime's threads).
    pub async fn percent(&mut self) -> f64 {
        if let Some((at, value)) = self.cached {
            if at.elapsed() < REFRESH {
                return value;
            }
        }
        let database = self.database.clone();
        let up_since = self.up_since;
        let now = super::now_secs();
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<(i64, u32)>, StoreError> {
            Store::open(&database)?.metric_coverage(now.saturating_sub(WINDOW_SECS))
        })
        .await;
        let points = match read {
            Ok(Ok(points)) => points,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the metric history for the uptime figure");
                return self.cached.map_or(100.0, |(_, v)| v);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the uptime computation failed");
                return self.cached.map_or(100.0, |(_, v)| v);
            }
        };
        let value = uptime_percent(&points, up_since, now);
        self.cached = Some((Instant::now(), value));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    /// Raw points every `every` seconds over `[from, to)`.
    fn samples(from: i64, to: i64, every: u32) -> Vec<(i64, u32)> {
        (from..to)
            .step_by(every as usize)
            .map(|ts| (ts, every))
            .collect()
    }

    #[test]
    fn a_node_that_just_started_is_fully_up() {
        assert_eq!(uptime_percent(&[], NOW, NOW), 100.0);
        assert_eq!(uptime_percent(&[], NOW - 30, NOW), 100.0);
        // Samples a little late or jittered are not outages.
        let jittered: Vec<(i64, u32)> = (0..20).map(|i| (NOW - 200 + i * 10 + i % 3, 5)).collect();
        assert_eq!(uptime_percent(&jittered, NOW - 200, NOW), 100.0);
    }

    #[test]
    fn a_gap_in_the_history_is_downtime() {
        // Up for an hour (5 s samples), down for an hour, then up again for the last hour.
        let up_since = NOW - 3600;
        let mut points = samples(NOW - 3 * 3600, NOW - 2 * 3600, 5);
        points.extend(samples(up_since, NOW, 5));
        let pct = uptime_percent(&points, up_since, NOW);
        // Down from one resolution after the last point before the gap: 3595 s of 10800.
        let expected = 100.0 * (10_800.0 - 3595.0) / 10_800.0;
        assert!((pct - expected).abs() < 1e-9, "{pct} vs {expected}");

        // The same history compacted to 1- and 10-minute points: about the same figure.
        let mut coarse = samples(NOW - 3 * 3600, NOW - 2 * 3600, 600);
        coarse.extend(samples(up_since, NOW - 3000, 60));
        coarse.extend(samples(NOW - 3000, NOW, 5));
        // Coarser points stand for longer periods, so the outage looks up to 10 minutes
        // shorter: 7800 s up of 10800 instead of 7205.
        let pct = uptime_percent(&coarse, up_since, NOW);
        assert!((pct - 100.0 * 7800.0 / 10_800.0).abs() < 1e-9, "{pct}");
    }

    #[test]
    fn the_window_is_at_most_thirty_days() {
        // Down for the 30 days before the last hour, and a point from 40 days ago: only the
        // last 30 days count, so the figure is the last hour's share of them.
        let points = vec![(NOW - 40 * 86_400, 600)];
        let pct = uptime_percent(&points, NOW - 3600, NOW);
        let expected = 100.0 * 3600.0 / WINDOW_SECS as f64;
        assert!((pct - expected).abs() < 1e-9, "{pct}");
        // Up the whole time: 100.
        let all = samples(NOW - 31 * 86_400, NOW, 600);
        assert_eq!(uptime_percent(&all, NOW - 60, NOW), 100.0);
    }

    #[tokio::test]
    async fn the_figure_is_read_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("node.db");
        let store = Store::open(&database).unwrap();
        let now = super::super::now_secs();
        // Half an hour of history an hour ago, then nothing until the node started now.
        for ts in (now - 3600..now - 1800).step_by(5) {
            store
                .record_metric_point(&crate::store::metrics::HistoryPoint {
                    ts,
                    resolution: 5,
                    cpu_percent: 1.0,
                    ram_used_bytes: 1,
                    ram_total_bytes: 2,
                    net_rx_bps: 0.0,
                    net_tx_bps: 0.0,
                    gpu_percent: None,
                    gpu_memory_used_bytes: None,
                    gpu_power_watts: None,
                })
                .unwrap();
        }
        let mut uptime = Uptime::new(database, now);
        let pct = uptime.percent().await;
        assert!((pct - 50.0).abs() < 1.0, "{pct}");
    }
}
