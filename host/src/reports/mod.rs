//! Reports to the central server: [`plan`] (`store::reports`, beside the outbox so the store
//! needs nothing from here) says which reports a job change owes (written to the SQLite
//! outbox in the change's own transaction, `store::outbox`); the [`Reporter`] task
//! sends them with the operator's Bearer token, oldest first per lane (a job's start before
//! its epochs before its result), and marks each acknowledged, so none is sent again after
//! its acknowledgement. It survives central downtime and node restarts: a failed send is
//! retried with exponential backoff and jitter (2 s doubling, so the first retries come within
//! 10 s; at most 5 min), and all waiting reports are retried at once when the node registers
//! again. NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED and UNIMPLEMENTED (or a 400/403/404
//! in a reservation reply's body) are permanent: the report is marked refused, its error kept,
//! and it is logged and audited. A crash between a send and its acknowledgement being written
//! sends that report again after the restart (at least once, never after an ack).
//!
//! The task runs only when a central server is configured; in standalone mode job changes
//! write no reports at all (`Store::write_reports(false)`).
//!
//! A central job accepted before its validation ended (AssignJob answers within a second)
//! has a stand-in FAILED result in the outbox, due a minute later: dropped as soon as the job
//! exists, made due at once with the reason if the validation fails, and sent as "the node
//! stopped before the job was validated and queued" if the node died in between.
//!
//! The reporter waits for the node's first registration of this run before sending, so each
//! report carries the id the server knows (filled in at send time, like ReportJobResult's
//! `model_weights_uri` = `<HTTP API base>/jobs/<id>/weights`).

pub use crate::store::reports as plan;
mod send;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::central::{CentralLink, Dialer};
use crate::store::outbox::{self, OutboxRow};
use crate::store::{Store, StoreError};

pub use send::{Clients, Outcome};

/// How often the outbox is looked at without a wake-up.
const POLL: Duration = Duration::from_secs(5);
/// The first retry delay (doubled per attempt, ±20 % jitter).
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// The longest retry delay.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Reports taken per look at the outbox.
const BATCH: u32 = 64;

static RETRIES: AtomicU64 = AtomicU64::new(0);

/// Failed sends retried since the node started (Prometheus
/// `cyxwiz_node_report_retries_total`).
pub fn retries_total() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// The delay before retry number `attempts` (1 after the first failure).
pub fn retry_delay(attempts: u32) -> Duration {
    crate::central::backoff(FIRST_RETRY, attempts.saturating_sub(1)).min(MAX_RETRY)
}

/// What the reporter task needs.
pub struct Reporter {
    /// The database (the task opens its own connection).
    pub database: PathBuf,
    /// How to reach the central server.
    pub dialer: Dialer,
    /// The operator's token.
    pub token: String,
    /// The node's identity and registration status.
    pub link: Arc<CentralLink>,
    /// The HTTP API's base URL as the central server can reach it (`http://host:port/v1`),
    /// empty when the API is off.
    pub weights_base: String,
}

/// The base URL of the HTTP API for `endpoint_url` (`http://bound:port/v1`), with an
/// unspecified bound host (`0.0.0.0`, `[::]`) replaced by `advertised` (the address the node
/// registers).
pub fn weights_base(endpoint_url: &str, advertised: &str) -> String {
    for any in ["0.0.0.0", "[::]"] {
        if let Some((scheme, rest)) = endpoint_url.split_once("://") {
            if let Some(port_path) = rest.strip_prefix(any) {
                let host = if advertised.contains(':') && !advertised.starts_with('[') {
                    format!("[{advertised}]")
                } else {
                    advertised.to_owned()
                };
                return format!("{scheme}://{host}{port_path}");
            }
        }
    }
    endpoint_url.to_owned()
}

type Db = Arc<Mutex<Store>>;

/// Runs `f` on the store on a blocking thread.
async fn db<T: Send + 'static>(
    store: &Db,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store.lock().unwrap_or_else(|p| p.into_inner())))
        .await
    {
        Ok(r) => r,
        Err(e) => Err(StoreError::Io {
            path: "outbox".into(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Sends the outbox until `stop` turns true.
pub async fn run(reporter: Reporter, mut stop: tokio::sync::watch::Receiver<bool>) {
    let store = match Store::open(&reporter.database) {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the database; reports to the central server are not sent");
            return;
        }
    };
    let mut clients = match reporter.dialer.channel(&reporter.token) {
        Ok(channel) => Clients::new(channel),
        Err(e) => {
            tracing::error!(error = %e, "reports to the central server are not sent");
            return;
        }
    };
    let mut registrations = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let status = reporter.link.status();
        let wait = if status.registered_at.is_none() {
            // Not registered yet in this run: the server would not know our id.
            Duration::from_secs(1)
        } else {
            if status.registrations != registrations {
                // Registered (again): the server is back, so whatever waits is due now.
                registrations = status.registrations;
                if let Err(e) = db(&store, |s| s.outbox_hurry()).await {
                    tracing::warn!(error = %e, "outbox");
                }
            }
            match pass(&reporter, &store, &mut clients).await {
                Ok(Some(wait)) => wait,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the report outbox");
                    POLL
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = outbox::WRITTEN.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Sends what is due. `Ok(None)`: more may be due at once; `Ok(Some(wait))`: nothing more
/// before `wait` (or a wake-up).
async fn pass(
    reporter: &Reporter,
    store: &Db,
    clients: &mut Clients,
) -> Result<Option<Duration>, StoreError> {
    let now = outbox::now();
    let due = db(store, move |s| s.outbox_due(now, BATCH)).await?;
    if due.is_empty() {
        let next = db(store, |s| s.outbox_next_due()).await?;
        let wait = next.map_or(POLL, |t| {
            Duration::from_secs(u64::try_from(t.saturating_sub(outbox::now())).unwrap_or(0))
                .clamp(Duration::from_millis(100), POLL)
        });
        return Ok(Some(wait));
    }
    let node_id = reporter.link.node_id();
    for row in due {
        let outcome = clients.send(&row, &node_id, &reporter.weights_base).await;
        let id = row.id;
        match outcome {
            Outcome::Acked => {
                tracing::debug!(job = ?row.job_id, rpc = row.kind.rpc(), "report acknowledged");
                db(store, move |s| s.outbox_ack(id)).await?;
            }
            Outcome::Refused(why) => refused(store, &row, why).await?,
            Outcome::Retry { error, unreachable } => {
                let attempts = row.attempts + 1;
                let delay = retry_delay(attempts);
                RETRIES.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = ?row.job_id, rpc = row.kind.rpc(), attempts, retry_in_s = delay.as_secs_f64(), error = %error, "report not delivered; retrying");
                let at = outbox::now() + i64::try_from(delay.as_secs().max(1)).unwrap_or(300);
                db(store, move |s| s.outbox_retry(id, &error, at)).await?;
                if unreachable {
                    // The server is down: the others would fail alike.
                    return Ok(Some(delay.min(POLL)));
                }
            }
        }
    }
    Ok(None)
}

async fn refused(store: &Db, row: &OutboxRow, why: String) -> Result<(), StoreError> {
    let (id, rpc) = (row.id, row.kind.rpc());
    let subject = row.job_id.clone().unwrap_or_else(|| row.lane.clone());
    tracing::warn!(job = %subject, rpc, error = %why, "the central server refused a report for good; not retrying");
    db(store, move |s| {
        s.outbox_fail(id, &why)?;
        s.audit("report_refused", &subject, &format!("{rpc}: {why}"))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_within_ten_seconds_and_stop_growing_at_five_minutes() {
        for _ in 0..20 {
            assert!(retry_delay(1) <= Duration::from_secs(3));
            assert!(retry_delay(3) <= Duration::from_secs(10));
            assert!(retry_delay(40) <= MAX_RETRY);
            assert!(retry_delay(40) >= Duration::from_secs(239));
        }
    }

    #[test]
    fn the_weights_url_names_a_reachable_host() {
        assert_eq!(
            weights_base("http://0.0.0.0:8000/v1", "10.0.0.5"),
            "http://10.0.0.5:8000/v1"
        );
        assert_eq!(
            weights_base("https://[::]:8443/v1", "fd00::5"),
            "https://[fd00::5]:8443/v1"
        );
        assert_eq!(
            weights_base("http://127.0.0.1:8000/v1", "10.0.0.5"),
            "http://127.0.0.1:8000/v1"
        );
        assert_eq!(weights_base("", "10.0.0.5"), "");
    }
}
