//! The training-job RPCs of `DaemonService`: submit, list, show, cancel, pause, resume, the
//! update stream, a job's log (tail and follow) and its weights (streamed in chunks). Each is
//! a few lines over [`crate::jobs::Jobs`]; the executor's blocking calls run off the async
//! threads. The RPC methods themselves (in [`super::service`]) only delegate here.

use super::{
    checks::{blocking, bounded, invalid},
    convert,
    service::{receiver_stream, Streamed},
};
use crate::{
    jobs::{graph::MAX_DEFINITION_BYTES, JobRequest, JobState, JobUpdate, JobView, Jobs},
    node::NodeError,
};
use cyxwiz_proto::daemon as pb;
use std::{
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use tonic::Status;

/// Jobs `ListJobs` returns when the caller asks for 0.
const DEFAULT_LIST: i32 = 100;
/// Most jobs one `ListJobs` returns.
pub const MAX_LIST_JOBS: i32 = 10_000;
/// Log lines per `JobLogChunk`.
const LINES_PER_CHUNK: usize = 256;
/// Bytes per `WeightsChunk`.
pub const WEIGHTS_CHUNK_BYTES: usize = 256 << 10;
/// How often a followed log is read again.
const FOLLOW_PERIOD: Duration = Duration::from_millis(250);
/// The most of a log `GetJobLogs` reads at once (older lines of a longer log are skipped).
const MAX_LOG_READ: u64 = 16 << 20;

/// The largest request the control socket accepts: a submission with the largest inline
/// dataset the node allows, its graph and room for the other fields.
pub fn max_request_bytes(max_inline_dataset_bytes: usize) -> usize {
    max_inline_dataset_bytes
        .saturating_add(MAX_DEFINITION_BYTES)
        .saturating_add(64 << 10)
        .max(super::MAX_MESSAGE_BYTES)
}

fn err(e: crate::jobs::JobError) -> Status {
    NodeError::from(e).into()
}

fn info(view: &JobView) -> Option<pb::JobInfo> {
    Some(convert::job(view))
}

/// `SubmitJob`: the request checked for size, then validated and queued by the executor.
pub(super) async fn submit(
    jobs: Arc<Jobs>,
    req: pb::SubmitJobRequest,
    max_inline: usize,
) -> Result<pb::SubmitJobResponse, Status> {
    if req.graph.len() > MAX_DEFINITION_BYTES {
        return Err(invalid(
            "graph",
            format!(
                "graph must be at most {MAX_DEFINITION_BYTES} bytes, got {}",
                req.graph.len()
            ),
        ));
    }
    if req.inline_dataset.len() > max_inline {
        return Err(invalid(
            "inline_dataset",
            format!(
                "inline_dataset must be at most {max_inline} bytes ([jobs] max_inline_dataset_bytes), got {}",
                req.inline_dataset.len()
            ),
        ));
    }
    for (name, value) in [
        ("dataset", &req.dataset),
        ("label_column", &req.label_column),
        ("device", &req.device),
        ("backend", &req.backend),
    ] {
        bounded(name, value)?;
    }
    let some = |s: String| (!s.is_empty()).then_some(s);
    let request = JobRequest {
        graph: req.graph,
        dataset: some(req.dataset),
        inline_dataset: (!req.inline_dataset.is_empty()).then_some(req.inline_dataset),
        label_column: some(req.label_column),
        epochs: req.epochs,
        batch_size: req.batch_size,
        learning_rate: req.learning_rate,
        validation_split: req.validation_split,
        seed: req.seed,
        device: some(req.device),
        backend: some(req.backend),
    };
    let view = blocking(move || {
        jobs.submit(request, None, &crate::jobs::Origin::local())
            .map_err(err)
    })
    .await?;
    Ok(pb::SubmitJobResponse { job: info(&view) })
}

/// `ListJobs`: newest first; `state` filters, else `include_completed` decides whether ended
/// jobs are listed.
pub(super) async fn list(
    jobs: Arc<Jobs>,
    req: pb::ListJobsRequest,
) -> Result<pb::ListJobsResponse, Status> {
    if !(0..=MAX_LIST_JOBS).contains(&req.limit) {
        return Err(invalid(
            "limit",
            format!(
                "limit must be between 0 and {MAX_LIST_JOBS}, got {}",
                req.limit
            ),
        ));
    }
    let state = parse_state(&req.state)?;
    let limit = if req.limit == 0 {
        DEFAULT_LIST
    } else {
        req.limit
    };
    let limit = u32::try_from(limit).unwrap_or(1);
    let all = blocking(move || jobs.list(state, limit).map_err(err)).await?;
    let shown = all
        .iter()
        .filter(|v| state.is_some() || req.include_completed || !v.state.is_terminal())
        .map(convert::job)
        .collect();
    Ok(pb::ListJobsResponse { jobs: shown })
}

/// A state filter: empty for any.
pub fn parse_state(text: &str) -> Result<Option<JobState>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    JobState::parse(text).map(Some).ok_or_else(|| {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        invalid(
            "state",
            format!(
                "state must be one of {}; got `{}`",
                names.join(", "),
                text.chars().take(64).collect::<String>().escape_debug()
            ),
        )
    })
}

/// A job by id (blocking on the database).
async fn view(jobs: &Arc<Jobs>, id: String) -> Result<JobView, Status> {
    bounded("job_id", &id)?;
    let jobs = jobs.clone();
    blocking(move || jobs.get(&id).map_err(err)).await
}

/// `GetJob`.
pub(super) async fn get(jobs: Arc<Jobs>, id: String) -> Result<pb::GetJobResponse, Status> {
    let v = view(&jobs, id).await?;
    Ok(pb::GetJobResponse { job: info(&v) })
}

/// What a steering RPC does.
#[derive(Debug, Clone, Copy)]
pub(super) enum Steer {
    Cancel,
    Pause,
    Resume,
}

/// `CancelJob`, `PauseJob`, `ResumeJob`: the job after the change (a cancel waits for the
/// job to stop, up to [`crate::jobs::CANCEL_DEADLINE`]).
pub(super) async fn steer(jobs: Arc<Jobs>, id: String, what: Steer) -> Result<JobView, Status> {
    bounded("job_id", &id)?;
    blocking(move || {
        match what {
            Steer::Cancel => jobs.cancel(&id),
            Steer::Pause => jobs.pause(&id),
            Steer::Resume => jobs.resume(&id),
        }
        .map_err(err)
    })
    .await
}

/// `StreamJobUpdates`: every job's updates, or one job's until it ends.
pub(super) async fn updates(
    jobs: Arc<Jobs>,
    job_id: String,
    mut stop: watch::Receiver<bool>,
) -> Result<Streamed<pb::JobUpdate>, Status> {
    // Subscribe first: nothing that happens after the check below is missed.
    let mut events = jobs.subscribe();
    let only = if job_id.is_empty() {
        None
    } else {
        let v = view(&jobs, job_id).await?;
        if v.state.is_terminal() {
            // Nothing more will happen: the job as it ended, then the end of the stream.
            let (tx, rx) = mpsc::channel(1);
            let _ = tx
                .send(Ok(pb::JobUpdate {
                    job_id: v.id.clone(),
                    update_type: "state".into(),
                    job: info(&v),
                    json: String::new(),
                }))
                .await;
            return Ok(receiver_stream(rx));
        }
        Some(v.id)
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                got = events.recv() => got,
                _ = stop.wait_for(|s| *s) => return,
                () = tx.closed() => return,
            };
            let update = match (got, &only) {
                (Ok(u), _) => u,
                (Err(RecvError::Lagged(_)), Some(id)) => {
                    // Updates were missed: the job as it is now, so an end is not.
                    let (jobs, id) = (jobs.clone(), id.clone());
                    let now = tokio::task::spawn_blocking(move || jobs.get(&id).ok())
                        .await
                        .ok()
                        .flatten();
                    let Some(now) = now else { return };
                    JobUpdate::state(&now.id, now.state, "updates were missed; the job now")
                }
                (Err(RecvError::Lagged(_)), None) => continue,
                (Err(RecvError::Closed), _) => return,
            };
            if only.as_ref().is_some_and(|id| *id != update.job_id) {
                continue;
            }
            let id = update.job_id.clone();
            let got = {
                let jobs = jobs.clone();
                tokio::task::spawn_blocking(move || jobs.get(&id).ok())
                    .await
                    .ok()
                    .flatten()
            };
            let end = only.is_some() && update.is_end();
            let message = pb::JobUpdate {
                job_id: update.job_id.clone(),
                job: got.as_ref().map(convert::job),
                update_type: update.kind.to_string(),
                json: serde_json::to_string(&update).unwrap_or_default(),
            };
            if tx.send(Ok(message)).await.is_err() || end {
                return;
            }
        }
    });
    Ok(receiver_stream(rx))
}

/// Reads a log from `offset`: whole lines, the offset after them, and whether more than
/// [`MAX_LOG_READ`] was waiting (the older part is skipped).
fn read_lines(path: &PathBuf, offset: u64) -> std::io::Result<(Vec<String>, u64)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len <= offset {
        return Ok((Vec::new(), len.min(offset)));
    }
    let start = offset.max(len.saturating_sub(MAX_LOG_READ));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(len - start).read_to_end(&mut bytes)?;
    // Only complete lines; a partial last line is read again next time.
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    if start > offset {
        // Skipped ahead: drop the partial first line.
        text = text
            .split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.to_string());
    }
    let lines = text.lines().map(str::to_string).collect();
    Ok((lines, start + end as u64))
}

/// `GetJobLogs`: the log's last `tail` lines (all when 0), then, when following, new lines
/// and the job after each change until it ends.
pub(super) async fn logs(
    jobs: Arc<Jobs>,
    req: pb::GetJobLogsRequest,
    mut stop: watch::Receiver<bool>,
) -> Result<Streamed<pb::JobLogChunk>, Status> {
    let first = view(&jobs, req.job_id).await?;
    let path = {
        let jobs = jobs.clone();
        let id = first.id.clone();
        blocking(move || jobs.log_path(&id).map_err(err)).await?
    };
    let (tx, rx) = mpsc::channel(8);
    let tail = usize::try_from(req.tail).unwrap_or(usize::MAX);
    tokio::spawn(async move {
        let read = |offset: u64| {
            let path = path.clone();
            async move {
                tokio::task::spawn_blocking(move || read_lines(&path, offset))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|r| r)
            }
        };
        let send_lines = |lines: Vec<String>| {
            let tx = tx.clone();
            async move {
                for chunk in lines.chunks(LINES_PER_CHUNK) {
                    let message = pb::JobLogChunk {
                        lines: chunk.to_vec(),
                        job: None,
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return false;
                    }
                }
                true
            }
        };
        let (mut lines, mut offset) = match read(0).await {
            Ok(got) => got,
            Err(e) => {
                let _ = tx
                    .send(Err(NodeError::internal(format!(
                        "reading the job log: {e}"
                    ))
                    .into()))
                    .await;
                return;
            }
        };
        if tail > 0 && lines.len() > tail {
            lines.drain(..lines.len() - tail);
        }
        if !send_lines(lines).await || !req.follow {
            return;
        }
        let mut last = first;
        let message = pb::JobLogChunk {
            lines: Vec::new(),
            job: info(&last),
        };
        if tx.send(Ok(message)).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(FOLLOW_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let ended = last.state.is_terminal();
            match read(offset).await {
                Ok((lines, next)) => {
                    offset = next;
                    if !send_lines(lines).await {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(NodeError::internal(format!(
                            "reading the job log: {e}"
                        ))
                        .into()))
                        .await;
                    return;
                }
            }
            if ended {
                return;
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
                () = tx.closed() => return,
            }
            let id = last.id.clone();
            let jobs = jobs.clone();
            let now = tokio::task::spawn_blocking(move || jobs.get(&id).ok())
                .await
                .ok()
                .flatten();
            if let Some(now) = now {
                if now != last {
                    let message = pb::JobLogChunk {
                        lines: Vec::new(),
                        job: info(&now),
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                    last = now;
                }
            }
        }
    });
    Ok(receiver_stream(rx))
}

/// `DownloadJobWeights`: `weights.safetensors` in chunks of [`WEIGHTS_CHUNK_BYTES`]; the
/// first carries its sha256 and size.
pub(super) async fn weights(
    jobs: Arc<Jobs>,
    id: String,
) -> Result<Streamed<pb::WeightsChunk>, Status> {
    bounded("job_id", &id)?;
    let (path, sha256, size) = blocking(move || jobs.weights(&id).map_err(err)).await?;
    let file = std::fs::File::open(&path)
        .map_err(|e| NodeError::internal(format!("opening {}: {e}", path.display())))?;
    let (tx, rx) = mpsc::channel(4);
    // Plain file reads on a blocking thread; a client that leaves closes the channel.
    tokio::task::spawn_blocking(move || {
        let mut file = file.take(size);
        let mut offset = 0u64;
        loop {
            let mut buf = vec![0u8; WEIGHTS_CHUNK_BYTES];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        let status = NodeError::internal(format!("reading the weights: {e}"));
                        let _ = tx.blocking_send(Err(status.into()));
                        return;
                    }
                }
            }
            if filled == 0 && offset > 0 {
                return;
            }
            buf.truncate(filled);
            let first = offset == 0;
            let chunk = pb::WeightsChunk {
                data: buf,
                offset,
                sha256: if first { sha256.clone() } else { String::new() },
                total_bytes: if first { size } else { 0 },
            };
            offset += filled as u64;
            if tx.blocking_send(Ok(chunk)).is_err() || filled < WEIGHTS_CHUNK_BYTES {
                return;
            }
        }
    });
    Ok(receiver_stream(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_read_in_whole_lines_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        assert_eq!(read_lines(&path, 0).unwrap(), (Vec::new(), 0));
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let (lines, offset) = read_lines(&path, 0).unwrap();
        assert_eq!(lines, ["one", "two"]);
        assert_eq!(offset, 8);
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let (lines, offset) = read_lines(&path, offset).unwrap();
        assert_eq!(lines, ["three"]);
        assert_eq!(offset, 14);
        assert_eq!(read_lines(&path, offset).unwrap().0, Vec::<String>::new());
    }

    #[test]
    fn state_filters_use_the_states_names() {
        assert_eq!(parse_state("").unwrap(), None);
        assert_eq!(parse_state("paused").unwrap(), Some(JobState::Paused));
        let e = NodeError::from_status(&parse_state("done").unwrap_err());
        assert!(
            e.message.contains("queued, preparing, running"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_request_bound_fits_the_largest_submission() {
        assert_eq!(max_request_bytes(1), super::super::MAX_MESSAGE_BYTES);
        assert!(max_request_bytes(64 << 20) > (64 << 20) + MAX_DEFINITION_BYTES);
    }
}
