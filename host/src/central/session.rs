//! One session with the central server, from RegisterNode until it ends: adopting the id,
//! heartbeats that carry the node's work (`active_jobs`, and `current_status` so the server
//! computes load and keeps a busy node busy), `jobs_to_cancel` honoured off the async runtime,
//! and the periodic registration check (`NodeDiscoveryService/GetNodeInfo`), because the real
//! server answers heartbeats with SUCCESS even for a node it has forgotten. Reconnection and
//! backoff are `super::run`'s.

use super::{
    dial::{Client, Discovery},
    node_info, now,
    uptime::Uptime,
    ClientContext, Workload,
};
use cyxwiz_proto::protocol::{
    GetNodeInfoRequest, HeartbeatRequest, NodeInfo, RegisterNodeRequest, StatusCode,
};
use std::{sync::Arc, time::Duration};
use tonic::Code;

/// Why a session with the central server ended.
pub(super) enum Ended {
    /// The server refused our credentials.
    Unauthenticated(String),
    /// The server no longer knows the node: register again at once.
    Forgotten,
    /// Transport or server failure: back off and retry.
    Lost(String),
    /// The node is shutting down.
    Stopped,
}

/// The message shown when the server refuses our token.
pub(super) fn unauthenticated_message(status: &tonic::Status, have_token: bool) -> String {
    let hint = if have_token {
        "the token in CYXWIZ_AUTH_TOKEN / [central_server] auth_token_file / auth_token was refused"
    } else {
        "no token configured: set CYXWIZ_AUTH_TOKEN or [central_server] auth_token_file to your CyxWiz account token"
    };
    format!(
        "central server refused the node (UNAUTHENTICATED: {}); {hint}; not retrying",
        status.message()
    )
}

fn describe(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

/// The connection to the central server: the NodeService client (with the Bearer token) and
/// NodeDiscoveryService on the same channel.
pub(super) struct Clients {
    pub node: Client,
    pub discovery: Discovery,
}

/// Registers the node and returns the id the server assigned.
pub(super) async fn register(
    ctx: &ClientContext,
    client: &mut Client,
    ip: &str,
    uptime: &mut Uptime,
) -> Result<String, Ended> {
    let token = ctx.sources.config.central_server.auth_token.clone();
    let info = node_info(
        &ctx.sources,
        &ctx.link.node_id(),
        ip,
        uptime.percent().await,
    );
    let request = RegisterNodeRequest {
        info: Some(info),
        authentication_token: token.clone(),
        public_key: Vec::new(),
    };
    let response = match client.register_node(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::Unauthenticated => {
            return Err(Ended::Unauthenticated(unauthenticated_message(
                &s,
                !token.is_empty(),
            )))
        }
        Err(s) => {
            return Err(Ended::Lost(format!(
                "RegisterNode failed: {}",
                describe(&s)
            )))
        }
    };
    if response.status != StatusCode::StatusSuccess as i32 || response.node_id.is_empty() {
        let why = response
            .error
            .map(|e| e.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("status {}", response.status));
        return Err(Ended::Lost(format!("RegisterNode was refused: {why}")));
    }
    Ok(response.node_id)
}

/// Adopts and persists the server's id for this node.
pub(super) fn adopt(ctx: &ClientContext, id: &str) {
    let previous = ctx.link.node_id();
    ctx.link.adopt(id);
    if previous != id {
        tracing::info!(previous = %previous, id = %id, "adopted the node id assigned by the central server");
        match crate::store::Store::open(&ctx.database) {
            Ok(store) => {
                if let Err(e) = store.set_node_id(id) {
                    tracing::error!(error = %e, "cannot persist the node id");
                }
                let _ = store.audit("central_registered", id, &format!("was {previous}"));
            }
            Err(e) => tracing::error!(error = %e, "cannot persist the node id"),
        }
    }
}

/// The heartbeat: `current_status` is always present (the server computes the node's load from
/// `active_jobs` only when it is), `active_jobs` lists the network jobs and reservations.
pub(super) fn heartbeat_request(
    node_id: String,
    info: NodeInfo,
    active_jobs: Vec<String>,
) -> HeartbeatRequest {
    HeartbeatRequest {
        node_id,
        current_status: Some(info),
        active_jobs,
    }
}

/// The node's active network jobs, read off the async runtime's threads (the executor's store).
async fn active_jobs(workload: &Arc<dyn Workload>) -> Vec<String> {
    let workload = workload.clone();
    match tokio::task::spawn_blocking(move || workload.active_jobs()).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the active jobs for the heartbeat");
            Vec::new()
        }
    }
}

/// Cancels the jobs the server named in `jobs_to_cancel`, each on a blocking thread (a cancel
/// waits up to 2 s for the job to stop), logging what happened; returns each id with whether a
/// job was cancelled.
pub(super) async fn cancel_jobs(
    workload: Arc<dyn Workload>,
    ids: Vec<String>,
) -> Vec<(String, bool)> {
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        let worker = workload.clone();
        let job = id.clone();
        let cancelled = match tokio::task::spawn_blocking(move || worker.cancel(&job)).await {
            Ok(cancelled) => cancelled,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cancelling the job at the central server's request failed");
                false
            }
        };
        if cancelled {
            tracing::info!(job = %id, "cancelled the job at the central server's request (jobs_to_cancel)");
        } else {
            tracing::warn!(job = %id, "the central server asked to cancel a job that is not queued or running here");
        }
        done.push((id, cancelled));
    }
    done
}

/// What a registration check found.
enum Check {
    /// The server knows the node.
    Known,
    /// NOT_FOUND: the server has forgotten the node.
    Forgotten,
    /// The server does not serve GetNodeInfo: stop checking this session.
    Unsupported,
    /// Any other failure: heartbeats will notice a lost link; check again later.
    Failed(String),
}

async fn check_registration(discovery: &mut Discovery, node_id: &str) -> Check {
    let request = GetNodeInfoRequest {
        node_id: node_id.to_string(),
    };
    match discovery.get_node_info(request).await {
        Ok(_) => Check::Known,
        Err(s) if s.code() == Code::NotFound => Check::Forgotten,
        Err(s) if s.code() == Code::Unimplemented => Check::Unsupported,
        Err(s) => Check::Failed(describe(&s)),
    }
}

/// Sends heartbeats, and checks the registration every `registration_check_seconds`, until
/// the session ends.
pub(super) async fn heartbeats(
    ctx: &ClientContext,
    clients: &mut Clients,
    ip: &str,
    uptime: &mut Uptime,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Ended {
    let section = &ctx.sources.config.central_server;
    let every = Duration::from_secs(section.heartbeat_interval_seconds);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let check_every = Duration::from_secs(section.registration_check_seconds);
    let mut checks =
        tokio::time::interval_at(tokio::time::Instant::now() + check_every, check_every);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checking = true;
    enum Due {
        Heartbeat,
        Check,
        Stop,
    }
    loop {
        // The select only picks what is due (its output must not hold the watch's guard
        // across the awaits below).
        let due = tokio::select! {
            _ = ticker.tick() => Due::Heartbeat,
            _ = checks.tick(), if checking => Due::Check,
            _ = stop.wait_for(|s| *s) => Due::Stop,
        };
        match due {
            Due::Stop => return Ended::Stopped,
            Due::Heartbeat => {
                if let Some(ended) = heartbeat(ctx, &mut clients.node, ip, uptime).await {
                    return ended;
                }
            }
            Due::Check => {
                match check_registration(&mut clients.discovery, &ctx.link.node_id()).await {
                    Check::Known => {}
                    Check::Forgotten => {
                        tracing::warn!("the central server no longer knows this node (GetNodeInfo: NOT_FOUND); registering again");
                        return Ended::Forgotten;
                    }
                    Check::Unsupported => {
                        tracing::warn!("the central server does not serve NodeDiscoveryService/GetNodeInfo; registration checks are off until the next connection");
                        checking = false;
                    }
                    Check::Failed(why) => {
                        tracing::warn!(reason = %why, "registration check failed; trying again later");
                    }
                }
            }
        }
    }
}

/// One heartbeat; `Some` when the session ends.
async fn heartbeat(
    ctx: &ClientContext,
    client: &mut Client,
    ip: &str,
    uptime: &mut Uptime,
) -> Option<Ended> {
    let node_id = ctx.link.node_id();
    let jobs = active_jobs(&ctx.workload).await;
    let info = node_info(&ctx.sources, &node_id, ip, uptime.percent().await);
    match client
        .heartbeat(heartbeat_request(node_id, info, jobs))
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            ctx.link.update(|s| {
                s.last_heartbeat = Some(now());
                s.heartbeats += 1;
            });
            if !r.jobs_to_cancel.is_empty() {
                // In the background: the heartbeat cadence does not wait for jobs to stop.
                tokio::spawn(cancel_jobs(ctx.workload.clone(), r.jobs_to_cancel));
            }
            if !r.keep_alive {
                tracing::info!("the central server asked the node to register again");
                return Some(Ended::Forgotten);
            }
            None
        }
        Err(s) if s.code() == Code::NotFound => {
            tracing::warn!(reason = %describe(&s), "the central server no longer knows this node; registering again");
            Some(Ended::Forgotten)
        }
        Err(s) if s.code() == Code::Unauthenticated => Some(Ended::Unauthenticated(
            unauthenticated_message(&s, !ctx.sources.config.central_server.auth_token.is_empty()),
        )),
        Err(s) => Some(Ended::Lost(format!("heartbeat failed: {}", describe(&s)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A node's work as the executor would report it: the jobs it runs, and the cancels it
    /// was asked for (with the thread each ran on).
    struct Recorder {
        running: Mutex<Vec<String>>,
        cancels: Mutex<Vec<(String, std::thread::ThreadId)>>,
    }

    impl Workload for Recorder {
        fn active_jobs(&self) -> Vec<String> {
            self.running.lock().unwrap().clone()
        }

        fn cancel(&self, job_id: &str) -> bool {
            self.cancels
                .lock()
                .unwrap()
                .push((job_id.to_string(), std::thread::current().id()));
            let mut running = self.running.lock().unwrap();
            let before = running.len();
            running.retain(|j| j != job_id);
            running.len() < before
        }
    }

    fn recorder(running: &[&str]) -> Arc<Recorder> {
        Arc::new(Recorder {
            running: Mutex::new(running.iter().map(|s| s.to_string()).collect()),
            cancels: Mutex::new(Vec::new()),
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn heartbeats_carry_the_status_and_the_active_jobs() {
        let work = recorder(&["job-a", "reservation-b"]);
        let dyn_work: Arc<dyn Workload> = work.clone();
        let jobs = active_jobs(&dyn_work).await;
        let request = heartbeat_request(
            "id".into(),
            NodeInfo {
                node_id: "id".into(),
                ..Default::default()
            },
            jobs,
        );
        assert_eq!(request.active_jobs, ["job-a", "reservation-b"]);
        assert!(
            request.current_status.is_some(),
            "the server computes load only with it"
        );
        let idle = heartbeat_request(
            "id".into(),
            NodeInfo::default(),
            active_jobs(&(recorder(&[]) as Arc<dyn Workload>)).await,
        );
        assert!(idle.active_jobs.is_empty() && idle.current_status.is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_to_cancel_are_cancelled_off_the_runtime_thread() {
        let work = recorder(&["job-a", "job-b"]);
        let done = cancel_jobs(work.clone(), vec!["job-b".into(), "unknown".into()]).await;
        assert_eq!(
            done,
            [("job-b".to_string(), true), ("unknown".to_string(), false)]
        );
        assert_eq!(work.active_jobs(), ["job-a"]);
        let runtime_thread = std::thread::current().id();
        let cancels = work.cancels.lock().unwrap();
        assert_eq!(cancels.len(), 2);
        assert!(
            cancels.iter().all(|(_, thread)| *thread != runtime_thread),
            "a cancel blocks up to 2 s: never on the runtime's thread"
        );
    }
}
