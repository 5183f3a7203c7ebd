//! `GET /v1/models` and `GET /v1/models/{id}`: every ready deployment, under its name and
//! each alias, filtered by what the caller's key may use.

use super::{ApiError, Caller, Ctx};
use crate::deployments::{DeploymentView, Status};
use axum::{
    extract::{Path, State},
    Json,
};
use serde_json::{json, Value};

fn entry(id: &str, d: &DeploymentView) -> Value {
    json!({
        "id": id,
        "object": "model",
        "created": d.created,
        "owned_by": "cyxwiz-node",
        "kind": d.kind,
        "plugin": d.plugin,
    })
}

fn visible(caller: &Caller) -> impl Fn(&&DeploymentView) -> bool + '_ {
    move |d| d.status == Status::Ready && caller.may_use(&d.name)
}

/// `GET /v1/models`.
pub async fn list(State(ctx): State<Ctx>, caller: Caller) -> Json<Value> {
    let all = ctx.deployments.snapshot();
    let data: Vec<Value> = all
        .iter()
        .filter(visible(&caller))
        .flat_map(|d| {
            std::iter::once(&d.name)
                .chain(&d.aliases)
                .map(move |id| entry(id, d))
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`.
pub async fn get(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let all = ctx.deployments.snapshot();
    all.iter()
        .filter(visible(&caller))
        .find(|d| d.name == id || d.aliases.contains(&id))
        .map(|d| Json(entry(&id, d)))
        .ok_or_else(|| ApiError::unknown_model(&id))
}
