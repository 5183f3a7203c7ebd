//! `DaemonService` over the [`Node`]: each RPC delegates in one line to the module that owns
//! it, with the operator ([`Caller::Operator`]) as the caller (the socket admits only the
//! node's own user): status, metrics, logs and shutdown in [`super::system`]; deployments
//! and model files in [`super::deployments`]; API keys in [`super::keys`]; the configuration
//! in [`super::config`]; training jobs in [`super::jobs`]. Caller-sent numbers and strings
//! are bounded there before use. RPCs for what this node does not have yet (earnings and
//! wallet, pool mining, the marketplace, restart, device allocations, the central link's
//! controls) answer `UNIMPLEMENTED` with the reason. The shared stream plumbing
//! ([`Streamed`], [`receiver_stream`]) lives here.
//!
//! [`Caller::Operator`]: crate::access::Caller::Operator

use super::{
    checks::unimplemented,
    config, convert, deployments,
    jobs::{self, Steer},
    keys, system,
};
use crate::{logging::LogRing, node::Node};
use cyxwiz_proto::daemon::{self as pb, daemon_service_server::DaemonService};
use futures_util::Stream;
use std::{pin::Pin, sync::Arc};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

pub use super::{
    deployments::MAX_OPTIONS_BYTES,
    system::{MAX_LOG_LINES, METRICS_INTERVAL_MS},
};

/// How the audit log names this transport.
pub(super) const VIA: &str = "control socket";
/// Most names in a request's lists (aliases, scopes, models, directories).
pub const MAX_LIST: usize = 32;
/// Longest name or path a request may carry.
pub const MAX_NAME: usize = 4096;

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
}

/// The stream of what `rx` receives.
pub(super) fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<Result<T, Status>>,
) -> Streamed<T> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[tonic::async_trait]
impl DaemonService for ControlService {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Ok(Response::new(system::status(self.node()).await?))
    }

    async fn get_metrics(
        &self,
        _: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        Ok(Response::new(system::metrics(self.node()).await?))
    }

    type StreamMetricsStream = Streamed<pb::MetricsUpdate>;

    async fn stream_metrics(
        &self,
        request: Request<pb::StreamMetricsRequest>,
    ) -> Result<Response<Self::StreamMetricsStream>, Status> {
        let asked = request.into_inner().interval_ms;
        Ok(Response::new(system::stream_metrics(
            self.node(),
            &self.0.stop,
            asked,
        )?))
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
        Ok(Response::new(deployments::list(self.node())))
    }

    async fn deploy_model(
        &self,
        request: Request<pb::DeployModelRequest>,
    ) -> Result<Response<pb::DeployModelResponse>, Status> {
        Ok(Response::new(
            deployments::deploy(self.node(), request.into_inner()).await?,
        ))
    }

    async fn undeploy_model(
        &self,
        request: Request<pb::UndeployModelRequest>,
    ) -> Result<Response<pb::UndeployModelResponse>, Status> {
        let name = request.into_inner().deployment_id;
        Ok(Response::new(deployments::undeploy(self.node(), name)?))
    }

    async fn get_deployment_status(
        &self,
        request: Request<pb::GetDeploymentStatusRequest>,
    ) -> Result<Response<pb::GetDeploymentStatusResponse>, Status> {
        let name = request.into_inner().deployment_id;
        Ok(Response::new(deployments::status(self.node(), name)?))
    }

    async fn list_local_models(
        &self,
        request: Request<pb::ListLocalModelsRequest>,
    ) -> Result<Response<pb::ListLocalModelsResponse>, Status> {
        let directory = request.into_inner().directory;
        Ok(Response::new(
            deployments::local_models(self.node(), directory).await?,
        ))
    }

    async fn scan_models(
        &self,
        request: Request<pb::ScanModelsRequest>,
    ) -> Result<Response<pb::ScanModelsResponse>, Status> {
        let asked = request.into_inner().directories;
        Ok(Response::new(
            deployments::scan_models(self.node(), asked).await?,
        ))
    }

    async fn delete_model(
        &self,
        request: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let path = request.into_inner().model_path;
        Ok(Response::new(deployments::delete(self.node(), path).await?))
    }

    async fn list_api_keys(
        &self,
        _: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        Ok(Response::new(keys::list(self.node()).await?))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        Ok(Response::new(
            keys::create(self.node(), request.into_inner()).await?,
        ))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let name = request.into_inner().key_id;
        Ok(Response::new(keys::revoke(self.node(), name).await?))
    }

    async fn get_config(
        &self,
        _: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        Ok(Response::new(config::get(self.node())))
    }

    async fn set_config(
        &self,
        request: Request<pb::SetConfigRequest>,
    ) -> Result<Response<pb::SetConfigResponse>, Status> {
        Ok(Response::new(
            config::set(self.node(), request.into_inner()).await?,
        ))
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
        Ok(Response::new(system::logs(
            self.0.logs.as_ref(),
            request.into_inner(),
        )?))
    }

    type StreamLogsStream = Streamed<pb::LogEntry>;

    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let filter = request.into_inner().level_filter;
        Ok(Response::new(system::stream_logs(
            self.0.logs.as_ref(),
            &self.0.stop,
            filter,
        )?))
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
        Ok(Response::new(system::shutdown(self.node(), &self.0.stop)))
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
