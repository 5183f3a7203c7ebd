//! The Engine's commands on the training stream: batch answers, pause/resume/stop (off the
//! stream's task), `update_params`, `request_checkpoint`, `new_job_config` and
//! `reservation_end`.

use super::*;

impl Driver {
    /// Handles one command; false ends the stream.
    pub(super) async fn command(&mut self, command: TrainingCommand) -> bool {
        let Some(command) = command.command else {
            return true;
        };
        match command {
            Command::BatchResponse(b) => {
                if let Some(remote) = &self.remote {
                    let answer = if b.status == StatusCode::StatusSuccess as i32 {
                        Ok(RawBatch {
                            images: b.images,
                            labels: b.labels,
                        })
                    } else {
                        Err(format!(
                            "the Engine refused batch request {}: {}",
                            b.request_id,
                            crate::audit::clean(
                                &b.error.map(|e| e.message).unwrap_or_default(),
                                200
                            )
                        ))
                    };
                    remote.deliver(b.request_id, answer);
                }
                true
            }
            Command::DatasetInfoResponse(info) => self.dataset_info(info).await,
            Command::Pause(true) => self.steer("pause").await,
            Command::Resume(true) => self.steer("resume").await,
            Command::Stop(true) => self.steer("stop").await,
            Command::RequestCheckpoint(true) => self.checkpoint().await,
            Command::UpdateParams(p) => self.retune(p).await,
            Command::NewJobConfig(config) => {
                if matches!(self.phase, Phase::AwaitInfo { .. }) || self.running().await {
                    return self
                        .send(log(
                            &self.job,
                            WARNING,
                            format!(
                                "new_job_config ignored: job {} has not ended (stop it first)",
                                self.job
                            ),
                        ))
                        .await;
                }
                let id = config.job_id.clone();
                let uri = config.dataset_uri.clone();
                let claims = self.claims.clone();
                match self
                    .p2p
                    .accept(&claims, &self.peer, &id, config, Vec::new(), &uri)
                    .await
                {
                    Ok(_) => {
                        self.detach();
                        self.start(&id).await;
                        true
                    }
                    Err(s) => {
                        self.send(update(
                            &id,
                            failure(format!("{:?}", s.code()), s.message(), 0, true),
                        ))
                        .await
                    }
                }
            }
            Command::ReservationEnd(true) => {
                self.end_reservation().await;
                false
            }
            _ => true,
        }
    }

    /// Pause, resume or stop the current job, without blocking the stream (a stopping job may
    /// still need batches).
    pub(super) async fn steer(&mut self, what: &'static str) -> bool {
        if !matches!(self.phase, Phase::Running) {
            if what == "stop" && matches!(self.phase, Phase::AwaitInfo { .. }) {
                return self
                    .refuse("stopped by the Engine before it started", "STOPPED")
                    .await;
            }
            return self
                .send(log(
                    &self.job,
                    WARNING,
                    format!("{what}: no job is running"),
                ))
                .await;
        }
        let jobs = self.p2p.node.jobs.clone();
        let id = self.job.clone();
        let out = self.out.clone();
        self.p2p
            .node
            .audit("p2p_command", &id, &format!("{what} from {}", self.peer));
        tokio::task::spawn_blocking(move || {
            let result = match what {
                "pause" => jobs.pause(&id),
                "resume" => jobs.resume(&id),
                _ => jobs.cancel(&id),
            };
            let message = match result {
                Ok(v) => format!("{what}: job {id} is {}", v.state),
                Err(e) => format!("{what}: {e}"),
            };
            let _ = out.blocking_send(Ok(log(&id, INFO, message)));
        });
        true
    }

    /// New learning rate and/or batch size for the running job, from its next epoch on.
    pub(super) async fn retune(&mut self, p: UpdateHyperparameters) -> bool {
        let retune = Retune {
            learning_rate: (p.learning_rate != 0.0).then_some(p.learning_rate),
            batch_size: match p.batch_size {
                0 => None,
                n => Some(u32::try_from(n).unwrap_or(0)),
            },
        };
        let mut notes = Vec::new();
        if !p.other_params.is_empty() {
            let keys: Vec<String> = p
                .other_params
                .keys()
                .take(16)
                .map(|k| crate::audit::clean(k, 32))
                .collect();
            notes.push(format!(
                "other_params {keys:?} are not adjustable and were ignored"
            ));
        }
        let message = if retune == Retune::default() {
            "update_params changed nothing (learning_rate and batch_size are 0)".to_owned()
        } else if !matches!(self.phase, Phase::Running) {
            "update_params: no job is running".to_owned()
        } else {
            let jobs = self.p2p.node.jobs.clone();
            let id = self.job.clone();
            self.p2p.node.audit(
                "p2p_command",
                &id,
                &format!("update_params {retune:?} from {}", self.peer),
            );
            match tokio::task::spawn_blocking(move || jobs.retune(&id, retune)).await {
                Ok(Ok(_)) => format!(
                    "update_params accepted: {retune:?} applies from the next epoch (the job checkpoints at the epoch's end and continues with them)"
                ),
                Ok(Err(e)) => format!("update_params refused: {e}"),
                Err(e) => format!("update_params failed: {e}"),
            }
        };
        notes.insert(0, message);
        self.send(log(&self.job, INFO, notes.join("; "))).await
    }

    /// Sends the weights of the job's latest durable checkpoint.
    pub(super) async fn checkpoint(&mut self) -> bool {
        let jobs = self.p2p.node.jobs.clone();
        let id = self.job.clone();
        let limit = self
            .p2p
            .node
            .config
            .grpc
            .max_message_bytes
            .saturating_sub(64 << 10);
        let found = tokio::task::spawn_blocking(move || -> Result<(JobView, Vec<u8>), String> {
            let view = jobs.get(&id).map_err(|e| e.to_string())?;
            let path = jobs
                .checkpoint_path(&id)
                .map_err(|e| e.to_string())?
                .ok_or("no checkpoint yet (the first is written at the end of epoch 1)")?;
            let bytes = std::fs::read(&path).map_err(|e| format!("reading the checkpoint: {e}"))?;
            let file = TensorFile::decode(&bytes).map_err(|e| e.message)?;
            Ok((view, file.weights_only().encode()))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match found {
            Ok((_, bytes)) if bytes.len() > limit => {
                self.send(log(
                    &self.job,
                    WARNING,
                    format!(
                        "the checkpoint's weights are {} bytes, over the {limit}-byte message limit; download them with DownloadWeights after the job",
                        bytes.len()
                    ),
                ))
                .await
            }
            Ok((view, bytes)) => {
                let c = TrainingCheckpoint {
                    epoch: view.checkpoint_epoch.unwrap_or(view.epoch) as i32,
                    weights_size: bytes.len() as i64,
                    checkpoint_hash: hex(&Sha256::digest(&bytes)),
                    weights_data: bytes,
                    compression_type: "none".into(),
                    metrics_at_checkpoint: view.metrics.into_iter().collect(),
                };
                self.send(update(&self.job, Update::Checkpoint(c))).await
            }
            Err(why) => self.send(log(&self.job, WARNING, why)).await,
        }
    }

    /// The Engine ended the reservation: stop what runs, report, close.
    pub(super) async fn end_reservation(&mut self) {
        if self.running().await {
            let jobs = self.p2p.node.jobs.clone();
            let id = self.job.clone();
            let _ = tokio::task::spawn_blocking(move || jobs.cancel(&id)).await;
        }
        self.detach();
        self.p2p.end_reservation(&self.claims, &self.peer).await;
        let _ = self
            .send(log(
                &self.job,
                INFO,
                "reservation ended; closing the stream",
            ))
            .await;
    }
}
