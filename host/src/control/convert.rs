//! The node's values as `cyxwiz.daemon` messages and back: deployments, keys, model files,
//! system samples, the central link, log lines, training jobs, and the ISO-8601 times the
//! store keeps.

use crate::{
    central::{CentralStatus, ConnectionState},
    deployments::{DeploymentView, Kind, Status},
    devices::Gpu,
    jobs::{JobState, JobView},
    logging::LogLine,
    metrics::sampler::Sample,
    models::scan::ModelFile,
    store::keys::KeyRecord,
};
use cyxwiz_proto::daemon as pb;

/// Seconds as the proto's `int64`.
fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// A count as the proto's `int64`.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A deployment's status as the protocol's coarser enum.
pub fn deployment_status(status: Status) -> pb::DeploymentStatus {
    match status {
        Status::Pending | Status::Loading => pb::DeploymentStatus::Loading,
        Status::Ready | Status::Running => pb::DeploymentStatus::Running,
        Status::Stopped => pb::DeploymentStatus::Stopped,
        Status::Failed => pb::DeploymentStatus::Error,
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Unknown => "unknown",
        Kind::Llm => "llm",
        Kind::Embedding => "embedding",
        Kind::Tensor => "tensor",
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Loading => "loading",
        Status::Ready => "ready",
        Status::Running => "running",
        Status::Stopped => "stopped",
        Status::Failed => "failed",
    }
}

/// A deployment as `DeploymentInfo` (its name is its id).
pub fn deployment(d: &DeploymentView) -> pb::DeploymentInfo {
    let format = d
        .path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_else(|| {
            if d.path.is_dir() {
                "dir".into()
            } else {
                String::new()
            }
        });
    pb::DeploymentInfo {
        id: d.name.clone(),
        model_name: d.name.clone(),
        model_path: d.path.display().to_string(),
        format,
        status: deployment_status(d.status) as i32,
        request_count: count(d.requests),
        deployed_at: secs(d.created),
        aliases: d.aliases.clone(),
        plugin: d.plugin.clone().unwrap_or_default(),
        kind: kind_name(d.kind).to_string(),
        state: status_name(d.status).to_string(),
        message: d.message.clone(),
        memory_bytes: d.memory_bytes,
        mean_latency_ms: d.mean_latency_ms,
        uptime_seconds: d.uptime_seconds,
        ..Default::default()
    }
}

/// A deployment as the CLI prints it in JSON: the fields (and their order) of the node's own
/// view, so `deployments list --json` reads as it did before the socket spoke gRPC.
#[derive(Debug, serde::Serialize)]
pub struct DeploymentRow<'a> {
    name: &'a str,
    aliases: &'a [String],
    path: &'a str,
    plugin: Option<&'a str>,
    kind: &'a str,
    status: &'a str,
    message: &'a str,
    memory_bytes: u64,
    created: i64,
    requests: i64,
    mean_latency_ms: f64,
    uptime_seconds: f64,
}

/// The CLI's JSON row of a deployment.
pub fn deployment_json(d: &pb::DeploymentInfo) -> DeploymentRow<'_> {
    DeploymentRow {
        name: &d.model_name,
        aliases: &d.aliases,
        path: &d.model_path,
        plugin: (!d.plugin.is_empty()).then_some(d.plugin.as_str()),
        kind: &d.kind,
        status: &d.state,
        message: &d.message,
        memory_bytes: d.memory_bytes,
        created: d.deployed_at,
        requests: d.request_count,
        mean_latency_ms: d.mean_latency_ms,
        uptime_seconds: d.uptime_seconds,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-12-01T17:34:02Z` (the store's format) as Unix seconds; 0 if it is not that form.
pub fn iso_to_unix(text: &str) -> i64 {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let shaped = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    let parts = shaped
        .then(|| {
            Some((
                num(0..4)?,
                num(5..7)?,
                num(8..10)?,
                num(11..13)?,
                num(14..16)?,
                num(17..19)?,
            ))
        })
        .flatten();
    match parts {
        Some((y, mo, d, h, mi, s)) => days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s,
        None => 0,
    }
}

/// Unix seconds in the store's ISO-8601 form.
pub fn unix_to_iso(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A key's record as `APIKeyInfo` (its name is its id: names are unique among active keys).
pub fn key(k: &KeyRecord) -> pb::ApiKeyInfo {
    pb::ApiKeyInfo {
        id: k.id.to_string(),
        name: k.name.clone(),
        key_prefix: k.prefix.clone(),
        created_at: iso_to_unix(&k.created_at),
        last_used_at: k.last_used_at.as_deref().map_or(0, iso_to_unix),
        request_count: count(k.request_count),
        rate_limit_rpm: i32::try_from(k.rpm).unwrap_or(i32::MAX),
        is_active: k.revoked_at.is_none(),
        scopes: k.scopes.iter().map(|s| s.as_str().to_string()).collect(),
        models: k.models.clone(),
        revoked_at: k.revoked_at.as_deref().map_or(0, iso_to_unix),
    }
}

/// A key as the CLI prints it: the store record's fields in their order.
#[derive(Debug, serde::Serialize)]
pub struct KeyRow {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Prefix.
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Models (empty: all).
    pub models: Vec<String>,
    /// Requests per minute (0: unlimited).
    pub rpm: i32,
    /// Created (ISO 8601).
    pub created_at: String,
    /// Last used, if ever.
    pub last_used_at: Option<String>,
    /// Requests made.
    pub request_count: i64,
    /// Revoked, if so.
    pub revoked_at: Option<String>,
}

/// The CLI's row of a key.
pub fn key_json(k: &pb::ApiKeyInfo) -> KeyRow {
    let time = |t: i64| (t != 0).then(|| unix_to_iso(t));
    KeyRow {
        id: k.id.parse().unwrap_or(0),
        name: k.name.clone(),
        prefix: k.key_prefix.clone(),
        scopes: k.scopes.clone(),
        models: k.models.clone(),
        rpm: k.rate_limit_rpm,
        created_at: unix_to_iso(k.created_at),
        last_used_at: time(k.last_used_at),
        request_count: k.request_count,
        revoked_at: time(k.revoked_at),
    }
}

/// A model file as `ModelInfo`.
pub fn model_file(f: &ModelFile, deployed: bool) -> pb::ModelInfo {
    let modified_at = std::fs::metadata(&f.path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| secs(d.as_secs()));
    pb::ModelInfo {
        name: f
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: f.path.display().to_string(),
        format: f.format.clone(),
        size_bytes: count(f.size_bytes),
        modified_at,
        is_deployed: deployed,
        ..Default::default()
    }
}

/// A system sample as `SystemMetrics` (percentages 0-100; GPU names from the inventory).
pub fn system(s: &Sample, gpus: &[Gpu]) -> pb::SystemMetrics {
    let percent = |used: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            (used as f64 * 100.0 / total as f64) as f32
        }
    };
    let per_gpu: Vec<pb::GpuMetrics> = s
        .gpus
        .iter()
        .map(|g| {
            let used = g.memory_used_bytes.unwrap_or(0);
            let total = g.memory_total_bytes.unwrap_or(0);
            pb::GpuMetrics {
                device_id: i32::try_from(g.index).unwrap_or(i32::MAX),
                name: gpus
                    .iter()
                    .find(|i| i.index == g.index)
                    .map(|i| i.name.clone())
                    .unwrap_or_default(),
                vendor: "NVIDIA".to_string(),
                usage_3d: g.utilization_percent.unwrap_or(0.0),
                memory_usage: percent(used, total),
                vram_used_bytes: used,
                vram_total_bytes: total,
                temperature_celsius: g.temperature_c.unwrap_or(0.0),
                power_watts: g.power_watts.unwrap_or(0.0),
                is_nvidia: true,
                ..Default::default()
            }
        })
        .collect();
    let vram_used: u64 = per_gpu.iter().map(|g| g.vram_used_bytes).sum();
    let vram_total: u64 = per_gpu.iter().map(|g| g.vram_total_bytes).sum();
    let gpu_usage = if per_gpu.is_empty() {
        0.0
    } else {
        per_gpu.iter().map(|g| g.usage_3d).sum::<f32>() / per_gpu.len() as f32
    };
    let mbps = |bytes_per_s: f64| (bytes_per_s * 8.0 / 1e6) as f32;
    pb::SystemMetrics {
        cpu_usage: s.cpu_percent,
        gpu_usage,
        ram_usage: percent(s.ram_used_bytes, s.ram_total_bytes),
        vram_usage: percent(vram_used, vram_total),
        ram_total_bytes: s.ram_total_bytes,
        ram_used_bytes: s.ram_used_bytes,
        vram_total_bytes: vram_total,
        vram_used_bytes: vram_used,
        network_rx_mbps: mbps(s.net_rx_bytes_per_s),
        network_tx_mbps: mbps(s.net_tx_bytes_per_s),
        gpu_temp_celsius: per_gpu
            .iter()
            .map(|g| g.temperature_celsius)
            .fold(0.0, f32::max),
        cpu_temp_celsius: 0.0,
        gpu_count: i32::try_from(per_gpu.len()).unwrap_or(i32::MAX),
        gpus: per_gpu,
    }
}

/// The central link's state as the protocol's coarser enum.
pub fn connection(state: ConnectionState) -> pb::ConnectionStatus {
    match state {
        ConnectionState::Standalone
        | ConnectionState::Disconnected
        | ConnectionState::Unauthenticated => pb::ConnectionStatus::Disconnected,
        ConnectionState::Connecting => pb::ConnectionStatus::Connecting,
        ConnectionState::Connected => pb::ConnectionStatus::Connected,
    }
}

fn state_name(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Standalone => "standalone",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Disconnected => "disconnected",
        ConnectionState::Unauthenticated => "unauthenticated",
    }
}

/// The central link in detail.
pub fn central(c: &CentralStatus) -> pb::CentralLinkInfo {
    pb::CentralLinkInfo {
        address: c.address.clone(),
        state: state_name(c.state).to_string(),
        registered_at: c.registered_at.map_or(0, secs),
        last_heartbeat: c.last_heartbeat.map_or(0, secs),
        heartbeats: c.heartbeats,
        registrations: c.registrations,
        last_error: c.last_error.clone().unwrap_or_default(),
        next_attempt_at: c.next_attempt_at.map_or(0, secs),
    }
}

/// The JSON the CLI prints for `status --json` (the same shape as before).
pub fn status_json(s: &pb::GetStatusResponse) -> serde_json::Value {
    let c = s.central.clone().unwrap_or_default();
    let time = |t: i64| (t != 0).then_some(t);
    let d = s.deployment_counts.unwrap_or_default();
    let j = s.job_counts.unwrap_or_default();
    serde_json::json!({
        "node": {
            "id": s.node_id,
            "name": s.node_name,
            "version": s.version,
            "uptime_seconds": s.uptime_seconds,
        },
        "central": {
            "address": c.address,
            "state": c.state,
            "registered_at": time(c.registered_at),
            "last_heartbeat": time(c.last_heartbeat),
            "heartbeats": c.heartbeats,
            "registrations": c.registrations,
            "last_error": (!c.last_error.is_empty()).then_some(&c.last_error),
            "next_attempt_at": time(c.next_attempt_at),
        },
        "grpc_ports": s.grpc_ports,
        "deployments": {
            "total": d.total,
            "ready": d.ready,
            "loading": d.loading,
            "failed": d.failed,
        },
        "plugins": {"loaded": s.plugins_loaded, "failed": s.plugins_failed},
        "jobs": {
            "queued": j.queued,
            "running": j.running,
            "paused": j.paused,
            "network": j.network,
            "report_backlog": j.report_backlog,
            "reports_failed": j.reports_failed,
        },
    })
}

/// A log line as `LogEntry`.
pub fn log_entry(l: &LogLine) -> pb::LogEntry {
    pb::LogEntry {
        timestamp: l.timestamp,
        level: l.level.as_str().to_ascii_lowercase(),
        message: l.message.clone(),
        source: l.source.clone(),
    }
}

/// A job's state as the protocol's coarser enum.
pub fn job_status(state: JobState) -> pb::JobStatus {
    match state {
        JobState::Queued | JobState::Preparing => pb::JobStatus::Pending,
        JobState::Running => pb::JobStatus::Running,
        JobState::Paused => pb::JobStatus::Paused,
        JobState::Succeeded => pb::JobStatus::Completed,
        JobState::Failed => pb::JobStatus::Failed,
        JobState::Cancelled => pb::JobStatus::Cancelled,
    }
}

/// A job as `JobInfo`; its `json` is the JobView exactly as `GET /v1/jobs/{id}` returns it.
pub fn job(v: &JobView) -> pb::JobInfo {
    let metric = |name: &str| v.metrics.get(name).copied().unwrap_or(0.0) as f32;
    let started_at = v.started_at.as_deref().map_or(0, iso_to_unix);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| secs(d.as_secs()));
    pb::JobInfo {
        id: v.id.clone(),
        r#type: "training".into(),
        status: job_status(v.state) as i32,
        progress: v.progress as f32,
        current_epoch: i32::try_from(v.epoch).unwrap_or(i32::MAX),
        total_epochs: i32::try_from(v.total_epochs).unwrap_or(i32::MAX),
        loss: metric("loss"),
        accuracy: metric("accuracy"),
        started_at,
        estimated_completion: v
            .eta_seconds
            .filter(|e| e.is_finite() && *e >= 0.0)
            .map_or(0, |e| now.saturating_add(e.round() as i64)),
        model_name: String::new(),
        submitter_id: v.origin.clone(),
        earnings: 0.0,
        // Serialising a JobView cannot fail (string keys, finite or null numbers).
        json: serde_json::to_string(v).unwrap_or_default(),
        state: v.state.as_str().to_string(),
        backend: v.backend.clone(),
        dataset: v.dataset.clone(),
        error: v.error.clone().unwrap_or_default(),
        weights_sha256: v.weights_sha256.clone().unwrap_or_default(),
        weights_bytes: v.weights_bytes.unwrap_or(0),
        samples_per_second: v.samples_per_second.unwrap_or(0.0),
        eta_seconds: v.eta_seconds.unwrap_or(-1.0),
        step: v.step,
        total_steps: v.total_steps,
        created_at: v.created_at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_times_round_trip() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T12:34:56Z",
            "2026-12-01T17:34:02Z",
            "2100-03-01T23:59:59Z",
        ] {
            assert_eq!(unix_to_iso(iso_to_unix(text)), text);
        }
        assert_eq!(iso_to_unix("2026-12-01T17:34:02Z"), 1_796_146_442);
        assert_eq!(iso_to_unix("yesterday"), 0);
        assert_eq!(iso_to_unix("2026-12-01 17:34:02"), 0);
    }
}
