//! `JobExecutionService` for the Engine: connect (the P2P token), send jobs, pause, resume,
//! cancel, start the next job of a reservation, download weights (resumable, chunk-checked)
//! and disconnect. The training stream itself is [`super::stream`].

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use cyxwiz_proto::protocol::{
    job_execution_service_server::JobExecutionService, CancelTrainingRequest,
    CancelTrainingResponse, ConnectRequest, ConnectResponse, DeviceType, DisconnectRequest,
    DisconnectResponse, DownloadRequest, Error as PbError, JobConfig, NodeCapabilities,
    PauseTrainingRequest, PauseTrainingResponse, ResumeTrainingRequest, ResumeTrainingResponse,
    SendJobRequest, SendJobResponse, StartNewJobRequest, StartNewJobResponse, StatusCode,
    TrainingCommand, TrainingUpdate, WeightsChunk,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::{now, peer, token::Claims, P2p};
use crate::jobs::dir::hex;
use crate::jobs::request::REMOTE_ENGINE;
use crate::jobs::wire::{job_request, WirePolicy};
use crate::jobs::{JobError, JobState, JobView, Origin};

/// A server stream.
pub type Streamed<T> =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Turns a channel into a response stream.
pub fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Streamed<T> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// The service (cheap to clone).
#[derive(Debug, Clone)]
pub struct ExecutionSvc(pub Arc<P2p>);

/// A job error as gRPC status.
pub fn job_status(e: JobError) -> Status {
    crate::node::NodeError::from(e).into()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("a job task failed: {e}")))?
        .map_err(job_status)
}

fn error(code: i32, message: impl Into<String>) -> Option<PbError> {
    Some(PbError {
        code,
        message: message.into(),
        details: String::new(),
    })
}

/// What became of a job sent by the Engine.
pub enum Accepted {
    /// Queued in the executor.
    Queued,
    /// Waiting for the training stream (its dataset is on the Engine).
    AwaitingStream,
}

impl P2p {
    /// The capabilities announced on connect.
    fn capabilities(&self) -> NodeCapabilities {
        let node = &self.node;
        let mut devices = vec![DeviceType::DeviceCpu as i32];
        if !node.inventory.gpus.is_empty() {
            devices.push(DeviceType::DeviceCuda as i32);
        }
        let optimizers = if node.jobs.backends().next().is_some() {
            ["sgd", "adam", "adamw", "rmsprop"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            Vec::new()
        };
        NodeCapabilities {
            supported_devices: devices,
            max_memory: i64::try_from(node.inventory.ram_total_bytes).unwrap_or(i64::MAX),
            max_batch_size: crate::jobs::request::MAX_BATCH_SIZE as i32,
            supported_optimizers: optimizers,
            supports_checkpointing: true,
            supports_distributed: false,
        }
    }

    /// Takes job `job_id` of the token's reservation: converts it, then queues it, or keeps it
    /// until the training stream opens when its data is on the Engine. Idempotent.
    pub async fn accept(
        self: &Arc<Self>,
        claims: &Claims,
        peer: &str,
        job_id: &str,
        mut config: JobConfig,
        inline: Vec<u8>,
        dataset_uri: &str,
    ) -> Result<Accepted, Status> {
        self.permit(claims, job_id, peer)?;
        crate::jobs::parse_id(job_id).map_err(job_status)?;
        let (known, ended) =
            self.with_reservation(claims, peer, |r| (r.pending.contains_key(job_id), r.ended));
        if ended {
            return Err(Status::failed_precondition(format!(
                "reservation {} has ended",
                claims.job_id
            )));
        }
        if known {
            return Ok(Accepted::AwaitingStream);
        }
        let jobs = self.node.jobs.clone();
        let id = job_id.to_owned();
        if blocking(move || Ok(jobs.get(&id).ok())).await?.is_some() {
            return Ok(Accepted::Queued);
        }
        config.job_id = job_id.to_owned();
        if !dataset_uri.is_empty() {
            config.dataset_uri = dataset_uri.to_owned();
        }
        if inline.len() > self.node.config.jobs.max_inline_dataset_bytes {
            return Err(Status::resource_exhausted(format!(
                "initial_dataset is {} bytes, over [jobs] max_inline_dataset_bytes = {}",
                inline.len(),
                self.node.config.jobs.max_inline_dataset_bytes
            )));
        }
        let policy =
            WirePolicy::for_config(&self.node.config, !self.node.inventory.gpus.is_empty());
        let wire = job_request(&config, Some(inline), &policy).map_err(job_status)?;
        let remote = wire.request.dataset.as_deref() == Some(REMOTE_ENGINE);
        self.node.audit(
            "p2p_job",
            job_id,
            &format!(
                "from {peer}, reservation {}: {} epochs, batch {}, dataset {}",
                claims.job_id,
                config.epochs,
                config.batch_size,
                crate::audit::clean(&config.dataset_uri, 128)
            ),
        );
        if remote {
            self.with_reservation(claims, peer, |r| {
                r.pending.insert(job_id.to_owned(), wire);
                r.jobs.push(job_id.to_owned());
            });
            return Ok(Accepted::AwaitingStream);
        }
        let origin = Origin {
            kind: "p2p",
            reservation: Some(claims.job_id.clone()),
            peer: Some(peer.to_owned()),
        };
        let jobs = self.node.jobs.clone();
        let id = job_id.to_owned();
        let request = wire.request;
        blocking(move || jobs.submit(request, Some(id), &origin)).await?;
        self.with_reservation(claims, peer, |r| r.jobs.push(job_id.to_owned()));
        Ok(Accepted::Queued)
    }

    /// Authenticates a steering call on job `id` of the caller's reservation, audits it as
    /// `kind` and runs `f` on the executor off the async threads.
    async fn steer<T>(
        &self,
        request: &Request<T>,
        id: &str,
        kind: &'static str,
        detail: &str,
        f: impl FnOnce(&Arc<crate::jobs::Jobs>, &str) -> Result<JobView, JobError> + Send + 'static,
    ) -> Result<Result<JobView, JobError>, Status> {
        let peer = peer(request);
        let claims = self.authenticate(request, "")?;
        self.own_job(&claims, id, &peer).await?;
        self.node.audit(kind, id, &format!("{peer}{detail}"));
        let jobs = self.node.jobs.clone();
        let key = id.to_owned();
        blocking(move || Ok(f(&jobs, &key))).await
    }

    /// Checks that job `id` is a P2P job of the token's reservation.
    async fn own_job(&self, claims: &Claims, id: &str, peer: &str) -> Result<(), Status> {
        self.permit(claims, id, peer)?;
        let jobs = self.node.jobs.clone();
        let key = id.to_owned();
        let view = blocking(move || jobs.get(&key)).await?;
        if view.origin != "p2p" || view.reservation.as_deref() != Some(claims.job_id.as_str()) {
            return Err(Status::not_found(format!(
                "no job {} in this reservation",
                crate::audit::clean(id, 64)
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl JobExecutionService for ExecutionSvc {
    async fn connect_to_node(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Response<ConnectResponse>, Status> {
        let p2p = &self.0;
        let peer = peer(&request);
        let body = request.get_ref().auth_token.clone();
        let claims = p2p.authenticate(&request, if body.is_empty() { "" } else { &body })?;
        let r = request.into_inner();
        if !r.job_id.is_empty() {
            p2p.permit(&claims, &r.job_id, &peer)?;
        }
        p2p.with_reservation(&claims, &peer, |res| res.connected = true);
        p2p.node.audit(
            "p2p_connect",
            &claims.job_id,
            &format!(
                "Engine {} at {peer} (wallet {})",
                crate::audit::clean(&r.engine_version, 64),
                crate::audit::clean(&claims.sub, 64)
            ),
        );
        tracing::info!(reservation = %claims.job_id, %peer, "an Engine connected");
        Ok(Response::new(ConnectResponse {
            status: StatusCode::StatusSuccess as i32,
            node_id: p2p.node.central.node_id(),
            capabilities: Some(p2p.capabilities()),
            error: None,
        }))
    }

    async fn disconnect_from_node(
        &self,
        request: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectResponse>, Status> {
        let p2p = &self.0;
        let peer = peer(&request);
        let claims = p2p.authenticate(&request, "")?;
        let reason = crate::audit::clean(&request.get_ref().reason, 256);
        p2p.with_reservation(&claims, &peer, |r| r.connected = false);
        p2p.node.audit(
            "p2p_disconnect",
            &claims.job_id,
            &format!("{peer}: {reason}"),
        );
        Ok(Response::new(DisconnectResponse {
            status: StatusCode::StatusSuccess as i32,
            message: "disconnected; jobs of the reservation keep their results".into(),
        }))
    }

    async fn send_job(
        &self,
        request: Request<SendJobRequest>,
    ) -> Result<Response<SendJobResponse>, Status> {
        let p2p = &self.0;
        let peer = peer(&request);
        let claims = p2p.authenticate(&request, "")?;
        let r = request.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("SendJobRequest.config is missing"))?;
        let job_id = if r.job_id.is_empty() {
            config.job_id.clone()
        } else {
            r.job_id.clone()
        };
        match p2p
            .accept(
                &claims,
                &peer,
                &job_id,
                config,
                r.initial_dataset,
                &r.dataset_uri,
            )
            .await
        {
            Ok(_) => Ok(Response::new(SendJobResponse {
                status: StatusCode::StatusSuccess as i32,
                accepted: true,
                estimated_start_time: now(),
                rejection_reason: String::new(),
                error: None,
            })),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                Err(s)
            }
            Err(s) => Ok(Response::new(SendJobResponse {
                status: StatusCode::StatusError as i32,
                accepted: false,
                estimated_start_time: 0,
                rejection_reason: s.message().to_owned(),
                error: error(s.code() as i32, s.message()),
            })),
        }
    }

    type StreamTrainingMetricsStream = Streamed<TrainingUpdate>;

    async fn stream_training_metrics(
        &self,
        request: Request<Streaming<TrainingCommand>>,
    ) -> Result<Response<Self::StreamTrainingMetricsStream>, Status> {
        let p2p = &self.0;
        let peer = peer(&request);
        let claims = p2p.authenticate(&request, "")?;
        let job_id = request
            .metadata()
            .get("x-job-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| claims.job_id.clone(), str::to_owned);
        p2p.permit(&claims, &job_id, &peer)?;
        if p2p.with_reservation(&claims, &peer, |r| r.ended) {
            return Err(Status::failed_precondition(format!(
                "reservation {} has ended",
                claims.job_id
            )));
        }
        let rx = super::stream::open(p2p.clone(), claims, peer, job_id, request.into_inner());
        Ok(Response::new(receiver_stream(rx)))
    }

    type DownloadWeightsStream = Streamed<WeightsChunk>;

    async fn download_weights(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadWeightsStream>, Status> {
        let p2p = &self.0;
        let peer = peer(&request);
        let claims = p2p.authenticate(&request, "")?;
        let r = request.into_inner();
        p2p.own_job(&claims, &r.job_id, &peer).await?;
        let jobs = p2p.node.jobs.clone();
        let id = r.job_id.clone();
        let (path, sha256, size) = blocking(move || jobs.weights(&id)).await?;
        let offset =
            u64::try_from(r.offset).map_err(|_| Status::invalid_argument("offset is negative"))?;
        if offset > size {
            return Err(Status::out_of_range(format!(
                "offset {offset} is past the end of the {size}-byte weights"
            )));
        }
        let cap = p2p.node.config.p2p.max_download_chunk_bytes;
        let chunk = match usize::try_from(r.chunk_size) {
            Ok(0) | Err(_) => cap,
            Ok(n) => n.min(cap),
        };
        p2p.node.audit(
            "p2p_download",
            &r.job_id,
            &format!("{peer}: from byte {offset} of {size} (sha256 {sha256})"),
        );
        let mut file = std::fs::File::open(&path)
            .map_err(|e| Status::internal(format!("opening the weights: {e}")))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Status::internal(format!("reading the weights: {e}")))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut file = file.take(size - offset);
            let mut at = offset;
            loop {
                let want = chunk.min((size - at) as usize);
                let mut buf = vec![0u8; want];
                if let Err(e) = file.read_exact(&mut buf) {
                    let _ = tx
                        .blocking_send(Err(Status::internal(format!("reading the weights: {e}"))));
                    return;
                }
                let last = at + want as u64 >= size;
                let piece = WeightsChunk {
                    checksum: hex(&Sha256::digest(&buf)),
                    data: buf,
                    offset: at as i64,
                    total_size: size as i64,
                    is_last_chunk: last,
                };
                at += want as u64;
                if tx.blocking_send(Ok(piece)).is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(receiver_stream(rx)))
    }

    async fn pause_training(
        &self,
        request: Request<PauseTrainingRequest>,
    ) -> Result<Response<PauseTrainingResponse>, Status> {
        let id = request.get_ref().job_id.clone();
        let outcome = self
            .0
            .steer(&request, &id, "p2p_pause", "", |jobs, id| jobs.pause(id))
            .await?;
        Ok(Response::new(match outcome {
            Ok(view) => PauseTrainingResponse {
                success: true,
                checkpoint_path: String::new(),
                current_epoch: view.epoch as i32,
                current_batch: view.step as i32,
                message: "pausing: the job checkpoints at its next step and waits".into(),
            },
            Err(e) => PauseTrainingResponse {
                success: false,
                message: e.to_string(),
                ..Default::default()
            },
        }))
    }

    async fn resume_training(
        &self,
        request: Request<ResumeTrainingRequest>,
    ) -> Result<Response<ResumeTrainingResponse>, Status> {
        let id = request.get_ref().job_id.clone();
        let outcome = self
            .0
            .steer(&request, &id, "p2p_resume", "", |jobs, id| jobs.resume(id))
            .await?;
        Ok(Response::new(match outcome {
            Ok(view) => ResumeTrainingResponse {
                success: true,
                resumed_epoch: view.epoch as i32,
                resumed_batch: view.step as i32,
                message: "resumed".into(),
            },
            Err(e) => ResumeTrainingResponse {
                success: false,
                message: e.to_string(),
                ..Default::default()
            },
        }))
    }

    async fn cancel_training(
        &self,
        request: Request<CancelTrainingRequest>,
    ) -> Result<Response<CancelTrainingResponse>, Status> {
        let r = request.get_ref().clone();
        let detail = format!(": {}", crate::audit::clean(&r.reason, 256));
        let outcome = self
            .0
            .steer(&request, &r.job_id, "p2p_cancel", &detail, |jobs, id| {
                jobs.cancel(id)
            })
            .await?;
        Ok(Response::new(match outcome {
            Ok(view) => {
                let saved = view.weights_sha256.is_some() && r.save_partial_model;
                CancelTrainingResponse {
                    success: view.state == JobState::Cancelled,
                    epochs_completed: view.epoch as i32,
                    partial_model_saved: saved,
                    partial_model_path: if saved {
                        format!("{}/weights.safetensors", view.dir)
                    } else {
                        String::new()
                    },
                    message: view.error.unwrap_or_else(|| "cancelled".into()),
                }
            }
            Err(e) => CancelTrainingResponse {
                success: false,
                message: e.to_string(),
                ..Default::default()
            },
        }))
    }

    async fn start_new_job(
        &self,
        request: Request<StartNewJobRequest>,
    ) -> Result<Response<StartNewJobResponse>, Status> {
        let p2p = &self.0;
        let peer = peer(&request);
        let claims = p2p.authenticate(&request, "")?;
        let r = request.into_inner();
        if !r.reservation_id.is_empty() && r.reservation_id != claims.job_id {
            return Err(Status::permission_denied(format!(
                "reservation {} is not this token's ({})",
                crate::audit::clean(&r.reservation_id, 64),
                claims.job_id
            )));
        }
        let config = r
            .job_config
            .ok_or_else(|| Status::invalid_argument("StartNewJobRequest.job_config is missing"))?;
        let job_id = if r.job_id.is_empty() {
            config.job_id.clone()
        } else {
            r.job_id
        };
        let dataset_uri = config.dataset_uri.clone();
        Ok(Response::new(
            match p2p
                .accept(&claims, &peer, &job_id, config, Vec::new(), &dataset_uri)
                .await
            {
                Ok(Accepted::Queued) => StartNewJobResponse {
                    accepted: true,
                    message: format!("job {job_id} queued"),
                },
                Ok(Accepted::AwaitingStream) => StartNewJobResponse {
                    accepted: true,
                    message: format!(
                        "job {job_id} starts when the training stream serves its dataset"
                    ),
                },
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                    ) =>
                {
                    return Err(s)
                }
                Err(s) => StartNewJobResponse {
                    accepted: false,
                    message: s.message().to_owned(),
                },
            },
        ))
    }
}
