//! `POST /v1/predict`: tensor inference for non-text models, JSON tensors in and out (the
//! route the CyxWiz Engine uses). Body: `{"model": NAME, "inputs": {NAME: {dtype, shape,
//! data}}}`.

use super::types::Prediction;
use super::{ApiError, ApiJson, Caller, Ctx};
use crate::models::tensor_json;
use axum::{extract::State, Json};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PredictRequest {
    /// Model name or alias.
    pub model: String,
    /// Input tensors by name: `{dtype, shape, data}` or nested lists.
    #[schema(value_type = Object)]
    pub inputs: Value,
}

/// Tensor inference for non-text models.
#[utoipa::path(
    post,
    path = "/v1/predict",
    operation_id = "predict",
    tag = "cyxwiz",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Output tensors", body = Prediction),
        super::openapi::ModelCallErrors,
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(req): ApiJson<PredictRequest>,
) -> Result<Json<Prediction>, ApiError> {
    let worker = ctx.model(&caller, &req.model)?;
    let inputs = tensor_json::parse_inputs(&req.inputs, worker.info())
        .map_err(|e| ApiError::invalid_param("inputs", e.0))?;
    let started = std::time::Instant::now();
    let outputs = worker.infer(inputs).await.map_err(|e| {
        let mut e = ApiError::from(e);
        if e.status == axum::http::StatusCode::BAD_REQUEST && e.param.is_none() {
            e.param = Some("inputs".into());
        }
        e
    })?;
    Ok(Json(Prediction {
        object: "prediction",
        model: req.model,
        seconds: started.elapsed().as_secs_f64(),
        outputs: tensor_json::outputs_to_json(&outputs),
    }))
}
