//! The Engine's dataset for a job: `dataset_info_request` (asked again while the Engine has
//! not registered it), the description checked, the job queued with a [`RemoteData`] that
//! pulls its batches, or refused with an `error` the Engine sees.

use super::*;

impl Driver {
    pub(super) async fn ask_info(&self) -> bool {
        self.send(update(
            &self.job,
            Update::DatasetInfoRequest(DatasetInfoRequest {
                job_id: self.job.clone(),
                auth_token: String::new(),
            }),
        ))
        .await
    }

    /// Asks again for a dataset not described yet; gives up after the batch timeout.
    pub(super) async fn retry_info(&mut self) -> bool {
        let Phase::AwaitInfo { asked, first } = self.phase else {
            return true;
        };
        let limit = Duration::from_secs(self.p2p.node.config.p2p.batch_timeout_seconds);
        if first.elapsed() >= limit {
            let why = format!(
                "the Engine did not describe the dataset of job {} within {} s ([p2p] batch_timeout_seconds)",
                self.job,
                limit.as_secs()
            );
            return self.refuse(&why, "DATASET_TIMEOUT").await;
        }
        if asked.elapsed() >= INFO_RETRY {
            self.phase = Phase::AwaitInfo {
                asked: Instant::now(),
                first,
            };
            return self.ask_info().await;
        }
        true
    }

    /// Drops the pending job with an error the Engine sees.
    pub(super) async fn refuse(&mut self, why: &str, code: &str) -> bool {
        let id = self.job.clone();
        self.p2p.with_reservation(&self.claims, &self.peer, |r| {
            r.pending.remove(&id);
        });
        self.p2p.node.audit("p2p_job_refused", &id, why);
        self.phase = Phase::Idle;
        self.send(update(&id, failure(code, why, 0, false))).await
    }

    /// Checks the Engine's dataset description.
    pub(super) fn shape(&self, info: &DatasetInfoResponse) -> Result<RemoteShape, String> {
        let train = info.train.as_ref().filter(|s| s.available);
        let Some(train) = train else {
            return Err("the Engine's dataset has no available train split".into());
        };
        let count = |n: i64, what: &str| {
            usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_SAMPLES)
                .ok_or_else(|| format!("{what} has {n} samples (0..={MAX_SAMPLES} accepted)"))
        };
        let train = count(train.num_samples, "the train split")?;
        if train == 0 {
            return Err("the train split is empty".into());
        }
        let validation = match info.validation.as_ref().filter(|s| s.available) {
            Some(v) => count(v.num_samples, "the validation split")?,
            None => 0,
        };
        let mut sample = Vec::new();
        let mut len: usize = 1;
        for &d in &info.sample_shape {
            let d = usize::try_from(d)
                .ok()
                .filter(|d| (1..=MAX_SAMPLE_LEN).contains(d))
                .ok_or_else(|| {
                    format!("sample_shape {:?} has a bad dimension", info.sample_shape)
                })?;
            len = len.saturating_mul(d);
            sample.push(d);
        }
        if sample.is_empty() || len > MAX_SAMPLE_LEN {
            return Err(format!(
                "sample_shape {:?} is empty or over {MAX_SAMPLE_LEN} values",
                info.sample_shape
            ));
        }
        let classes = u32::try_from(info.num_classes)
            .ok()
            .filter(|c| (2..=MAX_CLASSES).contains(c))
            .ok_or_else(|| {
                format!(
                    "num_classes {} is not in 2..={MAX_CLASSES}",
                    info.num_classes
                )
            })?;
        if !info.dtype.is_empty() && !info.dtype.eq_ignore_ascii_case("float32") {
            return Err(format!(
                "dtype {:?}: the node takes float32 samples",
                crate::audit::clean(&info.dtype, 32)
            ));
        }
        Ok(RemoteShape {
            train,
            validation,
            sample,
            classes,
        })
    }

    /// The Engine described its dataset: queue the job.
    pub(super) async fn dataset_info(&mut self, info: DatasetInfoResponse) -> bool {
        if !matches!(self.phase, Phase::AwaitInfo { .. }) {
            return true;
        }
        if info.status != StatusCode::StatusSuccess as i32 {
            // Not registered yet: the retry tick asks again.
            let why = info.error.map(|e| e.message).unwrap_or_default();
            return self
                .send(log(
                    &self.job,
                    INFO,
                    format!(
                        "the Engine has no dataset for job {} yet ({}); asking again",
                        self.job,
                        crate::audit::clean(&why, 200)
                    ),
                ))
                .await;
        }
        let shape = match self.shape(&info) {
            Ok(s) => s,
            Err(why) => return self.refuse(&why, "BAD_DATASET").await,
        };
        let id = self.job.clone();
        let Some(wire) = self
            .p2p
            .with_reservation(&self.claims, &self.peer, |r| r.pending.remove(&id))
        else {
            return true;
        };
        let config = &self.p2p.node.config.p2p;
        let (ask_tx, ask_rx) = mpsc::unbounded_channel();
        let remote = Arc::new(RemoteData::new(
            shape.clone(),
            ask_tx,
            Duration::from_secs(config.batch_timeout_seconds),
            config.max_batch_bytes,
        ));
        let jobs = self.p2p.node.jobs.clone();
        jobs.attach_remote(&id, remote.clone());
        let origin = Origin {
            kind: "p2p",
            reservation: Some(self.claims.job_id.clone()),
            peer: Some(self.peer.clone()),
        };
        let key = id.clone();
        let request = wire.request;
        self.total_epochs = request.epochs.unwrap_or(1);
        let submitted =
            tokio::task::spawn_blocking(move || jobs.submit(request, Some(key), &origin)).await;
        match submitted {
            Ok(Ok(_)) => {
                self.remote = Some(remote);
                self.asks = Some(ask_rx);
                self.phase = Phase::Running;
                let notes = wire.notes.join("; ");
                self.send(log(
                    &id,
                    INFO,
                    format!(
                        "job {id} queued: {} training and {} validation samples of shape {:?}, {} classes{}{notes}",
                        shape.train,
                        shape.validation,
                        shape.sample,
                        shape.classes,
                        if notes.is_empty() { "" } else { "; " }
                    ),
                ))
                .await
            }
            Ok(Err(e)) => {
                self.p2p.node.jobs.detach_remote(&id, "refused");
                self.refuse(&e.to_string(), "REJECTED").await
            }
            Err(e) => {
                self.refuse(&format!("internal error: {e}"), "INTERNAL")
                    .await
            }
        }
    }
}
