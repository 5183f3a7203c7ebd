//! `GET /openapi.json`: an OpenAPI 3.1 document of the `/v1` API (models and training jobs),
//! generated from the request and response types and the handlers' annotations.

use super::{chat, completions, embeddings, jobs, models, predict, types};
use axum::Json;
use std::collections::BTreeMap;
use utoipa::{
    openapi::{
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, Ref, RefOr, Response, ResponseBuilder,
    },
    IntoResponses, Modify, OpenApi,
};

/// The error answers every call on a model can give, each an [`types::ErrorBody`].
pub struct ModelCallErrors;

impl IntoResponses for ModelCallErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            (400, "Invalid request"),
            (401, "Missing or bad API key"),
            (403, "Key without the `inference` scope"),
            (404, "Unknown model"),
            (413, "Body too large"),
            (429, "Rate limited or overloaded"),
            (503, "Model loading or stopped"),
        ]
        .into_iter()
        .map(|(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content)
                .build();
            (status.to_string(), response.into())
        })
        .collect()
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `cyxwiz-node keys create`; required when the API \
                         listens beyond loopback or `[api] require_auth = true`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cyxwiz-node",
        description = "The OpenAI-compatible API of a CyxWiz server node, plus tensor prediction and training jobs."
    ),
    paths(
        models::list,
        models::get,
        chat::create,
        completions::create,
        embeddings::create,
        predict::create,
        jobs::create,
        jobs::list,
        jobs::show,
        jobs::cancel,
        jobs::pause,
        jobs::resume,
        jobs::events,
        jobs::weights
    ),
    components(schemas(
        types::ErrorBody,
        types::ChatCompletionChunk,
        jobs::JobViewDoc,
        jobs::JobUpdateDoc
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "openai", description = "OpenAI-compatible endpoints"),
        (name = "cyxwiz", description = "CyxWiz extensions")
    )
)]
pub struct ApiDoc;

/// The handler.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Json(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_with_its_schemas() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for path in [
            "/v1/models",
            "/v1/models/{id}",
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/predict",
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/cancel",
            "/v1/jobs/{id}/pause",
            "/v1/jobs/{id}/resume",
            "/v1/jobs/{id}/events",
            "/v1/jobs/{id}/weights",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let schemas = &doc["components"]["schemas"];
        for name in [
            "ChatRequest",
            "ChatCompletion",
            "EmbeddingRequest",
            "ErrorBody",
            "JobSubmission",
            "JobView",
            "JobUpdate",
        ] {
            assert!(schemas[name].is_object(), "{name} missing");
        }
        let chat = schemas["ChatRequest"].to_string();
        assert!(
            chat.contains("\"required\":[\"model\",\"messages\"]")
                && chat.contains("SamplingFields"),
            "{chat}"
        );
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "operation ids are unique: {ids:?}");
    }
}
