//! `POST /v1/predict`: tensor inference for non-text models, JSON tensors in and out (the
//! route the CyxWiz Engine uses). Body: `{"model": NAME, "inputs": {NAME: {dtype, shape,
//! data}}}`.

use super::{ApiError, ApiJson, Caller, Ctx};
use crate::models::tensor_json;
use axum::{extract::State, Json};
use serde::Deserialize;
use serde_json::{json, Value};

/// The request body.
#[derive(Debug, Deserialize)]
pub struct PredictRequest {
    /// Model name or alias.
    pub model: String,
    /// Input tensors by name.
    pub inputs: Value,
}

/// The handler.
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    ApiJson(req): ApiJson<PredictRequest>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({
        "object": "prediction",
        "model": req.model,
        "seconds": started.elapsed().as_secs_f64(),
        "outputs": tensor_json::outputs_to_json(&outputs),
    })))
}
