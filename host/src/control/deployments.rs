//! The deployment and model RPCs of `DaemonService`: list, deploy, undeploy and show
//! deployments, and list, scan and delete the model files in the model directories. The RPC
//! methods themselves (in [`super::service`]) only delegate here.

use super::{
    checks::{blocking, bounded, bounded_list, delete_model, invalid, model_dirs, scan},
    convert,
    service::VIA,
};
use crate::{access::Caller, config::DeploymentConfig, node::Node};
use cyxwiz_proto::daemon as pb;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use tonic::Status;

/// Largest `options_json`.
pub const MAX_OPTIONS_BYTES: usize = 64 << 10;

/// `ListDeployments`: every deployment the operator sees.
pub(super) fn list(node: &Node) -> pb::ListDeploymentsResponse {
    let list = node.deployment_list(&Caller::Operator);
    pb::ListDeploymentsResponse {
        deployments: list.iter().map(convert::deployment).collect(),
    }
}

/// `DeployModel`: the request checked and turned into a [`DeploymentConfig`], then deployed.
pub(super) async fn deploy(
    node: &Arc<Node>,
    req: pb::DeployModelRequest,
) -> Result<pb::DeployModelResponse, Status> {
    bounded("model_path", &req.model_path)?;
    bounded("name", &req.name)?;
    bounded("plugin", &req.plugin)?;
    bounded_list("aliases", &req.aliases)?;
    if req.port != 0 {
        return Err(invalid(
            "port",
            "every deployment is served on the node's HTTP API port ([api] port); leave port 0"
                .into(),
        ));
    }
    if req.gpu_layers != 0 || req.context_size != 0 {
        return Err(invalid(
            "gpu_layers",
            "gpu_layers and context_size are plugin load options here: pass them in options_json"
                .into(),
        ));
    }
    if !req.api_key_id.is_empty() {
        return Err(invalid(
            "api_key_id",
            "keys restrict themselves to models (keys create --models), not the other way round"
                .into(),
        ));
    }
    if req.options_json.len() > MAX_OPTIONS_BYTES {
        return Err(invalid(
            "options_json",
            format!(
                "options_json must be at most {MAX_OPTIONS_BYTES} bytes, got {}",
                req.options_json.len()
            ),
        ));
    }
    let path = PathBuf::from(&req.model_path);
    if !path.is_absolute() {
        return Err(invalid(
            "model_path",
            format!("the model path must be absolute, got `{}`", req.model_path),
        ));
    }
    // Peers that do not know the node's extensions send no name: the file's stem.
    let name = if req.name.is_empty() {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        req.name
    };
    let mut config = DeploymentConfig::new(name, path);
    config.aliases = req.aliases;
    config.plugin = (!req.plugin.is_empty()).then_some(req.plugin);
    config.threads = req.threads;
    config.workers = req.workers;
    if !req.device.is_empty() {
        bounded("device", &req.device)?;
        config.device = req.device;
    }
    if !req.options_json.is_empty() {
        let json: serde_json::Value = serde_json::from_str(&req.options_json).map_err(|e| {
            invalid(
                "options_json",
                format!("options_json is not valid JSON: {e}"),
            )
        })?;
        if !json.is_object() {
            return Err(invalid(
                "options_json",
                "options_json must be a JSON object".into(),
            ));
        }
        config.options = serde_json::from_value(json)
            .map_err(|e| invalid("options_json", format!("options_json: {e}")))?;
    }
    let view = node
        .deploy(&Caller::Operator, VIA, config)
        .await
        .map_err(Status::from)?;
    Ok(pb::DeployModelResponse {
        success: true,
        deployment_id: view.name.clone(),
        error_message: String::new(),
        deployment: Some(convert::deployment(&view)),
    })
}

/// `UndeployModel`: stops serving the deployment `name`.
pub(super) fn undeploy(node: &Node, name: String) -> Result<pb::UndeployModelResponse, Status> {
    bounded("deployment_id", &name)?;
    node.undeploy(&Caller::Operator, VIA, &name)
        .map_err(Status::from)?;
    Ok(pb::UndeployModelResponse {
        success: true,
        error_message: String::new(),
    })
}

/// `GetDeploymentStatus`: the deployment `name`.
pub(super) fn status(node: &Node, name: String) -> Result<pb::GetDeploymentStatusResponse, Status> {
    bounded("deployment_id", &name)?;
    let view = node
        .deployment(&Caller::Operator, &name)
        .map_err(Status::from)?;
    Ok(pb::GetDeploymentStatusResponse {
        deployment: Some(convert::deployment(&view)),
    })
}

/// `ListLocalModels`: the model files in the model directories (or in `directory`, inside
/// them).
pub(super) async fn local_models(
    node: &Arc<Node>,
    directory: String,
) -> Result<pb::ListLocalModelsResponse, Status> {
    bounded("directory", &directory)?;
    let asked: Vec<String> = (!directory.is_empty())
        .then_some(directory)
        .into_iter()
        .collect();
    let dirs = model_dirs(node, &asked)?;
    let node = node.clone();
    let models = blocking(move || Ok(scan(&node, &dirs))).await?;
    Ok(pb::ListLocalModelsResponse { models })
}

/// `ScanModels`: scans the model directories (or those asked, inside them); `new_models` are
/// the files no deployment serves.
pub(super) async fn scan_models(
    node: &Arc<Node>,
    asked: Vec<String>,
) -> Result<pb::ScanModelsResponse, Status> {
    bounded_list("directories", &asked)?;
    let dirs = model_dirs(node, &asked)?;
    let node = node.clone();
    let models = blocking(move || Ok(scan(&node, &dirs))).await?;
    Ok(pb::ScanModelsResponse {
        models_found: i32::try_from(models.len()).unwrap_or(i32::MAX),
        new_models: models.into_iter().filter(|m| !m.is_deployed).collect(),
    })
}

/// `DeleteModel`: deletes a model file inside the model directories.
pub(super) async fn delete(
    node: &Arc<Node>,
    path: String,
) -> Result<pb::DeleteModelResponse, Status> {
    bounded("model_path", &path)?;
    let node = node.clone();
    blocking(move || delete_model(&node, Path::new(&path))).await?;
    Ok(pb::DeleteModelResponse {
        success: true,
        error_message: String::new(),
    })
}
