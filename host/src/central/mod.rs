//! The link to the CyxWiz Central Server: registration, heartbeats, reconnection with
//! exponential backoff and jitter, and the connection state `cyxwiz-node status` shows.
//!
//! Standalone mode (no `[central_server] address`) never starts the client; everything else
//! works without it. Rules followed (PROTOCOL.md, "Interoperability rules"): every call carries
//! `authorization: Bearer <operator JWT>`; the UUID returned by RegisterNode is adopted and
//! persisted at once; heartbeats carry it; NOT_FOUND on a heartbeat means the server forgot
//! the node, so it registers again; UNAUTHENTICATED stops retrying and says why. How the link
//! is dialled (plaintext or TLS) and where the token comes from is `dial`'s part.

mod dial;
mod info;

pub use dial::{
    plaintext_warning, read_token_file, settle_token, Bearer, CentralError, Dialer,
};
pub use info::{advertised_ip, node_info, InfoSources};

use crate::config::Config;
use cyxwiz_proto::protocol::{HeartbeatRequest, RegisterNodeRequest, StatusCode};
use dial::Client;
use serde::Serialize;
use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};
use tonic::Code;

/// Where the connection to the central server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// No central server configured.
    Standalone,
    /// Dialling or registering.
    Connecting,
    /// Registered; heartbeats are flowing.
    Connected,
    /// Lost or refused; a retry is scheduled.
    Disconnected,
    /// The server refused our token: no more retries until the operator fixes it.
    Unauthenticated,
}

/// What operators see about the central link.
#[derive(Debug, Clone, Serialize)]
pub struct CentralStatus {
    /// `host:port` of the central server, empty in standalone mode.
    pub address: String,
    /// Connection state.
    pub state: ConnectionState,
    /// Unix time of the last successful registration.
    pub registered_at: Option<u64>,
    /// Unix time of the last acknowledged heartbeat.
    pub last_heartbeat: Option<u64>,
    /// Heartbeats acknowledged since start.
    pub heartbeats: u64,
    /// Registrations since start (more than one means the node re-registered).
    pub registrations: u64,
    /// The last error, kept after recovery so operators can see what happened.
    pub last_error: Option<String>,
    /// Unix time of the next connection attempt while disconnected.
    pub next_attempt_at: Option<u64>,
}

/// The node's identity and its central-server status, shared by the HTTP, control and gRPC
/// servers and the client task.
#[derive(Debug)]
pub struct CentralLink {
    node_id: RwLock<String>,
    status: RwLock<CentralStatus>,
}

impl CentralLink {
    /// A link for a node with the stored `node_id`, talking to `address` (empty: standalone).
    pub fn new(node_id: String, address: &str) -> Self {
        Self {
            node_id: RwLock::new(node_id),
            status: RwLock::new(CentralStatus {
                address: address.to_string(),
                state: if address.is_empty() {
                    ConnectionState::Standalone
                } else {
                    ConnectionState::Connecting
                },
                registered_at: None,
                last_heartbeat: None,
                heartbeats: 0,
                registrations: 0,
                last_error: None,
                next_attempt_at: None,
            }),
        }
    }

    /// The node id: the central server's UUID once registered, the locally minted one before.
    pub fn node_id(&self) -> String {
        self.node_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A copy of the status.
    pub fn status(&self) -> CentralStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the node is registered and heartbeating.
    pub fn connected(&self) -> bool {
        self.status().state == ConnectionState::Connected
    }

    fn update(&self, f: impl FnOnce(&mut CentralStatus)) {
        f(&mut self.status.write().unwrap_or_else(|p| p.into_inner()));
    }

    fn adopt(&self, id: &str) {
        *self.node_id.write().unwrap_or_else(|p| p.into_inner()) = id.to_string();
    }
}

/// Settles the token (`auth_token_file`, the environment, the flag), builds the dialer and
/// logs, once, what an operator should know about the link's security. Call before anything
/// else reads `central_server.auth_token`. `None` in standalone mode.
pub fn prepare(config: &mut Config) -> Result<Option<Dialer>, CentralError> {
    for warning in settle_token(config)? {
        tracing::warn!("{warning}");
    }
    let dialer = Dialer::new(config)?;
    if dialer.is_some() {
        if let Some(warning) = plaintext_warning(&config.central_server.address) {
            tracing::warn!("{warning}");
        }
    }
    Ok(dialer)
}

/// What the node is doing, as the central server must see it in heartbeats.
pub trait Workload: Send + Sync {
    /// Ids of the network jobs queued or running here and of active P2P reservations, so the
    /// server keeps the node busy (it computes load as active jobs / 4).
    fn active_jobs(&self) -> Vec<String>;
    /// Cancels a job the central server asked to cancel (`jobs_to_cancel`); false when no
    /// such job is queued or running here.
    fn cancel(&self, job_id: &str) -> bool;
}

/// Everything the client task needs.
pub struct ClientContext {
    /// The node's jobs and reservations, for heartbeats and `jobs_to_cancel`.
    pub workload: Arc<dyn Workload>,
    /// How to reach the central server (from [`prepare`]).
    pub dialer: Dialer,
    /// Where `node_info` takes its fields from; its config's token is the settled one.
    pub sources: InfoSources,
    /// Shared identity and status.
    pub link: Arc<CentralLink>,
    /// The database, reopened by the task to persist the adopted id.
    pub database: PathBuf,
}

/// Why a session with the central server ended.
enum Ended {
    /// The server refused our credentials.
    Unauthenticated(String),
    /// The server no longer knows the node: register again at once.
    Forgotten,
    /// Transport or server failure: back off and retry.
    Lost(String),
    /// The node is shutting down.
    Stopped,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The delay before reconnection attempt `attempt` (0-based): `first` doubled per attempt up
/// to five minutes, with ±20 % jitter so restarted servers are not hit by every node at once.
pub fn backoff(first: Duration, attempt: u32) -> Duration {
    let base = first
        .saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(300));
    let mut byte = [0u8; 2];
    let unit = match getrandom::fill(&mut byte) {
        Ok(()) => f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    };
    base.mul_f64(0.8 + 0.4 * unit)
}

/// The message shown when the server refuses our token.
fn unauthenticated_message(status: &tonic::Status, have_token: bool) -> String {
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

/// Registers the node and returns the id the server assigned.
async fn register(ctx: &ClientContext, client: &mut Client, ip: &str) -> Result<String, Ended> {
    let token = ctx.sources.config.central_server.auth_token.clone();
    let info = node_info(&ctx.sources, &ctx.link.node_id(), ip);
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
fn adopt(ctx: &ClientContext, id: &str) {
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

/// Sends heartbeats until the session ends.
async fn heartbeats(
    ctx: &ClientContext,
    client: &mut Client,
    ip: &str,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Ended {
    let every = Duration::from_secs(ctx.sources.config.central_server.heartbeat_interval_seconds);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
        }
        let node_id = ctx.link.node_id();
        let request = HeartbeatRequest {
            current_status: Some(node_info(&ctx.sources, &node_id, ip)),
            node_id,
            // No job executor yet: this node runs no network jobs.
            active_jobs: Vec::new(),
        };
        match client.heartbeat(request).await {
            Ok(r) => {
                let r = r.into_inner();
                ctx.link.update(|s| {
                    s.last_heartbeat = Some(now());
                    s.heartbeats += 1;
                });
                for job in &r.jobs_to_cancel {
                    // Honoured by cancelling the job if it runs here; no network job runs on
                    // this node yet, so there is nothing to stop.
                    tracing::warn!(job = %job, "the central server asked to cancel a job this node is not running");
                }
                if !r.keep_alive {
                    tracing::info!("the central server asked the node to register again");
                    return Ended::Forgotten;
                }
            }
            Err(s) if s.code() == Code::NotFound => {
                tracing::warn!(reason = %describe(&s), "the central server no longer knows this node; registering again");
                return Ended::Forgotten;
            }
            Err(s) if s.code() == Code::Unauthenticated => {
                return Ended::Unauthenticated(unauthenticated_message(
                    &s,
                    !ctx.sources.config.central_server.auth_token.is_empty(),
                ))
            }
            Err(s) => return Ended::Lost(format!("heartbeat failed: {}", describe(&s))),
        }
    }
}

/// Runs the central-server client until `stop` turns true.
pub async fn run(ctx: ClientContext, mut stop: tokio::sync::watch::Receiver<bool>) {
    let address = ctx.sources.config.central_server.address.clone();
    let first = Duration::from_secs(ctx.sources.config.central_server.reconnect_delay_seconds);
    let token = ctx.sources.config.central_server.auth_token.clone();
    let mut attempt = 0u32;
    loop {
        ctx.link.update(|s| {
            s.state = ConnectionState::Connecting;
            s.next_attempt_at = None;
        });
        let ended = match ctx.dialer.connect(&token).await {
            Err(e) => Ended::Lost(e),
            Ok(mut client) => {
                // The advertised address is resolved once per connection, not per heartbeat.
                let ip = advertised_ip(&ctx.sources.config).await;
                match register(&ctx, &mut client, &ip).await {
                    Err(e) => e,
                    Ok(id) => {
                        adopt(&ctx, &id);
                        ctx.link.update(|s| {
                            s.state = ConnectionState::Connected;
                            s.registered_at = Some(now());
                            s.registrations += 1;
                        });
                        tracing::info!(%address, id = %id, "registered with the central server");
                        attempt = 0;
                        let before = ctx.link.status().heartbeats;
                        match heartbeats(&ctx, &mut client, &ip, &mut stop).await {
                            // Forgotten right after registering: the server is confused; back off
                            // rather than re-register in a tight loop.
                            Ended::Forgotten if ctx.link.status().heartbeats == before => {
                                Ended::Lost(
                                    "the central server forgot the node right after registering it"
                                        .into(),
                                )
                            }
                            other => other,
                        }
                    }
                }
            }
        };
        match ended {
            Ended::Stopped => return,
            Ended::Forgotten => continue,
            Ended::Unauthenticated(message) => {
                tracing::error!("{message}");
                ctx.link.update(|s| {
                    s.state = ConnectionState::Unauthenticated;
                    s.last_error = Some(message);
                });
                let _ = stop.wait_for(|s| *s).await;
                return;
            }
            Ended::Lost(message) => {
                let delay = backoff(first, attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(reason = %message, retry_in_s = delay.as_secs_f64(), "central server unavailable; local work continues");
                ctx.link.update(|s| {
                    s.state = ConnectionState::Disconnected;
                    s.last_error = Some(message);
                    s.next_attempt_at = Some(now() + delay.as_secs());
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let first = Duration::from_secs(2);
        for attempt in 0..6 {
            let d = backoff(first, attempt).as_secs_f64();
            let base = 2.0 * f64::from(1u32 << attempt);
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "attempt {attempt}: {d}"
            );
        }
        assert!(backoff(first, 30) <= Duration::from_secs(360));
        let spread: std::collections::HashSet<u128> =
            (0..20).map(|_| backoff(first, 3).as_millis()).collect();
        assert!(spread.len() > 1, "jitter varies the delay");
    }

    #[test]
    fn link_adopts_the_server_id() {
        let link = CentralLink::new("local".into(), "central:50051");
        assert_eq!(link.status().state, ConnectionState::Connecting);
        link.adopt("0b5e3d2c-0000-4000-8000-000000000000");
        assert_eq!(link.node_id(), "0b5e3d2c-0000-4000-8000-000000000000");
        assert_eq!(
            CentralLink::new("x".into(), "").status().state,
            ConnectionState::Standalone
        );
    }
}
