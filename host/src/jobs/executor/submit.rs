//! Accepting a job: hyperparameters, backend and room checked, the dataset loaded to learn its
//! shape, the graph validated, the job directory written, then the row and the queue.

use super::*;

impl Jobs {
    /// Validates and queues a job; returns its id. Blocking: it reads the dataset to learn
    /// its shape and check it (call from a blocking thread).
    pub fn submit(
        self: &Arc<Self>,
        request: JobRequest,
        id: Option<String>,
        origin: &Origin,
    ) -> Result<JobView, JobError> {
        let config = request.validate(&self.settings.default_backend, origin.kind)?;
        let id = match id {
            Some(id) => parse_id(&id)?,
            None => uuid::Uuid::new_v4().to_string(),
        };
        self.backend(&config.backend)?;
        self.check_room()?;
        if lock(&self.store).job(&id)?.is_some() {
            return Err(JobError::Exists(id));
        }
        let inline = request.inline_dataset.as_deref();
        let (data, shape) = self.load_data(&config, inline, &id)?;
        let spec = parse_model_definition(&request.graph, &shape, config.learning_rate)?;
        drop(data);
        let dir = JobDir::new(&self.settings.jobs_dir, &id);
        dir.create().map_err(io("creating the job directory"))?;
        let write = |path: PathBuf, bytes: &[u8]| {
            write_atomic(&path, bytes).map_err(io("writing job files"))
        };
        let config_json =
            serde_json::to_vec_pretty(&config).map_err(|e| JobError::Io(e.to_string()))?;
        write(dir.config(), &config_json)?;
        write(dir.graph(), request.graph.as_bytes())?;
        let model_json =
            serde_json::to_vec_pretty(&spec).map_err(|e| JobError::Io(e.to_string()))?;
        write(dir.model(), &model_json)?;
        if let Some(bytes) = inline {
            write(dir.inline_dataset(), bytes)?;
        }
        {
            let mut sched = lock(&self.sched);
            if sched.stopping {
                return Err(JobError::ShuttingDown);
            }
            self.room_in(&sched)?;
            let config_text = String::from_utf8_lossy(&config_json);
            lock(&self.store).insert_job(&NewJob {
                id: &id,
                origin: origin.kind,
                reservation: origin.reservation.as_deref(),
                peer: origin.peer.as_deref(),
                config: &config_text,
                backend: &config.backend,
                dir: &dir.root().to_string_lossy(),
                total_epochs: config.epochs,
            })?;
            sched.queue.push_back(id.clone());
        }
        self.log(
            &dir,
            &format!(
                "submitted: {} parameters, {} epochs, batch {}, backend {}, device {}, seed {}",
                spec.parameter_count(),
                config.epochs,
                config.batch_size,
                config.backend,
                config.device,
                config.seed
            ),
        );
        let _ = self
            .events
            .send(JobUpdate::state(&id, JobState::Queued, "submitted"));
        self.dispatch();
        self.get(&id)
    }

    pub(super) fn backend(&self, name: &str) -> Result<Arc<Trainer>, JobError> {
        self.backends
            .get(name)
            .cloned()
            .ok_or_else(|| JobError::NoBackend {
                name: name.chars().take(64).collect(),
                loaded: if self.backends.is_empty() {
                    "none".into()
                } else {
                    self.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })
    }

    fn check_room(&self) -> Result<(), JobError> {
        self.room_in(&lock(&self.sched))
    }

    fn room_in(&self, sched: &Sched) -> Result<(), JobError> {
        let free_slot = sched.running.len() < self.settings.max_running && sched.queue.is_empty();
        if !free_slot && sched.queue.len() >= self.settings.max_queued {
            return Err(JobError::QueueFull {
                queued: sched.queue.len(),
                max: self.settings.max_queued as u32,
            });
        }
        Ok(())
    }

    /// Attaches the Engine-served dataset of job `id` (before [`Jobs::submit`] of a
    /// `remote://engine` job, and again when a stream reconnects).
    pub fn attach_remote(&self, id: &str, data: Arc<RemoteData>) {
        lock(&self.remote).insert(id.to_owned(), data);
    }

    /// Detaches the Engine-served dataset of job `id`, ending every wait on it.
    pub fn detach_remote(&self, id: &str, why: &str) {
        if let Some(data) = lock(&self.remote).remove(id) {
            data.close(why);
        }
    }

    /// Loads and splits a job's dataset (or finds its remote one).
    pub(super) fn load_data(
        &self,
        config: &JobConfig,
        inline: Option<&[u8]>,
        id: &str,
    ) -> Result<(Samples, DatasetShape), JobError> {
        if config.dataset == DatasetRef::Remote {
            let Some(remote) = lock(&self.remote).get(id).cloned() else {
                return Err(JobError::Io(
                    "the Engine's dataset stream is not connected (remote://engine data lives on the Engine; after a node restart the job cannot continue)".into(),
                ));
            };
            let shape = DatasetShape {
                sample: remote.shape().sample.clone(),
                classes: remote.shape().classes as usize,
            };
            return Ok((Samples::Remote(remote), shape));
        }
        let source = match (&config.dataset, inline) {
            (DatasetRef::Uri(uri), _) => DatasetSource::parse(uri)?,
            (DatasetRef::Inline, Some(bytes)) => {
                if bytes.len() > self.settings.sources.inline_limit {
                    return Err(dataset::DatasetError::InlineTooLarge {
                        size: bytes.len(),
                        limit: self.settings.sources.inline_limit,
                    }
                    .into());
                }
                DatasetSource::Inline(bytes.to_vec())
            }
            (DatasetRef::Inline, None) => {
                return Err(JobError::Io("the job's inline dataset is missing".into()))
            }
            (DatasetRef::Remote, _) => {
                return Err(JobError::Io("remote data handled above".into()))
            }
        };
        let loaded = dataset::load(
            &source,
            &self.settings.sources,
            config.label_column.as_deref(),
        )?;
        let split = loaded.train.split(config.validation_split, config.seed)?;
        let shape = DatasetShape {
            sample: split.train.shape().to_vec(),
            classes: split.train.classes() as usize,
        };
        Ok((
            Samples::Local(Data {
                train: split.train,
                validation: split.validation,
            }),
            shape,
        ))
    }
}
