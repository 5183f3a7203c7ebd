//! The executor's events of the stream's job as the Engine sees them: throttled `progress`,
//! `log` lines, and the job's end as `complete` (with the weights' hash) or `error`.

use super::*;

impl Driver {
    /// Relays one executor event of the current job.
    pub(super) async fn relay(&mut self, event: JobUpdate) -> bool {
        match event.kind {
            "progress" => {
                let epoch_end = event.step == Some(0);
                if !epoch_end
                    && self
                        .last_progress
                        .is_some_and(|t| t.elapsed() < PROGRESS_EVERY)
                {
                    return true;
                }
                self.last_progress = Some(Instant::now());
                let p = self.progress(&event);
                self.send(update(&self.job, Update::Progress(p))).await
            }
            "checkpoint" => self.send(log(&self.job, INFO, event.detail.clone())).await,
            _ if event.is_end() => {
                if !matches!(self.phase, Phase::Running) {
                    // Already ended (the periodic check saw it first).
                    return true;
                }
                let view = self.view(&self.job).await;
                match view {
                    Some(view) => self.finish(view).await,
                    None => true,
                }
            }
            _ => {
                let state = event.state.map_or("?", JobState::as_str);
                self.send(log(&self.job, INFO, format!("{state}: {}", event.detail)))
                    .await
            }
        }
    }

    pub(super) fn progress(&self, e: &JobUpdate) -> TrainingProgress {
        let total_epochs = self.total_epochs;
        let done = e.epoch.unwrap_or(0);
        let step = e.step.unwrap_or(0);
        let total_steps = e.total_steps.unwrap_or(0);
        let current = if step > 0 { done + 1 } else { done.max(1) };
        let fraction = if total_epochs > 0 && total_steps > 0 {
            (f64::from(done) * total_steps as f64 + step as f64)
                / (f64::from(total_epochs) * total_steps as f64)
        } else {
            0.0
        };
        let metrics = e
            .metrics
            .as_ref()
            .and_then(|m| m.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default();
        let system = self.p2p.node.metrics.system();
        let gpu = system.as_ref().and_then(|s| s.gpus.first().cloned());
        TrainingProgress {
            current_epoch: current as i32,
            total_epochs: total_epochs as i32,
            current_batch: step as i32,
            total_batches: total_steps as i32,
            progress_percentage: (fraction * 100.0).clamp(0.0, 100.0),
            metrics,
            gpu_usage: gpu
                .as_ref()
                .and_then(|g| g.utilization_percent)
                .map_or(0.0, f64::from),
            cpu_usage: system.as_ref().map_or(0.0, |s| f64::from(s.cpu_percent)),
            memory_usage: system.as_ref().map_or(0.0, |s| {
                s.ram_used_bytes as f64 * 100.0 / (s.ram_total_bytes.max(1) as f64)
            }),
            gpu_memory_used: gpu
                .as_ref()
                .and_then(|g| g.memory_used_bytes)
                .map_or(0, |b| b as i64),
            gpu_memory_total: gpu
                .as_ref()
                .and_then(|g| g.memory_total_bytes)
                .map_or(0, |b| b as i64),
            estimated_time_remaining: e.eta_seconds.map_or(0, |s| s.round() as i64),
            elapsed_time: self.started.map_or(0, |t| t.elapsed().as_secs() as i64),
            samples_per_second: e.samples_per_second.unwrap_or(0.0),
        }
    }

    /// Sends the end of job `view`: `complete` (with the weights' hash) or `error`.
    pub(super) async fn finish(&mut self, view: JobView) -> bool {
        self.detach();
        self.phase = Phase::Idle;
        let node_id = self.p2p.node.central.node_id();
        let u = match view.state {
            JobState::Succeeded | JobState::Cancelled if view.weights_sha256.is_some() => {
                Update::Complete(TrainingComplete {
                    success: view.state == JobState::Succeeded,
                    result_hash: view.weights_sha256.clone().unwrap_or_default(),
                    final_metrics: view.metrics.clone().into_iter().collect(),
                    total_training_time: view.run_seconds.round() as i64,
                    total_epochs_completed: i64::from(view.epoch),
                    weights_location: format!(
                        "node://{node_id}/jobs/{}/weights.safetensors",
                        view.id
                    ),
                    final_weights_size: view.weights_bytes.unwrap_or(0) as i64,
                    proof_of_compute: String::new(),
                })
            }
            _ => failure(
                view.state.as_str().to_uppercase(),
                view.error
                    .clone()
                    .unwrap_or_else(|| format!("the job ended {}", view.state)),
                view.epoch as i32,
                false,
            ),
        };
        self.send(update(&view.id, u)).await
    }
}
