//! Model deployments: a model file or directory, the plugin serving it, a public name and
//! aliases, with a status lifecycle (Pending -> Loading -> Ready <-> Running -> Stopped |
//! Failed; Running while requests are in flight).
//! Deployments come from `[[deployments]]` at start and from run-time deploy/undeploy calls;
//! both go through [`Deployments::load`].
//!
//! A directory holding a `tokenizer.json` and a tensor model deploys as an embedding
//! pipeline (see [`crate::models::embedding`]); any other path is served as its plugin serves
//! it (tensors, text generation, embeddings).

pub mod caller;
pub mod device;

use crate::{
    config::{Config, DeploymentConfig},
    models::{
        embedding::{EmbeddingPipeline, PipelineOptions, Pooling},
        worker::Engine,
        ModelWorker,
    },
    plugins::Registry,
};
use cyxwiz_sdk::{Capabilities, LoadOptions};
use serde::Serialize;
use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

/// Where a deployment is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Known, not yet loading.
    Pending,
    /// A plugin is loading the model.
    Loading,
    /// Loaded and idle.
    Ready,
    /// Loaded and answering requests.
    Running,
    /// Undeployed; its memory is released once in-flight requests finish.
    Stopped,
    /// Loading failed; see the message.
    Failed,
}

/// What a deployment serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Not known until loaded.
    Unknown,
    /// Text generation (chat and completions), maybe embeddings.
    Llm,
    /// Text embeddings.
    Embedding,
    /// Tensors in, tensors out.
    Tensor,
}

/// A deployment as reported to operators.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    /// Public model name.
    pub name: String,
    /// Other names.
    pub aliases: Vec<String>,
    /// Model file or directory.
    pub path: PathBuf,
    /// Serving plugin, once loaded.
    pub plugin: Option<String>,
    /// What it serves.
    pub kind: Kind,
    /// Lifecycle status.
    pub status: Status,
    /// Why it failed, or empty.
    pub message: String,
    /// Memory the model reports, in bytes.
    pub memory_bytes: u64,
    /// Unix time it was created.
    pub created: u64,
    /// Requests answered since it was loaded.
    pub requests: u64,
    /// Their mean latency in milliseconds.
    pub mean_latency_ms: f64,
    /// Seconds since it was loaded (0 when not loaded).
    pub uptime_seconds: f64,
}

/// Why a deploy or undeploy call was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The name or an alias is taken.
    #[error("a deployment named `{0}` already exists")]
    Exists(String),
    /// No such deployment.
    #[error("no deployment named `{0}`")]
    NotFound(String),
    /// The RAM budget would be exceeded.
    #[error("loading `{name}` needs about {needed_mb} MiB but only {free_mb} MiB of the {budget_mb} MiB budget ([devices] max_ram_mb) is free")]
    OverBudget {
        /// Deployment.
        name: String,
        /// Estimated need.
        needed_mb: u64,
        /// Budget left.
        free_mb: u64,
        /// The budget.
        budget_mb: u64,
    },
    /// The node keeps as many deployments as it may.
    #[error(
        "this node already has {max} deployments ([limits] max_deployments); delete one first"
    )]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The model could not be loaded.
    #[error("{0}")]
    Load(String),
}

/// A deployment's change of status, as told to [`Deployments::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The deployment.
    pub name: String,
    /// Its new status.
    pub status: Status,
    /// Why it failed, or empty.
    pub message: String,
}

/// Status changes a slow subscriber may fall behind by.
const CHANGES: usize = 256;

/// Result of looking a model name up.
#[derive(Debug)]
pub enum Lookup {
    /// Serving.
    Ready(Arc<ModelWorker>),
    /// Still loading.
    Loading,
    /// Not serving, with the reason.
    Unavailable(String),
    /// Unknown name.
    Unknown,
}

struct Deployment {
    config: DeploymentConfig,
    path: PathBuf,
    status: Status,
    message: String,
    worker: Option<Arc<ModelWorker>>,
    kind: Kind,
    created: u64,
}

impl Deployment {
    fn pending(config: DeploymentConfig, path: PathBuf) -> Self {
        // A training job's directory deploys its weights.
        let weights = path.join("weights.safetensors");
        let path = if path.is_dir() && weights.is_file() {
            weights
        } else {
            path
        };
        Self {
            config,
            path,
            status: Status::Pending,
            message: String::new(),
            worker: None,
            kind: Kind::Unknown,
            created: now(),
        }
    }

    fn answers_to(&self, name: &str) -> bool {
        self.config.name == name || self.config.aliases.iter().any(|a| a == name)
    }
}

/// All deployments of the node.
pub struct Deployments {
    inner: RwLock<Vec<Deployment>>,
    ram_budget_mb: u64,
    max_deployments: usize,
    devices: device::DevicePool,
    changes: tokio::sync::broadcast::Sender<Change>,
}

impl Default for Deployments {
    fn default() -> Self {
        Self {
            inner: RwLock::new(Vec::new()),
            ram_budget_mb: 0,
            max_deployments: usize::MAX,
            devices: device::DevicePool::default(),
            changes: tokio::sync::broadcast::channel(CHANGES).0,
        }
    }
}

/// The RAM budget for `[devices] max_ram_mb`: the value itself, or 0 for 80 % of the
/// machine's memory (0 again, no cap, where the memory cannot be read).
pub fn ram_budget_mb(configured: u64) -> u64 {
    if configured > 0 {
        return configured;
    }
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024 * 4 / 5)
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The model file inside a deployment directory: `model.*` first, else the first file with
/// an extension some plugin handles.
fn model_in_dir(dir: &Path, registry: &Registry) -> Result<PathBuf, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !registry.candidates(p).is_empty())
        .collect();
    files.sort_by_key(|p| {
        (
            p.file_stem().is_none_or(|s| s != "model"),
            p.file_name().map(|n| n.to_os_string()),
        )
    });
    files.into_iter().next().ok_or_else(|| {
        format!(
            "{} holds no model file any loaded plugin handles",
            dir.display()
        )
    })
}

/// Loads one deployment's model and starts its workers.
fn load_worker(
    config: &DeploymentConfig,
    path: &Path,
    registry: &Registry,
    devices: &device::DevicePool,
) -> Result<(ModelWorker, Kind), String> {
    let (file, tokenizer) = if path.is_dir() {
        let tokenizer = path.join("tokenizer.json");
        (
            model_in_dir(path, registry)?,
            tokenizer.is_file().then_some(tokenizer),
        )
    } else {
        (path.to_path_buf(), None)
    };
    let device = devices.resolve(&config.device)?;
    let mut options = serde_json::to_value(&config.options)
        .unwrap_or_else(|_| serde_json::Value::Object(Default::default()));
    if let (Some(mb), Some(map), false) = (
        devices.gpu_memory_limit_mb(),
        options.as_object_mut(),
        device == "cpu",
    ) {
        map.entry("gpu_memory_limit_mb").or_insert(mb.into());
    }
    if device != "cpu" {
        tracing::info!(%device, "loading on a GPU device");
    }
    let options = LoadOptions {
        threads: config.threads,
        device,
        options,
    };
    let (lib, model) = registry
        .load(&file, config.plugin.as_deref(), &options)
        .map_err(|e| e.to_string())?;
    let plugin = lib.metadata().name.clone();
    let caps = model.info().capabilities;
    let (engine, kind) = match tokenizer {
        Some(tokenizer) => {
            let pipeline = EmbeddingPipeline::new(
                model,
                &PipelineOptions {
                    tokenizer,
                    pooling: config.pooling.as_deref().and_then(Pooling::parse),
                    normalize: config.normalize,
                },
            )
            .map_err(|e| e.to_string())?;
            (Engine::Embedding(Box::new(pipeline)), Kind::Embedding)
        }
        None if caps.contains(Capabilities::TEXT_GENERATION) => (Engine::Plain(model), Kind::Llm),
        None if caps.contains(Capabilities::EMBEDDINGS) => (Engine::Plain(model), Kind::Embedding),
        None => (Engine::Plain(model), Kind::Tensor),
    };
    let workers = match config.workers {
        0 if kind == Kind::Llm => config
            .options
            .get("slots")
            .and_then(|v| v.as_integer())
            .map(|v| v.clamp(1, 64) as usize)
            .unwrap_or(4),
        0 => 1,
        n => n as usize,
    };
    let worker = ModelWorker::spawn(
        &config.name,
        &plugin,
        engine,
        workers,
        config.queue_size as usize,
        config.max_batch as usize,
    )
    .map_err(|e| format!("cannot start worker threads: {e}"))?
    .with_admission_limit(config.max_concurrent_requests as usize);
    Ok((worker, kind))
}

impl Deployments {
    /// The configured deployments, all pending.
    pub fn from_config(config: &Config) -> Self {
        let list = config
            .deployments
            .iter()
            .map(|d| Deployment::pending(d.clone(), config.resolve(&d.path)))
            .collect();
        Self {
            inner: RwLock::new(list),
            ram_budget_mb: ram_budget_mb(config.devices.max_ram_mb),
            max_deployments: config.limits.max_deployments as usize,
            ..Self::default()
        }
    }

    /// Deployments run on `pool`'s devices (by default: the CPU, and GPU requests go to the
    /// plugins as they are).
    pub fn with_devices(mut self, pool: device::DevicePool) -> Self {
        self.devices = pool;
        self
    }

    /// Status changes from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn announce(&self, name: &str, status: Status, message: &str) {
        // No subscriber is not an error.
        let _ = self.changes.send(Change {
            name: name.to_string(),
            status,
            message: message.to_string(),
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Deployment>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Deployment>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every deployment's current state.
    pub fn snapshot(&self) -> Vec<DeploymentView> {
        self.read()
            .iter()
            .map(|d| (d, d.worker.as_ref().map(|w| w.stats())))
            .map(|(d, stats)| DeploymentView {
                name: d.config.name.clone(),
                aliases: d.config.aliases.clone(),
                path: d.path.clone(),
                plugin: d.worker.as_ref().map(|w| w.plugin().to_string()),
                kind: d.kind,
                status: match &d.worker {
                    Some(w) if d.status == Status::Ready && w.in_flight() > 0 => Status::Running,
                    _ => d.status,
                },
                message: d.message.clone(),
                memory_bytes: d.worker.as_ref().map_or(0, |w| w.info().memory_bytes),
                created: d.created,
                requests: stats.map_or(0, |s| s.answered),
                mean_latency_ms: stats.map_or(0.0, |s| s.mean_latency_ms),
                uptime_seconds: stats.map_or(0.0, |s| s.uptime_seconds),
            })
            .collect()
    }

    /// The worker of a ready deployment, by name or alias.
    pub fn get(&self, name: &str) -> Option<Arc<ModelWorker>> {
        match self.lookup(name) {
            Lookup::Ready(w) => Some(w),
            _ => None,
        }
    }

    /// Looks a model name or alias up.
    pub fn lookup(&self, name: &str) -> Lookup {
        let list = self.read();
        let Some(d) = list.iter().find(|d| d.answers_to(name)) else {
            return Lookup::Unknown;
        };
        match (&d.worker, d.status) {
            (Some(w), Status::Ready) => Lookup::Ready(w.clone()),
            (_, Status::Pending | Status::Loading) => Lookup::Loading,
            (_, Status::Stopped) => Lookup::Unavailable(format!("model `{name}` is stopped")),
            _ => Lookup::Unavailable(format!("model `{name}` failed to load: {}", d.message)),
        }
    }

    fn set(
        &self,
        name: &str,
        status: Status,
        message: String,
        loaded: Option<(Arc<ModelWorker>, Kind)>,
    ) {
        {
            let mut list = self.write();
            let Some(d) = list.iter_mut().find(|d| d.config.name == name) else {
                return;
            };
            d.status = status;
            d.message.clone_from(&message);
            if let Some((worker, kind)) = loaded {
                d.worker = Some(worker);
                d.kind = kind;
            } else {
                d.worker = None;
            }
        }
        self.announce(name, status, &message);
    }

    /// Memory of the loaded models, in MiB.
    fn used_mb(&self) -> u64 {
        self.read()
            .iter()
            .filter_map(|d| d.worker.as_ref())
            .map(|w| w.info().memory_bytes >> 20)
            .sum()
    }

    /// Checks the RAM budget for a model of about `bytes` (its file size).
    fn check_budget(&self, name: &str, bytes: u64) -> Result<(), DeployError> {
        if self.ram_budget_mb == 0 {
            return Ok(());
        }
        let needed_mb = (bytes >> 20).max(1);
        let free_mb = self.ram_budget_mb.saturating_sub(self.used_mb());
        if needed_mb > free_mb {
            return Err(DeployError::OverBudget {
                name: name.to_string(),
                needed_mb,
                free_mb,
                budget_mb: self.ram_budget_mb,
            });
        }
        Ok(())
    }

    /// Loads one deployment already in the list (Pending or Failed or Stopped). Blocking.
    fn load(&self, name: &str, registry: &Registry) -> Result<(), DeployError> {
        let (config, path) = {
            let list = self.read();
            let d = list
                .iter()
                .find(|d| d.config.name == name)
                .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
            (d.config.clone(), d.path.clone())
        };
        let span = tracing::info_span!("deploy", model = %config.name);
        let _entered = span.enter();
        if let Err(e) = self.check_budget(name, size_on_disk(&path)) {
            tracing::error!(reason = %e, "model refused");
            self.set(name, Status::Failed, e.to_string(), None);
            return Err(e);
        }
        self.set(name, Status::Loading, String::new(), None);
        let started = std::time::Instant::now();
        let loaded =
            load_worker(&config, &path, registry, &self.devices).and_then(|(worker, kind)| {
                // The plugin's own figure (weights plus caches such as a KV cache) against what
                // is left of the budget; the model is released again if it does not fit.
                let needed_mb = (worker.info().memory_bytes >> 20).max(1);
                let free_mb = self.ram_budget_mb.saturating_sub(self.used_mb());
                if self.ram_budget_mb > 0 && needed_mb > free_mb {
                    return Err(DeployError::OverBudget {
                        name: name.to_string(),
                        needed_mb,
                        free_mb,
                        budget_mb: self.ram_budget_mb,
                    }
                    .to_string());
                }
                Ok((worker, kind))
            });
        match loaded {
            Ok((worker, kind)) => {
                tracing::info!(
                    plugin = worker.plugin(),
                    kind = ?kind,
                    seconds = started.elapsed().as_secs_f64(),
                    "model ready"
                );
                self.set(
                    name,
                    Status::Ready,
                    String::new(),
                    Some((Arc::new(worker), kind)),
                );
                Ok(())
            }
            Err(reason) => {
                tracing::error!(%reason, "model failed to load");
                self.set(name, Status::Failed, reason.clone(), None);
                Err(DeployError::Load(reason))
            }
        }
    }

    /// Loads every pending deployment, one after another. Blocking: call it from a worker
    /// thread. A deployment that fails is marked Failed with the reason; the others go on.
    pub fn load_pending(&self, registry: &Registry) {
        let pending: Vec<String> = self
            .read()
            .iter()
            .filter(|d| d.status == Status::Pending)
            .map(|d| d.config.name.clone())
            .collect();
        for name in pending {
            let _ = self.load(&name, registry);
        }
    }

    /// Adds a deployment at run time and loads it (blocking). A failed or stopped deployment
    /// of the same name is replaced.
    pub fn deploy(
        &self,
        config: DeploymentConfig,
        registry: &Registry,
    ) -> Result<DeploymentView, DeployError> {
        {
            let mut list = self.write();
            let names = std::iter::once(&config.name).chain(&config.aliases);
            for n in names {
                if let Some(existing) = list.iter().find(|d| d.answers_to(n)) {
                    let replaceable = existing.config.name == config.name
                        && matches!(existing.status, Status::Failed | Status::Stopped);
                    if !replaceable {
                        return Err(DeployError::Exists(n.clone()));
                    }
                }
            }
            list.retain(|d| d.config.name != config.name);
            if list.len() >= self.max_deployments {
                return Err(DeployError::TooMany {
                    max: self.max_deployments,
                });
            }
            list.push(Deployment::pending(config.clone(), config.path.clone()));
        }
        self.load(&config.name, registry)?;
        self.snapshot()
            .into_iter()
            .find(|d| d.name == config.name)
            .ok_or_else(|| DeployError::NotFound(config.name.clone()))
    }

    /// Stops serving a deployment. Requests in flight finish; the model is released when
    /// the last one does. The deployment stays listed as stopped until replaced.
    pub fn undeploy(&self, name: &str) -> Result<(), DeployError> {
        {
            let mut list = self.write();
            let d = list
                .iter_mut()
                .find(|d| d.config.name == name && d.status != Status::Stopped)
                .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
            d.status = Status::Stopped;
            d.message = String::new();
            d.worker = None;
        }
        self.announce(name, Status::Stopped, "");
        Ok(())
    }

    /// Forgets a deployment: stops it if it is serving and removes it from the list.
    pub fn remove(&self, name: &str) -> Result<(), DeployError> {
        let mut list = self.write();
        let before = list.len();
        list.retain(|d| d.config.name != name);
        if list.len() == before {
            return Err(DeployError::NotFound(name.to_string()));
        }
        Ok(())
    }

    /// Whether any deployment is still pending or loading.
    pub fn loading(&self) -> bool {
        self.read()
            .iter()
            .any(|d| matches!(d.status, Status::Pending | Status::Loading))
    }
}

/// Bytes of a model file, or of all files in a model directory.
fn size_on_disk(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| size_on_disk(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> DeploymentConfig {
        DeploymentConfig {
            workers: 1,
            queue_size: 1,
            max_batch: 1,
            ..DeploymentConfig::new(name, format!("/nonexistent/{name}.onnx"))
        }
    }

    #[test]
    fn the_number_of_deployments_is_capped_before_anything_loads() {
        let mut config = Config::default();
        config.limits.max_deployments = 2;
        config.deployments = vec![entry("a"), entry("b")];
        let deployments = Deployments::from_config(&config);
        let registry = Registry::discover(&[], Default::default());
        let refused = deployments.deploy(entry("c"), &registry).unwrap_err();
        assert!(matches!(refused, DeployError::TooMany { max: 2 }));
        assert_eq!(
            refused.to_string(),
            "this node already has 2 deployments ([limits] max_deployments); delete one first"
        );
        assert_eq!(deployments.snapshot().len(), 2);
        // Replacing one that failed does not count twice.
        let _ = deployments.deploy(entry("a"), &registry);
        deployments.set("a", Status::Failed, "x".into(), None);
        assert!(!matches!(
            deployments.deploy(entry("a"), &registry),
            Err(DeployError::TooMany { .. })
        ));
    }

    #[test]
    fn the_default_ram_budget_is_most_of_the_machine() {
        assert_eq!(ram_budget_mb(512), 512);
        let auto = ram_budget_mb(0);
        if std::path::Path::new("/proc/meminfo").exists() {
            assert!(auto > 0);
        }
    }
}
