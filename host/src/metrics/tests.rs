//! Tests of the metrics and their text exposition.

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
        report_retries: 1,
        ..JobReadings::default()
    });
    m.set_jobs(JobReadings {
        by_state: vec![("queued".into(), 1), ("running".into(), 1)],
        samples_per_second: 1000.0,
        finished: vec![("succeeded".into(), 100.0)],
        by_origin: vec![("local".into(), 1), ("p2p".into(), 1)],
        outbox: vec![("pending".into(), 3), ("acked".into(), 9)],
        report_retries: 4,
    });
    let text = m.render(&[], |_| 0);
    for line in [
        "# TYPE cyxwiz_node_jobs gauge",
        "cyxwiz_node_jobs{state=\"queued\"} 1",
        "cyxwiz_node_jobs{state=\"running\"} 1",
        "cyxwiz_node_jobs_by_origin{origin=\"p2p\"} 1",
        "cyxwiz_node_report_outbox{status=\"pending\"} 3",
        "# TYPE cyxwiz_node_report_retries_total counter",
        "cyxwiz_node_report_retries_total 4",
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
            "cyxwiz_node_report_retries_total",
            "counter",
            "Failed sends of job reports to the central server, retried later.",
            " 0",
        ),
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
