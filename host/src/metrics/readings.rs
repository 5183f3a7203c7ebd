//! Gauges read at scrape time: how a value becomes a reading the text exposition can carry,
//! a family of them, and the system sample's gauges.

use super::*;

/// One gauge reading as the exposition carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Reading {
    /// Written as an integer.
    Int(i64),
    /// Written as a float; always finite.
    Float(f64),
}

/// Converts a reading; `None` for values the exposition should not carry (NaN, infinities).
pub(super) trait IntoReading: Copy {
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
pub(super) struct Readings {
    label: &'static str,
    series: Vec<(Option<String>, Reading)>,
}

impl Readings {
    /// One unlabelled series.
    pub(super) fn single(value: impl IntoReading) -> Self {
        Self {
            label: "",
            series: value.reading().map(|r| (None, r)).into_iter().collect(),
        }
    }

    /// A series per item, labelled `label="<item's label value>"`.
    pub(super) fn labelled<V: IntoReading>(
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
pub(super) fn per_gpu<V: IntoReading>(
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
pub(super) fn register_system(registry: &mut Registry, s: &Sample) {
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
