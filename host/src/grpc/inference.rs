//! `InferenceService`: tensor inference on a deployment through the same model workers the
//! HTTP `/v1/predict` uses (and so the same queues, limits and batching).

use super::{convert, GrpcState};
use crate::{access::Scope, node::NodeError};
use cyxwiz_proto::protocol::{
    inference_service_server::InferenceService, GetModelInfoRequest, GetModelInfoResponse,
    InferRequest, InferResponse, StatusCode,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The node's `InferenceService`.
#[derive(Clone)]
pub struct InferenceSvc(pub Arc<GrpcState>);

#[tonic::async_trait]
impl InferenceService for InferenceSvc {
    async fn infer(
        &self,
        request: Request<InferRequest>,
    ) -> Result<Response<InferResponse>, Status> {
        let caller = self.0.authorize(&request, Scope::Inference)?;
        let r = request.into_inner();
        // The model first: an unknown or failed model is answered as such whatever the inputs.
        let worker = self.0.node.model(&caller, &r.deployment_id)?;
        let inputs = r
            .inputs
            .into_iter()
            .map(convert::tensor_in)
            .collect::<Result<Vec<_>, _>>()?;
        let started = std::time::Instant::now();
        if inputs.is_empty() {
            return Err(NodeError::invalid_param("inputs", "inputs is empty").into());
        }
        let outputs = worker.infer(inputs).await.map_err(NodeError::from)?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let outputs = outputs
            .into_iter()
            .map(convert::tensor_out)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(InferResponse {
            status: StatusCode::StatusSuccess as i32,
            outputs,
            latency_ms,
            error: None,
        }))
    }

    async fn get_model_info(
        &self,
        request: Request<GetModelInfoRequest>,
    ) -> Result<Response<GetModelInfoResponse>, Status> {
        let caller = self.0.authorize(&request, Scope::Inference)?;
        let worker = self
            .0
            .node
            .model(&caller, &request.into_inner().deployment_id)?;
        let info = worker.info();
        Ok(Response::new(GetModelInfoResponse {
            status: StatusCode::StatusSuccess as i32,
            input_specs: info.inputs.iter().map(convert::tensor_info).collect(),
            output_specs: info.outputs.iter().map(convert::tensor_info).collect(),
            error: None,
        }))
    }
}
