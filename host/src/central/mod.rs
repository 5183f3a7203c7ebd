//! The link to the CyxWiz Central Server: reconnection with exponential backoff and jitter,
//! and the connection state `cyxwiz-node status` shows.
//!
//! Standalone mode (no `[central_server] address`) never starts the client; everything else
//! works without it. Rules followed (PROTOCOL.md, "Interoperability rules"): every call carries
//! `authorization: Bearer <operator JWT>`; the UUID returned by RegisterNode is adopted and
//! persisted at once; heartbeats carry it, the node's active jobs and its status; NOT_FOUND on a
//! heartbeat or on the periodic registration check means the server forgot the node, so it
//! registers again; UNAUTHENTICATED stops retrying and says why; the first minute of retries
//! stays within 10 s of each other. A session (register, heartbeats, checks, cancels) is
//! `session`'s part; how the link is dialled (plaintext or TLS) and where the token comes from
//! is `dial`'s; the `NodeInfo` sent is `info`'s, its uptime figure `uptime`'s.

mod dial;
mod info;
mod session;
mod uptime;

pub use dial::{plaintext_warning, read_token_file, settle_token, Bearer, CentralError, Dialer};
pub use info::{advertised_ip, node_info, InfoSources};

use crate::config::Config;
use serde::Serialize;
use session::{adopt, heartbeats, register, Clients, Ended};
use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};
use uptime::Uptime;

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

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn now_secs() -> i64 {
    i64::try_from(now()).unwrap_or(i64::MAX)
}

/// Reconnection attempts (0-based) kept short: about the first minute.
const EARLY_ATTEMPTS: u32 = 6;
/// The longest delay of an early attempt, jitter included: the server marks a node offline
/// after 30 s of silence, so a short outage must not cost the node its place.
const EARLY_CAP: Duration = Duration::from_secs(10);
/// The longest base delay.
const LATE_CAP: Duration = Duration::from_secs(300);

/// The delay before reconnection attempt `attempt` (0-based): `first` doubled per attempt,
/// with ±20 % jitter so restarted servers are not hit by every node at once. For the first
/// [`EARLY_ATTEMPTS`] attempts it stays at most 10 s (unless `first` itself is longer), then it
/// doubles on from there up to 5 minutes.
pub fn backoff(first: Duration, attempt: u32) -> Duration {
    let early_cap = EARLY_CAP.max(first);
    // The base that jitter (up to +20 %) keeps within the early cap; an operator's first delay
    // above the cap is kept as set (jitter then only shortens it).
    let early_base = if first > EARLY_CAP {
        first
    } else {
        EARLY_CAP.div_f64(1.2)
    };
    let base = if attempt < EARLY_ATTEMPTS {
        first.saturating_mul(1u32 << attempt).min(early_base)
    } else {
        let doublings = (attempt - EARLY_ATTEMPTS + 1).min(16);
        early_base.saturating_mul(1u32 << doublings).min(LATE_CAP)
    };
    let mut byte = [0u8; 2];
    let unit = match getrandom::fill(&mut byte) {
        Ok(()) => f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    };
    let delay = base.mul_f64(0.8 + 0.4 * unit);
    if attempt < EARLY_ATTEMPTS {
        delay.min(early_cap)
    } else {
        delay
    }
}

/// Runs the central-server client until `stop` turns true.
pub async fn run(ctx: ClientContext, mut stop: tokio::sync::watch::Receiver<bool>) {
    let address = ctx.sources.config.central_server.address.clone();
    let first = Duration::from_secs(ctx.sources.config.central_server.reconnect_delay_seconds);
    let token = ctx.sources.config.central_server.auth_token.clone();
    let mut uptime = Uptime::new(ctx.database.clone(), now_secs());
    let mut attempt = 0u32;
    loop {
        ctx.link.update(|s| {
            s.state = ConnectionState::Connecting;
            s.next_attempt_at = None;
        });
        let ended = match ctx.dialer.connect(&token).await {
            Err(e) => Ended::Lost(e),
            Ok((node, discovery)) => {
                let mut clients = Clients { node, discovery };
                // The advertised address is resolved once per connection, not per heartbeat.
                let ip = advertised_ip(&ctx.sources.config).await;
                match register(&ctx, &mut clients.node, &ip, &mut uptime).await {
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
                        match heartbeats(&ctx, &mut clients, &ip, &mut uptime, &mut stop).await {
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
    fn backoff_stays_within_ten_seconds_for_a_minute_then_grows_to_five_minutes() {
        let secs =
            |first: u64, attempt: u32| backoff(Duration::from_secs(first), attempt).as_secs_f64();
        for first in [1, 2, 5, 10] {
            let mut total = 0.0;
            for attempt in 0..EARLY_ATTEMPTS {
                let d = secs(first, attempt);
                let base = (first as f64 * f64::from(1u32 << attempt)).min(10.0 / 1.2);
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9 && d <= 10.0,
                    "first {first}, attempt {attempt}: {d}"
                );
                total += d;
            }
            // About a minute of short retries (the server's offline limit is 30 s).
            assert!((3.0..=60.0).contains(&total), "first {first}: {total}");
        }
        // Then doubling on from there, up to 5 minutes (plus jitter).
        let later: Vec<f64> = (EARLY_ATTEMPTS..EARLY_ATTEMPTS + 8)
            .map(|a| secs(5, a))
            .collect();
        assert!(later[0] > 10.0 * 0.8 * 2.0 / 1.2 - 1e-9, "{later:?}");
        assert!(later.iter().all(|d| *d <= 360.0), "{later:?}");
        assert!(*later.last().unwrap() >= 240.0, "{later:?}");
        assert!(backoff(Duration::from_secs(2), 30) <= Duration::from_secs(360));
        assert!(backoff(Duration::from_secs(2), u32::MAX) <= Duration::from_secs(360));
        // An operator's first delay above 10 s is kept.
        assert!(secs(20, 0) >= 16.0 - 1e-9);
        let spread: std::collections::HashSet<u128> = (0..20)
            .map(|_| backoff(Duration::from_secs(2), 3).as_millis())
            .collect();
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
