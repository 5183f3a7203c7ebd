//! The node's validated configuration: defaults, then `config.toml`, then environment and
//! command-line flags (clap reads both), each value remembering where it came from.
//!
//! `file` parses and checks the TOML file, `args` holds the clap flags, `show` renders the
//! effective configuration with provenance. Entry points take a [`Config`], never raw flags.

mod api;
pub mod args;
mod central;
mod cidr;
mod device;
mod file;
pub mod limits;
pub mod show;
mod validate;

use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

pub use api::{ApiSection, TlsSection};
pub use args::GlobalArgs;
pub use central::{CentralAddress, CentralSection};
pub use cidr::Cidr;
pub use device::DeviceRequest;
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
    /// After a crash or restart, resume interrupted jobs from their last checkpoint (else
    /// they are marked failed).
    pub resume_after_restart: bool,
    /// The only directories `file://` datasets may be read from (relative paths are under
    /// the data directory); default `datasets`.
    pub dataset_dirs: Vec<PathBuf>,
    /// The largest inline dataset (bytes sent with a job), in bytes.
    pub max_inline_dataset_bytes: usize,
    /// The training plugin for jobs that name none.
    pub default_backend: String,
    /// Intra-op threads per training job; 0 = the backend's default (all cores).
    pub threads_per_job: u32,
    /// What to do with a network job that asks for CUDA on a node without a GPU (the Engine
    /// asks for CUDA on every job): `refuse` (default) or `run_on_cpu`.
    pub cuda_jobs_on_cpu: String,
}

/// `[p2p]`: the Engine's direct training connection (`JobExecutionService`), authorised by
/// the P2P token the central server issues with each reservation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct P2pSection {
    /// The central server's JWT secret (HS256), which signs the P2P tokens. Empty: P2P jobs
    /// are refused. Prefer `jwt_secret_file` or `CYXWIZ_P2P_SECRET`.
    pub jwt_secret: String,
    /// A file (mode 0600) holding the secret; relative to the config file.
    pub jwt_secret_file: PathBuf,
    /// The oldest token accepted, by its `iat`, in seconds (the server's `exp` is wrong).
    pub max_token_age_seconds: u64,
    /// How long the node waits for the Engine to answer a dataset or batch request.
    pub batch_timeout_seconds: u64,
    /// The largest batch the Engine may send (images plus labels), in bytes.
    pub max_batch_bytes: usize,
    /// Batch requests kept in flight ahead of training.
    pub prefetch_batches: u32,
    /// The largest `DownloadWeights` chunk, in bytes (smaller requests are honoured).
    pub max_download_chunk_bytes: usize,
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
    /// Where it runs: `cpu`, `auto` (a GPU if usable, else the CPU), `cuda` (the first GPU
    /// `[devices] gpu_ids` allows) or `cuda:N`; what a plugin does with it is its own
    /// (onnx-ort runs on CUDA or falls back with a warning, torch-tch refuses anything but
    /// the CPU, the tract plugins ignore it).
    #[serde(default = "default_device")]
    pub device: String,
    /// Plugin-specific load options, e.g. `{ input_shapes = { x = [-1, 3, 48, 192] } }`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub options: toml::Table,
}

impl DeploymentConfig {
    /// A deployment of `path` called `name` with every other setting at the default a
    /// `[[deployments]]` entry gets.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            plugin: None,
            threads: 0,
            aliases: Vec::new(),
            workers: 0,
            queue_size: default_queue(),
            max_concurrent_requests: 0,
            max_batch: default_max_batch(),
            pooling: None,
            normalize: yes(),
            device: default_device(),
            options: toml::Table::new(),
        }
    }
}

fn default_device() -> String {
    "cpu".into()
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
    /// `[p2p]`
    pub p2p: P2pSection,
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
            resume_after_restart: true,
            dataset_dirs: vec![PathBuf::from("datasets")],
            max_inline_dataset_bytes: 64 << 20,
            default_backend: "train-candle".into(),
            threads_per_job: 0,
            cuda_jobs_on_cpu: "refuse".into(),
        }
    }
}

impl Default for P2pSection {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            jwt_secret_file: PathBuf::new(),
            max_token_age_seconds: 25 * 3600,
            batch_timeout_seconds: 60,
            max_batch_bytes: 64 << 20,
            prefetch_batches: 8,
            max_download_chunk_bytes: 1 << 20,
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

    /// `[jobs] dataset_dirs`, relative ones under the data directory.
    pub fn dataset_dirs(&self) -> Vec<PathBuf> {
        self.jobs
            .dataset_dirs
            .iter()
            .map(|d| self.data_dir.join(d))
            .collect()
    }

    /// `<data dir>/jobs`: one directory per training job.
    pub fn jobs_dir(&self) -> PathBuf {
        self.data_dir.join("jobs")
    }

    /// The directories models may be loaded from over gRPC: `[models] dirs`, the data
    /// dir's `models/` and `jobs/` (trained weights).
    pub fn model_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.models.dirs.iter().map(|d| self.resolve(d)).collect();
        dirs.push(self.models_dir());
        dirs.push(self.jobs_dir());
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
