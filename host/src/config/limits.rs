//! `[limits]` (what a remote caller may ask of the node when it creates a deployment: the
//! bounds every number is checked against before it reaches a plugin) and `[audit]` (how
//! long audit events are kept).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[limits]`: bounds on deployments, and which load options callers may set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Most deployments the node keeps (loaded, loading, failed or stopped).
    pub max_deployments: u32,
    /// Most threads a caller may ask for one model; 0 = the machine's logical cores.
    pub max_threads: u32,
    /// Most decoding slots a caller may ask of a language model.
    pub max_slots: u32,
    /// Largest context (tokens per slot) a caller may ask of a language model.
    pub max_context_length: u32,
    /// Largest batch a caller may ask for.
    pub max_batch: u32,
    /// Load options a remote caller (gRPC `CreateDeployment` `runtime_params`) may set, per
    /// plugin. Options not listed (native libraries, devices, ...) are the operator's:
    /// `[runtimes.<plugin>]` or `[[deployments]]` set them. Replaces the built-in list of
    /// a plugin named here.
    pub caller_options: BTreeMap<String, Vec<String>>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_deployments: 16,
            max_threads: 0,
            max_slots: 8,
            max_context_length: 8192,
            max_batch: 256,
            caller_options: BTreeMap::new(),
        }
    }
}

/// The built-in caller options of the plugins shipped with the node: shapes and sampling
/// or batching knobs, never libraries, devices or anything native. The numeric ones are
/// range-checked by the host (slots, context) and again by the plugin.
pub fn builtin_caller_options(plugin: &str) -> &'static [&'static str] {
    match plugin {
        "gguf-llama" => &["slots", "context_length", "queue", "embed_batch_tokens"],
        "onnx-tract" | "tflite-tract" => &["input_shapes", "probe"],
        "torch-tch" => &["input_shapes", "input_dtypes", "reset_method"],
        "tflite-litert" => &["xnnpack"],
        _ => &[],
    }
}

impl LimitsSection {
    /// The options a caller may set on loads through `plugin`.
    pub fn caller_options(&self, plugin: &str) -> Vec<String> {
        match self.caller_options.get(plugin) {
            Some(list) => list.clone(),
            None => builtin_caller_options(plugin)
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// [`LimitsSection::max_threads`] with 0 resolved to the machine's logical cores.
    pub fn thread_cap(&self) -> u32 {
        if self.max_threads > 0 {
            return self.max_threads;
        }
        std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1)
    }
}

/// `[audit]`: the audit log's retention.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Events older than this are deleted (0 = kept by age forever).
    pub retention_days: u64,
    /// At most this many events are kept, the newest (0 = no cap).
    pub max_events: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            retention_days: 90,
            max_events: 100_000,
        }
    }
}
