//! A test coordinator standing in for the CyxWiz Central Server: it serves `NodeService` and
//! `JobStatusService` from our protos on loopback and behaves as PROTOCOL.md describes the
//! real one (Bearer token required, the proposed node id ignored, nodes matched by wallet then
//! by ip:port, else a fresh UUID; heartbeats from unknown ids get NOT_FOUND). Its node table
//! plays the server's database: it can survive a restart or be wiped. It serves plaintext, or
//! TLS with a certificate the test made (`start_tls`).

#![allow(dead_code)]

use cyxwiz_proto::protocol::{
    job_status_service_server::{JobStatusService, JobStatusServiceServer},
    node_service_server::{NodeService, NodeServiceServer},
    AssignJobRequest, AssignJobResponse, GetNodeMetricsRequest, GetNodeMetricsResponse,
    HeartbeatRequest, HeartbeatResponse, JobAcceptedRequest, JobAcceptedResponse,
    RegisterNodeRequest, RegisterNodeResponse, ReportCompletionRequest, ReportCompletionResponse,
    ReportJobResultRequest, ReportJobResultResponse, ReportProgressRequest, ReportProgressResponse,
    StatusCode, UpdateJobStatusRequest, UpdateJobStatusResponse,
};
use std::{
    collections::HashMap,
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
    /// Heartbeats refused because the node id was unknown.
    pub unknown_heartbeats: usize,
    /// Job ids the next heartbeat asks the node to cancel.
    pub to_cancel: Vec<String>,
    /// Job status updates received.
    pub job_updates: Vec<UpdateJobStatusRequest>,
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
        let Some(node) = seen.nodes.get_mut(&r.node_id) else {
            seen.unknown_heartbeats += 1;
            return Err(Status::not_found(format!("node {} not found", r.node_id)));
        };
        node.heartbeats.push((Instant::now(), r));
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
        if !seen.nodes.contains_key(&r.node_id) {
            return Err(Status::not_found("unknown node"));
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
        Err(Status::not_found(format!(
            "job {} not found",
            request.get_ref().job_id
        )))
    }
}

/// A running coordinator.
pub struct Coordinator {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    token: String,
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
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
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
                .add_service(JobStatusServiceServer::new(service))
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
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving (the process of a real server dying); its state stays in `seen`.
    pub async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
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
            "registrations {}, refused {}, unknown heartbeats {}, nodes {:?}",
            seen.registrations.len(),
            seen.refused,
            seen.unknown_heartbeats,
            seen.nodes
                .values()
                .map(|n| (n.id.clone(), n.heartbeats.len()))
                .collect::<Vec<_>>()
        )
    }
}
