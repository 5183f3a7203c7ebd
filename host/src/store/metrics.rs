//! The metric history in the store (`metric_samples`): appending points, reading a time range,
//! and compaction — points past retention are deleted, raw points older than an hour become
//! 1-minute averages, 1-minute points older than a day 10-minute averages. What a point holds
//! and when to compact is the sampler's (`metrics::history`).

use super::{Store, StoreError};
use rusqlite::params;
use serde::Serialize;

/// Raw points are kept this long (seconds) before becoming 1-minute averages.
pub const RAW_KEEP_SECS: i64 = 3600;
/// 1-minute points are kept this long (seconds) before becoming 10-minute averages.
pub const MINUTE_KEEP_SECS: i64 = 24 * 3600;

/// One stored point: the machine over `resolution` seconds starting at `ts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// Start of the period (Unix seconds).
    pub ts: i64,
    /// Seconds the point covers: the sample interval for raw points, 60 or 600 once averaged.
    pub resolution: u32,
    /// CPU busy, all cores, 0-100.
    pub cpu_percent: f64,
    /// Memory in use.
    pub ram_used_bytes: u64,
    /// Memory installed.
    pub ram_total_bytes: u64,
    /// Bytes received per second, non-loopback interfaces.
    pub net_rx_bps: f64,
    /// Bytes sent per second, non-loopback interfaces.
    pub net_tx_bps: f64,
    /// Mean GPU utilisation over the GPUs, 0-100; `None` without GPUs.
    pub gpu_percent: Option<f64>,
    /// GPU memory allocated, all GPUs.
    pub gpu_memory_used_bytes: Option<u64>,
    /// GPU power draw, all GPUs.
    pub gpu_power_watts: Option<f64>,
}

impl HistoryPoint {
    /// RAM used as a percentage of RAM total (0 when the total is unknown).
    pub fn memory_percent(&self) -> f64 {
        if self.ram_total_bytes > 0 {
            100.0 * self.ram_used_bytes as f64 / self.ram_total_bytes as f64
        } else {
            0.0
        }
    }
}

/// What one compaction did (row counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Points deleted for being past retention.
    pub expired: usize,
    /// Raw points merged into 1-minute points.
    pub raw_merged: usize,
    /// Points merged into 10-minute points.
    pub minutes_merged: usize,
}

const COLUMNS: &str = "ts, resolution, cpu_percent, ram_used_bytes, ram_total_bytes, \
     net_rx_bps, net_tx_bps, gpu_percent, gpu_memory_used_bytes, gpu_power_watts";

fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql(v: i64) -> u64 {
    v.max(0) as u64
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryPoint> {
    Ok(HistoryPoint {
        ts: r.get(0)?,
        resolution: r.get(1)?,
        cpu_percent: r.get(2)?,
        ram_used_bytes: from_sql(r.get(3)?),
        ram_total_bytes: from_sql(r.get(4)?),
        net_rx_bps: r.get(5)?,
        net_tx_bps: r.get(6)?,
        gpu_percent: r.get(7)?,
        gpu_memory_used_bytes: r.get::<_, Option<i64>>(8)?.map(from_sql),
        gpu_power_watts: r.get(9)?,
    })
}

/// Averages every point finer than `target` seconds and older than `cutoff` into one point per
/// `target`-aligned bucket, weighting each by the seconds it covers, then deletes the originals.
/// `cutoff` is aligned to `target`, so a bucket is never split between two compactions.
/// Returns how many points were merged.
fn downsample(tx: &rusqlite::Transaction<'_>, cutoff: i64, target: i64) -> rusqlite::Result<usize> {
    let cutoff = cutoff.div_euclid(target) * target;
    // Weighted mean that skips NULLs (GPU columns without GPUs stay NULL).
    let mean = |c: &str| {
        format!("SUM({c} * resolution * 1.0) / SUM(CASE WHEN {c} IS NULL THEN NULL ELSE resolution END)")
    };
    let int = |c: &str| format!("CAST(ROUND({}) AS INTEGER)", mean(c));
    let sql = format!(
        "INSERT INTO metric_samples ({COLUMNS})
         SELECT (ts / ?2) * ?2, ?2, {}, {}, {}, {}, {}, {}, {}, {}
         FROM metric_samples WHERE resolution < ?2 AND ts < ?1
         GROUP BY ts / ?2",
        mean("cpu_percent"),
        int("ram_used_bytes"),
        int("ram_total_bytes"),
        mean("net_rx_bps"),
        mean("net_tx_bps"),
        mean("gpu_percent"),
        int("gpu_memory_used_bytes"),
        mean("gpu_power_watts"),
    );
    tx.execute(&sql, params![cutoff, target])?;
    tx.execute(
        "DELETE FROM metric_samples WHERE resolution < ?2 AND ts < ?1",
        params![cutoff, target],
    )
}

impl Store {
    /// Appends one point.
    pub fn record_metric_point(&self, p: &HistoryPoint) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!("INSERT INTO metric_samples ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    p.ts,
                    p.resolution,
                    p.cpu_percent,
                    to_sql(p.ram_used_bytes),
                    to_sql(p.ram_total_bytes),
                    p.net_rx_bps,
                    p.net_tx_bps,
                    p.gpu_percent,
                    p.gpu_memory_used_bytes.map(to_sql),
                    p.gpu_power_watts,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Points with `start <= ts <= end`, oldest first, at most `limit` of them (the oldest).
    pub fn metric_history(
        &self,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM metric_samples WHERE ts >= ?1 AND ts <= ?2 \
                 ORDER BY ts, resolution DESC LIMIT ?3"
            ))
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(
                params![start, end, i64::try_from(limit).unwrap_or(i64::MAX)],
                row,
            )
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// `(ts, resolution)` of every point with `ts >= since`, oldest first: the periods the
    /// node was up (the sampler runs whenever the node does), for its uptime figure.
    pub fn metric_coverage(&self, since: i64) -> Result<Vec<(i64, u32)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT ts, resolution FROM metric_samples WHERE ts >= ?1 ORDER BY ts")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// Deletes points older than `now - retention_secs`, then merges raw points older than
    /// [`RAW_KEEP_SECS`] into 1-minute averages and finer-than-10-minute points older than
    /// [`MINUTE_KEEP_SECS`] into 10-minute averages, in one transaction.
    pub fn compact_metrics(&self, now: i64, retention_secs: i64) -> Result<Compaction, StoreError> {
        let run = || -> rusqlite::Result<Compaction> {
            let tx = self.conn.unchecked_transaction()?;
            let expired = tx.execute(
                "DELETE FROM metric_samples WHERE ts < ?1",
                params![now.saturating_sub(retention_secs)],
            )?;
            let raw_merged = downsample(&tx, now - RAW_KEEP_SECS, 60)?;
            let minutes_merged = downsample(&tx, now - MINUTE_KEEP_SECS, 600)?;
            tx.commit()?;
            Ok(Compaction {
                expired,
                raw_merged,
                minutes_merged,
            })
        };
        run().map_err(|e| self.wrap(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multiple of 600, so bucket edges are easy to name.
    const NOW: i64 = 1_700_000_400;
    const WEEK: i64 = 7 * 24 * 3600;

    fn raw(ts: i64, cpu: f64, gpu: Option<f64>) -> HistoryPoint {
        HistoryPoint {
            ts,
            resolution: 5,
            cpu_percent: cpu,
            ram_used_bytes: 1000 + cpu as u64,
            ram_total_bytes: 8000,
            net_rx_bps: cpu * 10.0,
            net_tx_bps: 1.0,
            gpu_percent: gpu,
            gpu_memory_used_bytes: gpu.map(|g| g as u64 * 2),
            gpu_power_watts: gpu.map(|g| g / 2.0),
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("node.db")).expect("open");
        (dir, store)
    }

    fn all(store: &Store) -> Vec<HistoryPoint> {
        store
            .metric_history(i64::MIN, i64::MAX, usize::MAX)
            .expect("history")
    }

    #[test]
    fn records_and_reads_a_range_in_order() {
        let (_dir, store) = open();
        for ts in [30, 10, 20, 40] {
            store
                .record_metric_point(&raw(ts, 1.0, None))
                .expect("record");
        }
        let got: Vec<i64> = store
            .metric_history(10, 30, 100)
            .expect("history")
            .iter()
            .map(|p| p.ts)
            .collect();
        assert_eq!(got, [10, 20, 30]);
        assert_eq!(store.metric_history(0, 100, 2).expect("history").len(), 2);
        let p = &all(&store)[0];
        assert_eq!(p, &raw(10, 1.0, None), "round-trips, NULLs included");
        assert_eq!(
            store.metric_coverage(20).expect("coverage"),
            [(20, 5), (30, 5), (40, 5)]
        );
    }

    #[test]
    fn expires_old_points_and_downsamples_by_age() {
        let (_dir, store) = open();
        // Past retention: gone.
        for i in 0..3 {
            store
                .record_metric_point(&raw(NOW - WEEK - 100 + i * 5, 99.0, Some(99.0)))
                .expect("record");
        }
        // Two hours old: one full minute of 12 raw points (cpu 0..=11, mean 5.5), GPU
        // readings on the even ones only, and 2 points in the next minute.
        let minute = NOW - 2 * 3600;
        for i in 0..12 {
            let gpu = (i % 2 == 0).then_some(i as f64 * 10.0);
            store
                .record_metric_point(&raw(minute + i * 5, i as f64, gpu))
                .expect("record");
        }
        store
            .record_metric_point(&raw(minute + 60, 40.0, None))
            .expect("record");
        store
            .record_metric_point(&raw(minute + 65, 60.0, None))
            .expect("record");
        // Recent: untouched.
        let recent: Vec<HistoryPoint> = (0..6).map(|i| raw(NOW - 600 + i * 5, 7.0, None)).collect();
        for p in &recent {
            store.record_metric_point(p).expect("record");
        }

        let done = store.compact_metrics(NOW, WEEK).expect("compact");
        assert_eq!(
            done,
            Compaction {
                expired: 3,
                raw_merged: 14,
                minutes_merged: 0
            }
        );
        let points = all(&store);
        assert!(points.iter().all(|p| p.ts >= NOW - WEEK), "expired");
        assert_eq!(points.len(), 2 + recent.len());

        let first = &points[0];
        assert_eq!((first.ts, first.resolution), (minute, 60));
        assert!(
            (first.cpu_percent - 5.5).abs() < 1e-9,
            "{}",
            first.cpu_percent
        );
        assert_eq!(first.ram_used_bytes, 1006, "1005.5 rounded");
        assert_eq!(first.ram_total_bytes, 8000);
        assert!((first.net_rx_bps - 55.0).abs() < 1e-9);
        // GPU: mean of 0, 20, 40, 60, 80, 100 (the NULLs are skipped, not zeros).
        assert_eq!(first.gpu_percent, Some(50.0));
        assert_eq!(first.gpu_memory_used_bytes, Some(100));
        assert_eq!(first.gpu_power_watts, Some(25.0));

        let second = &points[1];
        assert_eq!((second.ts, second.resolution), (minute + 60, 60));
        assert_eq!(second.cpu_percent, 50.0);
        assert_eq!(second.gpu_percent, None);

        assert_eq!(&points[2..], &recent[..], "recent points untouched");

        // Compacting again changes nothing.
        let again = store.compact_metrics(NOW, WEEK).expect("compact");
        assert_eq!(again, Compaction::default());
        assert_eq!(all(&store), points);
    }

    #[test]
    fn a_day_old_history_becomes_ten_minute_points_weighted_by_coverage() {
        let (_dir, store) = open();
        let bucket = NOW - 2 * 24 * 3600; // aligned to 600
                                          // Ten 1-minute points with cpu 0, 10, ..., 90 (mean 45) ...
        for i in 0..10 {
            let mut p = raw(bucket + i * 60, i as f64 * 10.0, None);
            p.resolution = 60;
            store.record_metric_point(&p).expect("record");
        }
        // ... and, in the next bucket, raw points never compacted before (the node was down
        // for a day): they pass through the 1-minute step and on to 10 minutes.
        for i in 0..24 {
            store
                .record_metric_point(&raw(bucket + 600 + i * 5, 30.0, None))
                .expect("record");
        }
        let done = store.compact_metrics(NOW, WEEK).expect("compact");
        assert_eq!(done.raw_merged, 24);
        assert_eq!(done.minutes_merged, 10 + 2);
        let points = all(&store);
        assert_eq!(points.len(), 2);
        assert_eq!((points[0].ts, points[0].resolution), (bucket, 600));
        assert!((points[0].cpu_percent - 45.0).abs() < 1e-9);
        assert_eq!((points[1].ts, points[1].resolution), (bucket + 600, 600));
        assert!((points[1].cpu_percent - 30.0).abs() < 1e-9);

        // Weighting: a 60 s point counts twelve times a 5 s point in the same bucket.
        let (_dir, store) = open();
        let mut minute = raw(bucket, 0.0, None);
        minute.resolution = 60;
        store.record_metric_point(&minute).expect("record");
        store
            .record_metric_point(&raw(bucket + 300, 65.0, None))
            .expect("record");
        store.compact_metrics(NOW, WEEK).expect("compact");
        let points = all(&store);
        assert_eq!(points.len(), 1);
        // The raw point first becomes its own 1-minute point (65), then (0*60 + 65*60)/120.
        assert!(
            (points[0].cpu_percent - 32.5).abs() < 1e-9,
            "{}",
            points[0].cpu_percent
        );
    }
}
