//! `DaemonService` over the [`Node`]: each RPC is a few lines over the node's operations,
//! with the operator ([`Caller::Operator`]) as the caller (the socket admits only the node's
//! own user). Caller-sent numbers and strings are bounded before use; the training-job RPCs
//! are in [`super::jobs`]. RPCs for what this node does not have yet (earnings and wallet,
//! pool mining, the marketplace, restart, device allocations, the central link's controls)
//! answer `UNIMPLEMENTED` with the reason.

use super::{
    checks::{
        blocking, bounded, bounded_list, delete_model, invalid, level_filter, model_dirs, scan,
        unimplemented,
    },
    convert,
    jobs::{self, Steer},
    settings,
};
use crate::{
    access::Caller,
    config::DeploymentConfig,
    logging::{LogLine, LogRing},
    node::{Node, NodeError},
    store::keys::Scope,
};
use cyxwiz_proto::daemon::{self as pb, daemon_service_server::DaemonService};
use futures_util::Stream;
use std::{
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::Duration,
};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

/// How the audit log names this transport.
pub(super) const VIA: &str = "control socket";
/// Shortest and longest `StreamMetrics` interval.
pub const METRICS_INTERVAL_MS: std::ops::RangeInclusive<i32> = 250..=3_600_000;
/// Most lines `GetLogs` returns.
pub const MAX_LOG_LINES: i32 = crate::logging::RING_LINES as i32;
/// Lines `GetLogs` returns when the caller asks for 0.
const DEFAULT_LOG_LINES: usize = 100;
/// Most names in a request's lists (aliases, scopes, models, directories).
pub const MAX_LIST: usize = 32;
/// Longest name or path a request may carry.
pub const MAX_NAME: usize = 4096;
/// Largest `options_json`.
pub const MAX_OPTIONS_BYTES: usize = 64 << 10;
/// Points of each history `GetMetrics` returns (the last hour).
const HISTORY_POINTS: usize = 720;

/// A server stream of `T`.
pub type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// What the control service needs besides the node.
#[derive(Debug, Clone)]
pub struct ControlContext {
    /// The node.
    pub node: Arc<Node>,
    /// Recent log lines, if the logger keeps them.
    pub logs: Option<Arc<LogRing>>,
    /// The daemon's shutdown signal: `Shutdown` sets it; streams end when it is set.
    pub stop: Arc<watch::Sender<bool>>,
}

/// The `DaemonService` implementation.
#[derive(Debug, Clone)]
pub struct ControlService(Arc<ControlContext>);

impl ControlService {
    /// The service over `context`.
    pub fn new(context: ControlContext) -> Self {
        Self(Arc::new(context))
    }

    fn node(&self) -> &Arc<Node> {
        &self.0.node
    }

    /// The largest request this service accepts (a job submission with inline data).
    pub fn max_request_bytes(&self) -> usize {
        jobs::max_request_bytes(self.node().config.jobs.max_inline_dataset_bytes)
    }

    /// Runs `produce` every `period` into a stream until the caller leaves or the node stops.
    fn every<T: Send + 'static>(
        &self,
        period: Duration,
        mut produce: impl FnMut() -> Option<T> + Send + 'static,
    ) -> Streamed<T> {
        let (tx, rx) = mpsc::channel(4);
        let mut stop = self.0.stop.subscribe();
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
}

/// The stream of what `rx` receives.
pub(super) fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<Result<T, Status>>,
) -> Streamed<T> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
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

#[tonic::async_trait]
impl DaemonService for ControlService {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let node = self.node();
        let s = node.status();
        let gpus = &node.inventory.gpus;
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let job_counts = blocking({
            let node = node.clone();
            move || Ok::<_, Status>(job_counts(&node))
        })
        .await?;
        Ok(Response::new(pb::GetStatusResponse {
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
        }))
    }

    async fn get_metrics(
        &self,
        _: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let node = self.node().clone();
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
        Ok(Response::new(pb::GetMetricsResponse {
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
        }))
    }

    type StreamMetricsStream = Streamed<pb::MetricsUpdate>;

    async fn stream_metrics(
        &self,
        request: Request<pb::StreamMetricsRequest>,
    ) -> Result<Response<Self::StreamMetricsStream>, Status> {
        let asked = request.into_inner().interval_ms;
        let interval_ms = if asked == 0 {
            let secs = self.node().config.metrics.interval_seconds;
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
        let node = self.node().clone();
        Ok(Response::new(self.every(
            Duration::from_millis(interval_ms),
            move || {
                let sample = node.metrics.system()?;
                Some(pb::MetricsUpdate {
                    metrics: Some(convert::system(&sample, &node.inventory.gpus)),
                    timestamp: sample.timestamp,
                })
            },
        )))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let jobs = self.node().jobs.clone();
        Ok(Response::new(jobs::list(jobs, request.into_inner()).await?))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let jobs = self.node().jobs.clone();
        Ok(Response::new(
            jobs::get(jobs, request.into_inner().job_id).await?,
        ))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let id = request.into_inner().job_id;
        let view = jobs::steer(self.node().jobs.clone(), id, Steer::Cancel).await?;
        self.node().audit("job_cancelled", &view.id, VIA);
        Ok(Response::new(pb::CancelJobResponse {
            success: true,
            error_message: String::new(),
            job: Some(convert::job(&view)),
        }))
    }

    type StreamJobUpdatesStream = Streamed<pb::JobUpdate>;

    async fn stream_job_updates(
        &self,
        request: Request<pb::StreamJobUpdatesRequest>,
    ) -> Result<Response<Self::StreamJobUpdatesStream>, Status> {
        let id = request.into_inner().job_id;
        let stop = self.0.stop.subscribe();
        Ok(Response::new(
            jobs::updates(self.node().jobs.clone(), id, stop).await?,
        ))
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let max_inline = self.node().config.jobs.max_inline_dataset_bytes;
        let jobs = self.node().jobs.clone();
        let answer = jobs::submit(jobs, request.into_inner(), max_inline).await?;
        if let Some(job) = &answer.job {
            self.node().audit("job_submitted", &job.id, VIA);
        }
        Ok(Response::new(answer))
    }

    async fn pause_job(
        &self,
        request: Request<pb::PauseJobRequest>,
    ) -> Result<Response<pb::PauseJobResponse>, Status> {
        let id = request.into_inner().job_id;
        let view = jobs::steer(self.node().jobs.clone(), id, Steer::Pause).await?;
        Ok(Response::new(pb::PauseJobResponse {
            job: Some(convert::job(&view)),
        }))
    }

    async fn resume_job(
        &self,
        request: Request<pb::ResumeJobRequest>,
    ) -> Result<Response<pb::ResumeJobResponse>, Status> {
        let id = request.into_inner().job_id;
        let view = jobs::steer(self.node().jobs.clone(), id, Steer::Resume).await?;
        Ok(Response::new(pb::ResumeJobResponse {
            job: Some(convert::job(&view)),
        }))
    }

    type GetJobLogsStream = Streamed<pb::JobLogChunk>;

    async fn get_job_logs(
        &self,
        request: Request<pb::GetJobLogsRequest>,
    ) -> Result<Response<Self::GetJobLogsStream>, Status> {
        let stop = self.0.stop.subscribe();
        let jobs = self.node().jobs.clone();
        Ok(Response::new(
            jobs::logs(jobs, request.into_inner(), stop).await?,
        ))
    }

    type DownloadJobWeightsStream = Streamed<pb::WeightsChunk>;

    async fn download_job_weights(
        &self,
        request: Request<pb::DownloadJobWeightsRequest>,
    ) -> Result<Response<Self::DownloadJobWeightsStream>, Status> {
        let id = request.into_inner().job_id;
        Ok(Response::new(
            jobs::weights(self.node().jobs.clone(), id).await?,
        ))
    }

    async fn list_deployments(
        &self,
        _: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let list = self.node().deployment_list(&Caller::Operator);
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: list.iter().map(convert::deployment).collect(),
        }))
    }

    async fn deploy_model(
        &self,
        request: Request<pb::DeployModelRequest>,
    ) -> Result<Response<pb::DeployModelResponse>, Status> {
        let req = request.into_inner();
        bounded("model_path", &req.model_path)?;
        bounded("name", &req.name)?;
        bounded("plugin", &req.plugin)?;
        bounded_list("aliases", &req.aliases)?;
        if req.port != 0 {
            return Err(invalid(
                "port",
                "every deployment is served on the node's HTTP API port ([api] port); leave port 0"
                    .into(),
            ));
        }
        if req.gpu_layers != 0 || req.context_size != 0 {
            return Err(invalid(
                "gpu_layers",
                "gpu_layers and context_size are plugin load options here: pass them in options_json".into(),
            ));
        }
        if !req.api_key_id.is_empty() {
            return Err(invalid(
                "api_key_id",
                "keys restrict themselves to models (keys create --models), not the other way round".into(),
            ));
        }
        if req.options_json.len() > MAX_OPTIONS_BYTES {
            return Err(invalid(
                "options_json",
                format!(
                    "options_json must be at most {MAX_OPTIONS_BYTES} bytes, got {}",
                    req.options_json.len()
                ),
            ));
        }
        let path = PathBuf::from(&req.model_path);
        if !path.is_absolute() {
            return Err(invalid(
                "model_path",
                format!("the model path must be absolute, got `{}`", req.model_path),
            ));
        }
        // Peers that do not know the node's extensions send no name: the file's stem.
        let name = if req.name.is_empty() {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            req.name
        };
        let mut config = DeploymentConfig::new(name, path);
        config.aliases = req.aliases;
        config.plugin = (!req.plugin.is_empty()).then_some(req.plugin);
        config.threads = req.threads;
        config.workers = req.workers;
        if !req.device.is_empty() {
            bounded("device", &req.device)?;
            config.device = req.device;
        }
        if !req.options_json.is_empty() {
            let json: serde_json::Value = serde_json::from_str(&req.options_json).map_err(|e| {
                invalid(
                    "options_json",
                    format!("options_json is not valid JSON: {e}"),
                )
            })?;
            if !json.is_object() {
                return Err(invalid(
                    "options_json",
                    "options_json must be a JSON object".into(),
                ));
            }
            config.options = serde_json::from_value(json)
                .map_err(|e| invalid("options_json", format!("options_json: {e}")))?;
        }
        let view = self
            .node()
            .deploy(&Caller::Operator, VIA, config)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::DeployModelResponse {
            success: true,
            deployment_id: view.name.clone(),
            error_message: String::new(),
            deployment: Some(convert::deployment(&view)),
        }))
    }

    async fn undeploy_model(
        &self,
        request: Request<pb::UndeployModelRequest>,
    ) -> Result<Response<pb::UndeployModelResponse>, Status> {
        let name = request.into_inner().deployment_id;
        bounded("deployment_id", &name)?;
        self.node()
            .undeploy(&Caller::Operator, VIA, &name)
            .map_err(Status::from)?;
        Ok(Response::new(pb::UndeployModelResponse {
            success: true,
            error_message: String::new(),
        }))
    }

    async fn get_deployment_status(
        &self,
        request: Request<pb::GetDeploymentStatusRequest>,
    ) -> Result<Response<pb::GetDeploymentStatusResponse>, Status> {
        let name = request.into_inner().deployment_id;
        bounded("deployment_id", &name)?;
        let view = self
            .node()
            .deployment(&Caller::Operator, &name)
            .map_err(Status::from)?;
        Ok(Response::new(pb::GetDeploymentStatusResponse {
            deployment: Some(convert::deployment(&view)),
        }))
    }

    async fn list_local_models(
        &self,
        request: Request<pb::ListLocalModelsRequest>,
    ) -> Result<Response<pb::ListLocalModelsResponse>, Status> {
        let directory = request.into_inner().directory;
        bounded("directory", &directory)?;
        let asked: Vec<String> = (!directory.is_empty())
            .then_some(directory)
            .into_iter()
            .collect();
        let dirs = model_dirs(self.node(), &asked)?;
        let node = self.node().clone();
        let models = blocking(move || Ok(scan(&node, &dirs))).await?;
        Ok(Response::new(pb::ListLocalModelsResponse { models }))
    }

    /// Scans the model directories (or those asked, inside them); `new_models` are the files
    /// no deployment serves.
    async fn scan_models(
        &self,
        request: Request<pb::ScanModelsRequest>,
    ) -> Result<Response<pb::ScanModelsResponse>, Status> {
        let asked = request.into_inner().directories;
        bounded_list("directories", &asked)?;
        let dirs = model_dirs(self.node(), &asked)?;
        let node = self.node().clone();
        let models = blocking(move || Ok(scan(&node, &dirs))).await?;
        Ok(Response::new(pb::ScanModelsResponse {
            models_found: i32::try_from(models.len()).unwrap_or(i32::MAX),
            new_models: models.into_iter().filter(|m| !m.is_deployed).collect(),
        }))
    }

    async fn delete_model(
        &self,
        request: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let path = request.into_inner().model_path;
        bounded("model_path", &path)?;
        let node = self.node().clone();
        blocking(move || delete_model(&node, Path::new(&path))).await?;
        Ok(Response::new(pb::DeleteModelResponse {
            success: true,
            error_message: String::new(),
        }))
    }

    async fn list_api_keys(
        &self,
        _: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let keys = self.node().keys().await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: keys.iter().map(convert::key).collect(),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let req = request.into_inner();
        bounded("name", &req.name)?;
        bounded_list("scopes", &req.scopes)?;
        bounded_list("models", &req.models)?;
        let rpm = u32::try_from(req.rate_limit_rpm).map_err(|_| {
            invalid(
                "rate_limit_rpm",
                format!(
                    "rate_limit_rpm must be at least 0, got {}",
                    req.rate_limit_rpm
                ),
            )
        })?;
        let scopes = req
            .scopes
            .iter()
            .map(|s| Scope::parse(s.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(NodeError::from)?;
        let models: Vec<String> = req
            .models
            .into_iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        let (key, record) = self
            .node()
            .create_key(VIA, req.name, scopes, models, rpm)
            .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            success: true,
            key,
            key_info: Some(convert::key(&record)),
            error_message: String::new(),
        }))
    }

    /// Revokes the active key whose name is `key_id`.
    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let name = request.into_inner().key_id;
        bounded("key_id", &name)?;
        self.node().revoke_key(VIA, name).await?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            success: true,
            error_message: String::new(),
        }))
    }

    async fn get_config(
        &self,
        _: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        Ok(Response::new(settings::get(&self.node().config)))
    }

    async fn set_config(
        &self,
        request: Request<pb::SetConfigRequest>,
    ) -> Result<Response<pb::SetConfigResponse>, Status> {
        let req = request.into_inner();
        let path = settings::file_of(&self.node().config);
        let file = path.clone();
        let changed = blocking(move || {
            settings::apply(&file, &req).map_err(|e| match e {
                settings::SettingsError::Io { .. } => NodeError::internal(e).into(),
                _ => NodeError::invalid(e.to_string()).into(),
            })
        })
        .await?;
        if changed {
            self.node()
                .audit("config_changed", &path.display().to_string(), VIA);
        }
        Ok(Response::new(pb::SetConfigResponse {
            success: true,
            error_message: if changed {
                format!("{} updated; restart the node to apply it", path.display())
            } else {
                String::new()
            },
            restart_required: changed,
        }))
    }

    async fn get_earnings(
        &self,
        _: Request<pb::GetEarningsRequest>,
    ) -> Result<Response<pb::GetEarningsResponse>, Status> {
        unimplemented("earnings are not tracked yet: they come with network jobs and payments")
    }

    async fn get_wallet_info(
        &self,
        _: Request<pb::GetWalletInfoRequest>,
    ) -> Result<Response<pb::GetWalletInfoResponse>, Status> {
        unimplemented("the node keeps no wallet; set [node] wallet_address in config.toml")
    }

    async fn set_wallet_address(
        &self,
        _: Request<pb::SetWalletAddressRequest>,
    ) -> Result<Response<pb::SetWalletAddressResponse>, Status> {
        unimplemented("the node keeps no wallet; set [node] wallet_address in config.toml")
    }

    async fn get_logs(
        &self,
        request: Request<pb::GetLogsRequest>,
    ) -> Result<Response<pb::GetLogsResponse>, Status> {
        let req = request.into_inner();
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
        let Some(ring) = &self.0.logs else {
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
        Ok(Response::new(pb::GetLogsResponse { entries }))
    }

    type StreamLogsStream = Streamed<pb::LogEntry>;

    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let filter = request.into_inner().level_filter;
        bounded("level_filter", &filter)?;
        let min = level_filter(&filter)?;
        let Some(ring) = &self.0.logs else {
            return unimplemented("this node keeps no log lines in memory");
        };
        let mut lines = ring.subscribe();
        let mut stop = self.0.stop.subscribe();
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
        Ok(Response::new(receiver_stream(rx)))
    }

    async fn get_pool_status(
        &self,
        _: Request<pb::GetPoolStatusRequest>,
    ) -> Result<Response<pb::GetPoolStatusResponse>, Status> {
        unimplemented("pool mining is not part of this node")
    }

    async fn join_pool(
        &self,
        _: Request<pb::JoinPoolRequest>,
    ) -> Result<Response<pb::JoinPoolResponse>, Status> {
        unimplemented("pool mining is not part of this node")
    }

    async fn leave_pool(
        &self,
        _: Request<pb::LeavePoolRequest>,
    ) -> Result<Response<pb::LeavePoolResponse>, Status> {
        unimplemented("pool mining is not part of this node")
    }

    async fn set_mining_intensity(
        &self,
        _: Request<pb::SetMiningIntensityRequest>,
    ) -> Result<Response<pb::SetMiningIntensityResponse>, Status> {
        unimplemented("pool mining is not part of this node")
    }

    async fn start_mining(
        &self,
        _: Request<pb::StartMiningRequest>,
    ) -> Result<Response<pb::StartMiningResponse>, Status> {
        unimplemented("pool mining is not part of this node")
    }

    async fn stop_mining(
        &self,
        _: Request<pb::StopMiningRequest>,
    ) -> Result<Response<pb::StopMiningResponse>, Status> {
        unimplemented("pool mining is not part of this node")
    }

    async fn list_marketplace_models(
        &self,
        _: Request<pb::ListMarketplaceModelsRequest>,
    ) -> Result<Response<pb::ListMarketplaceModelsResponse>, Status> {
        unimplemented("the model marketplace is not available yet")
    }

    async fn get_marketplace_model(
        &self,
        _: Request<pb::GetMarketplaceModelRequest>,
    ) -> Result<Response<pb::GetMarketplaceModelResponse>, Status> {
        unimplemented("the model marketplace is not available yet")
    }

    type DownloadMarketplaceModelStream = Streamed<pb::DownloadProgress>;

    async fn download_marketplace_model(
        &self,
        _: Request<pb::DownloadMarketplaceModelRequest>,
    ) -> Result<Response<Self::DownloadMarketplaceModelStream>, Status> {
        unimplemented("the model marketplace is not available yet")
    }

    async fn cancel_marketplace_download(
        &self,
        _: Request<pb::CancelMarketplaceDownloadRequest>,
    ) -> Result<Response<pb::CancelMarketplaceDownloadResponse>, Status> {
        unimplemented("the model marketplace is not available yet")
    }

    /// Stops the node the way Ctrl-C does (always gracefully); the reply goes out first.
    async fn shutdown(
        &self,
        _: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        tracing::info!("shutdown requested on the control socket");
        self.node().audit("node_stopping", self.node().name(), VIA);
        let stop = self.0.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = stop.send(true);
        });
        Ok(Response::new(pb::ShutdownResponse {
            success: true,
            error_message: String::new(),
        }))
    }

    async fn restart(
        &self,
        _: Request<pb::RestartRequest>,
    ) -> Result<Response<pb::RestartResponse>, Status> {
        unimplemented(
            "restart through the service manager (systemctl restart) or Shutdown and start again",
        )
    }

    async fn set_allocations(
        &self,
        _: Request<pb::SetAllocationsRequest>,
    ) -> Result<Response<pb::SetAllocationsResponse>, Status> {
        unimplemented("device allocations come with the device pool; use [devices] in config.toml")
    }

    async fn retry_connection(
        &self,
        _: Request<pb::RetryConnectionRequest>,
    ) -> Result<Response<pb::RetryConnectionResponse>, Status> {
        unimplemented("the node reconnects to the central server by itself (with backoff); `status` shows the next attempt")
    }

    async fn disconnect_from_central(
        &self,
        _: Request<pb::DisconnectFromCentralRequest>,
    ) -> Result<Response<pb::DisconnectFromCentralResponse>, Status> {
        unimplemented("clear [central_server] address in config.toml and restart to run standalone")
    }
}
