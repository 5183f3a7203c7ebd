//! Prometheus metrics of the node, kept and written by the `prometheus-client` crate in the
//! Prometheus text format (version 0.0.4), all named `cyxwiz_node_*` in base units: HTTP
//! requests by route and status, request latency, tokens generated, time to first token, and
//! (read at scrape time) queue depth, loaded models, model memory and the process's resident
//! memory; plus the latest system sample (CPU, memory, network, GPUs) that [`sampler`]
//! publishes with [`Metrics::set_system`], and training jobs (jobs by state, training samples
//! per second, the durations of ended jobs by final state) that the `/metrics` handler
//! publishes with [`Metrics::set_jobs`]. The sampler's SQLite history is [`history`].

pub mod history;
pub mod sampler;

use crate::deployments::{DeploymentView, Status};
use prometheus_client::{
    encoding::{prometheus_text, EncodeLabelSet, EncodeMetric, MetricEncoder},
    metrics::{counter::Counter, family::Family, histogram::Histogram, MetricType, TypedMetric},
    registry::Registry,
};
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
    ttft: Latencies<Model>,
    job_durations: Family<FinalState, Histogram, fn() -> Histogram>,
    system: Mutex<Option<Sample>>,
    jobs: Mutex<Option<JobReadings>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RouteStatus, Counter>::default();
        let latency = Latencies::<Route>::new_with_constructor(latency_histogram);
        let tokens = Family::<Model, Counter>::default();
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
            "cyxwiz_node_time_to_first_token_seconds",
            "Time from a generation request to its first token, by model",
            ttft.clone(),
        );
        registry.register(
            "cyxwiz_node_job_duration_seconds",
            "Time ended training jobs spent training, by final state",
            job_durations.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            tokens,
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

/// One gauge reading as the exposition carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    /// Written as an integer.
    Int(i64),
    /// Written as a float; always finite.
    Float(f64),
}

/// Converts a reading; `None` for values the exposition should not carry (NaN, infinities).
trait IntoReading: Copy {
    fn reading(self) -> Option<Reading>;
}

impl IntoReading for u64 {
    fn reading(self) -> Option<Reading> {
        Some(Reading::Int(i64::try_from(self).unwrap_or(i64::MAX)))
    }
}

impl IntoReading for usize {
    fn reading(self) -> Option<Reading> {
        Some(Reading::Int(i64::try_from(self).unwrap_or(i64::MAX)))
    }
}

impl IntoReading for i64 {
    fn reading(self) -> Option<Reading> {
        Some(Reading::Int(self))
    }
}

impl IntoReading for f64 {
    fn reading(self) -> Option<Reading> {
        self.is_finite().then_some(Reading::Float(self))
    }
}

impl IntoReading for f32 {
    /// Through the `f32`'s shortest decimal form, so 123.4 is written "123.4", not
    /// "123.40000152587891".
    fn reading(self) -> Option<Reading> {
        let value = self
            .to_string()
            .parse::<f64>()
            .unwrap_or_else(|_| f64::from(self));
        value.reading()
    }
}

/// A gauge family read at scrape time: a series per `(label, value)`, or one unlabelled
/// series. Values the exposition cannot carry are left out; a family left with no series
/// is not written at all.
#[derive(Debug)]
struct Readings {
    label: &'static str,
    series: Vec<(Option<String>, Reading)>,
}

impl Readings {
    /// One unlabelled series.
    fn single(value: impl IntoReading) -> Self {
        Self {
            label: "",
            series: value.reading().map(|r| (None, r)).into_iter().collect(),
        }
    }

    /// A series per item, labelled `label="<item's label value>"`.
    fn labelled<V: IntoReading>(
        label: &'static str,
        series: impl IntoIterator<Item = (String, V)>,
    ) -> Self {
        Self {
            label,
            series: series
                .into_iter()
                .filter_map(|(l, v)| Some((Some(l), v.reading()?)))
                .collect(),
        }
    }
}

impl TypedMetric for Readings {
    const TYPE: MetricType = MetricType::Gauge;
}

impl Reading {
    fn encode(&self, encoder: &mut MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Reading::Int(v) => encoder.encode_gauge(v),
            Reading::Float(v) => encoder.encode_gauge(v),
        }
    }
}

impl EncodeMetric for Readings {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (label, reading) in &self.series {
            match label {
                Some(value) => {
                    let labels = [(self.label, value.as_str())];
                    reading.encode(&mut encoder.encode_family(&labels)?)?;
                }
                None => reading.encode(&mut encoder)?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// A series per GPU that has the reading, labelled `gpu="<index>"`.
fn per_gpu<V: IntoReading>(
    gpus: &[sampler::GpuSample],
    read: impl Fn(&sampler::GpuSample) -> Option<V>,
) -> Readings {
    Readings::labelled(
        "gpu",
        gpus.iter()
            .filter_map(|g| Some((g.index.to_string(), read(g)?))),
    )
}

/// The system sample as gauges: whole-machine CPU, memory and network, and per-GPU readings
/// (GPU families only when the node has GPUs).
fn register_system(registry: &mut Registry, s: &Sample) {
    let mut gauge = |name: &str, help: &str, readings: Readings| {
        registry.register(name, help, readings);
    };
    gauge(
        "cyxwiz_node_system_sample_timestamp_seconds",
        "Unix time of the latest system sample (a stale value means the sampler stopped)",
        Readings::single(s.timestamp),
    );
    gauge(
        "cyxwiz_node_cpu_usage_percent",
        "CPU busy time over the last sample interval, all cores, 0-100",
        Readings::single(s.cpu_percent),
    );
    gauge(
        "cyxwiz_node_cpu_core_usage_percent",
        "CPU busy time over the last sample interval, by logical core, 0-100",
        Readings::labelled(
            "core",
            s.per_core_percent
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), *v)),
        ),
    );
    gauge(
        "cyxwiz_node_memory_used_bytes",
        "System memory in use (total minus available)",
        Readings::single(s.ram_used_bytes),
    );
    gauge(
        "cyxwiz_node_memory_total_bytes",
        "System memory installed",
        Readings::single(s.ram_total_bytes),
    );
    gauge(
        "cyxwiz_node_network_receive_bytes_per_second",
        "Bytes received per second over the last sample interval, non-loopback interfaces",
        Readings::single(s.net_rx_bytes_per_s),
    );
    gauge(
        "cyxwiz_node_network_transmit_bytes_per_second",
        "Bytes sent per second over the last sample interval, non-loopback interfaces",
        Readings::single(s.net_tx_bytes_per_s),
    );
    if s.gpus.is_empty() {
        return;
    }
    gauge(
        "cyxwiz_node_gpu_utilization_percent",
        "Share of the last sample period a GPU kernel was running, by GPU, 0-100",
        per_gpu(&s.gpus, |g| g.utilization_percent),
    );
    gauge(
        "cyxwiz_node_gpu_memory_used_bytes",
        "GPU memory allocated, by GPU",
        per_gpu(&s.gpus, |g| g.memory_used_bytes),
    );
    gauge(
        "cyxwiz_node_gpu_memory_total_bytes",
        "GPU memory installed, by GPU",
        per_gpu(&s.gpus, |g| g.memory_total_bytes),
    );
    gauge(
        "cyxwiz_node_gpu_temperature_celsius",
        "GPU die temperature, by GPU",
        per_gpu(&s.gpus, |g| g.temperature_c),
    );
    gauge(
        "cyxwiz_node_gpu_power_watts",
        "GPU board power draw, by GPU",
        per_gpu(&s.gpus, |g| g.power_watts),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_escapes_labels() {
        let m = Metrics::default();
        m.request("/v1/chat/completions", 200, Duration::from_millis(30));
        m.request("/v1/chat/completions", 200, Duration::from_millis(3));
        m.tokens_generated("a\"b", 5);
        let text = m.render(&[], |_| 0);
        assert!(text.contains(
            "cyxwiz_node_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "cyxwiz_node_http_request_duration_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "cyxwiz_node_http_request_duration_seconds_bucket{route=\"/v1/chat/completions\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("cyxwiz_node_generated_tokens_total{model=\"a\\\"b\"} 5"));
        assert!(text.contains("cyxwiz_node_models_loaded 0"));
        assert!(
            !text.contains("cyxwiz_node_cpu_usage_percent"),
            "no system gauges before the first sample"
        );
    }

    #[test]
    fn renders_jobs_by_state_the_training_rate_and_job_durations() {
        let m = Metrics::default();
        assert!(!m.render(&[], |_| 0).contains("cyxwiz_node_jobs"));
        m.set_jobs(JobReadings {
            samples_per_second: std::iter::empty::<f64>().sum(),
            ..JobReadings::default()
        });
        assert!(m
            .render(&[], |_| 0)
            .contains("\ncyxwiz_node_training_samples_per_second 0.0\n"));
        m.set_jobs(JobReadings {
            by_state: vec![("queued".into(), 2), ("running".into(), 1)],
            samples_per_second: 1234.5,
            finished: vec![("succeeded".into(), 42.0), ("cancelled".into(), 3.0)],
        });
        m.set_jobs(JobReadings {
            by_state: vec![("queued".into(), 1), ("running".into(), 1)],
            samples_per_second: 1000.0,
            finished: vec![("succeeded".into(), 100.0)],
        });
        let text = m.render(&[], |_| 0);
        for line in [
            "# TYPE cyxwiz_node_jobs gauge",
            "cyxwiz_node_jobs{state=\"queued\"} 1",
            "cyxwiz_node_jobs{state=\"running\"} 1",
            "cyxwiz_node_training_samples_per_second 1000.0",
            "# TYPE cyxwiz_node_job_duration_seconds histogram",
            "cyxwiz_node_job_duration_seconds_count{state=\"succeeded\"} 2",
            "cyxwiz_node_job_duration_seconds_sum{state=\"succeeded\"} 142.0",
            "cyxwiz_node_job_duration_seconds_bucket{state=\"succeeded\",le=\"60\"} 1",
            "cyxwiz_node_job_duration_seconds_bucket{state=\"cancelled\",le=\"5\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }

    fn synthetic_sample() -> Sample {
        Sample {
            timestamp: 1_700_000_000,
            cpu_percent: 12.5,
            per_core_percent: vec![20.0, 5.0],
            ram_used_bytes: 3 << 30,
            ram_total_bytes: 16 << 30,
            process_rss_bytes: 50 << 20,
            net_rx_bytes_per_s: 1500.0,
            net_tx_bytes_per_s: 250.5,
            gpus: vec![sampler::GpuSample {
                index: 0,
                utilization_percent: Some(87.0),
                memory_used_bytes: Some(40 << 30),
                memory_total_bytes: Some(80 << 30),
                temperature_c: Some(61.0),
                power_watts: Some(123.4),
            }],
        }
    }

    #[test]
    fn renders_the_latest_system_sample_as_gauges() {
        let m = Metrics::default();
        m.set_system(synthetic_sample());
        assert_eq!(m.system().map(|s| s.timestamp), Some(1_700_000_000));
        let text = m.render(&[], |_| 0);
        for line in [
            "# TYPE cyxwiz_node_cpu_usage_percent gauge",
            "cyxwiz_node_cpu_usage_percent 12.5",
            "cyxwiz_node_cpu_core_usage_percent{core=\"0\"} 20.0",
            "cyxwiz_node_cpu_core_usage_percent{core=\"1\"} 5.0",
            "cyxwiz_node_memory_used_bytes 3221225472",
            "cyxwiz_node_memory_total_bytes 17179869184",
            "cyxwiz_node_network_receive_bytes_per_second 1500.0",
            "cyxwiz_node_network_transmit_bytes_per_second 250.5",
            "cyxwiz_node_gpu_utilization_percent{gpu=\"0\"} 87.0",
            "cyxwiz_node_gpu_memory_used_bytes{gpu=\"0\"} 42949672960",
            "cyxwiz_node_gpu_memory_total_bytes{gpu=\"0\"} 85899345920",
            "cyxwiz_node_gpu_temperature_celsius{gpu=\"0\"} 61.0",
            "cyxwiz_node_system_sample_timestamp_seconds 1700000000",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        assert!(
            text.contains("cyxwiz_node_gpu_power_watts{gpu=\"0\"} 123.4\n"),
            "an f32 is written in its shortest form"
        );

        let mut odd = synthetic_sample();
        odd.gpus[0].power_watts = None;
        odd.cpu_percent = f32::NAN;
        m.set_system(odd);
        let text = m.render(&[], |_| 0);
        assert!(
            !text.contains("cyxwiz_node_gpu_power_watts{"),
            "missing reading left out"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("cyxwiz_node_cpu_usage_percent ")),
            "NaN left out"
        );
        assert!(
            !text.contains("cyxwiz_node_cpu_usage_percent "),
            "a family left without series is not declared"
        );
    }

    /// Each family is declared once, with HELP then TYPE, before its samples; no sample
    /// belongs to an undeclared family. (`promtool check metrics` checks the same and more;
    /// CI machines may not have it.)
    #[test]
    fn every_series_has_one_help_and_type() {
        let m = Metrics::default();
        m.request("/health", 200, Duration::from_millis(1));
        m.set_system(synthetic_sample());
        let text = m.render(&[], |_| 0);
        let mut declared = std::collections::HashSet::new();
        let mut last_help = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                last_help = rest.split(' ').next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().expect("a name");
                assert_eq!(last_help.as_deref(), Some(name), "HELP precedes TYPE");
                assert!(declared.insert(name.to_string()), "{name} declared twice");
            } else {
                let series = line.split([' ', '{']).next().expect("a name");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| series.strip_suffix(s))
                    .filter(|f| declared.contains(*f))
                    .unwrap_or(series);
                assert!(declared.contains(family), "{series} has no TYPE");
                assert!(!line.contains(" inf") && !line.contains(" NaN"), "{line}");
            }
        }
    }

    /// Scrapers see the names, types, help texts and labels that the hand-written exposition
    /// had before the switch to `prometheus-client` (this list is a copy of its output).
    #[test]
    fn families_keep_their_names_types_help_and_labels() {
        let m = Metrics::default();
        m.request("/health", 200, Duration::from_millis(1));
        m.tokens_generated("chat", 3);
        m.time_to_first_token("chat", Duration::from_millis(40));
        m.set_system(synthetic_sample());
        let ready = DeploymentView {
            name: "chat".into(),
            aliases: Vec::new(),
            path: "chat.gguf".into(),
            plugin: Some("gguf-llama".into()),
            kind: crate::deployments::Kind::Llm,
            status: Status::Ready,
            message: String::new(),
            memory_bytes: 1 << 20,
            created: 0,
            requests: 0,
            mean_latency_ms: 0.0,
            uptime_seconds: 0.0,
        };
        let text = m.render(&[ready], |_| 2);
        let expected = [
            (
                "cyxwiz_node_http_requests_total",
                "counter",
                "HTTP requests answered, by route and status code.",
                "{route=\"/health\",status=\"200\"} 1",
            ),
            (
                "cyxwiz_node_http_request_duration_seconds",
                "histogram",
                "Time to answer an HTTP request (to the first byte for streams).",
                "_bucket{route=\"/health\",le=\"0.001\"} 1",
            ),
            (
                "cyxwiz_node_generated_tokens_total",
                "counter",
                "Tokens generated, by model.",
                "{model=\"chat\"} 3",
            ),
            (
                "cyxwiz_node_time_to_first_token_seconds",
                "histogram",
                "Time from a generation request to its first token, by model.",
                "_count{model=\"chat\"} 1",
            ),
            (
                "cyxwiz_node_queue_depth",
                "gauge",
                "Requests waiting for a model worker, by model.",
                "{model=\"chat\"} 2",
            ),
            (
                "cyxwiz_node_model_memory_bytes",
                "gauge",
                "Memory a loaded model reports, by model.",
                "{model=\"chat\"} 1048576",
            ),
            (
                "cyxwiz_node_models_loaded",
                "gauge",
                "Deployments ready to serve.",
                " 1",
            ),
            (
                "cyxwiz_node_resident_memory_bytes",
                "gauge",
                "Resident memory of the node process.",
                " ",
            ),
            (
                "cyxwiz_node_system_sample_timestamp_seconds",
                "gauge",
                "Unix time of the latest system sample (a stale value means the sampler stopped).",
                " 1700000000",
            ),
            (
                "cyxwiz_node_cpu_usage_percent",
                "gauge",
                "CPU busy time over the last sample interval, all cores, 0-100.",
                " 12.5",
            ),
            (
                "cyxwiz_node_cpu_core_usage_percent",
                "gauge",
                "CPU busy time over the last sample interval, by logical core, 0-100.",
                "{core=\"1\"} 5.0",
            ),
            (
                "cyxwiz_node_memory_used_bytes",
                "gauge",
                "System memory in use (total minus available).",
                " 3221225472",
            ),
            (
                "cyxwiz_node_memory_total_bytes",
                "gauge",
                "System memory installed.",
                " 17179869184",
            ),
            (
                "cyxwiz_node_network_receive_bytes_per_second",
                "gauge",
                "Bytes received per second over the last sample interval, non-loopback interfaces.",
                " 1500.0",
            ),
            (
                "cyxwiz_node_network_transmit_bytes_per_second",
                "gauge",
                "Bytes sent per second over the last sample interval, non-loopback interfaces.",
                " 250.5",
            ),
            (
                "cyxwiz_node_gpu_utilization_percent",
                "gauge",
                "Share of the last sample period a GPU kernel was running, by GPU, 0-100.",
                "{gpu=\"0\"} 87.0",
            ),
            (
                "cyxwiz_node_gpu_memory_used_bytes",
                "gauge",
                "GPU memory allocated, by GPU.",
                "{gpu=\"0\"} 42949672960",
            ),
            (
                "cyxwiz_node_gpu_memory_total_bytes",
                "gauge",
                "GPU memory installed, by GPU.",
                "{gpu=\"0\"} 85899345920",
            ),
            (
                "cyxwiz_node_gpu_temperature_celsius",
                "gauge",
                "GPU die temperature, by GPU.",
                "{gpu=\"0\"} 61.0",
            ),
            (
                "cyxwiz_node_gpu_power_watts",
                "gauge",
                "GPU board power draw, by GPU.",
                "{gpu=\"0\"} 123.4",
            ),
        ];
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(declared.len(), expected.len(), "{text}");
        for (name, kind, help, sample) in expected {
            assert!(
                declared.contains(&format!("{name} {kind}").as_str()),
                "{name} {kind} in\n{text}"
            );
            let help_line = format!("# HELP {name} {help}");
            assert!(
                text.lines().any(|l| l == help_line),
                "`{help_line}` in\n{text}"
            );
            let series = format!("{name}{sample}");
            assert!(
                text.lines().any(|l| l.starts_with(&series)),
                "`{series}` in\n{text}"
            );
        }
    }
}
