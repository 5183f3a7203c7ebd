//! `Config::validate`: the checks on values that the types alone do not constrain, each
//! error naming the key, where its value came from, the bound and what was found.

use super::{Config, ConfigError, JOB_TYPES};

impl Config {
    /// `key`'s `value` must lie in `range`; `unit` (with its leading space) follows the bounds.
    pub(super) fn in_range<T: PartialOrd + std::fmt::Display>(
        &self,
        key: &str,
        value: T,
        range: std::ops::RangeInclusive<T>,
        unit: &str,
    ) -> Result<(), ConfigError> {
        if range.contains(&value) {
            return Ok(());
        }
        Err(self.key_error(
            key,
            format!(
                "must be between {} and {}{unit}, got {value}",
                range.start(),
                range.end()
            ),
        ))
    }

    /// Checks values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.name.trim().is_empty() {
            return Err(self.key_error("node.name", "must be a non-empty name".into()));
        }
        if self.node.max_concurrent_jobs == 0 {
            return Err(self.key_error(
                "node.max_concurrent_jobs",
                "must be at least 1, got 0".into(),
            ));
        }
        self.validate_central()?;
        self.validate_network()?;
        if self.api.host.parse::<std::net::IpAddr>().is_err() && self.api.host != "localhost" {
            return Err(self.key_error(
                "api.host",
                format!(
                    "must be an IP address such as 127.0.0.1, got `{}`",
                    self.api.host
                ),
            ));
        }
        if self.api.tls.enabled {
            for (key, path) in [
                ("api.tls.cert_path", &self.api.tls.cert_path),
                ("api.tls.key_path", &self.api.tls.key_path),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(self.key_error(
                        key,
                        "must name a PEM file when api.tls.enabled = true".into(),
                    ));
                }
            }
        }
        if self.api.max_body_bytes < 1024 {
            return Err(self.key_error(
                "api.max_body_bytes",
                format!("must be at least 1024, got {}", self.api.max_body_bytes),
            ));
        }
        for (key, value, max) in [
            (
                "api.max_tensor_elements",
                self.api.max_tensor_elements,
                1 << 30,
            ),
            (
                "api.max_embedding_inputs",
                self.api.max_embedding_inputs,
                1 << 16,
            ),
            ("api.max_batch_tokens", self.api.max_batch_tokens, 1 << 24),
        ] {
            self.in_range(key, value, 1..=max, "")?;
        }
        self.validate_api_limits()?;
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            return Err(self.key_error(
                "logging.level",
                format!(
                    "must be error, warn, info, debug, trace or a tracing filter, got `{}`",
                    self.logging.level
                ),
            ));
        }
        if !matches!(self.logging.format.as_str(), "text" | "json") {
            return Err(self.key_error(
                "logging.format",
                format!("must be `text` or `json`, got `{}`", self.logging.format),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, d) in self.deployments.iter().enumerate() {
            let key = format!("deployments[{i}].name");
            if d.name.trim().is_empty() {
                return Err(self.key_error(&key, "must be a non-empty model name".into()));
            }
            if !names.insert(d.name.as_str()) {
                return Err(self.key_error(&key, format!("`{}` is used twice", d.name)));
            }
            if d.queue_size == 0 {
                return Err(self.key_error(
                    &format!("deployments[{i}].queue_size"),
                    "must be at least 1, got 0".into(),
                ));
            }
            if d.workers > 256 {
                return Err(self.key_error(
                    &format!("deployments[{i}].workers"),
                    format!("must be between 0 (automatic) and 256, got {}", d.workers),
                ));
            }
            self.in_range(
                &format!("deployments[{i}].max_batch"),
                d.max_batch,
                1..=4096,
                "",
            )?;
            if let Some(p) = &d.pooling {
                if !matches!(p.as_str(), "mean" | "cls") {
                    return Err(self.key_error(
                        &format!("deployments[{i}].pooling"),
                        format!("must be `mean` or `cls`, got `{p}`"),
                    ));
                }
            }
            if let Err(why) = super::DeviceRequest::parse(&d.device) {
                return Err(self.key_error(&format!("deployments[{i}].device"), why));
            }
            for alias in &d.aliases {
                if !names.insert(alias.as_str()) {
                    return Err(self.key_error(
                        &format!("deployments[{i}].aliases"),
                        format!("`{alias}` is used twice"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks `[api]`'s connection limits and host allow-list.
    fn validate_api_limits(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        for (key, value, min, max) in [
            ("header_timeout_seconds", api.header_timeout_seconds, 1, 300),
            ("body_timeout_seconds", api.body_timeout_seconds, 1, 3600),
            (
                "shutdown_grace_seconds",
                api.shutdown_grace_seconds,
                0,
                3600,
            ),
        ] {
            self.in_range(&format!("api.{key}"), value, min..=max, " seconds")?;
        }
        self.in_range("api.max_connections", api.max_connections, 1..=65_536, "")?;
        for host in &api.allowed_hosts {
            let bad = host.is_empty()
                || host
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "/@?#,".contains(c));
            if bad {
                return Err(self.key_error(
                    "api.allowed_hosts",
                    format!(
                        "must list host names such as `api.example.com` (or `*`), got `{host}`"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks `[central_server]`, `[grpc]`, `[jobs]`, `[metrics]` and `[pricing]`.
    fn validate_network(&self) -> Result<(), ConfigError> {
        let advertise = &self.central_server.advertise_address;
        if !advertise.is_empty() && advertise.parse::<std::net::IpAddr>().is_err() {
            return Err(self.key_error(
                "central_server.advertise_address",
                format!("must be an IP address or empty, got `{advertise}`"),
            ));
        }
        if self.grpc.host.parse::<std::net::IpAddr>().is_err() {
            return Err(self.key_error(
                "grpc.host",
                format!(
                    "must be an IP address such as 0.0.0.0, got `{}`",
                    self.grpc.host
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for port in &self.grpc.ports {
            if *port == 0 || !seen.insert(*port) {
                return Err(self.key_error(
                    "grpc.ports",
                    format!("must be distinct non-zero ports, got {:?}", self.grpc.ports),
                ));
            }
        }
        if let Some(first) = self.grpc.ports.first() {
            if *first > u16::MAX - 3 {
                return Err(self.key_error(
                    "grpc.ports",
                    format!("the first port + 3 must be a port too, got {first}"),
                ));
            }
            // The central server sends AssignJob to the registered (first) port + 3; without
            // it the node registers but can never be given a job.
            let assign = first + 3;
            if !self.central_server.address.is_empty() && !self.grpc.ports.contains(&assign) {
                let mut fixed = self.grpc.ports.clone();
                fixed.push(assign);
                return Err(self.key_error(
                    "grpc.ports",
                    format!(
                        "the central server sends AssignJob to the registered port {first} + 3, \
                         but {assign} is not served; add {assign}: ports = {fixed:?} \
                         (or --grpc-ports {})",
                        fixed
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ));
            }
        }
        if self.grpc.tls.enabled {
            for (key, path) in [
                ("grpc.tls.cert_path", &self.grpc.tls.cert_path),
                ("grpc.tls.key_path", &self.grpc.tls.key_path),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(self.key_error(
                        key,
                        "must name a PEM file when grpc.tls.enabled = true".into(),
                    ));
                }
            }
        }
        for from in &self.grpc.assign_job_from {
            if super::Cidr::parse(from).is_none() {
                return Err(self.key_error(
                    "grpc.assign_job_from",
                    format!("must list IP addresses or CIDR blocks, got `{from}`"),
                ));
            }
        }
        for (key, value, range) in [
            (
                "grpc.assign_job_per_minute",
                self.grpc.assign_job_per_minute,
                1..=100_000,
            ),
            (
                "grpc.max_concurrent_requests",
                self.grpc.max_concurrent_requests,
                1..=10_000,
            ),
            (
                "grpc.max_concurrent_streams",
                self.grpc.max_concurrent_streams,
                1..=10_000,
            ),
            (
                "limits.max_deployments",
                self.limits.max_deployments,
                1..=10_000,
            ),
            ("limits.max_slots", self.limits.max_slots, 1..=64),
            (
                "limits.max_context_length",
                self.limits.max_context_length,
                16..=1 << 20,
            ),
            ("limits.max_batch", self.limits.max_batch, 1..=1 << 16),
            ("limits.max_threads", self.limits.max_threads, 0..=4096),
        ] {
            self.in_range(key, value, range, "")?;
        }
        for (key, value) in [
            ("grpc.max_message_bytes", self.grpc.max_message_bytes),
            (
                "grpc.max_infer_message_bytes",
                self.grpc.max_infer_message_bytes,
            ),
        ] {
            self.in_range(key, value, 1024..=1 << 30, " bytes")?;
        }
        self.in_range(
            "jobs.max_inline_dataset_bytes",
            self.jobs.max_inline_dataset_bytes,
            1..=1 << 30,
            " bytes",
        )?;
        self.in_range(
            "jobs.threads_per_job",
            self.jobs.threads_per_job,
            0..=1024,
            "",
        )?;
        self.in_range(
            "jobs.max_queued_jobs",
            self.jobs.max_queued_jobs,
            0..=10_000,
            "",
        )?;
        if !["refuse", "run_on_cpu"].contains(&self.jobs.cuda_jobs_on_cpu.as_str()) {
            return Err(self.key_error(
                "jobs.cuda_jobs_on_cpu",
                format!(
                    "must be `refuse` or `run_on_cpu`, got `{}`",
                    self.jobs.cuda_jobs_on_cpu
                ),
            ));
        }
        self.in_range(
            "p2p.max_token_age_seconds",
            self.p2p.max_token_age_seconds,
            60..=30 * 86_400,
            " s",
        )?;
        self.in_range(
            "p2p.batch_timeout_seconds",
            self.p2p.batch_timeout_seconds,
            1..=3600,
            " s",
        )?;
        self.in_range(
            "p2p.max_batch_bytes",
            self.p2p.max_batch_bytes,
            1024..=1 << 30,
            " bytes",
        )?;
        self.in_range(
            "p2p.prefetch_batches",
            self.p2p.prefetch_batches,
            1..=64,
            "",
        )?;
        self.in_range(
            "p2p.max_download_chunk_bytes",
            self.p2p.max_download_chunk_bytes,
            1024..=64 << 20,
            " bytes",
        )?;
        if self.jobs.default_backend.is_empty() {
            return Err(
                self.key_error("jobs.default_backend", "must name a training plugin".into())
            );
        }
        for t in &self.jobs.allowed_job_types {
            if !JOB_TYPES.contains(&t.as_str()) {
                return Err(self.key_error(
                    "jobs.allowed_job_types",
                    format!("must list some of {}, got `{t}`", JOB_TYPES.join(", ")),
                ));
            }
        }
        self.in_range(
            "metrics.interval_seconds",
            self.metrics.interval_seconds,
            1..=3600,
            " seconds",
        )?;
        self.in_range(
            "metrics.retention_days",
            self.metrics.retention_days,
            1..=365,
            " days",
        )?;
        if !matches!(
            self.pricing.billing_model.as_str(),
            "hourly" | "per_epoch" | "per_job" | "per_inference"
        ) {
            return Err(self.key_error(
                "pricing.billing_model",
                format!(
                    "must be hourly, per_epoch, per_job or per_inference, got `{}`",
                    self.pricing.billing_model
                ),
            ));
        }
        Ok(())
    }
}
