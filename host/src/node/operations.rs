//! What the node does to its deployments and what it reports: deploy, stop, forget, list
//! (as a caller may see them), status and the metrics history. Every check on what a caller
//! may ask for (model paths inside the model directories, names, plugins, `[limits]`) is
//! here, once, whatever transport the request came by.

use super::{ErrorKind, Node, NodeError, NodeResult};
use crate::{
    access::Caller,
    central::CentralStatus,
    config::DeploymentConfig,
    deployments::{DeploymentView, Status},
    store::metrics::HistoryPoint,
};
use serde::Serialize;
use std::{path::Path, sync::Arc};

/// The node at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The node id (the central server's once registered).
    pub id: String,
    /// The node name.
    pub name: String,
    /// The node's version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// The central-server link.
    pub central: CentralStatus,
    /// Ports gRPC listens on.
    pub grpc_ports: Vec<u16>,
    /// Deployments by state.
    pub deployments: DeploymentCounts,
    /// Plugins found at start.
    pub plugins: PluginCounts,
}

/// Deployments by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeploymentCounts {
    /// All of them.
    pub total: usize,
    /// Serving (ready or running).
    pub ready: usize,
    /// Pending or loading.
    pub loading: usize,
    /// Failed to load.
    pub failed: usize,
}

/// Plugins found at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PluginCounts {
    /// Loaded.
    pub loaded: usize,
    /// Skipped (incompatible or broken libraries).
    pub failed: usize,
}

/// A valid deployment name: letters, digits and `-_.:/`, at most 128 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
}

/// Whether `path` lies inside one of `dirs` (after resolving links).
pub fn inside(path: &Path, dirs: &[std::path::PathBuf]) -> bool {
    // A file that does not exist is judged by its (existing) directory.
    let real = match path.canonicalize() {
        Ok(real) => real,
        Err(_) => match (
            path.parent().and_then(|p| p.canonicalize().ok()),
            path.file_name(),
        ) {
            (Some(dir), Some(name)) => dir.join(name),
            _ => return false,
        },
    };
    dirs.iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|d| real.starts_with(d))
}

/// The operator, or a key with the `admin` scope.
fn caller_is_operator(caller: &Caller) -> bool {
    match caller {
        Caller::Operator => true,
        Caller::Anonymous => false,
        Caller::Key(_) => caller.allows(crate::access::Scope::Admin),
    }
}

impl Node {
    /// Checks what `caller` asks to deploy before any plugin sees it, returning the plugins
    /// that may load it. The operator may deploy any file with any option; other callers
    /// only files inside the model directories (unless `[grpc] allow_any_model_path`), with
    /// load options from `[limits]`' allow-lists.
    fn admit(&self, caller: &Caller, config: &DeploymentConfig) -> NodeResult<Vec<String>> {
        if !valid_name(&config.name) {
            return Err(NodeError::invalid_param(
                "name",
                format!(
                    "deployment name `{}` must be 1-128 letters, digits or -_.:/",
                    config.name
                ),
            ));
        }
        let path = &config.path;
        let operator = matches!(caller, Caller::Operator);
        if !operator {
            if !path.is_absolute() {
                return Err(NodeError::invalid_param(
                    "path",
                    format!("the model path must be absolute, got `{}`", path.display()),
                ));
            }
            // Outside the model directories a caller learns nothing about the file, not
            // even whether it exists.
            if !self.config.grpc.allow_any_model_path && !inside(path, &self.config.model_dirs()) {
                return Err(NodeError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "{} is not inside the node's model directories; the operator can add its directory to [models] dirs",
                        path.display()
                    ),
                ));
            }
        }
        // A device other than the CPU is the operator's to give (an `admin` key on gRPC).
        if !config.device.eq_ignore_ascii_case("cpu") && !caller_is_operator(caller) {
            return Err(NodeError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "device `{}`: only the operator (or a key with the `admin` scope) places deployments on GPUs",
                    config.device
                ),
            )
            .with_param("device"));
        }
        crate::config::DeviceRequest::parse(&config.device)
            .map_err(|why| NodeError::invalid_param("device", why))?;
        if !path.exists() {
            return Err(NodeError::new(
                ErrorKind::NotFound,
                format!("{}: no such file or directory on this node", path.display()),
            )
            .with_param("path"));
        }
        let plugins: Vec<String> = match &config.plugin {
            Some(p) if self.registry.get(p).is_some() => vec![p.clone()],
            Some(p) => {
                return Err(NodeError::invalid_param(
                    "plugin",
                    format!("no plugin `{p}` is loaded on this node"),
                ))
            }
            None => self
                .registry
                .candidates(path)
                .iter()
                .map(|l| l.metadata().name.clone())
                .collect(),
        };
        if !operator {
            crate::deployments::caller::check(&self.config.limits, &plugins, config)
                .map_err(|e| NodeError::invalid(e.to_string()))?;
        }
        Ok(plugins)
    }

    /// Deploys `config` for `caller` (who came by `via`, for the audit log) and loads it;
    /// returns once it serves or failed to load.
    pub async fn deploy(
        self: &Arc<Self>,
        caller: &Caller,
        via: &str,
        config: DeploymentConfig,
    ) -> NodeResult<DeploymentView> {
        self.admit(caller, &config)?;
        let name = config.name.clone();
        let path = config.path.display().to_string();
        let node = self.clone();
        let outcome =
            tokio::task::spawn_blocking(move || node.deployments.deploy(config, &node.registry))
                .await
                .map_err(|e| NodeError::internal(format!("deployment task failed: {e}")))?;
        match outcome {
            Ok(view) => {
                let detail = format!("{via}, {}: {path}", caller.name());
                self.audit("deployment_created", &name, &detail);
                Ok(view)
            }
            Err(e) => {
                self.audit("deployment_failed", &name, &e.to_string());
                Err(e.into())
            }
        }
    }

    /// Stops serving deployment `name` (or alias); requests in flight finish. Returns its
    /// view, now stopped.
    pub fn undeploy(&self, caller: &Caller, via: &str, name: &str) -> NodeResult<DeploymentView> {
        let view = self.deployment(caller, name)?;
        self.deployments.undeploy(&view.name)?;
        self.audit(
            "deployment_stopped",
            &view.name,
            &format!("{via}, {}", caller.name()),
        );
        self.deployment(caller, &view.name)
    }

    /// Stops and forgets deployment `name` (or alias).
    pub fn remove(&self, caller: &Caller, via: &str, name: &str) -> NodeResult<()> {
        let view = self.deployment(caller, name)?;
        self.deployments.remove(&view.name)?;
        self.audit(
            "deployment_deleted",
            &view.name,
            &format!("{via}, {}", caller.name()),
        );
        Ok(())
    }

    /// The deployments `caller` may see.
    pub fn deployment_list(&self, caller: &Caller) -> Vec<DeploymentView> {
        let mut list = self.deployments.snapshot();
        list.retain(|d| caller.may_use(&d.name));
        list
    }

    /// Deployment `name` (or alias) as `caller` may see it: one the caller may not use is
    /// answered exactly like an unknown one.
    pub fn deployment(&self, caller: &Caller, name: &str) -> NodeResult<DeploymentView> {
        if name.is_empty() {
            return Err(NodeError::invalid_param(
                "name",
                "the deployment name is empty",
            ));
        }
        self.deployments
            .snapshot()
            .into_iter()
            .find(|d| d.name == name || d.aliases.iter().any(|a| a == name))
            .filter(|d| caller.may_use(&d.name))
            .ok_or_else(|| {
                NodeError::new(
                    ErrorKind::NotFound,
                    format!("no deployment `{name}` on this node"),
                )
            })
    }

    /// The node at a glance.
    pub fn status(&self) -> NodeStatus {
        let list = self.deployments.snapshot();
        let count = |f: &dyn Fn(Status) -> bool| list.iter().filter(|d| f(d.status)).count();
        NodeStatus {
            id: self.central.node_id(),
            name: self.name().to_string(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
            central: self.central.status(),
            grpc_ports: self.config.grpc.ports.clone(),
            deployments: DeploymentCounts {
                total: list.len(),
                ready: count(&|s| matches!(s, Status::Ready | Status::Running)),
                loading: count(&|s| matches!(s, Status::Pending | Status::Loading)),
                failed: count(&|s| s == Status::Failed),
            },
            plugins: self.plugin_counts(),
        }
    }

    /// Stored metrics points in `[start, end]` (Unix seconds), at most `limit`.
    pub fn history(&self, start: i64, end: i64, limit: usize) -> NodeResult<Vec<HistoryPoint>> {
        self.store()
            .metric_history(start, end, limit)
            .map_err(|e| NodeError::internal(format!("cannot read the metrics history: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert!(valid_name("minilm"));
        assert!(valid_name("org/model:v1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.onnx");
        std::fs::write(&file, b"x").unwrap();
        assert!(inside(&file, &[dir.path().to_path_buf()]));
        assert!(!inside(&file, &[dir.path().join("other")]));
        assert!(inside(
            &dir.path().join("missing.onnx"),
            &[dir.path().to_path_buf()]
        ));
        assert!(!inside(
            &dir.path().join("no/such/dir.onnx"),
            &[dir.path().to_path_buf()]
        ));
        assert!(!inside(
            &dir.path().join("sub/../../etc/passwd"),
            &[dir.path().to_path_buf()]
        ));
    }
}
