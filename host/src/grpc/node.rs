//! `NodeService` as a node serves it: `AssignJob` (the central scheduler dials registered
//! port + 3) judged against the operator's `[jobs]` policy, converted (`jobs::wire`) and
//! submitted to the executor as a `central` job under the network's job id, and
//! `GetNodeMetrics` from the metrics history. The other methods belong to the central server.
//!
//! The central server reads only `accepted` and the error's message, and a declined job stays
//! "assigned" there for good, so AssignJob declines only what the node cannot run (policy, a
//! definition or dataset it refuses, a full queue), says exactly why, and accepts a repeated
//! AssignJob for a job it already has without running it twice. The reply comes once the job
//! is validated and queued (the dataset is loaded to check the graph against it: ~30 ms for
//! the digits), or after 800 ms at the latest: a job still validating then (Fashion-MNIST in a
//! debug build, a large CSV) is accepted with a durable FAILED result in the outbox that is
//! dropped when the job is queued and sent, with the reason, if it never is (the validation
//! fails, or the node stops first). Progress and the result go to the central server through
//! the report outbox (`crate::reports`).
//!
//! AssignJob is the one RPC without a key (the central server sends none), so it is the
//! most exposed: it may be limited to the central server's addresses
//! (`[grpc] assign_job_from`), each address has a budget of calls per minute, the job id
//! must look like one (at most 128 printable ASCII characters), and what it logs is
//! escaped and capped. GetNodeMetrics needs a key.

use super::{error, GrpcState};
use crate::config::Config;
use crate::jobs::{wire::WirePolicy, JobError, Origin};
use cyxwiz_proto::protocol::{
    node_service_server::NodeService, AssignJobRequest, AssignJobResponse, DeviceType,
    GetNodeMetricsRequest, GetNodeMetricsResponse, HeartbeatRequest, HeartbeatResponse,
    JobAcceptedRequest, JobAcceptedResponse, JobConfig, JobType, MetricPoint, RegisterNodeRequest,
    RegisterNodeResponse, ReportCompletionRequest, ReportCompletionResponse, ReportProgressRequest,
    ReportProgressResponse, StatusCode,
};
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

/// The node side of `NodeService`.
#[derive(Clone)]
pub struct NodeSvc(pub Arc<GrpcState>);

/// The reason a job is declined, or `None` when policy allows it.
pub fn policy_refusal(
    config: &Config,
    has_gpu: bool,
    ram_total: u64,
    our_id: &str,
    node_id: &str,
    job: &JobConfig,
) -> Option<(Code, String)> {
    let jobs = &config.jobs;
    if !node_id.is_empty() && node_id != our_id {
        return Some((
            Code::InvalidArgument,
            format!("the job is addressed to node {node_id}; this node is {our_id}"),
        ));
    }
    if !jobs.accept_network_jobs {
        return Some((
            Code::PermissionDenied,
            "this node does not accept network jobs ([jobs] accept_network_jobs = false)".into(),
        ));
    }
    let kind = match JobType::try_from(job.job_type) {
        Ok(JobType::Training) => "training",
        Ok(JobType::Inference) => "inference",
        Ok(JobType::Evaluation) => "evaluation",
        Ok(JobType::Preprocessing) => "preprocessing",
        _ => {
            return Some((
                Code::InvalidArgument,
                format!("unknown job type {}", job.job_type),
            ))
        }
    };
    if !jobs.allowed_job_types.iter().any(|t| t == kind) {
        return Some((
            Code::PermissionDenied,
            format!(
                "{kind} jobs are not accepted by this node ([jobs] allowed_job_types = {:?})",
                jobs.allowed_job_types
            ),
        ));
    }
    match DeviceType::try_from(job.required_device) {
        Ok(DeviceType::DeviceCuda) if !has_gpu && jobs.cuda_jobs_on_cpu != "run_on_cpu" => {
            return Some((
                Code::FailedPrecondition,
                "the job requires a CUDA GPU and this node has none ([jobs] cuda_jobs_on_cpu = \"refuse\"; set it to \"run_on_cpu\" to train such jobs on the CPU)".into(),
            ))
        }
        Ok(DeviceType::DeviceOpencl | DeviceType::DeviceMetal | DeviceType::DeviceVulkan) => {
            return Some((
                Code::FailedPrecondition,
                format!(
                    "the job requires a {} device; this node offers CPU and CUDA only",
                    DeviceType::try_from(job.required_device)
                        .map(|d| d.as_str_name())
                        .unwrap_or("?")
                ),
            ))
        }
        _ => {}
    }
    let cap_mb = if jobs.max_memory_mb > 0 {
        jobs.max_memory_mb
    } else {
        ram_total >> 20
    };
    let wanted_mb = u64::try_from(job.estimated_memory).unwrap_or(0) >> 20;
    if wanted_mb > cap_mb {
        return Some((
            Code::ResourceExhausted,
            format!(
                "the job needs {wanted_mb} MiB and this node accepts at most {cap_mb} MiB ([jobs] max_memory_mb)"
            ),
        ));
    }
    let duration = u64::try_from(job.estimated_duration).unwrap_or(0);
    if jobs.max_duration_seconds > 0 && duration > jobs.max_duration_seconds {
        return Some((
            Code::ResourceExhausted,
            format!(
                "the job would run {duration} s and this node accepts at most {} s ([jobs] max_duration_seconds)",
                jobs.max_duration_seconds
            ),
        ));
    }
    // The queue (`max_concurrent_jobs` running + `max_queued_jobs` waiting) is the
    // executor's to judge: a full one refuses the submission (QueueFull).
    None
}

/// Longest job id accepted (the network's ids are UUIDs, 36 characters).
pub const MAX_JOB_ID: usize = 128;

/// Why `id` cannot be a job id: empty, too long, or not printable ASCII without spaces.
fn check_job_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id.len() > MAX_JOB_ID {
        return Err("is longer than 128 characters");
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces");
    }
    Ok(())
}

/// Why a job that passes the policy is declined on a node without a training backend.
pub const NO_EXECUTOR: &str =
    "job execution is not enabled on this node: no training backend is loaded";

/// How an AssignJob ended.
enum Assigned {
    /// Queued now.
    New,
    /// Known already (a repeated AssignJob): not queued again.
    Known,
    /// Still validating when the answer was due: accepted, with a durable FAILED result
    /// that is sent if the job never reaches the queue.
    Pending,
}

/// How long AssignJob waits for the validation before it accepts the job anyway (the
/// central server expects an answer within a second).
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(800);

/// Submits `job` on a blocking thread and answers with the outcome; when validation takes
/// longer than [`ANSWER_WITHIN`], first writes the job's FAILED result to the outbox (sent
/// only if the job is never queued: the submission fails, or the node stops before it ends),
/// accepts, and settles that result when the submission ends.
async fn submit_in_time(
    state: &Arc<GrpcState>,
    job: &JobConfig,
    peer: &str,
    has_gpu: bool,
) -> Result<Assigned, cyxwiz_proto::protocol::Error> {
    let jobs = state.node.jobs.clone();
    let policy = WirePolicy::for_config(state.config(), has_gpu);
    let origin = Origin {
        kind: "central",
        reservation: None,
        peer: Some(peer.to_owned()),
    };
    let config = job.clone();
    let mut task = tokio::task::spawn_blocking(move || submit(&jobs, &config, &policy, &origin));
    let joined = |r: Result<Result<Assigned, _>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| {
            Err(error::refusal(
                Code::Internal,
                format!("the submission failed: {e}"),
            ))
        })
    };
    if let Ok(r) = tokio::time::timeout(ANSWER_WITHIN, &mut task).await {
        return joined(r);
    }
    let node = state.node.clone();
    let id = job.job_id.clone();
    let placeholder = tokio::task::spawn_blocking(move || {
        let due = crate::store::outbox::now() + 60;
        node.store().enqueue_assignment(
            &id,
            "the node stopped before the job was validated and queued",
            due,
        )
    })
    .await;
    if !matches!(placeholder, Ok(Ok(_))) {
        // Nothing durable stands for the job: answer only when the submission has ended.
        tracing::warn!(job = %job.job_id, "cannot record the pending job; answering after its validation");
        return joined(task.await);
    }
    let node = state.node.clone();
    let id = job.job_id.clone();
    let peer = peer.to_owned();
    tokio::spawn(async move {
        let outcome = joined(task.await);
        let failure = outcome.as_ref().err().map(|e| e.message.clone());
        if let Some(why) = &failure {
            let why = crate::audit::clean(why, 512);
            tracing::warn!(job = %id, %peer, reason = %why, "an accepted network job failed its validation; reporting it failed");
            node.audit(
                "job_declined",
                &id,
                &format!("from {peer}, after acceptance: {why}"),
            );
        }
        let settled = tokio::task::spawn_blocking(move || {
            node.store().settle_assignment(&id, failure.as_deref())
        })
        .await;
        if !matches!(settled, Ok(Ok(()))) {
            tracing::warn!("cannot settle a pending job's report");
        }
    });
    Ok(Assigned::Pending)
}

/// Converts and submits `job` as a `central` job under its own id; a job already known is
/// accepted again without a second run. Blocking (the dataset is loaded to validate).
fn submit(
    jobs: &Arc<crate::jobs::Jobs>,
    job: &JobConfig,
    policy: &WirePolicy,
    origin: &Origin,
) -> Result<Assigned, cyxwiz_proto::protocol::Error> {
    let refused = |e: JobError| error::proto(&Status::from(crate::node::NodeError::from(e)));
    if jobs.backends().next().is_none() {
        return Err(error::refusal(Code::FailedPrecondition, NO_EXECUTOR));
    }
    match jobs.get(&job.job_id) {
        Ok(view) if view.origin == "central" => return Ok(Assigned::Known),
        Ok(view) => {
            return Err(error::refusal(
                Code::AlreadyExists,
                format!(
                    "a {} job with id {} exists on this node",
                    view.origin, view.id
                ),
            ))
        }
        Err(JobError::NotFound(_)) => {}
        Err(e) => return Err(refused(e)),
    }
    let wire = crate::jobs::wire::job_request(job, None, policy).map_err(refused)?;
    match jobs.submit(wire.request, Some(job.job_id.clone()), origin) {
        Ok(view) => {
            crate::jobs::wire::log_notes(jobs, &view.id, &wire.notes);
            Ok(Assigned::New)
        }
        // The same job assigned twice at once: the other call queued it.
        Err(JobError::Exists(_)) => Ok(Assigned::Known),
        Err(e) => Err(refused(e)),
    }
}

const CENTRAL_ONLY: &str = "served by the CyxWiz central server, not by a node";

#[tonic::async_trait]
impl NodeService for NodeSvc {
    async fn register_node(
        &self,
        _: Request<RegisterNodeRequest>,
    ) -> Result<Response<RegisterNodeResponse>, Status> {
        Err(Status::unimplemented(CENTRAL_ONLY))
    }

    async fn heartbeat(
        &self,
        _: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        Err(Status::unimplemented(CENTRAL_ONLY))
    }

    async fn assign_job(
        &self,
        request: Request<AssignJobRequest>,
    ) -> Result<Response<AssignJobResponse>, Status> {
        let state = &self.0;
        let addr = request.remote_addr();
        let peer = addr.map_or_else(|| "unknown".to_string(), |a| a.to_string());
        if let Some(ip) = addr.map(|a| a.ip()) {
            if !state.assign_from.is_empty() && !state.assign_from.iter().any(|c| c.contains(ip)) {
                tracing::warn!(%peer, "AssignJob from an address not in [grpc] assign_job_from");
                return Err(Status::permission_denied(
                    "this node takes jobs only from its central server's addresses",
                ));
            }
            if !state.assign_budget.allow(ip) {
                return Err(Status::resource_exhausted(format!(
                    "more than {} AssignJob calls per minute from {ip}",
                    state.config().grpc.assign_job_per_minute
                )));
            }
        }
        let request = request.into_inner();
        let job = request
            .job
            .ok_or_else(|| Status::invalid_argument("AssignJobRequest.job is missing"))?;
        if let Err(why) = check_job_id(&job.job_id) {
            tracing::info!(%peer, id = %crate::audit::clean(&job.job_id, 64), why, "refused an AssignJob");
            return Err(Status::invalid_argument(format!(
                "AssignJobRequest.job.job_id {why}"
            )));
        }
        let our_id = state.node.central.node_id();
        let has_gpu = !state.node.inventory.gpus.is_empty();
        let started = std::time::Instant::now();
        let decided = match policy_refusal(
            state.config(),
            has_gpu,
            state.node.inventory.ram_total_bytes,
            &our_id,
            &request.node_id,
            &job,
        ) {
            Some((code, reason)) => Err(error::refusal(code, reason)),
            None => submit_in_time(&self.0, &job, &peer, has_gpu).await,
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match decided {
            Ok(assigned) => {
                let again = matches!(assigned, Assigned::Known);
                tracing::info!(job = %job.job_id, %peer, again, elapsed_ms, "accepted a network job");
                state.node.audit(
                    "job_accepted",
                    &job.job_id,
                    &match assigned {
                        Assigned::Known => format!(
                            "from {peer}: assigned again; already here, not queued twice"
                        ),
                        Assigned::New => format!("from {peer}: queued"),
                        Assigned::Pending => format!(
                            "from {peer}: still validating after {} ms; a failure is reported to the central server",
                            ANSWER_WITHIN.as_millis()
                        ),
                    },
                );
                Ok(Response::new(AssignJobResponse {
                    status: StatusCode::StatusSuccess as i32,
                    job_id: job.job_id,
                    accepted: true,
                    error: None,
                    estimated_start_time: String::new(),
                }))
            }
            Err(refusal) => {
                let reason = crate::audit::clean(&refusal.message, 512);
                tracing::info!(job = %job.job_id, %peer, reason = %reason, elapsed_ms, "declined a network job");
                state.node.audit(
                    "job_declined",
                    &job.job_id,
                    &format!("from {peer}: {reason}"),
                );
                Ok(Response::new(AssignJobResponse {
                    status: StatusCode::StatusError as i32,
                    job_id: job.job_id,
                    accepted: false,
                    error: Some(refusal),
                    estimated_start_time: String::new(),
                }))
            }
        }
    }

    async fn report_progress(
        &self,
        _: Request<ReportProgressRequest>,
    ) -> Result<Response<ReportProgressResponse>, Status> {
        Err(Status::unimplemented(CENTRAL_ONLY))
    }

    async fn report_completion(
        &self,
        _: Request<ReportCompletionRequest>,
    ) -> Result<Response<ReportCompletionResponse>, Status> {
        Err(Status::unimplemented(CENTRAL_ONLY))
    }

    async fn get_node_metrics(
        &self,
        request: Request<GetNodeMetricsRequest>,
    ) -> Result<Response<GetNodeMetricsResponse>, Status> {
        self.0
            .authorize(&request, crate::access::Scope::Inference)?;
        let r = request.into_inner();
        let our_id = self.0.node.central.node_id();
        if !r.node_id.is_empty() && r.node_id != our_id {
            return Err(Status::not_found(format!(
                "this node is {our_id}, not {}",
                r.node_id
            )));
        }
        let end = if r.end_time > 0 { r.end_time } else { i64::MAX };
        if r.start_time > end {
            return Err(Status::invalid_argument("start_time is after end_time"));
        }
        let points = self
            .0
            .node
            .history(r.start_time, end, 10_000)?
            .into_iter()
            .map(|p| MetricPoint {
                timestamp: p.ts,
                cpu_usage: p.cpu_percent,
                gpu_usage: p.gpu_percent.unwrap_or(0.0),
                memory_usage: p.memory_percent(),
                // Megabits per second, received plus sent.
                network_throughput: (p.net_rx_bps + p.net_tx_bps) * 8.0 / 1e6,
                power_consumption: p.gpu_power_watts.unwrap_or(0.0),
            })
            .collect();
        Ok(Response::new(GetNodeMetricsResponse {
            metrics: points,
            error: None,
        }))
    }

    async fn notify_job_accepted(
        &self,
        _: Request<JobAcceptedRequest>,
    ) -> Result<Response<JobAcceptedResponse>, Status> {
        Err(Status::unimplemented(CENTRAL_ONLY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: JobType, device: DeviceType, memory: i64) -> JobConfig {
        JobConfig {
            job_id: "j".into(),
            job_type: kind as i32,
            required_device: device as i32,
            estimated_memory: memory,
            ..Default::default()
        }
    }

    #[test]
    fn job_ids_are_short_printable_tokens() {
        assert!(check_job_id("0b6f3e1c-7a52-4a55-9d1f-3b1f0d1c2e3f").is_ok());
        assert_eq!(check_job_id(""), Err("is empty"));
        assert!(check_job_id(&"x".repeat(64 << 20)).is_err());
        assert!(check_job_id("job\nINFO forged").is_err());
        assert!(check_job_id("job 1").is_err());
        assert!(check_job_id("jöb").is_err());
    }

    #[test]
    fn policy_names_the_rule_that_declines() {
        let mut config = Config::default();
        let ok = job(JobType::Training, DeviceType::DeviceCpu, 1 << 30);
        assert_eq!(policy_refusal(&config, false, 8 << 30, "me", "", &ok), None);
        assert_eq!(
            policy_refusal(&config, false, 8 << 30, "me", "me", &ok),
            None
        );
        let (code, why) = policy_refusal(&config, false, 8 << 30, "me", "other", &ok).unwrap();
        assert_eq!(code, Code::InvalidArgument);
        assert!(why.contains("addressed to node other"));
        let gpu = job(JobType::Training, DeviceType::DeviceCuda, 0);
        let (code, why) = policy_refusal(&config, false, 8 << 30, "me", "", &gpu).unwrap();
        assert_eq!(code, Code::FailedPrecondition);
        assert!(
            why.contains("CUDA") && why.contains("cuda_jobs_on_cpu = \"refuse\""),
            "{why}"
        );
        assert_eq!(policy_refusal(&config, true, 8 << 30, "me", "", &gpu), None);
        config.jobs.cuda_jobs_on_cpu = "run_on_cpu".into();
        assert_eq!(
            policy_refusal(&config, false, 8 << 30, "me", "", &gpu),
            None
        );
        config.jobs.cuda_jobs_on_cpu = "refuse".into();
        let big = job(JobType::Training, DeviceType::DeviceCpu, 16 << 30);
        assert!(policy_refusal(&config, false, 8 << 30, "me", "", &big)
            .unwrap()
            .1
            .contains("needs 16384 MiB"));
        config.jobs.allowed_job_types = vec!["inference".into()];
        assert!(policy_refusal(&config, false, 8 << 30, "me", "", &ok)
            .unwrap()
            .1
            .contains("training jobs are not accepted"));
        config.jobs.accept_network_jobs = false;
        assert!(policy_refusal(&config, false, 8 << 30, "me", "", &ok)
            .unwrap()
            .1
            .contains("accept_network_jobs = false"));
    }
}
