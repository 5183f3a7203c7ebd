//! Running jobs: starting queued ones while slots are free, each on its own thread, and
//! carrying one job from `preparing` to its end state.

use super::*;

impl Jobs {
    /// Starts queued jobs while slots are free.
    pub(super) fn dispatch(self: &Arc<Self>) {
        let mut sched = lock(&self.sched);
        while !sched.stopping && sched.running.len() < self.settings.max_running {
            let Some(id) = sched.queue.pop_front() else {
                break;
            };
            let control = Arc::new(Control::default());
            sched.running.insert(id.clone(), control.clone());
            let me = Arc::clone(self);
            let name = format!("job-{}", &id[..8.min(id.len())]);
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                let again = me.work(&id, &control);
                control.finish();
                {
                    let mut sched = lock(&me.sched);
                    sched.running.remove(&id);
                    if again {
                        sched.queue.push_front(id.clone());
                    }
                }
                me.dispatch();
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a job thread");
                break;
            }
        }
    }

    /// Runs one job to its end (or until it is interrupted); true when it must run again at
    /// once (retuned at an epoch boundary).
    fn work(self: &Arc<Self>, id: &str, control: &Arc<Control>) -> bool {
        let row = match lock(&self.store).job(id) {
            Ok(Some(row)) => row,
            Ok(None) => return false,
            Err(e) => {
                tracing::error!(job = id, error = %e, "cannot read the job");
                return false;
            }
        };
        let dir = JobDir::at(PathBuf::from(&row.dir));
        let started = Instant::now();
        let result = self.run(&row, &dir, control);
        if control.abandoned.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let wanted = control.wanted();
        let retune = *lock(&control.retune);
        if let (Ok(outcome), Wanted::Restart, Some(retune)) = (&result, wanted, retune) {
            if outcome.stopped {
                return match self.apply_retune(&row, &dir, retune, outcome.epochs_done) {
                    Ok(()) => true,
                    Err(e) => {
                        let msg = format!("could not apply the new hyperparameters: {e}");
                        let _ = self.transition(id, &dir, JobState::Failed, &msg, Some(&msg));
                        lock(&self.finished)
                            .push((JobState::Failed, started.elapsed().as_secs_f64()));
                        false
                    }
                };
            }
        }
        let (to, detail, error) = match result {
            Ok(outcome) if !outcome.stopped => {
                let m: Vec<String> = outcome
                    .metrics
                    .iter()
                    .map(|m| format!("{}={:.4}", m.name, m.value))
                    .collect();
                (
                    JobState::Succeeded,
                    format!("finished {} epochs: {}", outcome.epochs_done, m.join(" ")),
                    None,
                )
            }
            Ok(_) | Err(_) if wanted == Wanted::Shutdown => {
                if self.settings.resume_after_restart {
                    (
                        JobState::Queued,
                        "node stopping; the job resumes from its checkpoint after a restart"
                            .to_owned(),
                        None,
                    )
                } else {
                    let r = "node stopped during the job".to_owned();
                    (JobState::Failed, r.clone(), Some(r))
                }
            }
            Ok(_) | Err(_) if wanted == Wanted::Cancel => {
                let kept = if dir.weights().is_file() {
                    "partial weights kept"
                } else {
                    "no weights yet"
                };
                (
                    JobState::Cancelled,
                    format!("cancelled; {kept}"),
                    Some(format!("cancelled by a caller; {kept}")),
                )
            }
            Ok(outcome) => (
                JobState::Failed,
                "the backend stopped early".to_owned(),
                Some(format!(
                    "the backend stopped after {} epochs without being asked",
                    outcome.epochs_done
                )),
            ),
            Err(e) => {
                let msg = e.to_string();
                (JobState::Failed, msg.clone(), Some(msg))
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        if let Err(e) = self.transition(id, &dir, to, &detail, error.as_deref()) {
            tracing::error!(job = id, error = %e, "cannot record the job's end");
        }
        if to.is_terminal() {
            lock(&self.finished).push((to, seconds));
        }
        false
    }

    /// Rewrites the job's config and model with `retune` and queues it to continue from the
    /// checkpoint it just wrote at the end of epoch `epochs_done`.
    fn apply_retune(
        &self,
        row: &JobRow,
        dir: &JobDir,
        retune: Retune,
        epochs_done: u32,
    ) -> Result<(), JobError> {
        let mut config: JobConfig = serde_json::from_str(&row.config)
            .map_err(|e| JobError::Io(format!("config.json: {e}")))?;
        let mut model: ModelSpec =
            serde_json::from_slice(&std::fs::read(dir.model()).map_err(io("reading model.json"))?)
                .map_err(|e| JobError::Io(format!("model.json: {e}")))?;
        let mut changes = Vec::new();
        if let Some(lr) = retune.learning_rate {
            config.learning_rate = Some(lr);
            model.optimizer.learning_rate = lr;
            changes.push(format!("learning_rate {lr}"));
        }
        if let Some(batch) = retune.batch_size {
            config.batch_size = batch;
            changes.push(format!("batch_size {batch}"));
        }
        let config_json =
            serde_json::to_vec_pretty(&config).map_err(|e| JobError::Io(e.to_string()))?;
        let model_json =
            serde_json::to_vec_pretty(&model).map_err(|e| JobError::Io(e.to_string()))?;
        write_atomic(&dir.model(), &model_json).map_err(io("writing model.json"))?;
        write_atomic(&dir.config(), &config_json).map_err(io("writing config.json"))?;
        lock(&self.store).set_job_config(&row.id, &String::from_utf8_lossy(&config_json))?;
        let detail = format!(
            "retuned after epoch {epochs_done}: {}; continuing from the checkpoint",
            changes.join(", ")
        );
        self.transition(&row.id, dir, JobState::Queued, &detail, None)
    }

    fn run(
        self: &Arc<Self>,
        row: &JobRow,
        dir: &JobDir,
        control: &Arc<Control>,
    ) -> Result<cyxwiz_sdk::training::TrainingOutcome, JobError> {
        self.transition(
            &row.id,
            dir,
            JobState::Preparing,
            "loading the dataset",
            None,
        )?;
        let config: JobConfig = serde_json::from_str(&row.config)
            .map_err(|e| JobError::Io(format!("config.json: {e}")))?;
        let trainer = self.backend(&config.backend)?;
        let inline = match config.dataset {
            DatasetRef::Inline => {
                Some(std::fs::read(dir.inline_dataset()).map_err(io("reading dataset.bin"))?)
            }
            DatasetRef::Uri(_) | DatasetRef::Remote => None,
        };
        let (data, _) = self.load_data(&config, inline.as_deref(), &row.id)?;
        let model: ModelSpec =
            serde_json::from_slice(&std::fs::read(dir.model()).map_err(io("reading model.json"))?)
                .map_err(|e| JobError::Io(format!("model.json: {e}")))?;
        let resume = match &row.checkpoint {
            Some(path) if Path::new(path).is_file() => {
                std::fs::read(path).map_err(io("reading the checkpoint"))?
            }
            _ => Vec::new(),
        };
        let batch_size = config.batch_size as usize;
        let (_, validation_batches) = data.validation_batches(batch_size);
        let job = TrainingJob {
            job_id: row.id.clone(),
            model,
            epochs: config.epochs,
            batch_size: config.batch_size,
            train_batches: data.train_batches(batch_size),
            validation_batches,
            seed: config.seed,
            device: config.device.clone(),
            threads: self.settings.threads,
            work_dir: dir.work(),
            resume,
        };
        let detail = if job.resume.is_empty() {
            format!(
                "training on {} samples ({} batches per epoch)",
                data.train_len(),
                job.train_batches
            )
        } else {
            format!(
                "resuming from the checkpoint after epoch {}",
                row.checkpoint_epoch.unwrap_or(0)
            )
        };
        self.transition(&row.id, dir, JobState::Running, &detail, None)?;
        let mut session = Session {
            jobs: Arc::clone(self),
            id: row.id.clone(),
            dir: dir.clone(),
            control: Arc::clone(control),
            seed: config.seed,
            batch_size,
            total_epochs: config.epochs,
            samples_at_start: row.samples,
            started: Instant::now(),
            run_seconds_before: row.run_seconds,
            last_write: None,
            order: None,
            metrics: BTreeMap::new(),
            last_checkpoint: None,
            prefetch: self.settings.prefetch,
            data,
        };
        trainer
            .train(&job, &mut session)
            .map_err(|e| JobError::Training(e.message))
    }
}
