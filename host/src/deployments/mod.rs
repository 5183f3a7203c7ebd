//! Model deployments: a model file, the plugin serving it and a public name, with a status
//! lifecycle (Pending -> Loading -> Ready | Failed). This wave loads the `[[deployments]]` of
//! the config at start; run-time deploy/undeploy and serving build on it.

use crate::{
    config::{Config, DeploymentConfig},
    models::ModelWorker,
    plugins::Registry,
};
use cyxwiz_sdk::LoadOptions;
use serde::Serialize;
use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
};

/// Where a deployment is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Configured, not yet loading.
    Pending,
    /// A plugin is loading the model.
    Loading,
    /// Loaded and serving.
    Ready,
    /// Loading failed; see the message.
    Failed,
}

/// A deployment as reported to operators.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    /// Public model name.
    pub name: String,
    /// Model file.
    pub path: PathBuf,
    /// Serving plugin, once loaded.
    pub plugin: Option<String>,
    /// Lifecycle status.
    pub status: Status,
    /// Why it failed, or empty.
    pub message: String,
}

struct Deployment {
    config: DeploymentConfig,
    path: PathBuf,
    status: Status,
    message: String,
    worker: Option<Arc<ModelWorker>>,
}

/// All deployments of the node.
#[derive(Default)]
pub struct Deployments {
    inner: RwLock<Vec<Deployment>>,
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}

impl Deployments {
    /// The configured deployments, all pending.
    pub fn from_config(config: &Config) -> Self {
        let list = config
            .deployments
            .iter()
            .map(|d| Deployment {
                path: config.resolve(&d.path),
                config: d.clone(),
                status: Status::Pending,
                message: String::new(),
                worker: None,
            })
            .collect();
        Self {
            inner: RwLock::new(list),
        }
    }

    /// Every deployment's current state.
    pub fn snapshot(&self) -> Vec<DeploymentView> {
        let list = self.inner.read().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .map(|d| DeploymentView {
                name: d.config.name.clone(),
                path: d.path.clone(),
                plugin: d.worker.as_ref().map(|w| w.plugin().to_string()),
                status: d.status,
                message: d.message.clone(),
            })
            .collect()
    }

    /// The worker of a ready deployment.
    pub fn get(&self, name: &str) -> Option<Arc<ModelWorker>> {
        let list = self.inner.read().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .find(|d| d.config.name == name)
            .and_then(|d| d.worker.clone())
    }

    fn set(&self, index: usize, status: Status, message: String, worker: Option<Arc<ModelWorker>>) {
        let mut list = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = list.get_mut(index) {
            d.status = status;
            d.message = message;
            d.worker = worker;
        }
    }

    /// Loads every pending deployment, one after another. Blocking: call it from a worker
    /// thread. A deployment that fails is marked Failed with the reason; the others go on.
    pub fn load_pending(&self, registry: &Registry) {
        let pending: Vec<(usize, DeploymentConfig, PathBuf)> = {
            let list = self.inner.read().unwrap_or_else(|p| p.into_inner());
            list.iter()
                .enumerate()
                .filter(|(_, d)| d.status == Status::Pending)
                .map(|(i, d)| (i, d.config.clone(), d.path.clone()))
                .collect()
        };
        for (index, config, path) in pending {
            self.set(index, Status::Loading, String::new(), None);
            let span = tracing::info_span!("deploy", model = %config.name);
            let _entered = span.enter();
            let options = LoadOptions {
                threads: config.threads,
                options: serde_json::to_value(&config.options)
                    .unwrap_or_else(|_| serde_json::Value::Object(Default::default())),
                ..LoadOptions::default()
            };
            let started = std::time::Instant::now();
            let outcome = registry
                .load(&path, config.plugin.as_deref(), &options)
                .map_err(|e| e.to_string())
                .and_then(|(lib, model)| {
                    ModelWorker::spawn(
                        &config.name,
                        &lib.metadata().name,
                        model,
                        config.workers as usize,
                        config.queue_size as usize,
                    )
                    .map_err(|e| format!("cannot start worker threads: {e}"))
                });
            match outcome {
                Ok(worker) => {
                    tracing::info!(
                        plugin = worker.plugin(),
                        seconds = started.elapsed().as_secs_f64(),
                        "model ready"
                    );
                    self.set(index, Status::Ready, String::new(), Some(Arc::new(worker)));
                }
                Err(reason) => {
                    tracing::error!(%reason, "model failed to load");
                    self.set(index, Status::Failed, reason, None);
                }
            }
        }
    }

    /// Whether any deployment is still pending or loading.
    pub fn loading(&self) -> bool {
        self.snapshot()
            .iter()
            .any(|d| matches!(d.status, Status::Pending | Status::Loading))
    }
}
