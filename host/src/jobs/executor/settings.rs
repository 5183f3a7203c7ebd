//! What the executor is configured with ([`Settings`], from the node's config) and which
//! training backends the loaded plugins offer.

use super::*;

/// What the executor is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `<data dir>/jobs`.
    pub jobs_dir: PathBuf,
    /// Jobs that run at once.
    pub max_running: usize,
    /// Jobs that may wait.
    pub max_queued: usize,
    /// Resume interrupted jobs from their checkpoint after a restart.
    pub resume_after_restart: bool,
    /// The backend when a job names none.
    pub default_backend: String,
    /// Where datasets may come from.
    pub sources: SourceConfig,
    /// Intra-op threads per job (0: the backend's default).
    pub threads: u32,
    /// Remote batches requested ahead of training.
    pub prefetch: usize,
}

impl Settings {
    /// The settings `config` gives.
    pub fn for_config(config: &crate::config::Config) -> Self {
        Self {
            jobs_dir: config.jobs_dir(),
            max_running: config.node.max_concurrent_jobs.max(1) as usize,
            max_queued: config.jobs.max_queued_jobs as usize,
            resume_after_restart: config.jobs.resume_after_restart,
            default_backend: config.jobs.default_backend.clone(),
            sources: SourceConfig::new(
                config.models_dir(),
                config.dataset_dirs(),
                config.jobs.max_inline_dataset_bytes,
            ),
            threads: config.jobs.threads_per_job,
            prefetch: config.p2p.prefetch_batches.max(1) as usize,
        }
    }
}

/// The training backends of the loaded plugins (those declaring training), by plugin name.
/// A plugin whose backend fails to start is logged and left out.
pub fn training_backends(registry: &crate::plugins::Registry) -> BTreeMap<String, Arc<Trainer>> {
    let mut out = BTreeMap::new();
    for lib in registry.loaded() {
        let meta = lib.metadata();
        if !meta
            .capabilities
            .contains(cyxwiz_sdk::Capabilities::TRAINING)
        {
            continue;
        }
        match lib.training_backend() {
            Ok(trainer) => {
                out.insert(meta.name.clone(), Arc::new(trainer));
            }
            Err(e) => {
                tracing::warn!(plugin = %meta.name, error = %e, "training backend unavailable");
            }
        }
    }
    out
}
