//! The node's validated configuration: defaults, then `config.toml`, then environment and
//! command-line flags (clap reads both), each value remembering where it came from.
//!
//! `file` parses and checks the TOML file, `args` holds the clap flags, `show` renders the
//! effective configuration with provenance. Entry points take a [`Config`], never raw flags.

pub mod args;
mod central;
mod file;
pub mod limits;
pub mod show;

use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

pub use args::GlobalArgs;
pub use central::{CentralAddress, CentralSection};
pub use limits::{AuditSection, LimitsSection};

/// A configuration error: which file and key, what was expected, what was found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}: invalid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// A key is unknown or has a value of the wrong form.
    #[error("{path}: key `{key}`: {message}")]
    Key {
        /// The file, or `flags/env` for command-line values.
        path: PathBuf,
        /// Dotted key.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
}

/// `[node]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Name shown to the central server and operators.
    pub name: String,
    /// Jobs run at once.
    pub max_concurrent_jobs: u32,
    /// Region reported to the central server (e.g. `eu-west`); empty = not stated.
    pub region: String,
    /// Wallet that receives this node's earnings; the central server also uses it to
    /// recognise the node across restarts.
    pub wallet_address: String,
}

/// `[grpc]`: the node's gRPC services (NodeService.AssignJob, DeploymentService,
/// InferenceService), one router bound on every listed port.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcSection {
    /// Address to listen on.
    pub host: String,
    /// Ports to serve on; the first is registered with the central server, which dials it
    /// + 3 for AssignJob. Empty turns gRPC off.
    pub ports: Vec<u16>,
    /// `CreateDeployment` may load models only from the model directories (`[models] dirs`
    /// and the data dir's `models/`) unless this is true.
    pub allow_any_model_path: bool,
    /// Require an API key (`authorization: Bearer KEY`) on loopback too; always required
    /// when `host` is not a loopback address or `[api] require_auth` is set.
    pub require_auth: bool,
    /// Addresses (IPs or CIDR blocks such as `10.0.0.0/8`) AssignJob is taken from; empty:
    /// any (the central server sends no credentials).
    pub assign_job_from: Vec<String>,
    /// AssignJob calls accepted per minute from one address (1..=100000).
    pub assign_job_per_minute: u32,
    /// Requests served at once over each connection (1..=10000).
    pub max_concurrent_requests: u32,
    /// HTTP/2 streams a client may open at once on one connection (1..=10000).
    pub max_concurrent_streams: u32,
    /// Largest message of every service but `InferenceService`, in bytes.
    pub max_message_bytes: usize,
    /// Largest `InferenceService` message (tensors travel inside), in bytes.
    pub max_infer_message_bytes: usize,
    /// `[grpc.tls]`: serve gRPC over TLS (rustls).
    pub tls: TlsSection,
}

/// `[jobs]`: which network jobs (NodeService.AssignJob) this node accepts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSection {
    /// Accept jobs from the central server at all.
    pub accept_network_jobs: bool,
    /// Job types accepted: `training`, `inference`, `evaluation`, `preprocessing`.
    pub allowed_job_types: Vec<String>,
    /// Largest `estimated_memory` accepted, in MiB; 0 = the machine's RAM.
    pub max_memory_mb: u64,
    /// Longest `estimated_duration` accepted, in seconds; 0 = no limit.
    pub max_duration_seconds: u64,
    /// Jobs that may wait for a free slot (`[node] max_concurrent_jobs` run at once).
    pub max_queued_jobs: u32,
}

/// `[metrics]`: system metrics sampling and history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Seconds between samples (CPU, RAM, network, GPU).
    pub interval_seconds: u64,
    /// Days of history kept in the database (older points are downsampled, then deleted).
    pub retention_days: u64,
}

/// `[pricing]`: the price list sent to the central server with the node's registration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PricingSection {
    /// `hourly`, `per_epoch`, `per_job` or `per_inference`.
    pub billing_model: String,
    /// Price per hour (USD).
    pub price_per_hour: f64,
    /// Price per training epoch.
    pub price_per_epoch: f64,
    /// Base price per job.
    pub price_per_job_base: f64,
    /// Price per inference request.
    pub price_per_inference: f64,
    /// Smallest charge.
    pub minimum_charge: f64,
    /// Shortest billable reservation, in minutes.
    pub minimum_duration_minutes: u32,
    /// Discount for reservations of an hour or more (0..1).
    pub discount_1h_plus: f64,
    /// Discount for reservations of a day or more (0..1).
    pub discount_24h_plus: f64,
    /// Bulk discount (0..1).
    pub discount_bulk: f64,
    /// Payment in CYXWIZ tokens.
    pub accepts_cyxwiz_token: bool,
    /// Payment in SOL.
    pub accepts_sol: bool,
    /// Payment in USDC.
    pub accepts_usdc: bool,
    /// Free minutes offered.
    pub free_tier_minutes: u32,
}

/// `[devices]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesSection {
    /// GPU indices the node may use; empty means all.
    pub gpu_ids: Vec<u32>,
    /// Per-GPU memory cap in MiB; 0 means no cap.
    pub max_gpu_memory_mb: u64,
    /// RAM the loaded models may use in all, in MiB; 0 means no cap. A deployment whose
    /// files would not fit is refused.
    pub max_ram_mb: u64,
}

/// `[api]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Require an API key on loopback too (always required on other addresses).
    pub require_auth: bool,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Origins allowed by CORS (`*` for any); empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// Host names the `Host` header may carry (any port; `*` for any). Empty: automatic,
    /// i.e. `localhost`, `127.0.0.1`, `[::1]` and `host` on a loopback address (against DNS
    /// rebinding), any beyond loopback (where keys are required anyway).
    pub allowed_hosts: Vec<String>,
    /// Seconds a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open. The connection is closed beyond it.
    pub header_timeout_seconds: u64,
    /// Seconds a client may take to send a request body (408 beyond). Responses, streams
    /// included, are not bounded by it.
    pub body_timeout_seconds: u64,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Seconds open connections get to finish when the node stops; then they are dropped.
    pub shutdown_grace_seconds: u64,
    /// Most numbers one `/v1/predict` request may carry across its JSON tensors (400
    /// beyond); the default is what the default 8 MiB body can hold.
    pub max_tensor_elements: usize,
    /// Most inputs (texts or token arrays) of one `/v1/embeddings` request (400 beyond).
    pub max_embedding_inputs: usize,
    /// Most tokens, padding included (rows times the longest row), an embedding model is run
    /// on at once: a request's inputs are split into runs of at most this many, so memory stays
    /// bounded however many inputs it has. An input longer than this runs alone.
    pub max_batch_tokens: usize,
    /// `[api.tls]`
    pub tls: TlsSection,
}

/// `[api.tls]`: HTTPS with rustls.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Serve HTTPS instead of HTTP.
    pub enabled: bool,
    /// PEM certificate chain.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

impl ApiSection {
    /// Whether requests must carry an API key: always when listening beyond loopback.
    pub fn auth_required(&self) -> bool {
        let loopback = self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        self.require_auth || !loopback
    }
}

/// `[logging]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub level: String,
    /// Also write logs to this file (empty: stderr only).
    pub file: String,
    /// `text` or `json`.
    pub format: String,
}

/// `[plugins]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsSection {
    /// Extra directories scanned for plugin libraries, before the data dir's `plugins/`.
    pub dirs: Vec<PathBuf>,
    /// Preferred plugin order per format or extension, e.g. `onnx = ["onnx-ort", "onnx-tract"]`.
    pub preference: BTreeMap<String, Vec<String>>,
}

/// `[models]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSection {
    /// Directories `models list` scans, besides the data dir's `models/`.
    pub dirs: Vec<PathBuf>,
}

/// One `[[deployments]]` entry: a model loaded when the node starts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Public model name.
    pub name: String,
    /// Model file or directory.
    pub path: PathBuf,
    /// Plugin to use; by default the registry's order for the file's extension.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Threads per call; 0 lets the plugin choose.
    #[serde(default)]
    pub threads: u32,
    /// Other names clients may use for this model (e.g. `gpt-4o-mini`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Worker threads calling the model at once; 0 = automatic (the plugin's `slots` option
    /// or 4 for text-generation models, so concurrent requests share its batches; 1 else).
    #[serde(default)]
    pub workers: u32,
    /// Requests that may wait for a worker; beyond it callers are told the model is busy.
    #[serde(default = "default_queue")]
    pub queue_size: u32,
    /// Requests admitted at once (running or waiting); beyond it 429 at once. 0 = workers +
    /// queue_size.
    #[serde(default)]
    pub max_concurrent_requests: u32,
    /// Dynamic batching: embedding inputs that arrive together run as one batch of at most
    /// this many texts.
    #[serde(default = "default_max_batch")]
    pub max_batch: u32,
    /// Embedding pipelines: `mean` or `cls`; by default read from `1_Pooling/config.json`
    /// next to the tokenizer, else `mean`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<String>,
    /// Embedding pipelines: L2-normalise the vectors.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Plugin-specific load options, e.g. `{ input_shapes = { x = [-1, 3, 48, 192] } }`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub options: toml::Table,
}

fn yes() -> bool {
    true
}

fn default_max_batch() -> u32 {
    32
}

fn default_queue() -> u32 {
    64
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[node]`
    pub node: NodeSection,
    /// `[central_server]`
    pub central_server: CentralSection,
    /// `[devices]`
    pub devices: DevicesSection,
    /// `[grpc]`
    pub grpc: GrpcSection,
    /// `[jobs]`
    pub jobs: JobsSection,
    /// `[metrics]`
    pub metrics: MetricsSection,
    /// `[pricing]`
    pub pricing: PricingSection,
    /// `[api]`
    pub api: ApiSection,
    /// `[logging]`
    pub logging: LoggingSection,
    /// `[plugins]`
    pub plugins: PluginsSection,
    /// `[models]`
    pub models: ModelsSection,
    /// `[limits]`
    pub limits: LimitsSection,
    /// `[audit]`
    pub audit: AuditSection,
    /// `[runtimes.<plugin>]`: options every load through that plugin gets, e.g.
    /// `[runtimes.onnx-ort] library = "/path/libonnxruntime.so.1.31.1"`.
    pub runtimes: BTreeMap<String, toml::Table>,
    /// `[[deployments]]`
    pub deployments: Vec<DeploymentConfig>,
    /// The data directory (not a file key: `--data-dir` / `CYXWIZ_DATA_DIR`).
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// The config file read, if any.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Where each dotted key's value came from.
    #[serde(skip)]
    pub sources: BTreeMap<String, Source>,
}

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Built-in default.
    Default,
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

impl Default for NodeSection {
    fn default() -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "local".to_string());
        Self {
            name: format!("cyxwiz-node-{host}"),
            max_concurrent_jobs: 1,
            region: String::new(),
            wallet_address: String::new(),
        }
    }
}

/// The job types of the protocol's `JobType`, as written in `[jobs] allowed_job_types`.
pub const JOB_TYPES: [&str; 4] = ["training", "inference", "evaluation", "preprocessing"];

impl Default for GrpcSection {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_string(),
            ports: vec![50052, 50053, 50055, 50056, 50057],
            allow_any_model_path: false,
            require_auth: false,
            assign_job_from: Vec::new(),
            assign_job_per_minute: 60,
            max_concurrent_requests: 64,
            max_concurrent_streams: 128,
            max_message_bytes: 4 << 20,
            max_infer_message_bytes: 64 << 20,
            tls: TlsSection::default(),
        }
    }
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            accept_network_jobs: true,
            allowed_job_types: JOB_TYPES.iter().map(|t| t.to_string()).collect(),
            max_memory_mb: 0,
            max_duration_seconds: 0,
            max_queued_jobs: 4,
        }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            interval_seconds: 5,
            retention_days: 7,
        }
    }
}

impl Default for PricingSection {
    fn default() -> Self {
        Self {
            billing_model: "hourly".to_string(),
            price_per_hour: 0.10,
            price_per_epoch: 0.0,
            price_per_job_base: 0.0,
            price_per_inference: 0.0,
            minimum_charge: 0.0,
            minimum_duration_minutes: 10,
            discount_1h_plus: 0.0,
            discount_24h_plus: 0.0,
            discount_bulk: 0.0,
            accepts_cyxwiz_token: true,
            accepts_sol: true,
            accepts_usdc: true,
            free_tier_minutes: 0,
        }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "127.0.0.1".to_string(),
            port: 8000,
            require_auth: false,
            max_body_bytes: 8 << 20,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            header_timeout_seconds: 10,
            body_timeout_seconds: 30,
            max_connections: 2048,
            shutdown_grace_seconds: 10,
            max_tensor_elements: 4 << 20,
            max_embedding_inputs: 256,
            max_batch_tokens: 8192,
            tls: TlsSection::default(),
        }
    }
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
            file: String::new(),
            format: "text".to_string(),
        }
    }
}

/// The default data directory: `~/.cyxwiz/server-node`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cyxwiz")
        .join("server-node")
}

impl Config {
    /// Builds the effective configuration from the global flags (which clap also filled from
    /// the environment) and the config file they point at.
    pub fn load(args: &GlobalArgs, matches: &clap::ArgMatches) -> Result<Self, ConfigError> {
        let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
        let (explicit, path) = match &args.config {
            Some(p) => (true, p.clone()),
            None => (false, data_dir.join("config.toml")),
        };
        let mut config = if explicit || path.is_file() {
            file::read(&path)?
        } else {
            Config::default()
        };
        config.data_dir = data_dir;
        args::apply(args, matches, &mut config);
        config.validate()?;
        Ok(config)
    }

    /// Where the value of `key` came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    fn key_error(&self, key: &str, message: String) -> ConfigError {
        let path = match self.source(key) {
            Source::File(p) => p,
            Source::Env(v) => PathBuf::from(format!("environment {v}")),
            Source::Flag(v) => PathBuf::from(format!("flag {v}")),
            Source::Default => PathBuf::from("defaults"),
        };
        ConfigError::Key {
            path,
            key: key.to_string(),
            message,
        }
    }

    /// Checks values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.name.trim().is_empty() {
            return Err(self.key_error("node.name", "must be a non-empty name".into()));
        }
        if self.node.max_concurrent_jobs == 0 {
            return Err(self.key_error(
                "node.max_concurrent_jobs",
                "must be at least 1, got 0".into(),
            ));
        }
        self.validate_central()?;
        self.validate_network()?;
        if self.api.host.parse::<std::net::IpAddr>().is_err() && self.api.host != "localhost" {
            return Err(self.key_error(
                "api.host",
                format!(
                    "must be an IP address such as 127.0.0.1, got `{}`",
                    self.api.host
                ),
            ));
        }
        if self.api.tls.enabled {
            for (key, path) in [
                ("api.tls.cert_path", &self.api.tls.cert_path),
                ("api.tls.key_path", &self.api.tls.key_path),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(self.key_error(
                        key,
                        "must name a PEM file when api.tls.enabled = true".into(),
                    ));
                }
            }
        }
        if self.api.max_body_bytes < 1024 {
            return Err(self.key_error(
                "api.max_body_bytes",
                format!("must be at least 1024, got {}", self.api.max_body_bytes),
            ));
        }
        for (key, value, max) in [
            (
                "api.max_tensor_elements",
                self.api.max_tensor_elements,
                1 << 30,
            ),
            (
                "api.max_embedding_inputs",
                self.api.max_embedding_inputs,
                1 << 16,
            ),
            ("api.max_batch_tokens", self.api.max_batch_tokens, 1 << 24),
        ] {
            if !(1..=max).contains(&value) {
                return Err(self.key_error(key, format!("must be in 1..={max}, got {value}")));
            }
        }
        self.validate_api_limits()?;
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            return Err(self.key_error(
                "logging.level",
                format!(
                    "must be error, warn, info, debug, trace or a tracing filter, got `{}`",
                    self.logging.level
                ),
            ));
        }
        if !matches!(self.logging.format.as_str(), "text" | "json") {
            return Err(self.key_error(
                "logging.format",
                format!("must be `text` or `json`, got `{}`", self.logging.format),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, d) in self.deployments.iter().enumerate() {
            let key = format!("deployments[{i}].name");
            if d.name.trim().is_empty() {
                return Err(self.key_error(&key, "must be a non-empty model name".into()));
            }
            if !names.insert(d.name.as_str()) {
                return Err(self.key_error(&key, format!("`{}` is used twice", d.name)));
            }
            if d.queue_size == 0 {
                return Err(self.key_error(
                    &format!("deployments[{i}].queue_size"),
                    "must be at least 1, got 0".into(),
                ));
            }
            if d.workers > 256 {
                return Err(self.key_error(
                    &format!("deployments[{i}].workers"),
                    format!("must be between 0 (automatic) and 256, got {}", d.workers),
                ));
            }
            if !(1..=4096).contains(&d.max_batch) {
                return Err(self.key_error(
                    &format!("deployments[{i}].max_batch"),
                    format!("must be between 1 and 4096, got {}", d.max_batch),
                ));
            }
            if let Some(p) = &d.pooling {
                if !matches!(p.as_str(), "mean" | "cls") {
                    return Err(self.key_error(
                        &format!("deployments[{i}].pooling"),
                        format!("must be `mean` or `cls`, got `{p}`"),
                    ));
                }
            }
            for alias in &d.aliases {
                if !names.insert(alias.as_str()) {
                    return Err(self.key_error(
                        &format!("deployments[{i}].aliases"),
                        format!("`{alias}` is used twice"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks `[api]`'s connection limits and host allow-list.
    fn validate_api_limits(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        for (key, value, min, max) in [
            ("header_timeout_seconds", api.header_timeout_seconds, 1, 300),
            ("body_timeout_seconds", api.body_timeout_seconds, 1, 3600),
            (
                "shutdown_grace_seconds",
                api.shutdown_grace_seconds,
                0,
                3600,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(self.key_error(
                    &format!("api.{key}"),
                    format!("must be between {min} and {max} seconds, got {value}"),
                ));
            }
        }
        if !(1..=65_536).contains(&api.max_connections) {
            return Err(self.key_error(
                "api.max_connections",
                format!("must be between 1 and 65536, got {}", api.max_connections),
            ));
        }
        for host in &api.allowed_hosts {
            let bad = host.is_empty()
                || host
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "/@?#,".contains(c));
            if bad {
                return Err(self.key_error(
                    "api.allowed_hosts",
                    format!(
                        "must list host names such as `api.example.com` (or `*`), got `{host}`"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks `[central_server]`, `[grpc]`, `[jobs]`, `[metrics]` and `[pricing]`.
    fn validate_network(&self) -> Result<(), ConfigError> {
        let advertise = &self.central_server.advertise_address;
        if !advertise.is_empty() && advertise.parse::<std::net::IpAddr>().is_err() {
            return Err(self.key_error(
                "central_server.advertise_address",
                format!("must be an IP address or empty, got `{advertise}`"),
            ));
        }
        if self.grpc.host.parse::<std::net::IpAddr>().is_err() {
            return Err(self.key_error(
                "grpc.host",
                format!(
                    "must be an IP address such as 0.0.0.0, got `{}`",
                    self.grpc.host
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for port in &self.grpc.ports {
            if *port == 0 || !seen.insert(*port) {
                return Err(self.key_error(
                    "grpc.ports",
                    format!("must be distinct non-zero ports, got {:?}", self.grpc.ports),
                ));
            }
        }
        if let Some(first) = self.grpc.ports.first() {
            if *first > u16::MAX - 3 {
                return Err(self.key_error(
                    "grpc.ports",
                    format!("the first port + 3 must be a port too, got {first}"),
                ));
            }
        }
        if self.grpc.tls.enabled {
            for (key, path) in [
                ("grpc.tls.cert_path", &self.grpc.tls.cert_path),
                ("grpc.tls.key_path", &self.grpc.tls.key_path),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(self.key_error(
                        key,
                        "must name a PEM file when grpc.tls.enabled = true".into(),
                    ));
                }
            }
        }
        for from in &self.grpc.assign_job_from {
            if crate::grpc::net::Cidr::parse(from).is_none() {
                return Err(self.key_error(
                    "grpc.assign_job_from",
                    format!("must list IP addresses or CIDR blocks, got `{from}`"),
                ));
            }
        }
        for (key, value, range) in [
            (
                "grpc.assign_job_per_minute",
                self.grpc.assign_job_per_minute,
                1..=100_000,
            ),
            (
                "grpc.max_concurrent_requests",
                self.grpc.max_concurrent_requests,
                1..=10_000,
            ),
            (
                "grpc.max_concurrent_streams",
                self.grpc.max_concurrent_streams,
                1..=10_000,
            ),
            (
                "limits.max_deployments",
                self.limits.max_deployments,
                1..=10_000,
            ),
            ("limits.max_slots", self.limits.max_slots, 1..=64),
            (
                "limits.max_context_length",
                self.limits.max_context_length,
                16..=1 << 20,
            ),
            ("limits.max_batch", self.limits.max_batch, 1..=1 << 16),
            ("limits.max_threads", self.limits.max_threads, 0..=4096),
        ] {
            if !range.contains(&value) {
                return Err(self.key_error(
                    key,
                    format!(
                        "must be in {}..={}, got {value}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        for (key, value) in [
            ("grpc.max_message_bytes", self.grpc.max_message_bytes),
            (
                "grpc.max_infer_message_bytes",
                self.grpc.max_infer_message_bytes,
            ),
        ] {
            if !(1024..=1 << 30).contains(&value) {
                return Err(self.key_error(
                    key,
                    format!("must be between 1024 and 1073741824 bytes, got {value}"),
                ));
            }
        }
        for t in &self.jobs.allowed_job_types {
            if !JOB_TYPES.contains(&t.as_str()) {
                return Err(self.key_error(
                    "jobs.allowed_job_types",
                    format!("must list some of {}, got `{t}`", JOB_TYPES.join(", ")),
                ));
            }
        }
        if !(1..=3600).contains(&self.metrics.interval_seconds) {
            return Err(self.key_error(
                "metrics.interval_seconds",
                format!(
                    "must be between 1 and 3600 seconds, got {}",
                    self.metrics.interval_seconds
                ),
            ));
        }
        if !(1..=365).contains(&self.metrics.retention_days) {
            return Err(self.key_error(
                "metrics.retention_days",
                format!(
                    "must be between 1 and 365 days, got {}",
                    self.metrics.retention_days
                ),
            ));
        }
        if !matches!(
            self.pricing.billing_model.as_str(),
            "hourly" | "per_epoch" | "per_job" | "per_inference"
        ) {
            return Err(self.key_error(
                "pricing.billing_model",
                format!(
                    "must be hourly, per_epoch, per_job or per_inference, got `{}`",
                    self.pricing.billing_model
                ),
            ));
        }
        Ok(())
    }

    /// The directories models may be loaded from over gRPC: `[models] dirs` and the data
    /// dir's `models/`.
    pub fn model_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.models.dirs.iter().map(|d| self.resolve(d)).collect();
        dirs.push(self.models_dir());
        dirs
    }

    /// The data directory's `plugins/`.
    pub fn plugins_dir(&self) -> PathBuf {
        self.data_dir.join("plugins")
    }

    /// The data directory's `models/`.
    pub fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("node.db")
    }

    /// Resolves a path from the config: relative paths are relative to the config file's
    /// directory (or the working directory when no file was read).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.config_file.as_deref().and_then(Path::parent) {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}
