//! `GET /v1/models` and `GET /v1/models/{id}`: every ready deployment, under its name and
//! each alias, filtered by what the caller's key may use (the same rule as
//! `Node::model`: the deployment's name or the id asked). A model the caller may not use
//! is answered exactly like one that does not exist.

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

/// Whether `caller` sees deployment `d` under `id` (its name or one of its aliases).
fn visible(caller: &Caller, d: &DeploymentView, id: &str) -> bool {
    matches!(d.status, Status::Ready | Status::Running)
        && (caller.may_use(&d.name) || caller.may_use(id))
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
        .flat_map(|d| {
            std::iter::once(&d.name)
                .chain(&d.aliases)
                .filter(|id| visible(&caller, d, id))
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
        .find(|d| d.name == id || d.aliases.contains(&id))
        .filter(|d| visible(&caller, d, &id))
        .map(|d| Json(entry(&id, d)))
        .ok_or_else(|| ApiError::unknown_model(&id))
}

#[cfg(test)]
mod tests {
    use crate::openai::error::tests::{app, send};
    use axum::http::StatusCode;
    use serde_json::json;

    fn not_found(name: &str) -> serde_json::Value {
        json!({"error": {
            "message": format!("The model `{name}` does not exist or is not deployed on this node"),
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }})
    }

    #[tokio::test]
    async fn a_restricted_key_cannot_tell_other_models_from_unknown_ones() {
        let app = app(&["a", "loading-b", "failed-c"]);
        let key = app.restricted_key.clone();
        let calls = |model: &str| {
            [
                ("/v1/embeddings", json!({"model": model, "input": "hi"})),
                ("/v1/predict", json!({"model": model, "inputs": [1.0]})),
                (
                    "/v1/chat/completions",
                    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
                ),
                ("/v1/completions", json!({"model": model, "prompt": "hi"})),
            ]
        };
        // The probe: models that exist (loading, failed) and one that does not, through every
        // endpoint: all the same 404, the same message shape.
        for model in ["loading-b", "failed-c", "no-such-model"] {
            for (path, body) in calls(model) {
                let (status, json) = send(&app, "POST", path, Some(&key), &body.to_string()).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{path} {model}: {json}");
                assert_eq!(json, not_found(model), "{path} {model}");
            }
            let (status, json) =
                send(&app, "GET", &format!("/v1/models/{model}"), Some(&key), "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{model}: {json}");
            assert_eq!(json["error"]["code"], "model_not_found");
        }
        // Without the restriction, the same models answer what they are.
        for (path, body) in calls("loading-b") {
            let (status, json) = send(&app, "POST", path, None, &body.to_string()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {json}");
        }
        let (status, _) = send(
            &app,
            "POST",
            "/v1/embeddings",
            None,
            &calls("failed-c")[0].1.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // The key's own model is still its own: loading, 503.
        let (status, json) = send(
            &app,
            "POST",
            "/v1/embeddings",
            Some(&key),
            &calls("a")[0].1.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        let (status, json) = send(&app, "GET", "/v1/models", Some(&key), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["data"], json!([]), "nothing is ready");
        let (status, _) = send(&app, "GET", "/health", None, "").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "`a` and `loading-b` still load"
        );
    }
}
