//! `POST /v1/predict`: tensor inference for non-text models, JSON tensors in and out (the
//! route the CyxWiz Engine uses). Body: `{"model": NAME, "inputs": {NAME: {dtype, shape,
//! data}}}`.
//!
//! The body is parsed on a blocking thread, never on the async runtime's: one pass from the
//! bytes straight into compact numbers (`models::tensor_json`, bounded by `[api]
//! max_tensor_elements` and a nesting depth of 32), then into tensor bytes once the model's
//! specs are known; the answer is rendered to JSON bytes there too.

use super::error::{json_message, ApiBytes, RequestLimits};
use super::types::Prediction;
use super::{ApiError, Caller, Ctx};
use crate::models::tensor_json::{self, InputsReader, JsonInputs};
use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde::{
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor},
    Deserialize,
};
use serde_json::Value;
use std::{cell::Cell, fmt};
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

/// Reads `{"model", "inputs"}` with the inputs going through an [`InputsReader`]; remembers
/// which field it was in for error messages. Other fields are ignored.
struct Body<'r> {
    inputs: &'r InputsReader,
    field: &'r Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = (String, JsonInputs);

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = (String, JsonInputs);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with `model` and `inputs`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut model: Option<String> = None;
        let mut inputs: Option<JsonInputs> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "model" if model.is_some() => return Err(de::Error::duplicate_field("model")),
                "inputs" if inputs.is_some() => return Err(de::Error::duplicate_field("inputs")),
                "model" => {
                    self.field.set(Some("model"));
                    model = Some(map.next_value()?);
                }
                "inputs" => {
                    self.field.set(Some("inputs"));
                    inputs = Some(map.next_value_seed(self.inputs.seed())?);
                }
                _ => {
                    self.field.set(None);
                    map.next_value::<IgnoredAny>()?;
                }
            }
            self.field.set(None);
        }
        let model = model.ok_or_else(|| de::Error::missing_field("model"))?;
        let inputs = inputs.ok_or_else(|| de::Error::missing_field("inputs"))?;
        Ok((model, inputs))
    }
}

/// Parses a predict body. Blocking CPU work: call it off the async threads.
fn parse(body: &[u8], limits: &RequestLimits) -> Result<(String, JsonInputs), ApiError> {
    let inputs = InputsReader::new(limits.tensors);
    let field = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Body {
        inputs: &inputs,
        field: &field,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match (inputs.failure(), field.get()) {
        (Some(bound), _) => ApiError::invalid_param("inputs", bound.0),
        (None, Some(field)) => ApiError::invalid_param(field, json_message(&e)),
        (None, None) => ApiError::invalid(json_message(&e)),
    })
}

/// Permits for tensor JSON work: one per core, so a burst of large bodies queues here instead
/// of starting hundreds of blocking threads that starve the async runtime (and `/health`).
static JSON_WORK: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
});

/// Runs `f` on a blocking thread once a JSON-work permit is free.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = JSON_WORK
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("predict parsing queue closed: {e}")))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("predict parsing task failed: {e}")))?
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
    limits: RequestLimits,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    let (model, worker, inputs) = blocking(move || {
        let (model, inputs) = parse(&body, &limits)?;
        drop(body);
        let worker = ctx.model(&caller, &model)?;
        let inputs = inputs
            .into_tensors(worker.info())
            .map_err(|e| ApiError::invalid_param("inputs", e.0))?;
        Ok((model, worker, inputs))
    })
    .await?;
    let started = std::time::Instant::now();
    let outputs = worker.infer(inputs).await.map_err(|e| {
        let mut e = ApiError::from(e);
        if e.status == axum::http::StatusCode::BAD_REQUEST && e.param.is_none() {
            e.param = Some("inputs".into());
        }
        e
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let json = blocking(move || {
        let prediction = Prediction {
            object: "prediction",
            model,
            seconds,
            outputs: tensor_json::outputs_to_json(&outputs),
        };
        serde_json::to_vec(&prediction).map_err(ApiError::internal)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::error::tests::{app, send};
    use axum::http::StatusCode;

    fn nested(depth: usize) -> String {
        format!(
            r#"{{"model": "m", "inputs": {{"x": {}1{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }

    #[tokio::test]
    async fn deep_nesting_is_a_quick_400_and_the_node_stays_healthy() {
        let app = app(&[]);
        let started = std::time::Instant::now();
        // The attack: ~100 to 300 bytes of one-element lists nested 26 (15.7 s before), 60
        // (never finished) and 120 deep, all at once.
        let bodies = [26, 60, 120].map(nested);
        let requests = bodies
            .iter()
            .map(|body| send(&app, "POST", "/v1/predict", None, body));
        let [d26, d60, d120] = futures_util::future::join_all(requests)
            .await
            .try_into()
            .unwrap();
        // 26 deep parses (no such model here: 404); deeper is refused naming the bound.
        assert_eq!(d26.0, StatusCode::NOT_FOUND, "{}", d26.1);
        for (status, body) in [d60, d120] {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["error"]["param"], "inputs");
            assert_eq!(
                body["error"]["message"],
                "input `x`: lists nest deeper than 32 levels, the most a tensor may have"
            );
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let (status, _) = send(&app, "GET", "/health", None, "").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn too_many_numbers_are_refused_naming_max_tensor_elements() {
        let limits = RequestLimits {
            tensors: tensor_json::JsonLimits { max_elements: 1000 },
            ..RequestLimits::default()
        };
        let app = crate::openai::error::tests::app_with(&[], Some(limits));
        let data = vec!["0"; 1001].join(",");
        let body = format!(r#"{{"inputs": {{"x": [[{data}]]}}, "model": "m"}}"#);
        let (status, json) = send(&app, "POST", "/v1/predict", None, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(
            json["error"]["message"],
            "input `x` holds too many numbers: `max_tensor_elements` is 1000 per request"
        );
        let ok = format!(
            r#"{{"model": "m", "inputs": [[{}]]}}"#,
            vec!["0"; 1000].join(",")
        );
        let (status, _) = send(&app, "POST", "/v1/predict", None, &ok).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "within the bound: on to the model lookup"
        );
        let (status, _) = send(&app, "GET", "/health", None, "").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[test]
    fn bodies_are_parsed_with_clean_messages_and_params() {
        let limits = RequestLimits::default();
        let (model, _) =
            parse(br#"{"user": "u", "model": "m", "inputs": [1, 2]}"#, &limits).unwrap();
        assert_eq!(model, "m");
        let e = parse(br#"{"inputs": [1]}"#, &limits).unwrap_err();
        assert!(e.message.contains("missing field `model`"), "{}", e.message);
        let e = parse(br#"{"model": 5, "inputs": [1]}"#, &limits).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse(br#"{"model": "m", "inputs": [1, "a"]}"#, &limits).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("inputs"));
        assert_eq!(e.message, "`inputs`: data holds a string, expected numbers");
        let e = parse(br#"{"model": "m", "inputs": [1, 2"#, &limits).unwrap_err();
        assert!(
            e.message.starts_with("the request body is not valid JSON"),
            "{}",
            e.message
        );
        let e = parse(br#"{"model": "m", "inputs": [1]} x"#, &limits).unwrap_err();
        assert!(e.message.contains("trailing"), "{}", e.message);
    }
}
