//! The CyxWiz server node: hosts model-runtime plugins and serves the models they load.
//!
//! # Map
//! The core:
//! - [`node`]: the one [`node::Node`] every transport adapts: deploy, undeploy, models,
//!   inference, status, history, its event stream, and [`node::NodeError`] (one error kind,
//!   mapped once per transport).
//! - [`deployments`]: configured models, their lifecycle and the device pool.
//! - [`models`]: per-model worker threads, JSON tensors, model directory scans.
//! - [`plugins`]: plugin discovery and the format registry.
//! - [`jobs`]: training jobs (issue 14, under construction): the model definition and datasets.
//! - [`access`]: API keys and their scopes, the in-memory keyring, rate limits, the caller.
//! - [`audit`]: the audit log writer (off the request path, escaped, pruned).
//! - [`central`]: the central-server client (registration, heartbeats, reconnection).
//! - [`metrics`]: Prometheus metrics, the system sampler and its history.
//! - [`devices`]: the hardware inventory (CPU, memory, disks, interfaces, NVIDIA GPUs).
//! - [`store`]: the SQLite database and its migrations.
//! - [`config`]: flags, environment and `config.toml` into one validated [`config::Config`].
//! - [`logging`]: tracing setup.
//!
//! The transports, thin adapters over [`node::Node`]:
//! - [`server`]: the HTTP router (health, metrics, auth, limits) serving [`openai`], the
//!   OpenAI-compatible `/v1` API, one module per endpoint family.
//! - [`grpc`]: the CyxWiz gRPC services (NodeService.AssignJob, DeploymentService,
//!   InferenceService).
//! - [`control`]: the CyxWiz `DaemonService` on the local Unix socket (server and CLI client).
//! - [`daemon`]: `cyxwiz-node run`, wiring the above together.
//!
//! Dependencies point one way: `daemon -> (server -> openai | grpc | control) -> node ->
//! (central | metrics) -> deployments -> models -> plugins`, with `access`, `audit`, `store`,
//! `devices` and `config` below; no module but `daemon` reaches a transport, and the core
//! none (`host/tests/layers.rs` checks both).

pub mod access;
pub mod audit;
pub mod central;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deployments;
pub mod devices;
pub mod grpc;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod node;
pub mod openai;
pub mod p2p;
pub mod plugins;
pub mod reports;
pub mod server;
pub mod store;
