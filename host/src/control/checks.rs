//! The control service's checks and chores: the bounds on what a caller sends, error
//! conversions, blocking work off the async threads, and the model-directory operations
//! (`ListLocalModels`, `ScanModels`, `DeleteModel`) that stay inside the model directories.

use super::convert;
use super::service::{MAX_LIST, MAX_NAME};
use crate::node::{ErrorKind, Node, NodeError};
use cyxwiz_proto::daemon as pb;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use tonic::Status;

pub(super) fn unimplemented<T>(reason: &str) -> Result<T, Status> {
    Err(NodeError::unimplemented(reason).into())
}

pub(super) fn invalid(param: &str, message: String) -> Status {
    NodeError::invalid_param(param, message).into()
}

pub(super) fn bounded(param: &str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_NAME {
        return Err(invalid(
            param,
            format!(
                "{param} must be at most {MAX_NAME} bytes, got {}",
                value.len()
            ),
        ));
    }
    Ok(())
}

pub(super) fn bounded_list(param: &str, values: &[String]) -> Result<(), Status> {
    if values.len() > MAX_LIST {
        return Err(invalid(
            param,
            format!("{param} must list at most {MAX_LIST}, got {}", values.len()),
        ));
    }
    values.iter().try_for_each(|v| bounded(param, v))
}

/// A blocking call (database, file system) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| NodeError::internal(format!("control task failed: {e}")))?
}

/// `level_filter` as the least severe level shown (`""`: every level).
pub(super) fn level_filter(text: &str) -> Result<tracing::Level, Status> {
    if text.is_empty() {
        return Ok(tracing::Level::TRACE);
    }
    text.parse().map_err(|_| {
        invalid(
            "level_filter",
            format!(
                "level_filter must be one of trace, debug, info, warn, error; got `{}`",
                text.escape_debug()
            ),
        )
    })
}

/// The model directories, or those of `asked` that lie inside them.
pub(super) fn model_dirs(node: &Node, asked: &[String]) -> Result<Vec<PathBuf>, Status> {
    let dirs = node.config.model_dirs();
    if asked.is_empty() {
        return Ok(dirs);
    }
    asked
        .iter()
        .map(|d| {
            let path = PathBuf::from(d);
            if crate::node::inside(&path, &dirs) {
                Ok(path)
            } else {
                Err(NodeError::new(
                    ErrorKind::PermissionDenied,
                    format!("{d} is not inside the node's model directories ([models] dirs and <data-dir>/models)"),
                )
                .into())
            }
        })
        .collect()
}

/// Model files under `dirs`, each marked deployed when a deployment serves it.
pub(super) fn scan(node: &Arc<Node>, dirs: &[PathBuf]) -> Vec<pb::ModelInfo> {
    let deployed: Vec<PathBuf> = node
        .deployments
        .snapshot()
        .into_iter()
        .filter(|d| d.status != crate::deployments::Status::Stopped)
        .map(|d| d.path)
        .collect();
    crate::models::scan::scan(dirs, &node.registry)
        .iter()
        .map(|f| convert::model_file(f, deployed.iter().any(|p| p == &f.path)))
        .collect()
}

/// Deletes the model file at `path` if it lies inside the model directories, is a regular
/// file and no deployment uses it.
pub(super) fn delete_model(node: &Node, path: &Path) -> Result<(), Status> {
    let dirs = node.config.model_dirs();
    let real = path
        .canonicalize()
        .map_err(|e| NodeError::new(ErrorKind::NotFound, format!("{}: {e}", path.display())))?;
    if !crate::node::inside(&real, &dirs) {
        return Err(NodeError::new(
            ErrorKind::PermissionDenied,
            format!(
                "{} is not inside the node's model directories",
                path.display()
            ),
        )
        .into());
    }
    if !real.is_file() {
        return Err(invalid(
            "model_path",
            format!("{} is not a model file", path.display()),
        ));
    }
    let used = node.deployments.snapshot().into_iter().find(|d| {
        d.status != crate::deployments::Status::Stopped
            && d.path
                .canonicalize()
                .is_ok_and(|p| p == real || real.starts_with(&p))
    });
    if let Some(d) = used {
        return Err(NodeError::new(
            ErrorKind::Unsupported,
            format!(
                "deployment `{}` uses {}; undeploy it first",
                d.name,
                path.display()
            ),
        )
        .into());
    }
    std::fs::remove_file(&real)
        .map_err(|e| NodeError::internal(format!("{}: {e}", real.display())))?;
    node.audit(
        "model_deleted",
        &real.display().to_string(),
        super::service::VIA,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Config, deployments::Deployments};

    #[test]
    fn delete_model_stays_inside_the_model_directories() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let models = config.models_dir();
        std::fs::create_dir_all(models.join("sub")).unwrap();
        let inside = models.join("sub/m.onnx");
        std::fs::write(&inside, b"x").unwrap();
        let outside = dir.path().join("keep.onnx");
        std::fs::write(&outside, b"x").unwrap();
        let node = Node::scratch(
            config.clone(),
            Deployments::from_config(&config),
            dir.path(),
        );

        for path in [outside.clone(), models.join("../../keep.onnx")] {
            let e = delete_model(&node, &path).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{path:?}: {e:?}");
        }
        // A link inside pointing outside is judged by its target.
        std::os::unix::fs::symlink(&outside, models.join("link.onnx")).unwrap();
        let e = delete_model(&node, &models.join("link.onnx")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(outside.exists());
        let e = delete_model(&node, &models.join("sub")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = delete_model(&node, &models.join("missing.onnx")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);

        delete_model(&node, &inside).unwrap();
        assert!(!inside.exists());
    }
}
