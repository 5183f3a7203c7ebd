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
                me.work(&id, &control);
                control.finish();
                lock(&me.sched).running.remove(&id);
                me.dispatch();
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a job thread");
                break;
            }
        }
    }

    /// Runs one job to its end (or until it is interrupted).
    fn work(self: &Arc<Self>, id: &str, control: &Arc<Control>) {
        let row = match lock(&self.store).job(id) {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(job = id, error = %e, "cannot read the job");
                return;
            }
        };
        let dir = JobDir::at(PathBuf::from(&row.dir));
        let started = Instant::now();
        let result = self.run(&row, &dir, control);
        if control.abandoned.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let wanted = control.wanted();
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
