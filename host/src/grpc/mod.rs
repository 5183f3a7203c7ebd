//! The node's gRPC services (`cyxwiz.protocol`): `NodeService` (AssignJob, GetNodeMetrics),
//! `DeploymentService` and `InferenceService`, in one tonic router bound on every port of
//! `[grpc] ports` (the ecosystem dials 50052, 50055 = registered port + 3, 50056, 50057; any
//! service answers on any of them), plaintext or TLS. Every RPC but AssignJob needs an API
//! key with the right scope when gRPC listens beyond loopback (`auth`); message sizes,
//! streams and concurrent requests per connection are bounded (`[grpc]`).

pub mod auth;
mod convert;
mod deployment;
pub mod error;
mod inference;
pub mod net;
mod node;

pub use node::{policy_refusal, NO_EXECUTOR};

use crate::{config::Config, node::Node};
use cyxwiz_proto::protocol::{
    deployment_service_server::DeploymentServiceServer,
    inference_service_server::InferenceServiceServer,
    job_execution_service_server::JobExecutionServiceServer,
    node_service_server::NodeServiceServer,
};
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

/// What the gRPC services share: the node, and what only gRPC needs.
pub struct GrpcState {
    /// The node.
    pub node: Arc<Node>,
    /// The base URL of this node's HTTP API (`http://host:port/v1`), empty when it is off.
    pub endpoint_url: String,
    /// Whether calls need an API key ([`auth::required`]).
    pub auth_required: bool,
    /// Where AssignJob may come from (empty: anywhere).
    pub assign_from: Vec<net::Cidr>,
    /// AssignJob calls per address per minute.
    pub assign_budget: net::AddressBudget,
    /// The Engine's P2P training link.
    pub p2p: Arc<crate::p2p::P2p>,
}

impl GrpcState {
    /// The shared state for `node`'s gRPC services.
    pub fn new(node: Arc<Node>, endpoint_url: String, p2p: Arc<crate::p2p::P2p>) -> Self {
        let config = &node.config;
        Self {
            p2p,
            auth_required: auth::required(config),
            assign_from: config
                .grpc
                .assign_job_from
                .iter()
                .filter_map(|c| net::Cidr::parse(c))
                .collect(),
            assign_budget: net::AddressBudget::new(config.grpc.assign_job_per_minute),
            node,
            endpoint_url,
        }
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.node.config
    }
}

/// Why gRPC could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// A port could not be bound.
    #[error("gRPC on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS files are unusable.
    #[error("gRPC TLS: {0}")]
    Tls(String),
}

fn router(
    state: &Arc<GrpcState>,
    tls: Option<&tonic::transport::ServerTlsConfig>,
) -> Result<tonic::transport::server::Router, GrpcError> {
    let grpc = &state.config().grpc;
    let (small, large) = (grpc.max_message_bytes, grpc.max_infer_message_bytes);
    // The Engine's messages carry inline datasets and batches.
    let config = state.config();
    let p2p_bytes = small
        .max(config.p2p.max_batch_bytes + (64 << 10))
        .max(config.jobs.max_inline_dataset_bytes + (1 << 20));
    let mut builder = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(600))
        .concurrency_limit_per_connection(grpc.max_concurrent_requests as usize)
        .max_concurrent_streams(grpc.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls.clone())
            .map_err(|e| GrpcError::Tls(e.to_string()))?;
    }
    Ok(builder
        .add_service(
            NodeServiceServer::new(node::NodeSvc(state.clone()))
                .max_decoding_message_size(small)
                .max_encoding_message_size(small),
        )
        .add_service(
            DeploymentServiceServer::new(deployment::DeploymentSvc(state.clone()))
                .max_decoding_message_size(small)
                .max_encoding_message_size(small),
        )
        .add_service(
            JobExecutionServiceServer::new(crate::p2p::service::ExecutionSvc(state.p2p.clone()))
                .max_decoding_message_size(p2p_bytes)
                .max_encoding_message_size(p2p_bytes),
        )
        .add_service(
            InferenceServiceServer::new(inference::InferenceSvc(state.clone()))
                .max_decoding_message_size(large)
                .max_encoding_message_size(large),
        ))
}

fn tls_config(config: &Config) -> Result<Option<tonic::transport::ServerTlsConfig>, GrpcError> {
    if !config.grpc.tls.enabled {
        return Ok(None);
    }
    let read = |path: &std::path::Path| {
        let path = config.resolve(path);
        std::fs::read(&path).map_err(|e| GrpcError::Tls(format!("{}: {e}", path.display())))
    };
    let cert = read(&config.grpc.tls.cert_path)?;
    let key = read(&config.grpc.tls.key_path)?;
    Ok(Some(
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key)),
    ))
}

/// Binds every configured port and serves until `stop` resolves. Returns the bound addresses
/// and a future that ends when all servers have stopped.
pub async fn serve<F>(
    state: Arc<GrpcState>,
    stop: impl Fn() -> F,
) -> Result<(Vec<SocketAddr>, impl Future<Output = ()>), GrpcError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let config = state.node.config.clone();
    let tls = tls_config(&config)?;
    // `Config::validate` checked the address.
    let ip: std::net::IpAddr = config
        .grpc
        .host
        .parse()
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let mut bound = Vec::new();
    let mut servers = Vec::new();
    for port in &config.grpc.ports {
        let addr = SocketAddr::new(ip, *port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GrpcError::Bind { addr, source })?;
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let router = router(&state, tls.as_ref())?;
        bound.push(addr);
        let signal = stop();
        servers.push(tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(%addr, error = %e, "gRPC server failed");
            }
        }));
    }
    let done = async move {
        for s in servers {
            let _ = s.await;
        }
    };
    Ok((bound, done))
}
