//! The node-wide RPCs of `DaemonService`: status, metrics (now, history and the stream), the
//! node's own log (recent lines and the follow stream) and `Shutdown`. The RPC methods
//! themselves (in [`super::service`]) only delegate here.

use super::{
    checks::{blocking, bounded, invalid, level_filter, unimplemented},
    convert,
    service::{receiver_stream, Streamed, VIA},
};
use crate::{
    logging::{LogLine, LogRing},
    node::Node,
};
use cyxwiz_proto::daemon as pb;
use std::{sync::Arc, time::Duration};
use tokio::sync::{mpsc, watch};
use tonic::Status;

/// Shortest and longest `StreamMetrics` interval.
pub const METRICS_INTERVAL_MS: std::ops::RangeInclusive<i32> = 250..=3_600_000;
/// Most lines `GetLogs` returns.
pub const MAX_LOG_LINES: i32 = crate::logging::RING_LINES as i32;
/// Lines `GetLogs` returns when the caller asks for 0.
const DEFAULT_LOG_LINES: usize = 100;
/// Points of each history `GetMetrics` returns (the last hour).
const HISTORY_POINTS: usize = 720;

/// Runs `produce` every `period` into a stream until the caller leaves or the node stops.
fn every<T: Send + 'static>(
    stop: &watch::Sender<bool>,
    period: Duration,
    mut produce: impl FnMut() -> Option<T> + Send + 'static,
) -> Streamed<T> {
    let (tx, rx) = mpsc::channel(4);
    let mut stop = stop.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
                () = tx.closed() => return,
            }
            if let Some(item) = produce() {
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
        }
    });
    receiver_stream(rx)
}

/// Jobs by state, unfinished network jobs and the report outbox, for `status`.
fn job_counts(node: &Node) -> pb::JobCounts {
    let stats = node.jobs.stats();
    let state = |s: &str| {
        stats
            .by_state
            .get(s)
            .map_or(0, |n| i32::try_from(*n).unwrap_or(i32::MAX))
    };
    let outbox = node
        .store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .outbox_counts()
        .unwrap_or_default();
    pb::JobCounts {
        queued: state("queued"),
        running: state("running") + state("preparing"),
        paused: state("paused"),
        network: i32::try_from(node.jobs.active_network_jobs().len()).unwrap_or(i32::MAX),
        report_backlog: i64::try_from(outbox.pending).unwrap_or(i64::MAX),
        reports_failed: i64::try_from(outbox.failed).unwrap_or(i64::MAX),
    }
}

/// `GetStatus`: the node's status, its job counts and the latest metrics sample.
pub(super) async fn status(node: &Arc<Node>) -> Result<pb::GetStatusResponse, Status> {
    let s = node.status();
    let gpus = &node.inventory.gpus;
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let job_counts = blocking({
        let node = node.clone();
        move || Ok::<_, Status>(job_counts(&node))
    })
    .await?;
    Ok(pb::GetStatusResponse {
        job_counts: Some(job_counts),
        node_id: s.id,
        version: s.version.to_string(),
        central_server_status: convert::connection(s.central.state) as i32,
        uptime_seconds: i64::try_from(s.uptime_seconds).unwrap_or(i64::MAX),
        active_jobs: job_counts.running + job_counts.paused,
        active_deployments: count(s.deployments.ready),
        metrics: node.metrics.system().map(|m| convert::system(&m, gpus)),
        gpu_name: gpus.first().map(|g| g.name.clone()).unwrap_or_default(),
        gpu_count: count(gpus.len()),
        node_name: s.name,
        central: Some(convert::central(&s.central)),
        grpc_ports: s.grpc_ports.iter().map(|&p| i32::from(p)).collect(),
        deployment_counts: Some(pb::DeploymentCounts {
            total: count(s.deployments.total),
            ready: count(s.deployments.ready),
            loading: count(s.deployments.loading),
            failed: count(s.deployments.failed),
        }),
        plugins_loaded: count(s.plugins.loaded),
        plugins_failed: count(s.plugins.failed),
    })
}

/// `GetMetrics`: the latest sample and the last hour's history.
pub(super) async fn metrics(node: &Arc<Node>) -> Result<pb::GetMetricsResponse, Status> {
    let node = node.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let history = blocking({
        let node = node.clone();
        move || {
            node.history(now - 3600, now, HISTORY_POINTS)
                .map_err(Status::from)
        }
    })
    .await?;
    let vram_total: u64 = node
        .inventory
        .gpus
        .iter()
        .map(|g| g.memory_total_bytes)
        .sum();
    let pct = |used: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            (used as f64 * 100.0 / total as f64) as f32
        }
    };
    Ok(pb::GetMetricsResponse {
        metrics: node
            .metrics
            .system()
            .map(|m| convert::system(&m, &node.inventory.gpus)),
        cpu_history: history.iter().map(|p| p.cpu_percent as f32).collect(),
        gpu_history: history
            .iter()
            .map(|p| p.gpu_percent.unwrap_or(0.0) as f32)
            .collect(),
        ram_history: history.iter().map(|p| p.memory_percent() as f32).collect(),
        vram_history: history
            .iter()
            .map(|p| pct(p.gpu_memory_used_bytes.unwrap_or(0), vram_total))
            .collect(),
    })
}

/// `StreamMetrics`: a sample every `asked` milliseconds (0: the sampling interval).
pub(super) fn stream_metrics(
    node: &Arc<Node>,
    stop: &watch::Sender<bool>,
    asked: i32,
) -> Result<Streamed<pb::MetricsUpdate>, Status> {
    let interval_ms = if asked == 0 {
        let secs = node.config.metrics.interval_seconds;
        u64::try_from(*METRICS_INTERVAL_MS.end())
            .unwrap_or(u64::MAX)
            .min(secs * 1000)
    } else if METRICS_INTERVAL_MS.contains(&asked) {
        u64::try_from(asked).unwrap_or(1000)
    } else {
        return Err(invalid(
            "interval_ms",
            format!(
                "interval_ms must be between {} and {} (0: the sampling interval), got {asked}",
                METRICS_INTERVAL_MS.start(),
                METRICS_INTERVAL_MS.end()
            ),
        ));
    };
    let node = node.clone();
    Ok(every(stop, Duration::from_millis(interval_ms), move || {
        let sample = node.metrics.system()?;
        Some(pb::MetricsUpdate {
            metrics: Some(convert::system(&sample, &node.inventory.gpus)),
            timestamp: sample.timestamp,
        })
    }))
}

/// `GetLogs`: the node's recent log lines from the in-memory ring.
pub(super) fn logs(
    ring: Option<&Arc<LogRing>>,
    req: pb::GetLogsRequest,
) -> Result<pb::GetLogsResponse, Status> {
    if !(0..=MAX_LOG_LINES).contains(&req.limit) {
        return Err(invalid(
            "limit",
            format!(
                "limit must be between 0 and {MAX_LOG_LINES}, got {}",
                req.limit
            ),
        ));
    }
    bounded("level_filter", &req.level_filter)?;
    let min = level_filter(&req.level_filter)?;
    let Some(ring) = ring else {
        return unimplemented("this node keeps no log lines in memory");
    };
    let limit = usize::try_from(req.limit)
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_LOG_LINES);
    let entries = ring
        .recent(limit, min, req.since_timestamp)
        .iter()
        .map(convert::log_entry)
        .collect();
    Ok(pb::GetLogsResponse { entries })
}

/// `StreamLogs`: the node's log lines as they are written, until the caller leaves or the
/// node stops.
pub(super) fn stream_logs(
    ring: Option<&Arc<LogRing>>,
    stop: &watch::Sender<bool>,
    filter: String,
) -> Result<Streamed<pb::LogEntry>, Status> {
    bounded("level_filter", &filter)?;
    let min = level_filter(&filter)?;
    let Some(ring) = ring else {
        return unimplemented("this node keeps no log lines in memory");
    };
    let mut lines = ring.subscribe();
    let mut stop = stop.subscribe();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let line: LogLine = tokio::select! {
                got = lines.recv() => match got {
                    Ok(line) => line,
                    Err(RecvError::Lagged(n)) => LogLine {
                        timestamp: 0,
                        level: tracing::Level::WARN,
                        message: format!("{n} log lines skipped: this reader fell behind"),
                        source: "control".into(),
                    },
                    Err(RecvError::Closed) => return,
                },
                _ = stop.wait_for(|s| *s) => return,
                () = tx.closed() => return,
            };
            if line.level <= min && tx.send(Ok(convert::log_entry(&line))).await.is_err() {
                return;
            }
        }
    });
    Ok(receiver_stream(rx))
}

/// `Shutdown`: stops the node the way Ctrl-C does (always gracefully); the reply goes out
/// first.
pub(super) fn shutdown(node: &Node, stop: &Arc<watch::Sender<bool>>) -> pb::ShutdownResponse {
    tracing::info!("shutdown requested on the control socket");
    node.audit("node_stopping", node.name(), VIA);
    let stop = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(true);
    });
    pb::ShutdownResponse {
        success: true,
        error_message: String::new(),
    }
}
