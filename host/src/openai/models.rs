//! `GET /v1/models` and `GET /v1/models/{id}`: every ready deployment, under its name and
//! each alias, filtered by what the caller's key may use.

use super::types::{ErrorBody, Model, ModelList};
use super::{ApiError, Caller, Ctx};
use crate::deployments::{DeploymentView, Status};
use axum::{
    extract::{Path, State},
    Json,
};

fn entry(id: &str, d: &DeploymentView) -> Model {
    Model {
        id: id.to_string(),
        object: "model",
        created: d.created,
        owned_by: "cyxwiz-node",
        kind: format!("{:?}", d.kind).to_lowercase(),
        plugin: d.plugin.clone(),
    }
}

fn visible(caller: &Caller) -> impl Fn(&&DeploymentView) -> bool + '_ {
    move |d| matches!(d.status, Status::Ready | Status::Running) && caller.may_use(&d.name)
}

/// The models the caller may use.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "listModels",
    tag = "openai",
    responses(
        (status = 200, description = "Ready models, one entry per name and alias", body = ModelList),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(ctx): State<Ctx>, caller: Caller) -> Json<ModelList> {
    let all = ctx.deployments.snapshot();
    let data: Vec<Model> = all
        .iter()
        .filter(visible(&caller))
        .flat_map(|d| {
            std::iter::once(&d.name)
                .chain(&d.aliases)
                .map(move |id| entry(id, d))
        })
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
}

/// One model.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    operation_id = "retrieveModel",
    tag = "openai",
    params(("id" = String, Path, description = "Model name or alias")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    let all = ctx.deployments.snapshot();
    all.iter()
        .filter(visible(&caller))
        .find(|d| d.name == id || d.aliases.contains(&id))
        .map(|d| Json(entry(&id, d)))
        .ok_or_else(|| ApiError::unknown_model(&id))
}
