//! The Engine's direct training link (`JobExecutionService`, execution.proto), served on the
//! node's gRPC ports. An Engine that reserved this node through the central server connects
//! with the reservation's P2P token ([`token`]), sends jobs ([`service`]), streams the
//! training ([`stream`]: progress out, commands and its dataset's batches in) and downloads
//! the weights. Every call is tied to the reservation its token names, never to the peer's
//! address; every P2P event goes to the audit log.

pub mod service;
pub mod stream;
pub mod token;
pub mod workload;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tonic::{Request, Status};

use crate::config::Config;
use crate::jobs::wire::WireJob;
use crate::node::Node;
use token::{job_in_reservation, Claims, Verifier};

/// How long a reservation without an open stream or a call stays active.
pub const RESERVATION_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// Why P2P could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// The secret file could not be read.
    #[error("p2p.jwt_secret_file {path}: {message}")]
    SecretFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        message: String,
    },
}

/// One reservation an Engine holds on this node.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The reservation id (the token's `job_id`).
    pub id: String,
    /// The user's wallet (the token's `sub`).
    pub wallet: String,
    /// The Engine's address at its last call.
    pub peer: String,
    /// Whether the Engine is connected (between ConnectToNode and DisconnectFromNode).
    pub connected: bool,
    /// Jobs sent in this reservation, in order.
    pub jobs: Vec<String>,
    /// `remote://engine` jobs waiting for the training stream to learn their dataset.
    pub pending: BTreeMap<String, WireJob>,
    /// When the Engine first connected.
    pub since: Instant,
    /// When the Engine last called.
    pub last_seen: Instant,
    /// Training streams open now.
    pub streams: u32,
    /// Whether the Engine ended the reservation.
    pub ended: bool,
}

/// The P2P side of the node.
pub struct P2p {
    /// The node.
    pub node: Arc<Node>,
    verifier: Verifier,
    reservations: Mutex<HashMap<String, Reservation>>,
}

impl std::fmt::Debug for P2p {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2p").finish_non_exhaustive()
    }
}

/// The secret: `CYXWIZ_P2P_SECRET`, else `[p2p] jwt_secret_file`, else `[p2p] jwt_secret`.
pub fn secret(config: &Config) -> Result<String, P2pError> {
    if let Ok(s) = std::env::var("CYXWIZ_P2P_SECRET") {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_owned());
        }
    }
    let file = &config.p2p.jwt_secret_file;
    if !file.as_os_str().is_empty() {
        let path = config.resolve(file);
        let text = std::fs::read_to_string(&path).map_err(|e| P2pError::SecretFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(P2pError::SecretFile {
                path,
                message: "the file is empty; put the central server's JWT secret in it".into(),
            });
        }
        return Ok(text.to_owned());
    }
    Ok(config.p2p.jwt_secret.clone())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl P2p {
    /// The P2P service state for `node`, checking tokens with `secret`.
    pub fn new(node: Arc<Node>, secret: &str) -> Self {
        if secret.is_empty() {
            tracing::info!("P2P jobs are off: [p2p] jwt_secret is not set");
        }
        Self {
            verifier: Verifier::new(secret, node.config.p2p.max_token_age_seconds),
            node,
            reservations: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Reservation>> {
        self.reservations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a token given in a message body (ConnectToNode) or, if `body` is empty, the
    /// call's `authorization: Bearer` metadata. A refusal is `UNAUTHENTICATED` and audited.
    pub fn authenticate<T>(&self, request: &Request<T>, body: &str) -> Result<Claims, Status> {
        let peer = peer(request);
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = if body.is_empty() {
            header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .unwrap_or("")
        } else {
            body
        };
        let node_id = self.node.central.node_id();
        self.verifier.verify(token, &node_id, now()).map_err(|e| {
            tracing::warn!(%peer, reason = %e, "refused a P2P call");
            self.node
                .audit("p2p_refused", &peer, &format!("UNAUTHENTICATED: {e}"));
            Status::unauthenticated(e.to_string())
        })
    }

    /// Checks that `job_id` belongs to the token's reservation (`PERMISSION_DENIED` if not).
    pub fn permit(&self, claims: &Claims, job_id: &str, peer: &str) -> Result<(), Status> {
        if job_in_reservation(job_id, &claims.job_id) {
            return Ok(());
        }
        let shown = crate::audit::clean(job_id, 64);
        self.node.audit(
            "p2p_refused",
            peer,
            &format!(
                "PERMISSION_DENIED: job {shown} is not in reservation {}",
                claims.job_id
            ),
        );
        Err(Status::permission_denied(format!(
            "job {shown} is not part of this token's reservation {}",
            claims.job_id
        )))
    }

    /// Runs `f` on the reservation of `claims`, creating it on first use.
    pub fn with_reservation<R>(
        &self,
        claims: &Claims,
        peer: &str,
        f: impl FnOnce(&mut Reservation) -> R,
    ) -> R {
        let mut all = self.lock();
        let r = all
            .entry(claims.job_id.clone())
            .or_insert_with(|| Reservation {
                id: claims.job_id.clone(),
                wallet: claims.sub.clone(),
                peer: peer.to_owned(),
                connected: false,
                jobs: Vec::new(),
                pending: BTreeMap::new(),
                since: Instant::now(),
                last_seen: Instant::now(),
                streams: 0,
                ended: false,
            });
        r.peer = peer.to_owned();
        r.last_seen = Instant::now();
        f(r)
    }

    /// Ends the reservation of `claims`: audited, and `ReportReservationEndFromNode` queued
    /// for the central server (once).
    pub async fn end_reservation(self: &Arc<Self>, claims: &Claims, peer: &str) {
        let ids = self.with_reservation(claims, peer, |r| {
            r.ended = true;
            r.connected = false;
            r.pending.clear();
            r.jobs.clone()
        });
        let me = self.clone();
        let reservation = claims.job_id.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut completed = 0u32;
            let mut seconds = 0.0;
            for id in &ids {
                if let Ok(view) = me.node.jobs.get(id) {
                    seconds += view.run_seconds;
                    if view.state == crate::jobs::JobState::Succeeded {
                        completed += 1;
                    }
                }
            }
            let mut store = me.node.store.lock().unwrap_or_else(|p| p.into_inner());
            let queued = store.enqueue_reservation_end(
                &reservation,
                completed,
                seconds.round() as i64,
                true,
            );
            (completed, seconds, queued)
        })
        .await;
        match outcome {
            Ok((completed, seconds, queued)) => {
                if let Err(e) = queued {
                    tracing::error!(error = %e, "cannot queue the reservation-end report");
                }
                self.node.audit(
                    "p2p_reservation_end",
                    &claims.job_id,
                    &format!("{peer}: {completed} jobs completed, {seconds:.0} s of training"),
                );
            }
            Err(e) => tracing::error!(error = %e, "ending a reservation failed"),
        }
    }

    /// Active reservations, for heartbeats and operators: not ended, and with a training
    /// stream open or a call within [`RESERVATION_IDLE`] (an Engine that vanished without
    /// `reservation_end` stops keeping the node busy; its running jobs still count on their
    /// own).
    pub fn active_reservations(&self) -> Vec<Reservation> {
        self.lock()
            .values()
            .filter(|r| !r.ended && (r.streams > 0 || r.last_seen.elapsed() < RESERVATION_IDLE))
            .cloned()
            .collect()
    }
}

/// The caller's address, for logs and the audit trail.
pub fn peer<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}
