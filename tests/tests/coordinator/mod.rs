//! A test coordinator standing in for the CyxWiz Central Server: it serves `NodeService`,
//! `JobStatusService`, the node-facing part of `JobReservationService` and
//! `NodeDiscoveryService.GetNodeInfo` from our protos on loopback, and behaves as PROTOCOL.md
//! describes the real one (Bearer token required everywhere but GetNodeInfo, the proposed node
//! id ignored, nodes matched by wallet then by ip:port, else a fresh UUID; job reports for a job
//! it never assigned get NOT_FOUND; heartbeats from unknown ids get NOT_FOUND, or SUCCESS as the
//! real server answers them with `lenient_heartbeats`). It records every report it accepts, and
//! pushes jobs with AssignJob to the node's registered port + 3 as the real scheduler does. Its
//! `Seen` plays the server's database: it survives a kill and restart on the same address, or can
//! be wiped. It serves plaintext, or TLS with a certificate the test made (`start_tls`).

#![allow(dead_code)]

use cyxwiz_proto::protocol::{
    job_reservation_service_server::{JobReservationService, JobReservationServiceServer},
    job_status_service_server::{JobStatusService, JobStatusServiceServer},
    node_discovery_service_server::{NodeDiscoveryService, NodeDiscoveryServiceServer},
    node_service_client::NodeServiceClient,
    node_service_server::{NodeService, NodeServiceServer},
    AssignJobRequest, AssignJobResponse, GetNodeInfoRequest, GetNodeInfoResponse,
    GetNodeMetricsRequest, GetNodeMetricsResponse, HeartbeatRequest, HeartbeatResponse,
    JobAcceptedRequest, JobAcceptedResponse, JobConfig, RegisterNodeRequest, RegisterNodeResponse,
    ReportCompletionRequest, ReportCompletionResponse, ReportJobCompleteFromNodeRequest,
    ReportJobCompleteFromNodeResponse, ReportJobResultRequest, ReportJobResultResponse,
    ReportProgressRequest, ReportProgressResponse, ReportReservationEndFromNodeRequest,
    ReportReservationEndFromNodeResponse, StatusCode, UpdateJobStatusRequest,
    UpdateJobStatusResponse,
};
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tonic::{Request, Response, Status};

/// A node the coordinator knows.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    pub id: String,
    pub registration: RegisterNodeRequest,
    pub heartbeats: Vec<(Instant, HeartbeatRequest)>,
}

/// Everything the coordinator saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// Nodes by id (the "database").
    pub nodes: HashMap<String, NodeRecord>,
    /// Every RegisterNode call that passed authentication, in order.
    pub registrations: Vec<RegisterNodeRequest>,
    /// Calls refused for a bad token.
    pub refused: usize,
    /// Heartbeats from a node id not in `nodes` (refused with NOT_FOUND unless
    /// `lenient_heartbeats`).
    pub unknown_heartbeats: usize,
    /// Answer heartbeats from unknown node ids with SUCCESS, as the real server does (it only
    /// updates a row that is not there); false: NOT_FOUND, as PROTOCOL.md's rules expect.
    pub lenient_heartbeats: bool,
    /// Job ids the next heartbeat asks the node to cancel.
    pub to_cancel: Vec<String>,
    /// Job ids this coordinator assigned (the server's jobs table): UpdateJobStatus and
    /// ReportJobResult for any other id answer NOT_FOUND.
    pub known_jobs: HashSet<String>,
    /// Every NodeDiscoveryService.GetNodeInfo call's node id, known or not, in order.
    pub node_info_queries: Vec<String>,
    /// ReportProgress calls accepted, in order.
    pub progress_reports: Vec<ReportProgressRequest>,
    /// UpdateJobStatus calls accepted, in order.
    pub job_updates: Vec<UpdateJobStatusRequest>,
    /// ReportJobResult calls accepted, in order.
    pub job_results: Vec<ReportJobResultRequest>,
    /// ReportCompletion calls accepted, in order.
    pub completions: Vec<ReportCompletionRequest>,
    /// UpdateJobStatus / ReportJobResult calls refused with NOT_FOUND: their job ids.
    pub unknown_job_reports: Vec<String>,
    /// JobReservationService.ReportJobCompleteFromNode calls accepted, in order.
    pub job_completes_from_node: Vec<ReportJobCompleteFromNodeRequest>,
    /// JobReservationService.ReportReservationEndFromNode calls accepted, in order.
    pub reservation_ends: Vec<ReportReservationEndFromNodeRequest>,
}

#[derive(Clone)]
struct Service {
    token: String,
    seen: Arc<Mutex<Seen>>,
}

impl Service {
    fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if header != format!("Bearer {}", self.token) {
            self.seen.lock().unwrap().refused += 1;
            return Err(Status::unauthenticated("invalid or missing bearer token"));
        }
        Ok(())
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

fn new_uuid() -> String {
    // Random enough for a test: time and a counter.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (t >> 32) as u32,
        (t >> 16) as u16,
        n & 0xfff,
        (t & 0xfff),
        n
    )
}

#[tonic::async_trait]
impl NodeService for Service {
    async fn register_node(
        &self,
        request: Request<RegisterNodeRequest>,
    ) -> Result<Response<RegisterNodeResponse>, Status> {
        self.check(&request)?;
        let r = request.into_inner();
        let info = r
            .info
            .clone()
            .ok_or_else(|| Status::invalid_argument("info missing"))?;
        let mut seen = self.seen.lock().unwrap();
        seen.registrations.push(r.clone());
        let existing = seen
            .nodes
            .values()
            .find(|n| {
                let known = n.registration.info.as_ref().unwrap();
                if !info.wallet_address.is_empty() {
                    known.wallet_address == info.wallet_address
                } else {
                    known.ip_address == info.ip_address && known.port == info.port
                }
            })
            .map(|n| n.id.clone());
        let id = existing.unwrap_or_else(new_uuid);
        let heartbeats = seen
            .nodes
            .get(&id)
            .map(|n| n.heartbeats.clone())
            .unwrap_or_default();
        seen.nodes.insert(
            id.clone(),
            NodeRecord {
                id: id.clone(),
                registration: r,
                heartbeats,
            },
        );
        Ok(Response::new(RegisterNodeResponse {
            status: StatusCode::StatusSuccess as i32,
            node_id: id.clone(),
            session_token: format!("session_{id}"),
            error: None,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.check(&request)?;
        let r = request.into_inner();
        if !is_uuid(&r.node_id) {
            return Err(Status::invalid_argument(format!(
                "node_id `{}` is not a UUID",
                r.node_id
            )));
        }
        let mut seen = self.seen.lock().unwrap();
        match seen.nodes.get_mut(&r.node_id) {
            Some(node) => node.heartbeats.push((Instant::now(), r)),
            None => {
                seen.unknown_heartbeats += 1;
                if !seen.lenient_heartbeats {
                    return Err(Status::not_found(format!("node {} not found", r.node_id)));
                }
            }
        }
        let cancel = std::mem::take(&mut seen.to_cancel);
        Ok(Response::new(HeartbeatResponse {
            status: StatusCode::StatusSuccess as i32,
            keep_alive: true,
            jobs_to_cancel: cancel,
            error: None,
        }))
    }

    async fn assign_job(
        &self,
        _: Request<AssignJobRequest>,
    ) -> Result<Response<AssignJobResponse>, Status> {
        Err(Status::unimplemented(
            "the central server does not run jobs",
        ))
    }

    async fn report_progress(
        &self,
        request: Request<ReportProgressRequest>,
    ) -> Result<Response<ReportProgressResponse>, Status> {
        self.check(&request)?;
        self.seen
            .lock()
            .unwrap()
            .progress_reports
            .push(request.into_inner());
        Ok(Response::new(ReportProgressResponse {
            status: StatusCode::StatusSuccess as i32,
            continue_job: true,
            error: None,
        }))
    }

    async fn report_completion(
        &self,
        request: Request<ReportCompletionRequest>,
    ) -> Result<Response<ReportCompletionResponse>, Status> {
        self.check(&request)?;
        if request.get_ref().result.is_none() {
            return Err(Status::invalid_argument("result missing"));
        }
        self.seen
            .lock()
            .unwrap()
            .completions
            .push(request.into_inner());
        Ok(Response::new(ReportCompletionResponse {
            status: StatusCode::StatusSuccess as i32,
            payment_released: false,
            payment_tx_hash: String::new(),
            error: None,
        }))
    }

    async fn get_node_metrics(
        &self,
        request: Request<GetNodeMetricsRequest>,
    ) -> Result<Response<GetNodeMetricsResponse>, Status> {
        self.check(&request)?;
        Ok(Response::new(GetNodeMetricsResponse::default()))
    }

    async fn notify_job_accepted(
        &self,
        request: Request<JobAcceptedRequest>,
    ) -> Result<Response<JobAcceptedResponse>, Status> {
        self.check(&request)?;
        Ok(Response::new(JobAcceptedResponse {
            status: StatusCode::StatusSuccess as i32,
            acknowledged: true,
            error: None,
        }))
    }
}

#[tonic::async_trait]
impl JobStatusService for Service {
    async fn update_job_status(
        &self,
        request: Request<UpdateJobStatusRequest>,
    ) -> Result<Response<UpdateJobStatusResponse>, Status> {
        self.check(&request)?;
        let r = request.into_inner();
        let mut seen = self.seen.lock().unwrap();
        // The real server looks the job up and only warns about a node mismatch.
        if !seen.known_jobs.contains(&r.job_id) {
            seen.unknown_job_reports.push(r.job_id.clone());
            return Err(Status::not_found(format!("job {} not found", r.job_id)));
        }
        seen.job_updates.push(r);
        Ok(Response::new(UpdateJobStatusResponse {
            status: StatusCode::StatusSuccess as i32,
            should_continue: true,
            error: None,
        }))
    }

    async fn report_job_result(
        &self,
        request: Request<ReportJobResultRequest>,
    ) -> Result<Response<ReportJobResultResponse>, Status> {
        self.check(&request)?;
        let r = request.into_inner();
        let mut seen = self.seen.lock().unwrap();
        if !seen.known_jobs.contains(&r.job_id) {
            seen.unknown_job_reports.push(r.job_id.clone());
            return Err(Status::not_found(format!("job {} not found", r.job_id)));
        }
        seen.job_results.push(r);
        Ok(Response::new(ReportJobResultResponse {
            status: StatusCode::StatusSuccess as i32,
            error: None,
        }))
    }
}

/// The two RPCs a node calls; the Engine's are not declared in our proto, so they answer
/// UNIMPLEMENTED.
#[tonic::async_trait]
impl JobReservationService for Service {
    async fn report_job_complete_from_node(
        &self,
        request: Request<ReportJobCompleteFromNodeRequest>,
    ) -> Result<Response<ReportJobCompleteFromNodeResponse>, Status> {
        self.check(&request)?;
        let r = request.into_inner();
        let mut seen = self.seen.lock().unwrap();
        seen.job_completes_from_node.push(r.clone());
        let jobs = seen
            .job_completes_from_node
            .iter()
            .filter(|j| j.reservation_id == r.reservation_id)
            .count();
        let change = if r.success { 1.0 } else { -0.5 };
        Ok(Response::new(ReportJobCompleteFromNodeResponse {
            status: StatusCode::StatusSuccess as i32,
            new_reputation: 75.0 + change,
            reputation_change: change,
            jobs_in_reservation: i32::try_from(jobs).unwrap(),
            message: format!("job {} recorded", r.job_id),
            error: None,
        }))
    }

    async fn report_reservation_end_from_node(
        &self,
        request: Request<ReportReservationEndFromNodeRequest>,
    ) -> Result<Response<ReportReservationEndFromNodeResponse>, Status> {
        self.check(&request)?;
        self.seen
            .lock()
            .unwrap()
            .reservation_ends
            .push(request.into_inner());
        Ok(Response::new(ReportReservationEndFromNodeResponse {
            status: StatusCode::StatusSuccess as i32,
            payment_released: false,
            amount_received: 0,
            payment_tx_hash: String::new(),
            message: "waiting for engine".into(),
            error: None,
        }))
    }
}

/// GetNodeInfo only (no authentication, as on the real server); FindNodes and ListNodes are not
/// in our proto, so they answer UNIMPLEMENTED.
#[tonic::async_trait]
impl NodeDiscoveryService for Service {
    async fn get_node_info(
        &self,
        request: Request<GetNodeInfoRequest>,
    ) -> Result<Response<GetNodeInfoResponse>, Status> {
        let id = request.into_inner().node_id;
        let mut seen = self.seen.lock().unwrap();
        seen.node_info_queries.push(id.clone());
        let Some(node) = seen.nodes.get(&id) else {
            return Err(Status::not_found("Node not found"));
        };
        let mut info = node.registration.info.clone().unwrap_or_default();
        info.node_id = id;
        Ok(Response::new(GetNodeInfoResponse {
            info: Some(info),
            error: None,
        }))
    }
}

/// A running coordinator.
pub struct Coordinator {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    token: String,
    identity: Option<tonic::transport::Identity>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Coordinator {
    /// Starts on `addr` (port 0 for a free one) requiring `token`, with `seen` as its state.
    pub async fn start(addr: SocketAddr, token: &str, seen: Arc<Mutex<Seen>>) -> Self {
        Self::start_with(addr, token, seen, None).await
    }

    /// Like `start`, over TLS with `identity` (PEM certificate chain and key).
    pub async fn start_tls(
        addr: SocketAddr,
        token: &str,
        seen: Arc<Mutex<Seen>>,
        identity: tonic::transport::Identity,
    ) -> Self {
        Self::start_with(addr, token, seen, Some(identity)).await
    }

    async fn start_with(
        addr: SocketAddr,
        token: &str,
        seen: Arc<Mutex<Seen>>,
        identity: Option<tonic::transport::Identity>,
    ) -> Self {
        // Restarting on the address of a killed coordinator: the old listener is closed at once,
        // but give the kernel a moment rather than fail the test.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline && addr.port() != 0 => {
                    eprintln!("coordinator: binding {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("coordinator: cannot bind {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let tls = identity.clone();
        let service = Service {
            token: token.to_string(),
            seen: seen.clone(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = tonic::transport::Server::builder();
        if let Some(identity) = identity {
            server = server
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        let task = tokio::spawn(async move {
            server
                .add_service(NodeServiceServer::new(service.clone()))
                .add_service(JobStatusServiceServer::new(service.clone()))
                .add_service(JobReservationServiceServer::new(service.clone()))
                .add_service(NodeDiscoveryServiceServer::new(service))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
        });
        Self {
            addr,
            seen,
            token: token.to_string(),
            identity: tls,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving (the process of a real server dying): the listening socket closes at once,
    /// open connections are told to go away; its state stays in `seen`, so `start` on the same
    /// address with the same `seen` (or `restart`) brings the same "database" back.
    pub async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Starts again after `kill`, on the same address, token, TLS identity and state.
    pub async fn restart(&mut self) {
        self.kill().await;
        let token = self.token.clone();
        let started =
            Self::start_with(self.addr, &token, self.seen.clone(), self.identity.clone()).await;
        *self = started;
    }

    /// Deletes a node's row, as an operator or a database reset would; heartbeats from it then
    /// get NOT_FOUND (or SUCCESS with `lenient_heartbeats`) and GetNodeInfo NOT_FOUND. Returns
    /// whether it was known.
    pub fn forget(&self, id: &str) -> bool {
        self.seen.lock().unwrap().nodes.remove(id).is_some()
    }

    /// The id of the registered node whose NodeInfo advertises `node` (ip:port), if any.
    pub fn node_at(&self, node: SocketAddr) -> Option<String> {
        let seen = self.seen.lock().unwrap();
        seen.nodes
            .values()
            .find(|n| {
                n.registration.info.as_ref().is_some_and(|i| {
                    i.port == i32::from(node.port()) && i.ip_address == node.ip().to_string()
                })
            })
            .map(|n| n.id.clone())
    }

    /// Pushes `job` as the real scheduler does: registers `job.job_id` as a known job, then
    /// dials the AssignJob port (`node`'s registered port + 3) in plaintext and sends
    /// `AssignJobRequest{node_id, job, authorization_token: ""}`. `node` is the address the
    /// node registered (NodeInfo ip_address:port); node_id is the id of the node registered
    /// there (empty if none).
    pub async fn assign_job(
        &self,
        node: SocketAddr,
        job: JobConfig,
    ) -> Result<AssignJobResponse, Status> {
        let node_id = self.node_at(node).unwrap_or_default();
        self.assign_job_to(node, &node_id, job).await
    }

    /// Like `assign_job`, with an explicit `node_id` in the request.
    pub async fn assign_job_to(
        &self,
        node: SocketAddr,
        node_id: &str,
        job: JobConfig,
    ) -> Result<AssignJobResponse, Status> {
        self.seen
            .lock()
            .unwrap()
            .known_jobs
            .insert(job.job_id.clone());
        let port = node.port().checked_add(3).expect("registered port + 3");
        let target = SocketAddr::new(node.ip(), port);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot dial AssignJob at {target}: {e}")))?;
        NodeServiceClient::new(channel)
            .assign_job(AssignJobRequest {
                node_id: node_id.to_string(),
                job: Some(job),
                authorization_token: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Waits until `check` holds on the state, or panics after `timeout` with `what`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.seen.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.summary()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A short description of the state for failure messages.
    pub fn summary(&self) -> String {
        let seen = self.seen.lock().unwrap();
        format!(
            "registrations {}, refused {}, unknown heartbeats {}, node info queries {}, \
             progress {}, updates {}, results {}, completions {}, unknown-job reports {:?}, \
             completes from node {}, reservation ends {}, nodes {:?}",
            seen.registrations.len(),
            seen.refused,
            seen.unknown_heartbeats,
            seen.node_info_queries.len(),
            seen.progress_reports.len(),
            seen.job_updates.len(),
            seen.job_results.len(),
            seen.completions.len(),
            seen.unknown_job_reports,
            seen.job_completes_from_node.len(),
            seen.reservation_ends.len(),
            seen.nodes
                .values()
                .map(|n| (n.id.clone(), n.heartbeats.len()))
                .collect::<Vec<_>>()
        )
    }
}
