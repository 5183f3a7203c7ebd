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

/// The training backends of the usable plugins (those declaring training), by plugin name.
/// Each starts in its plugin (opening the library in this process) on its first job; one
/// that cannot start fails that job with the reason.
pub fn training_backends(registry: &crate::plugins::Registry) -> BTreeMap<String, Arc<Trainer>> {
    registry
        .loaded()
        .filter(|p| {
            p.metadata()
                .capabilities
                .contains(cyxwiz_sdk::Capabilities::TRAINING)
        })
        .map(|p| (p.metadata().name.clone(), Arc::new(Trainer::new(p.clone()))))
        .collect()
}
