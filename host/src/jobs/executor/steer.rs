//! Steering jobs: cancel (with the host-enforced deadline), pause, resume, and the stop with
//! the node.

use super::*;

impl Jobs {
    /// Cancels a job: a queued or paused-without-thread job at once; a running one within
    /// [`CANCEL_DEADLINE`] (after which the host ends it itself, keeping the weights of its
    /// last checkpoint). Blocking: waits for the outcome.
    pub fn cancel(self: &Arc<Self>, id: &str) -> Result<JobView, JobError> {
        let view = self.get(id)?;
        let state = view.state;
        if state.is_terminal() {
            return Err(JobError::WrongState {
                id: view.id,
                state,
                what: "it has ended already",
            });
        }
        let dir = JobDir::at(PathBuf::from(&view.dir));
        let control = {
            let mut sched = lock(&self.sched);
            match sched.running.get(&view.id) {
                Some(c) => Some(c.clone()),
                None => {
                    sched.queue.retain(|q| q != &view.id);
                    None
                }
            }
        };
        let Some(control) = control else {
            // Queued, or paused across a restart: nothing runs; keep the checkpoint's weights.
            let kept = if self.weights_from_last_checkpoint(&view.id, &dir)? {
                "partial weights kept"
            } else {
                "no weights yet"
            };
            self.transition(
                &view.id,
                &dir,
                JobState::Cancelled,
                &format!("cancelled; {kept}"),
                Some(&format!("cancelled by a caller; {kept}")),
            )?;
            return self.get(&view.id);
        };
        control.want(Wanted::Cancel);
        if !control.wait_done(CANCEL_DEADLINE) {
            control
                .abandoned
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let kept = if self.weights_from_last_checkpoint(&view.id, &dir)? {
                "partial weights from the last checkpoint kept"
            } else {
                "no weights yet"
            };
            let msg = format!("cancelled; the backend did not stop within {} s, so the node ended the job; {kept}", CANCEL_DEADLINE.as_secs());
            self.transition(&view.id, &dir, JobState::Cancelled, &msg, Some(&msg))?;
            lock(&self.finished).push((JobState::Cancelled, 0.0));
        }
        self.get(&view.id)
    }

    /// Cancels a network job the central server named (blocking, like [`Jobs::cancel`]); false
    /// when no such unfinished network job is here.
    pub fn cancel_network_job(self: &Arc<Self>, id: &str) -> bool {
        match self.get(id) {
            Ok(view) if view.origin != "local" && !view.state.is_terminal() => {
                self.cancel(id).is_ok()
            }
            _ => false,
        }
    }

    /// Writes the job's weights from its last checkpoint, if it has one; true when the job
    /// has weights afterwards.
    fn weights_from_last_checkpoint(&self, id: &str, dir: &JobDir) -> Result<bool, JobError> {
        let row = lock(&self.store).job(id)?;
        let checkpoint = row.and_then(|r| r.checkpoint).map(PathBuf::from);
        if let Some(bytes) = checkpoint.and_then(|p| std::fs::read(p).ok()) {
            let _ = self.write_weights(id, dir, &bytes);
        }
        Ok(dir.weights().is_file())
    }

    /// Changes a running job's learning rate and/or batch size. They apply at its next epoch
    /// boundary: the job checkpoints there and continues from that checkpoint with the new
    /// values (a job in its last epoch keeps its values). Both are bounded like a new job's.
    pub fn retune(&self, id: &str, retune: Retune) -> Result<JobView, JobError> {
        let invalid = |field: &str, message: String| JobError::Invalid {
            field: field.to_owned(),
            message,
        };
        if let Some(lr) = retune.learning_rate {
            if !(lr.is_finite() && lr > 0.0 && lr <= 10.0) {
                return Err(invalid("learning_rate", format!("{lr} is not in (0, 10]")));
            }
        }
        if let Some(b) = retune.batch_size {
            if !(1..=crate::jobs::request::MAX_BATCH_SIZE).contains(&b) {
                return Err(invalid(
                    "batch_size",
                    format!("{b} is not in 1..={}", crate::jobs::request::MAX_BATCH_SIZE),
                ));
            }
        }
        let view = self.get(id)?;
        let control = lock(&self.sched).running.get(&view.id).cloned();
        match (view.state, control) {
            (JobState::Preparing | JobState::Running | JobState::Paused, Some(c)) => {
                let mut pending = lock(&c.retune);
                let merged = Retune {
                    learning_rate: retune
                        .learning_rate
                        .or(pending.and_then(|p| p.learning_rate)),
                    batch_size: retune.batch_size.or(pending.and_then(|p| p.batch_size)),
                };
                *pending = Some(merged);
                drop(pending);
                self.log(
                    &JobDir::at(PathBuf::from(&view.dir)),
                    &format!(
                        "new hyperparameters asked: {merged:?}; applied at the next epoch boundary"
                    ),
                );
                Ok(view)
            }
            (state, _) => Err(JobError::WrongState {
                id: view.id,
                state,
                what: "only a running job can be retuned",
            }),
        }
    }

    /// Pauses a running job at its next step (it checkpoints first).
    pub fn pause(&self, id: &str) -> Result<JobView, JobError> {
        let view = self.get(id)?;
        let control = lock(&self.sched).running.get(&view.id).cloned();
        match (view.state, control) {
            (JobState::Preparing | JobState::Running, Some(c)) => {
                c.want(Wanted::Pause);
                self.get(&view.id)
            }
            (JobState::Paused, _) => Ok(view),
            (state, _) => Err(JobError::WrongState {
                id: view.id,
                state,
                what: "only a running job can be paused",
            }),
        }
    }

    /// Resumes a paused job.
    pub fn resume(self: &Arc<Self>, id: &str) -> Result<JobView, JobError> {
        let view = self.get(id)?;
        let control = lock(&self.sched).running.get(&view.id).cloned();
        match (view.state, control) {
            (JobState::Paused | JobState::Running | JobState::Preparing, Some(c)) => {
                c.want(Wanted::Run);
                self.get(&view.id)
            }
            (JobState::Paused, None) => {
                // Paused across a restart: queue it; it resumes from its checkpoint.
                let dir = JobDir::at(PathBuf::from(&view.dir));
                {
                    let mut sched = lock(&self.sched);
                    self.transition(
                        &view.id,
                        &dir,
                        JobState::Queued,
                        "resumed; waiting for a slot",
                        None,
                    )?;
                    sched.queue.push_back(view.id.clone());
                }
                self.dispatch();
                self.get(&view.id)
            }
            (state, _) => Err(JobError::WrongState {
                id: view.id,
                state,
                what: "only a paused job can be resumed",
            }),
        }
    }

    /// Stops with the node: running jobs checkpoint and stop (resumed after a restart when
    /// `resume_after_restart`); waits up to `timeout` for them.
    pub fn shutdown(&self, timeout: Duration) {
        let controls: Vec<Arc<Control>> = {
            let mut sched = lock(&self.sched);
            sched.stopping = true;
            sched.running.values().cloned().collect()
        };
        for c in &controls {
            c.want(Wanted::Shutdown);
        }
        let deadline = Instant::now() + timeout;
        for c in &controls {
            c.wait_done(deadline.saturating_duration_since(Instant::now()));
        }
    }
}
