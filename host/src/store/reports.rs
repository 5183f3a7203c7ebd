//! Which reports a job change owes the central server: pure functions from a job's row (read
//! inside the transaction that changes it) to the encoded requests the outbox keeps.
//!
//! | origin | change | report |
//! |---|---|---|
//! | `central` | first move to `running` | `NodeService.ReportProgress` (status IN_PROGRESS) |
//! | `central` | an epoch ends | `JobStatusService.UpdateJobStatus` (IN_PROGRESS, progress 0..1, metrics, epoch) |
//! | `central` | `succeeded`, `failed`, `cancelled` | one `JobStatusService.ReportJobResult`: STATUS_SUCCESS (1) or STATUS_FAILED with the error; metrics, weights hash and size, compute time in ms |
//! | `p2p` | `succeeded`, `failed`, `cancelled` | one `JobReservationService.ReportJobCompleteFromNode` |
//! | `p2p` | the reservation ends (the P2P code says so) | one `ReportReservationEndFromNode` |
//! | `local` | anything | nothing |
//!
//! Payloads leave `node_id` (and ReportJobResult's `model_weights_uri`) empty: the reporter
//! fills them when it sends, because the node's id changes if the central server registers it
//! anew and the HTTP address is the running node's.

use std::collections::HashMap;

use cyxwiz_proto::protocol::{
    JobStatus, ReportJobCompleteFromNodeRequest, ReportJobResultRequest, ReportProgressRequest,
    ReportReservationEndFromNodeRequest, StatusCode, UpdateJobStatusRequest,
};
use prost::Message;

use super::jobs::{JobProgress, JobRow};

/// What a report is; stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `NodeService.ReportProgress` with IN_PROGRESS: the job started.
    Started,
    /// `JobStatusService.UpdateJobStatus`: an epoch ended.
    Epoch,
    /// `JobStatusService.ReportJobResult`: the job ended.
    Result,
    /// `JobReservationService.ReportJobCompleteFromNode`: a P2P job ended.
    Complete,
    /// `JobReservationService.ReportReservationEndFromNode`: a reservation ended.
    ReservationEnd,
    /// `JobStatusService.ReportJobResult` FAILED for a job accepted before it was validated
    /// and queued: sent only if the job never made it into the queue (the submission failed,
    /// or the node stopped first); dropped once the job exists.
    Assigned,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Started,
        Kind::Epoch,
        Kind::Result,
        Kind::Complete,
        Kind::ReservationEnd,
        Kind::Assigned,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Started => "started",
            Kind::Epoch => "epoch",
            Kind::Result => "result",
            Kind::Complete => "complete",
            Kind::ReservationEnd => "reservation_end",
            Kind::Assigned => "assigned",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The RPC, for logs.
    pub fn rpc(self) -> &'static str {
        match self {
            Kind::Started => "ReportProgress",
            Kind::Epoch => "UpdateJobStatus",
            Kind::Result | Kind::Assigned => "ReportJobResult",
            Kind::Complete => "ReportJobCompleteFromNode",
            Kind::ReservationEnd => "ReportReservationEndFromNode",
        }
    }
}

/// A report to put in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Delivery order holds within a lane: the job id, or the reservation id for P2P reports.
    pub lane: String,
    /// The job, when the report is about one.
    pub job_id: Option<String>,
    /// What it is.
    pub kind: Kind,
    /// Set for reports that exist at most once (start, result, reservation end).
    pub once_key: Option<String>,
    /// The encoded request, `node_id` empty.
    pub payload: Vec<u8>,
}

/// A job's metrics (a JSON object of numbers) as the protocol's map; other values are
/// dropped.
pub fn metrics_map(json: &str) -> HashMap<String, f64> {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (k.clone(), f)))
                .collect()
        })
        .unwrap_or_default()
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

fn progress_fraction(epoch: u32, total: u32) -> f64 {
    if total == 0 {
        0.0
    } else {
        (f64::from(epoch) / f64::from(total)).clamp(0.0, 1.0)
    }
}

fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The reports owed when `job` (its row after the change) moved to `to`. `first_run` is true
/// when the job had never been running before this change; `now` is Unix seconds.
pub fn for_state(job: &JobRow, to: &str, first_run: bool, now: i64) -> Vec<Planned> {
    let mut out = Vec::new();
    let succeeded = to == "succeeded";
    let error = || {
        if succeeded {
            String::new()
        } else {
            job.error.clone().unwrap_or_else(|| format!("the job {to}"))
        }
    };
    match job.origin.as_str() {
        "central" => {
            if to == "running" && first_run {
                let metrics = metrics_map(&job.metrics);
                let request = ReportProgressRequest {
                    node_id: String::new(),
                    job_id: job.id.clone(),
                    status: Some(JobStatus {
                        job_id: job.id.clone(),
                        status: StatusCode::StatusInProgress as i32,
                        progress: progress_fraction(job.epoch, job.total_epochs),
                        current_node_id: String::new(),
                        start_time: now,
                        end_time: 0,
                        error: None,
                        metrics: metrics.clone(),
                        current_epoch: i32_of(job.epoch),
                    }),
                    current_metrics: metrics,
                };
                out.push(Planned {
                    lane: job.id.clone(),
                    job_id: Some(job.id.clone()),
                    kind: Kind::Started,
                    once_key: Some(format!("started:{}", job.id)),
                    payload: request.encode_to_vec(),
                });
            }
            if is_terminal(to) {
                let request = ReportJobResultRequest {
                    node_id: String::new(),
                    job_id: job.id.clone(),
                    final_status: if succeeded {
                        StatusCode::StatusSuccess as i32
                    } else {
                        StatusCode::StatusFailed as i32
                    },
                    final_metrics: metrics_map(&job.metrics),
                    model_weights_uri: String::new(),
                    model_weights_hash: job.weights_sha256.clone().unwrap_or_default(),
                    model_size: job
                        .weights_bytes
                        .map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)),
                    total_compute_time: (job.run_seconds.max(0.0) * 1000.0).round() as i64,
                    error_message: error(),
                };
                out.push(Planned {
                    lane: job.id.clone(),
                    job_id: Some(job.id.clone()),
                    kind: Kind::Result,
                    once_key: Some(format!("result:{}", job.id)),
                    payload: request.encode_to_vec(),
                });
            }
        }
        "p2p" if is_terminal(to) => {
            // A P2P job without a reservation cannot be reported (the server keys on it).
            if let Some(reservation) = job.reservation.as_deref().filter(|r| !r.is_empty()) {
                let request = ReportJobCompleteFromNodeRequest {
                    reservation_id: reservation.to_owned(),
                    job_id: job.id.clone(),
                    node_id: String::new(),
                    success: succeeded,
                    model_hash: job.weights_sha256.clone().unwrap_or_default(),
                    final_metrics: metrics_map(&job.metrics),
                    training_time_seconds: job.run_seconds.max(0.0).round() as i64,
                    epochs_completed: i32_of(job.epoch),
                };
                out.push(Planned {
                    lane: reservation.to_owned(),
                    job_id: Some(job.id.clone()),
                    kind: Kind::Complete,
                    once_key: Some(format!("complete:{}", job.id)),
                    payload: request.encode_to_vec(),
                });
            }
        }
        _ => {}
    }
    out
}

/// The report owed when an epoch of `job` ended with progress `p`.
pub fn for_epoch(job: &JobRow, p: &JobProgress) -> Vec<Planned> {
    if job.origin != "central" {
        return Vec::new();
    }
    let request = UpdateJobStatusRequest {
        node_id: String::new(),
        job_id: job.id.clone(),
        status: StatusCode::StatusInProgress as i32,
        progress: progress_fraction(p.epoch, job.total_epochs),
        metrics: metrics_map(&p.metrics),
        current_epoch: i32_of(p.epoch),
        log_message: format!("epoch {} of {} done", p.epoch, job.total_epochs),
    };
    vec![Planned {
        lane: job.id.clone(),
        job_id: Some(job.id.clone()),
        kind: Kind::Epoch,
        once_key: None,
        payload: request.encode_to_vec(),
    }]
}

/// The report owed when a P2P reservation ends.
pub fn reservation_end(
    reservation_id: &str,
    jobs_completed: u32,
    total_compute_time: i64,
    node_available: bool,
) -> Planned {
    let request = ReportReservationEndFromNodeRequest {
        reservation_id: reservation_id.to_owned(),
        node_id: String::new(),
        jobs_completed: i32_of(jobs_completed),
        total_compute_time,
        node_available,
    };
    Planned {
        lane: reservation_id.to_owned(),
        job_id: None,
        kind: Kind::ReservationEnd,
        once_key: Some(format!("reservation_end:{reservation_id}")),
        payload: request.encode_to_vec(),
    }
}

/// The FAILED result owed for central job `job_id` if it is never queued (`error` says why).
pub fn assignment(job_id: &str, error: &str) -> Planned {
    let request = ReportJobResultRequest {
        node_id: String::new(),
        job_id: job_id.to_owned(),
        final_status: StatusCode::StatusFailed as i32,
        final_metrics: HashMap::new(),
        model_weights_uri: String::new(),
        model_weights_hash: String::new(),
        model_size: 0,
        total_compute_time: 0,
        error_message: error.to_owned(),
    };
    Planned {
        lane: job_id.to_owned(),
        job_id: Some(job_id.to_owned()),
        kind: Kind::Assigned,
        once_key: Some(format!("assigned:{job_id}")),
        payload: request.encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(origin: &str) -> JobRow {
        JobRow {
            id: "0b6f3e1c-7a52-4a55-9d1f-3b1f0d1c2e3f".into(),
            origin: origin.into(),
            state: "running".into(),
            config: "{}".into(),
            backend: "train-candle".into(),
            dir: "/tmp/j".into(),
            attempt: 1,
            epoch: 2,
            total_epochs: 4,
            step: 0,
            total_steps: 10,
            samples: 100,
            metrics: r#"{"loss":0.25,"accuracy":0.9,"val_loss":0.3,"note":"x"}"#.into(),
            checkpoint: None,
            checkpoint_epoch: None,
            checkpoint_step: None,
            weights_sha256: Some("ab".repeat(32)),
            weights_bytes: Some(4096),
            error: None,
            run_seconds: 12.3456,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            updated_at: String::new(),
            reservation: None,
            peer: None,
        }
    }

    fn kinds(plans: &[Planned]) -> Vec<Kind> {
        plans.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn a_central_job_reports_its_start_once_its_epochs_and_one_result() {
        let job = row("central");
        assert_eq!(kinds(&for_state(&job, "preparing", true, 1)), []);
        let started = for_state(&job, "running", true, 1_700_000_000);
        assert_eq!(kinds(&started), [Kind::Started]);
        let r = ReportProgressRequest::decode(started[0].payload.as_slice()).unwrap();
        let status = r.status.unwrap();
        assert_eq!(status.status, StatusCode::StatusInProgress as i32);
        assert_eq!(status.start_time, 1_700_000_000);
        assert!(r.node_id.is_empty(), "filled when sent");
        // A resume (running again) or a pause is no new start.
        assert_eq!(kinds(&for_state(&job, "running", false, 1)), []);
        assert_eq!(kinds(&for_state(&job, "paused", false, 1)), []);
        assert_eq!(kinds(&for_state(&job, "queued", false, 1)), []);

        let p = JobProgress {
            epoch: 3,
            metrics: r#"{"loss":0.2,"val_accuracy":0.95}"#.into(),
            ..Default::default()
        };
        let epoch = for_epoch(&job, &p);
        assert_eq!(kinds(&epoch), [Kind::Epoch]);
        assert_eq!(epoch[0].once_key, None);
        let u = UpdateJobStatusRequest::decode(epoch[0].payload.as_slice()).unwrap();
        assert_eq!(u.status, StatusCode::StatusInProgress as i32);
        assert_eq!((u.progress, u.current_epoch), (0.75, 3));
        assert_eq!(u.metrics.get("val_accuracy"), Some(&0.95));

        let done = for_state(&job, "succeeded", false, 1);
        assert_eq!(kinds(&done), [Kind::Result]);
        assert_eq!(
            done[0].once_key.as_deref(),
            Some(&*format!("result:{}", job.id))
        );
        let r = ReportJobResultRequest::decode(done[0].payload.as_slice()).unwrap();
        assert_eq!(r.final_status, 1, "STATUS_SUCCESS, never COMPLETED");
        assert_eq!(r.total_compute_time, 12_346, "milliseconds");
        assert_eq!((r.model_weights_hash.len(), r.model_size), (64, 4096));
        assert_eq!(r.final_metrics.len(), 3, "the non-number is dropped");
        assert!(r.error_message.is_empty());
    }

    #[test]
    fn failed_and_cancelled_central_jobs_report_failed_with_the_error() {
        let mut job = row("central");
        job.error = Some("cancelled by a caller; no weights yet".into());
        job.weights_sha256 = None;
        job.weights_bytes = None;
        for to in ["failed", "cancelled"] {
            let plans = for_state(&job, to, false, 1);
            let r = ReportJobResultRequest::decode(plans[0].payload.as_slice()).unwrap();
            assert_eq!(r.final_status, StatusCode::StatusFailed as i32, "{to}");
            assert!(r.error_message.contains("cancelled by a caller"));
            assert_eq!((r.model_weights_hash.as_str(), r.model_size), ("", 0));
        }
        // A job failed straight from the queue has no start to report, only its result.
        assert_eq!(kinds(&for_state(&job, "failed", true, 1)), [Kind::Result]);
        job.error = None;
        let plans = for_state(&job, "failed", false, 1);
        let r = ReportJobResultRequest::decode(plans[0].payload.as_slice()).unwrap();
        assert_eq!(r.error_message, "the job failed");
    }

    #[test]
    fn p2p_jobs_report_their_completion_to_the_reservation_and_local_jobs_nothing() {
        let mut job = row("p2p");
        job.reservation = Some("5d7c0a4e-1111-4000-8000-000000000000".into());
        assert_eq!(kinds(&for_state(&job, "running", true, 1)), []);
        assert!(for_epoch(&job, &JobProgress::default()).is_empty());
        let plans = for_state(&job, "succeeded", false, 1);
        assert_eq!(kinds(&plans), [Kind::Complete]);
        assert_eq!(plans[0].lane, "5d7c0a4e-1111-4000-8000-000000000000");
        let r = ReportJobCompleteFromNodeRequest::decode(plans[0].payload.as_slice()).unwrap();
        assert!(r.success);
        assert_eq!((r.training_time_seconds, r.epochs_completed), (12, 2));
        assert_eq!(r.model_hash, "ab".repeat(32));
        let failed = for_state(&job, "cancelled", false, 1);
        let r = ReportJobCompleteFromNodeRequest::decode(failed[0].payload.as_slice()).unwrap();
        assert!(!r.success);
        job.reservation = None;
        assert!(for_state(&job, "succeeded", false, 1).is_empty());

        let local = row("local");
        for to in ["running", "succeeded", "failed"] {
            assert!(for_state(&local, to, true, 1).is_empty());
        }
        assert!(for_epoch(&local, &JobProgress::default()).is_empty());

        let end = reservation_end("r1", 3, 120, true);
        assert_eq!((end.kind, end.lane.as_str()), (Kind::ReservationEnd, "r1"));
        let r = ReportReservationEndFromNodeRequest::decode(end.payload.as_slice()).unwrap();
        assert_eq!(
            (r.jobs_completed, r.total_compute_time, r.node_available),
            (3, 120, true)
        );
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }
}
