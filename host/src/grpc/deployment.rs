//! `DeploymentService` on the node's deployment manager: the deployments it creates are the
//! ones the HTTP API serves, and models deployed by config, CLI or HTTP are listed here too.
//! A deployment's id is its model name. Reading needs a key with the `inference` scope and
//! shows only the models the key may use; creating, stopping and deleting need `deploy`.
//! What a caller may ask for (load options, threads, slots, context) is bounded by
//! `[limits]` before any plugin sees it.

use super::{convert, error, GrpcState};
use crate::{
    access::Scope, config::DeploymentConfig as NodeDeployment, deployments::DeploymentView,
    node::ErrorKind,
};
use cyxwiz_proto::protocol::{
    deployment_service_server::DeploymentService, CreateDeploymentRequest,
    CreateDeploymentResponse, DeleteDeploymentRequest, DeleteDeploymentResponse, Deployment,
    DeploymentConfig, DeploymentMetricPoint, DeploymentStatus, DeploymentType,
    GetDeploymentMetricsRequest, GetDeploymentMetricsResponse, GetDeploymentRequest,
    GetDeploymentResponse, ListDeploymentsRequest, ListDeploymentsResponse, ModelInfo, StatusCode,
    StopDeploymentRequest, StopDeploymentResponse,
};
use std::{path::PathBuf, sync::Arc};
use tonic::{Request, Response, Status};

/// The node's `DeploymentService`.
#[derive(Clone)]
pub struct DeploymentSvc(pub Arc<GrpcState>);

/// Largest page `ListDeployments` returns.
const MAX_PAGE: usize = 1000;

impl DeploymentSvc {
    /// The protocol's view of a deployment.
    fn message(&self, view: &DeploymentView) -> Deployment {
        let state = &self.0;
        let started = view.created;
        let status = convert::deployment_status(view.status);
        let failed = view.status == crate::deployments::Status::Failed;
        Deployment {
            deployment_id: view.name.clone(),
            config: Some(DeploymentConfig {
                deployment_id: view.name.clone(),
                r#type: DeploymentType::LocalNode as i32,
                model: Some(ModelInfo {
                    model_id: view.name.clone(),
                    name: view.name.clone(),
                    format: format_code(&convert::format_of(view)),
                    local_path: view.path.display().to_string(),
                    size_bytes: i64::try_from(view.memory_bytes).unwrap_or(i64::MAX),
                    metadata: view
                        .plugin
                        .iter()
                        .map(|p| ("plugin".to_string(), p.clone()))
                        .chain([(
                            "kind".to_string(),
                            format!("{:?}", view.kind).to_lowercase(),
                        )])
                        .collect(),
                    ..Default::default()
                }),
                node_id: state.node.central.node_id(),
                port: state
                    .endpoint_url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim_end_matches("/v1").parse().ok())
                    .unwrap_or(0),
                ..Default::default()
            }),
            status: status as i32,
            assigned_node: None,
            status_message: view.message.clone(),
            created_at: i64::try_from(view.created).unwrap_or(0),
            started_at: i64::try_from(started).unwrap_or(0),
            stopped_at: 0,
            endpoint_url: state.endpoint_url.clone(),
            uptime_seconds: view.uptime_seconds as i64,
            total_requests: i64::try_from(view.requests).unwrap_or(i64::MAX),
            avg_latency_ms: view.mean_latency_ms,
            error: failed.then(|| error::of_kind(ErrorKind::Unavailable, view.message.clone())),
            ..Default::default()
        }
    }
}

/// `ModelFormat` for a format or extension name.
fn format_code(format: &str) -> i32 {
    use cyxwiz_proto::protocol::ModelFormat as F;
    (match format {
        "onnx" => F::Onnx,
        "gguf" => F::Gguf,
        "pt" | "pth" => F::Pytorch,
        "pb" => F::Tensorflow,
        "safetensors" => F::Safetensors,
        "tflite" => F::Tflite,
        "jit" | "torchscript" => F::Torchscript,
        "cyxmodel" => F::Cyxmodel,
        _ => F::Unknown,
    }) as i32
}

/// A `runtime_params` value as a load option: numbers, booleans and JSON objects or arrays
/// (e.g. `input_shapes = {"x": [-1, 3, 48, 192]}`) as such, anything else a string.
fn param_value(text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(
            v @ (serde_json::Value::Number(_)
            | serde_json::Value::Bool(_)
            | serde_json::Value::Object(_)
            | serde_json::Value::Array(_)),
        ) => v,
        _ => serde_json::Value::String(text.to_string()),
    }
}

/// The node's deployment entry for a protocol `DeploymentConfig`.
fn node_deployment(config: &DeploymentConfig) -> Result<NodeDeployment, Status> {
    let model = config
        .model
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("config.model is missing"))?;
    if model.local_path.is_empty() {
        return Err(Status::invalid_argument(if model.source_url.is_empty() {
            "config.model.local_path is empty".to_string()
        } else {
            "config.model.local_path is empty: this node deploys local files only, it does not download from source_url".to_string()
        }));
    }
    let path = PathBuf::from(&model.local_path);
    let name = [&config.deployment_id, &model.name, &model.model_id]
        .into_iter()
        .find(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("dep-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let mut options = serde_json::Map::new();
    let mut plugin = None;
    let mut device = None;
    for (key, value) in &config.runtime_params {
        if key == "plugin" {
            plugin = Some(value.clone());
        } else if key == "device" {
            device = Some(value.clone());
        } else {
            options.insert(key.clone(), param_value(value));
        }
    }
    if config.context_size > 0 {
        options.insert("context_length".into(), config.context_size.into());
    }
    let options: toml::Table = serde_json::from_value(serde_json::Value::Object(options))
        .map_err(|e| Status::invalid_argument(format!("config.runtime_params: {e}")))?;
    let threads = u32::try_from(config.threads.max(0)).unwrap_or(u32::MAX);
    let mut deployment = NodeDeployment {
        plugin,
        threads,
        options,
        ..NodeDeployment::new(name, path)
    };
    if let Some(device) = device {
        deployment.device = device;
    }
    if config.batch_size > 0 {
        deployment.max_batch = u32::try_from(config.batch_size).unwrap_or(u32::MAX);
    }
    Ok(deployment)
}

#[tonic::async_trait]
impl DeploymentService for DeploymentSvc {
    async fn create_deployment(
        &self,
        request: Request<CreateDeploymentRequest>,
    ) -> Result<Response<CreateDeploymentResponse>, Status> {
        let caller = self.0.authorize(&request, Scope::Deploy)?;
        let request = request.into_inner();
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("CreateDeploymentRequest.config is missing"))?;
        if !matches!(
            DeploymentType::try_from(config.r#type),
            Ok(DeploymentType::Unknown | DeploymentType::LocalNode | DeploymentType::Embedded)
        ) {
            return Err(Status::invalid_argument(
                "this node serves LOCAL_NODE deployments; NETWORK deployments are placed by the central server",
            ));
        }
        let entry = node_deployment(&config)?;
        let view = self.0.node.deploy(&caller, "grpc", entry).await?;
        Ok(Response::new(CreateDeploymentResponse {
            status: StatusCode::StatusSuccess as i32,
            deployment: Some(self.message(&view)),
            error: None,
        }))
    }

    async fn get_deployment(
        &self,
        request: Request<GetDeploymentRequest>,
    ) -> Result<Response<GetDeploymentResponse>, Status> {
        let caller = self.0.authorize(&request, Scope::Inference)?;
        let view = self
            .0
            .node
            .deployment(&caller, &request.into_inner().deployment_id)?;
        Ok(Response::new(GetDeploymentResponse {
            deployment: Some(self.message(&view)),
            error: None,
        }))
    }

    async fn list_deployments(
        &self,
        request: Request<ListDeploymentsRequest>,
    ) -> Result<Response<ListDeploymentsResponse>, Status> {
        let caller = self.0.authorize(&request, Scope::Inference)?;
        let r = request.into_inner();
        let type_ok = matches!(
            DeploymentType::try_from(r.type_filter),
            Ok(DeploymentType::Unknown | DeploymentType::LocalNode)
        );
        let offset: usize = if r.page_token.is_empty() {
            0
        } else {
            r.page_token
                .parse()
                .map_err(|_| Status::invalid_argument("page_token is not one this node issued"))?
        };
        let size = match usize::try_from(r.page_size) {
            Ok(0) | Err(_) => MAX_PAGE,
            Ok(n) => n.min(MAX_PAGE),
        };
        let matching: Vec<Deployment> = self
            .0
            .node
            .deployment_list(&caller)
            .iter()
            .filter(|_| type_ok)
            .map(|v| self.message(v))
            .filter(|d| {
                r.status_filter == DeploymentStatus::Unknown as i32 || d.status == r.status_filter
            })
            .collect();
        let total = matching.len();
        let page: Vec<Deployment> = matching.into_iter().skip(offset).take(size).collect();
        let next = offset + page.len();
        Ok(Response::new(ListDeploymentsResponse {
            deployments: page,
            next_page_token: if next < total {
                next.to_string()
            } else {
                String::new()
            },
            total_count: i32::try_from(total).unwrap_or(i32::MAX),
            error: None,
        }))
    }

    async fn stop_deployment(
        &self,
        request: Request<StopDeploymentRequest>,
    ) -> Result<Response<StopDeploymentResponse>, Status> {
        let caller = self.0.authorize(&request, Scope::Deploy)?;
        let id = request.into_inner().deployment_id;
        let view = self.0.node.undeploy(&caller, "grpc", &id)?;
        let mut message = self.message(&view);
        message.stopped_at = i64::try_from(now()).unwrap_or(0);
        Ok(Response::new(StopDeploymentResponse {
            status: StatusCode::StatusSuccess as i32,
            deployment: Some(message),
            error: None,
        }))
    }

    async fn delete_deployment(
        &self,
        request: Request<DeleteDeploymentRequest>,
    ) -> Result<Response<DeleteDeploymentResponse>, Status> {
        let caller = self.0.authorize(&request, Scope::Deploy)?;
        let id = request.into_inner().deployment_id;
        self.0.node.remove(&caller, "grpc", &id)?;
        Ok(Response::new(DeleteDeploymentResponse {
            status: StatusCode::StatusSuccess as i32,
            error: None,
        }))
    }

    async fn get_deployment_metrics(
        &self,
        request: Request<GetDeploymentMetricsRequest>,
    ) -> Result<Response<GetDeploymentMetricsResponse>, Status> {
        let caller = self.0.authorize(&request, Scope::Inference)?;
        let r = request.into_inner();
        let view = self.0.node.deployment(&caller, &r.deployment_id)?;
        let end = if r.end_time > 0 { r.end_time } else { i64::MAX };
        let start = r.start_time.max(i64::try_from(view.created).unwrap_or(0));
        // Node-wide CPU, GPU and memory over the deployment's life; the request figures are
        // the deployment's own totals, on the newest point only (they are not sampled).
        let mut points: Vec<DeploymentMetricPoint> = self
            .0
            .node
            .history(start, end, 10_000)?
            .into_iter()
            .map(|p| DeploymentMetricPoint {
                timestamp: p.ts,
                cpu_usage: p.cpu_percent,
                gpu_usage: p.gpu_percent.unwrap_or(0.0),
                memory_usage: p.memory_percent(),
                ..Default::default()
            })
            .collect();
        let now = i64::try_from(now()).unwrap_or(0);
        if end >= now {
            let mut last = points.last().cloned().unwrap_or_default();
            last.timestamp = now;
            last.request_count = i64::try_from(view.requests).unwrap_or(i64::MAX);
            last.avg_latency_ms = view.mean_latency_ms;
            last.throughput_rps = if view.uptime_seconds > 0.0 {
                view.requests as f64 / view.uptime_seconds
            } else {
                0.0
            };
            points.push(last);
        }
        Ok(Response::new(GetDeploymentMetricsResponse {
            metrics: points,
            error: None,
        }))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_formats() {
        assert_eq!(param_value("4"), serde_json::json!(4));
        assert_eq!(param_value("true"), serde_json::json!(true));
        assert_eq!(param_value("x"), serde_json::json!("x"));
        assert_eq!(param_value("[1]"), serde_json::json!([1]));
        assert_eq!(param_value("{\"x\": [-1]}"), serde_json::json!({"x": [-1]}));
        assert_eq!(param_value("{oops"), serde_json::json!("{oops"));
        assert_eq!(
            format_code("gguf"),
            cyxwiz_proto::protocol::ModelFormat::Gguf as i32
        );
    }
}
