//! `/v1/jobs`: training jobs over HTTP (keys with the `jobs` or `admin` scope): submit, list,
//! show, cancel, pause, resume, the live events (SSE) and the weights (with `Range`). Each
//! handler is an adapter over [`crate::jobs::Jobs`]; its blocking calls run off the async
//! threads, and its errors map like every node error ([`super::error`]).

use super::{download, ApiError, Ctx};
use crate::jobs::{graph::MAX_DEFINITION_BYTES, JobError, JobRequest, JobState, JobView, Jobs};
use crate::node::NodeError;
use axum::{
    extract::{rejection::QueryRejection, DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Extension, Json, Router,
};
use serde::Deserialize;
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

/// Jobs `GET /v1/jobs` lists unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;
/// The most it lists.
pub const MAX_LIMIT: u32 = 10_000;

/// The largest `POST /v1/jobs` body: the graph (escaped as a string it may double), the
/// inline dataset in base64 and room for the other fields.
pub fn max_submit_bytes(max_inline_dataset_bytes: usize) -> usize {
    (2 * MAX_DEFINITION_BYTES)
        .saturating_add(max_inline_dataset_bytes.div_ceil(3).saturating_mul(4))
        .saturating_add(64 << 10)
}

/// The `/v1/jobs` routes; `max_inline` is `[jobs] max_inline_dataset_bytes`.
pub fn routes(max_inline: usize) -> Router<Ctx> {
    let limit = max_submit_bytes(max_inline);
    Router::new()
        .route(
            "/v1/jobs",
            post(create)
                .layer::<_, Infallible>(DefaultBodyLimit::max(limit))
                .layer::<_, Infallible>(Extension(super::error::BodyLimit(limit)))
                .get(list),
        )
        .route("/v1/jobs/{id}", get(show))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/pause", post(pause))
        .route("/v1/jobs/{id}/resume", post(resume))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/weights", get(weights))
}

/// A job to train.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSubmission {
    /// The model: an Engine node graph or the plain form, as a JSON object or as JSON text
    /// (at most 1 MiB).
    #[schema(value_type = Object)]
    pub graph: serde_json::Value,
    /// `builtin://fashion-mnist`, `builtin://digits` or `file:///…` inside `[jobs]
    /// dataset_dirs`; omit with `dataset_base64`.
    #[serde(default)]
    pub dataset: Option<String>,
    /// The dataset's bytes (CSV or IDX, optionally gzipped), base64-encoded, at most `[jobs]
    /// max_inline_dataset_bytes` decoded.
    #[serde(default)]
    pub dataset_base64: Option<String>,
    /// A CSV's label column (default `label`, else `target`).
    #[serde(default)]
    pub label_column: Option<String>,
    /// Epochs (default 1).
    #[serde(default)]
    pub epochs: Option<u32>,
    /// Batch size (default 32).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Learning rate (default: the graph's optimizer's, else 0.001).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Share held out for validation (default 0.1).
    #[serde(default)]
    pub validation_split: Option<f64>,
    /// Seed for initialisation, shuffling and dropout (default: random, recorded).
    #[serde(default)]
    pub seed: Option<u64>,
    /// `cpu` (default), `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: Option<String>,
    /// The training plugin (default `[jobs] default_backend`).
    #[serde(default)]
    pub backend: Option<String>,
}

impl JobSubmission {
    /// The executor's request: the graph as text, the inline dataset decoded.
    fn into_request(self, max_inline: usize) -> Result<JobRequest, ApiError> {
        let graph = match self.graph {
            serde_json::Value::String(text) => text,
            serde_json::Value::Object(_) => self.graph.to_string(),
            _ => {
                return Err(ApiError::invalid_param(
                    "graph",
                    "graph must be a JSON object or a string holding one",
                ))
            }
        };
        if graph.len() > MAX_DEFINITION_BYTES {
            return Err(ApiError::invalid_param(
                "graph",
                format!(
                    "graph must be at most {MAX_DEFINITION_BYTES} bytes, got {}",
                    graph.len()
                ),
            ));
        }
        let inline = match &self.dataset_base64 {
            None => None,
            Some(_) if self.dataset.is_some() => {
                return Err(ApiError::invalid_param(
                    "dataset_base64",
                    "give either dataset or dataset_base64, not both",
                ))
            }
            Some(text) => {
                use base64::Engine as _;
                if text.len() / 4 * 3 > max_inline + 3 {
                    return Err(too_big_inline(text.len() / 4 * 3, max_inline));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| {
                        ApiError::invalid_param(
                            "dataset_base64",
                            format!("dataset_base64 is not base64: {e}"),
                        )
                    })?;
                if bytes.len() > max_inline {
                    return Err(too_big_inline(bytes.len(), max_inline));
                }
                Some(bytes)
            }
        };
        Ok(JobRequest {
            graph,
            dataset: self.dataset,
            inline_dataset: inline,
            label_column: self.label_column,
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            validation_split: self.validation_split,
            seed: self.seed,
            device: self.device,
            backend: self.backend,
        })
    }
}

fn too_big_inline(got: usize, max: usize) -> ApiError {
    ApiError::invalid_param(
        "dataset_base64",
        format!(
            "the inline dataset must be at most {max} bytes ([jobs] max_inline_dataset_bytes), got {got}"
        ),
    )
}

/// A blocking executor call off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("job task failed: {e}")))?
        .map_err(|e| NodeError::from(e).into())
}

fn jobs(ctx: &Ctx) -> Arc<Jobs> {
    ctx.jobs.clone()
}

/// Parses a body the way [`super::ApiJson`] does (400 naming the field), off the async
/// threads: a body may carry a large inline dataset.
fn parse(bytes: &[u8]) -> Result<JobSubmission, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = super::error::json_message(&e.into_inner());
        if path.is_empty() || path == "." {
            ApiError::invalid(message)
        } else {
            ApiError::invalid_param(path, message)
        }
    })
}

/// Submit a training job.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "createJob",
    tag = "cyxwiz",
    request_body = JobSubmission,
    responses(
        (status = 201, description = "The job, queued", body = JobViewDoc),
        (status = 400, description = "A bad field, graph or dataset (the message names it), or no such training backend", body = super::types::ErrorBody),
        (status = 401, description = "Missing or bad API key", body = super::types::ErrorBody),
        (status = 403, description = "Key without the `jobs` scope", body = super::types::ErrorBody),
        (status = 413, description = "Body too large", body = super::types::ErrorBody),
        (status = 429, description = "The job queue is full", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(ctx): State<Ctx>,
    super::error::ApiBytes(body): super::error::ApiBytes,
) -> Result<Response, ApiError> {
    let max_inline = ctx.config.jobs.max_inline_dataset_bytes;
    let request = tokio::task::spawn_blocking(move || parse(&body)?.into_request(max_inline))
        .await
        .map_err(|e| ApiError::internal(format!("job task failed: {e}")))??;
    let jobs = jobs(&ctx);
    let view = blocking(move || jobs.submit(request, None, &crate::jobs::Origin::local())).await?;
    ctx.audit("job_submitted", &view.id, "HTTP API");
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/jobs` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Most jobs returned (default 100, at most 10000).
    pub limit: Option<u32>,
}

/// List jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "listJobs",
    tag = "cyxwiz",
    params(ListQuery),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<JobViewDoc>),
        (status = 400, description = "Bad state or limit", body = super::types::ErrorBody),
        (status = 401, description = "Missing or bad API key", body = super::types::ErrorBody),
        (status = 403, description = "Key without the `jobs` scope", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(ctx): State<Ctx>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(JobState::parse(text).ok_or_else(|| {
            let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid_param(
                "state",
                format!(
                    "state must be one of {}; got `{}`",
                    names.join(", "),
                    text.chars().take(64).collect::<String>().escape_debug()
                ),
            )
        })?),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let jobs = jobs(&ctx);
    Ok(Json(blocking(move || jobs.list(state, limit)).await?))
}

/// One job.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "retrieveJob",
    tag = "cyxwiz",
    params(("id" = String, Path, description = "Job id (a UUID)")),
    responses(
        (status = 200, description = "The job", body = JobViewDoc),
        (status = 400, description = "The id is not a UUID", body = super::types::ErrorBody),
        (status = 401, description = "Missing or bad API key", body = super::types::ErrorBody),
        (status = 404, description = "No such job", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let jobs = jobs(&ctx);
    Ok(Json(blocking(move || jobs.get(&id)).await?))
}

/// Cancel a job: a running one stops within 2 s; partial weights are kept.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    operation_id = "cancelJob",
    tag = "cyxwiz",
    params(("id" = String, Path, description = "Job id (a UUID)")),
    responses(
        (status = 200, description = "The job after the cancel", body = JobViewDoc),
        (status = 400, description = "The id is not a UUID, or the job has ended already", body = super::types::ErrorBody),
        (status = 404, description = "No such job", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let jobs = jobs(&ctx);
    let view = blocking(move || jobs.cancel(&id)).await?;
    ctx.audit("job_cancelled", &view.id, "HTTP API");
    Ok(Json(view))
}

/// Pause a running job at its next step (it checkpoints first).
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/pause",
    operation_id = "pauseJob",
    tag = "cyxwiz",
    params(("id" = String, Path, description = "Job id (a UUID)")),
    responses(
        (status = 200, description = "The job", body = JobViewDoc),
        (status = 400, description = "The id is not a UUID, or the job is not running", body = super::types::ErrorBody),
        (status = 404, description = "No such job", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn pause(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let jobs = jobs(&ctx);
    Ok(Json(blocking(move || jobs.pause(&id)).await?))
}

/// Resume a paused job.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/resume",
    operation_id = "resumeJob",
    tag = "cyxwiz",
    params(("id" = String, Path, description = "Job id (a UUID)")),
    responses(
        (status = 200, description = "The job", body = JobViewDoc),
        (status = 400, description = "The id is not a UUID, or the job is not paused", body = super::types::ErrorBody),
        (status = 404, description = "No such job", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn resume(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let jobs = jobs(&ctx);
    Ok(Json(blocking(move || jobs.resume(&id)).await?))
}

fn event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

/// The job's live events (server-sent events): first `job` with the job as it is now, then
/// its `state`, `progress` and `checkpoint` updates (a `job` again after a reader fell behind
/// and missed some); the stream ends after the event that ends the job (at once for a job
/// that has ended).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    operation_id = "streamJobEvents",
    tag = "cyxwiz",
    params(("id" = String, Path, description = "Job id (a UUID)")),
    responses(
        (status = 200, description = "`event: job` (a JobView), then `event: state|progress|checkpoint` (a JobUpdate) until the job ends; `:` comments every 15 s", content_type = "text/event-stream", body = JobUpdateDoc),
        (status = 400, description = "The id is not a UUID", body = super::types::ErrorBody),
        (status = 404, description = "No such job", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let jobs = jobs(&ctx);
    // Subscribed before the job is read: nothing after that read is missed.
    let updates = jobs.subscribe();
    let view = {
        let jobs = jobs.clone();
        blocking(move || jobs.get(&id)).await?
    };
    let id = view.id.clone();
    let first = event("job", &view);
    let ended = view.state.is_terminal();
    let rest = futures_util::stream::unfold((updates, ended), move |(mut updates, ended)| {
        let id = id.clone();
        let jobs = jobs.clone();
        async move {
            if ended {
                return None;
            }
            loop {
                match updates.recv().await {
                    Ok(u) if u.job_id == id => {
                        let end = u.is_end();
                        return Some((event(u.kind, &u), (updates, end)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        // Updates were missed (a slow reader): the job as it is now instead,
                        // so an end is never missed.
                        let now = tokio::task::spawn_blocking(move || jobs.get(&id))
                            .await
                            .ok()
                            .and_then(Result::ok)?;
                        let end = now.state.is_terminal();
                        return Some((event("job", &now), (updates, end)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let stream = futures_util::StreamExt::map(
        futures_util::StreamExt::chain(futures_util::stream::once(async { first }), rest),
        Ok::<_, Infallible>,
    );
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    Ok(response)
}

/// The job's `weights.safetensors` (final, or the last checkpoint's for a cancelled job).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/weights",
    operation_id = "downloadJobWeights",
    tag = "cyxwiz",
    params(
        ("id" = String, Path, description = "Job id (a UUID)"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
    ),
    responses(
        (status = 200, description = "The file; `ETag` is its sha256 in quotes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for, with `Content-Range`", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "`If-None-Match` names the current weights"),
        (status = 400, description = "The id is not a UUID", body = super::types::ErrorBody),
        (status = 404, description = "No such job, or no weights yet", body = super::types::ErrorBody),
        (status = 416, description = "The range lies outside the file", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn weights(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let jobs = jobs(&ctx);
    let (id, (path, sha256, size)) =
        blocking(move || Ok((crate::jobs::parse_id(&id)?, jobs.weights(&id)?))).await?;
    download::serve_file(&headers, path, size, &sha256, &format!("{id}.safetensors")).await
}

/// A job as every `/v1/jobs` answer carries it (the JSON of `jobs show --json`).
#[allow(dead_code)] // a schema for the OpenAPI document only
#[derive(ToSchema)]
#[schema(as = JobView)]
pub struct JobViewDoc {
    /// The job id (a UUID).
    id: String,
    /// `queued`, `preparing`, `running`, `paused`, `succeeded`, `failed` or `cancelled`.
    state: String,
    /// `local` or `network`.
    origin: String,
    /// The training plugin.
    backend: String,
    /// The dataset URI, or `inline`.
    dataset: String,
    /// `cpu` or `cuda:N`.
    device: String,
    /// Runs so far (more than 1 after resumes).
    attempt: u32,
    /// Epochs completed.
    epoch: u32,
    /// Epochs in all.
    total_epochs: u32,
    /// Batches done in the current epoch.
    step: u64,
    /// Batches per epoch (0 until known).
    total_steps: u64,
    /// Done share, 0 to 1.
    progress: f64,
    /// Training samples processed.
    samples: u64,
    /// Samples per second while running.
    samples_per_second: Option<f64>,
    /// Seconds left while running.
    eta_seconds: Option<f64>,
    /// The latest metrics (`loss`, `accuracy`, `val_loss`, `val_accuracy`).
    metrics: std::collections::BTreeMap<String, f64>,
    /// Epochs completed at the latest checkpoint.
    checkpoint_epoch: Option<u32>,
    /// sha256 of `weights.safetensors` (the job's result hash).
    weights_sha256: Option<String>,
    /// Its size in bytes.
    weights_bytes: Option<u64>,
    /// Why it failed or how it was cancelled.
    error: Option<String>,
    /// Seconds spent training.
    run_seconds: f64,
    /// Submitted at (RFC 3339).
    created_at: String,
    /// First started at.
    started_at: Option<String>,
    /// Ended at.
    finished_at: Option<String>,
    /// Epochs, batch size, learning rate, seed, validation split, label column.
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// The job's directory on the node (weights, logs, checkpoints).
    dir: String,
}

/// One update of a job's event stream.
#[allow(dead_code)] // a schema for the OpenAPI document only
#[derive(ToSchema)]
#[schema(as = JobUpdate)]
pub struct JobUpdateDoc {
    /// The job.
    job_id: String,
    /// `state`, `progress` or `checkpoint`.
    kind: String,
    /// The new state (state events).
    state: Option<String>,
    /// Epochs completed.
    epoch: Option<u32>,
    /// Batches done in the epoch.
    step: Option<u64>,
    /// Batches per epoch.
    total_steps: Option<u64>,
    /// Samples processed.
    samples: Option<u64>,
    /// Metrics now.
    #[schema(value_type = Option<Object>)]
    metrics: Option<serde_json::Value>,
    /// Samples per second.
    samples_per_second: Option<f64>,
    /// Seconds left.
    eta_seconds: Option<f64>,
    /// Free text.
    detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::error::tests::{app, send};

    #[test]
    fn the_documented_job_has_every_field_the_api_sends() {
        let doc = serde_json::to_value(<JobViewDoc as utoipa::PartialSchema>::schema()).unwrap();
        let documented: std::collections::BTreeSet<String> = doc["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let view = JobView::from_row(
            crate::store::jobs::JobRow {
                id: "i".into(),
                origin: "local".into(),
                state: "queued".into(),
                config: "{}".into(),
                backend: "b".into(),
                dir: "d".into(),
                attempt: 0,
                epoch: 0,
                total_epochs: 1,
                step: 0,
                total_steps: 0,
                samples: 0,
                metrics: "{}".into(),
                checkpoint: None,
                checkpoint_epoch: None,
                checkpoint_step: None,
                weights_sha256: None,
                weights_bytes: None,
                error: None,
                run_seconds: 0.0,
                created_at: "t".into(),
                started_at: None,
                finished_at: None,
                updated_at: "t".into(),
                reservation: None,
                peer: None,
            },
            None,
        );
        let sent: std::collections::BTreeSet<String> = serde_json::to_value(&view)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(documented, sent);
    }

    #[test]
    fn graphs_come_as_objects_or_text_and_inline_data_as_base64() {
        let body = br#"{"graph": {"layers": []}, "dataset_base64": "YSxsYWJlbAox", "epochs": 2}"#;
        let request = parse(body).unwrap().into_request(100).unwrap();
        assert_eq!(request.graph, r#"{"layers":[]}"#);
        assert_eq!(request.inline_dataset.as_deref(), Some(&b"a,label\n1"[..]));
        assert_eq!(request.epochs, Some(2));
        let text = parse(br#"{"graph": "{\"layers\": []}", "dataset": "builtin://digits"}"#)
            .unwrap()
            .into_request(100)
            .unwrap();
        assert_eq!(text.graph, r#"{"layers": []}"#);
        let big = parse(br#"{"graph": {}, "dataset_base64": "YSxsYWJlbAox"}"#)
            .unwrap()
            .into_request(4)
            .unwrap_err();
        assert_eq!(big.param.as_deref(), Some("dataset_base64"));
        let both = parse(br#"{"graph": {}, "dataset": "x", "dataset_base64": "YQ=="}"#)
            .unwrap()
            .into_request(4)
            .unwrap_err();
        assert!(both.message.contains("not both"), "{}", both.message);
        let number = parse(br#"{"graph": 5}"#)
            .unwrap()
            .into_request(4)
            .unwrap_err();
        assert_eq!(number.param.as_deref(), Some("graph"));
    }

    #[tokio::test]
    async fn bad_bodies_ids_and_filters_are_400s_naming_the_problem() {
        let app = app(&[]);
        let (status, json) = send(&app, "POST", "/v1/jobs", None, "{\"graph\": ").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not valid JSON"),
            "{json}"
        );
        let (status, json) = send(
            &app,
            "POST",
            "/v1/jobs",
            None,
            r#"{"graph": {}, "epochz": 1}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("epochz"),
            "{json}"
        );
        let (status, json) = send(
            &app,
            "POST",
            "/v1/jobs",
            None,
            r#"{"graph": {}, "epochs": "x"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["param"], "epochs", "{json}");
        let (status, json) = send(&app, "GET", "/v1/jobs/123", None, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        let unknown = "/v1/jobs/3f2b1a4e-0000-4000-8000-000000000000";
        for path in [
            unknown.to_string(),
            format!("{unknown}/weights"),
            format!("{unknown}/events"),
        ] {
            let (status, json) = send(&app, "GET", &path, None, "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {json}");
        }
        let (status, _) = send(&app, "POST", &format!("{unknown}/cancel"), None, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, json) = send(&app, "GET", "/v1/jobs?state=done", None, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["param"], "state");
        let (status, _) = send(&app, "GET", "/v1/jobs?limit=x", None, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, json) = send(&app, "GET", "/v1/jobs?state=queued", None, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json, serde_json::json!([]));
    }
}
