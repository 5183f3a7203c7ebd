//! The CyxWiz server node: hosts model-runtime plugins and serves the models they load.
//!
//! # Map
//! - [`access`]: API keys and their scopes, the in-memory keyring, rate windows, the caller.
//! - [`audit`]: the audit log writer (off the request path, escaped, pruned).
//! - [`config`]: flags, environment and `config.toml` into one validated [`config::Config`].
//! - [`store`]: the SQLite database and its migrations.
//! - [`plugins`]: plugin discovery and the format registry.
//! - [`models`]: per-model worker threads, JSON tensors, model directory scans.
//! - [`deployments`]: configured models and their lifecycle.
//! - [`openai`]: the OpenAI-compatible `/v1` API, one module per endpoint family.
//! - [`server`]: the HTTP router (health, metrics, auth, limits).
//! - [`control`]: the CyxWiz `DaemonService` on the local Unix socket (server and CLI client).
//! - [`metrics`]: Prometheus metrics, the system sampler and its history.
//! - [`devices`]: the hardware inventory (CPU, memory, disks, interfaces, NVIDIA GPUs).
//! - [`grpc`]: the CyxWiz gRPC services (NodeService.AssignJob, DeploymentService,
//!   InferenceService) on the same deployments as the HTTP API.
//! - [`central`]: the central-server client (registration, heartbeats, reconnection).
//! - [`daemon`]: `cyxwiz-node run`, wiring the above together.
//! - [`logging`]: tracing setup.
//!
//! Dependencies point one way: `daemon -> server -> openai -> deployments -> (models | plugins | store)`.

pub mod access;
pub mod audit;
pub mod central;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deployments;
pub mod devices;
pub mod grpc;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod node;
pub mod openai;
pub mod plugins;
pub mod server;
pub mod store;
