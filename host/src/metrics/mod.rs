//! Prometheus metrics of the node, kept and written by the `prometheus-client` crate in the
//! Prometheus text format (version 0.0.4), all named `cyxwiz_node_*` in base units: HTTP
//! requests by route and status, request latency, tokens generated, time to first token, and
//! (read at scrape time) queue depth, loaded models, model memory and the process's resident
//! memory; plus the latest system sample (CPU, memory, network, GPUs) that [`sampler`]
//! publishes with [`Metrics::set_system`], and training jobs (jobs by state, training samples
//! per second, the durations of ended jobs by final state) that the `/metrics` handler
//! publishes with [`Metrics::set_jobs`]. The sampler's SQLite history is [`history`].

pub mod history;
mod readings;
pub mod sampler;

use crate::deployments::{DeploymentView, Status};
use prometheus_client::{
    encoding::{prometheus_text, EncodeLabelSet, EncodeMetric, MetricEncoder},
    metrics::{counter::Counter, family::Family, histogram::Histogram, MetricType, TypedMetric},
    registry::Registry,
};
use readings::{register_system, Readings};
use sampler::Sample;
use std::{sync::Mutex, time::Duration};

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Labels of `cyxwiz_node_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

/// Labels of `cyxwiz_node_http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

/// Upper bounds of the job duration buckets, in seconds (a second to a day).
const JOB_BUCKETS: [f64; 13] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// Labels of `cyxwiz_node_job_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinalState {
    state: String,
}

/// Training jobs as `/metrics` shows them (read from the executor by the caller, so this
/// module needs nothing of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobReadings {
    /// Jobs per state name (every state, zeros included).
    pub by_state: Vec<(String, u64)>,
    /// Training samples per second over the running jobs.
    pub samples_per_second: f64,
    /// Jobs that ended since the last reading: final state and seconds spent training.
    pub finished: Vec<(String, f64)>,
    /// Jobs per origin (`local`, `central`, `p2p`).
    pub by_origin: Vec<(String, u64)>,
    /// Reports to the central server per status (`pending`, `acked`, `failed`).
    pub outbox: Vec<(String, u64)>,
    /// Failed report sends retried since the node started.
    pub report_retries: u64,
}

/// Labels of the per-model families.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Model {
    model: String,
}

/// A family of histograms with [`LATENCY_BUCKETS`].
type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The node's metrics: the counters and histograms live in a registry; the gauges are read
/// when [`render`](Self::render) is called.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    latency: Latencies<Route>,
    tokens: Family<Model, Counter>,
    prompt_tokens: Family<Model, Counter>,
    cached_tokens: Family<Model, Counter>,
    cache_hits: Family<Model, Counter>,
    ttft: Latencies<Model>,
    job_durations: Family<FinalState, Histogram, fn() -> Histogram>,
    system: Mutex<Option<Sample>>,
    jobs: Mutex<Option<JobReadings>>,
    report_retries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RouteStatus, Counter>::default();
        let latency = Latencies::<Route>::new_with_constructor(latency_histogram);
        let tokens = Family::<Model, Counter>::default();
        let prompt_tokens = Family::<Model, Counter>::default();
        let cached_tokens = Family::<Model, Counter>::default();
        let cache_hits = Family::<Model, Counter>::default();
        let ttft = Latencies::<Model>::new_with_constructor(latency_histogram);
        let job_durations: Family<FinalState, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(JOB_BUCKETS));
        let mut registry = Registry::default();
        // The registry appends the `_total` of counters and the final full stop of help texts.
        registry.register(
            "cyxwiz_node_http_requests",
            "HTTP requests answered, by route and status code",
            requests.clone(),
        );
        registry.register(
            "cyxwiz_node_http_request_duration_seconds",
            "Time to answer an HTTP request (to the first byte for streams)",
            latency.clone(),
        );
        registry.register(
            "cyxwiz_node_generated_tokens",
            "Tokens generated, by model",
            tokens.clone(),
        );
        registry.register(
            "cyxwiz_node_prompt_tokens",
            "Prompt tokens of finished generations, by model",
            prompt_tokens.clone(),
        );
        registry.register(
            "cyxwiz_node_prompt_cached_tokens",
            "Prompt tokens the runtime reused from an earlier request instead of computing them, by model",
            cached_tokens.clone(),
        );
        registry.register(
            "cyxwiz_node_prompt_cache_hits",
            "Finished generations that reused a cached prompt prefix, by model",
            cache_hits.clone(),
        );
        registry.register(
            "cyxwiz_node_time_to_first_token_seconds",
            "Time from a generation request to its first token, by model",
            ttft.clone(),
        );
        registry.register(
            "cyxwiz_node_job_duration_seconds",
            "Time ended training jobs spent training, by final state",
            job_durations.clone(),
        );
        let report_retries = Counter::default();
        registry.register(
            "cyxwiz_node_report_retries",
            "Failed sends of job reports to the central server, retried later",
            report_retries.clone(),
        );
        Self {
            report_retries,
            registry,
            requests,
            latency,
            tokens,
            prompt_tokens,
            cached_tokens,
            cache_hits,
            ttft,
            job_durations,
            system: Mutex::default(),
            jobs: Mutex::default(),
        }
    }
}

/// Resident memory of this process in bytes, from `/proc/self/status`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Metrics {
    /// Counts an HTTP request on `route` (the matched route pattern) with its latency.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts tokens generated by `model`.
    pub fn tokens_generated(&self, model: &str, tokens: u64) {
        self.tokens
            .get_or_create(&Model {
                model: model.to_string(),
            })
            .inc_by(tokens);
    }

    /// Counts a finished generation's prompt: its tokens, and how many of them the runtime
    /// reused from an earlier request (a hit when any).
    pub fn prompt_processed(&self, model: &str, prompt_tokens: u32, cached_tokens: u32) {
        let label = Model {
            model: model.to_string(),
        };
        self.prompt_tokens
            .get_or_create(&label)
            .inc_by(u64::from(prompt_tokens));
        if cached_tokens > 0 {
            self.cached_tokens
                .get_or_create(&label)
                .inc_by(u64::from(cached_tokens));
            self.cache_hits.get_or_create(&label).inc();
        }
    }

    /// Records the time from request to first token.
    pub fn time_to_first_token(&self, model: &str, elapsed: Duration) {
        self.ttft
            .get_or_create(&Model {
                model: model.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Publishes the latest system sample; [`render`](Self::render) shows it as gauges.
    pub fn set_system(&self, sample: Sample) {
        *self.system.lock().unwrap_or_else(|p| p.into_inner()) = Some(sample);
    }

    /// Publishes the training jobs' figures: the ended jobs' durations go into the histogram,
    /// the counts and rate are shown as gauges by [`render`](Self::render).
    pub fn set_jobs(&self, mut readings: JobReadings) {
        for (state, seconds) in readings.finished.drain(..) {
            if seconds.is_finite() && seconds >= 0.0 {
                self.job_durations
                    .get_or_create(&FinalState { state })
                    .observe(seconds);
            }
        }
        let seen = self.report_retries.get();
        if readings.report_retries > seen {
            self.report_retries.inc_by(readings.report_retries - seen);
        }
        // An empty f64 sum is -0.0; the exposition shows 0.
        readings.samples_per_second += 0.0;
        *self.jobs.lock().unwrap_or_else(|p| p.into_inner()) = Some(readings);
    }

    /// The latest system sample, if the sampler has published one.
    pub fn system(&self) -> Option<Sample> {
        self.system
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The exposition text; `queue_depth` gives the waiting requests of a ready model.
    pub fn render(
        &self,
        deployments: &[DeploymentView],
        queue_depth: impl Fn(&str) -> usize,
    ) -> String {
        let ready: Vec<&DeploymentView> = deployments
            .iter()
            .filter(|d| matches!(d.status, Status::Ready | Status::Running))
            .collect();
        let mut scrape = Registry::default();
        scrape.register(
            "cyxwiz_node_queue_depth",
            "Requests waiting for a model worker, by model",
            Readings::labelled(
                "model",
                ready.iter().map(|d| (d.name.clone(), queue_depth(&d.name))),
            ),
        );
        scrape.register(
            "cyxwiz_node_model_memory_bytes",
            "Memory a loaded model reports, by model",
            Readings::labelled(
                "model",
                ready.iter().map(|d| (d.name.clone(), d.memory_bytes)),
            ),
        );
        scrape.register(
            "cyxwiz_node_models_loaded",
            "Deployments ready to serve",
            Readings::single(ready.len()),
        );
        if let Some(rss) = resident_bytes() {
            scrape.register(
                "cyxwiz_node_resident_memory_bytes",
                "Resident memory of the node process",
                Readings::single(rss),
            );
        }
        if let Some(sample) = self.system() {
            register_system(&mut scrape, &sample);
        }
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(jobs) = jobs {
            scrape.register(
                "cyxwiz_node_jobs",
                "Training jobs, by state",
                Readings::labelled("state", jobs.by_state),
            );
            scrape.register(
                "cyxwiz_node_jobs_by_origin",
                "Training jobs, by origin (local, central, p2p)",
                Readings::labelled("origin", jobs.by_origin),
            );
            scrape.register(
                "cyxwiz_node_report_outbox",
                "Job reports to the central server, by status (pending, acked, failed)",
                Readings::labelled("status", jobs.outbox),
            );
            scrape.register(
                "cyxwiz_node_training_samples_per_second",
                "Training samples per second over the running jobs",
                Readings::single(jobs.samples_per_second),
            );
        }
        let mut out = String::new();
        // Writing into a `String` cannot fail, and the encoders fail only when their writer does.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &scrape);
        out
    }
}

#[cfg(test)]
mod tests;
