//! The audit log writer: events go through a bounded queue to one thread that owns its own
//! database connection, so recording an event never blocks a request (a full queue drops
//! the event and counts it). Caller-supplied text is length-capped and escaped before it is
//! stored; old events are pruned by age and count ([`Retention`]).

use crate::store::Store;
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc,
    },
    time::{Duration, Instant},
};

/// Longest subject stored (a key name, a model name, a job id).
pub const MAX_SUBJECT: usize = 128;
/// Longest detail stored.
pub const MAX_DETAIL: usize = 512;
/// Events waiting to be written before new ones are dropped.
const QUEUE: usize = 4096;

/// How long audit events are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events older than this many days are deleted (0 = kept by age forever).
    pub days: u64,
    /// At most this many events are kept, the newest (0 = no cap).
    pub max_events: u64,
}

/// Text safe to store or log: control characters, quotes and backslashes escaped, at most
/// `max` characters in all, `…` when cut.
pub fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 8);
    let mut shown = 0;
    for c in text.chars() {
        let unicode = c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
            );
        let width = match c {
            '\\' | '"' => 2,
            _ if unicode => c.escape_unicode().len(),
            _ => 1,
        };
        if shown + width > max {
            out.push('…');
            break;
        }
        shown += width;
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            _ if unicode => out.extend(c.escape_unicode()),
            _ => out.push(c),
        }
    }
    out
}

struct Event {
    kind: &'static str,
    subject: String,
    detail: String,
}

/// Where audit events are sent.
#[derive(Debug)]
pub struct AuditLog {
    tx: Option<SyncSender<Event>>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// Starts the writer thread on its own connection to the database at `path`, and
    /// prunes by `retention` now and every hour.
    pub fn start(path: PathBuf, retention: Retention) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer(path, rx, retention))?;
        Ok(Self {
            tx: Some(tx),
            dropped: Arc::default(),
        })
    }

    /// An audit log that records nothing (tests of other parts).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: Arc::default(),
        }
    }

    /// Queues an event; `subject` and `detail` may come from a caller and are cleaned here.
    pub fn record(&self, kind: &'static str, subject: &str, detail: &str) {
        let Some(tx) = &self.tx else { return };
        let event = Event {
            kind,
            subject: clean(subject, MAX_SUBJECT),
            detail: clean(detail, MAX_DETAIL),
        };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self
                    .dropped
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(1000)
                {
                    tracing::warn!("the audit log cannot keep up; events are being dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn writer(path: PathBuf, rx: Receiver<Event>, retention: Retention) {
    let store = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "the audit log cannot open the database; events are not kept");
            for _ in rx {}
            return;
        }
    };
    let prune = |store: &Store| {
        if let Err(e) = store.prune_audit(retention.days, retention.max_events) {
            tracing::warn!(error = %e, "cannot prune the audit log");
        }
    };
    prune(&store);
    let mut pruned = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(event) => {
                if let Err(e) = store.audit(event.kind, &event.subject, &event.detail) {
                    tracing::warn!(error = %e, kind = event.kind, "cannot write the audit log");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if pruned.elapsed() > Duration::from_secs(3600) {
            prune(&store);
            pruned = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_text_is_capped_and_escaped() {
        assert_eq!(clean("job-1", 10), "job-1");
        assert_eq!(
            clean("a\nINFO forged line\r\u{1b}[31m", 100),
            "a\\u{a}INFO forged line\\u{d}\\u{1b}[31m"
        );
        assert_eq!(clean("say \"hi\" \\", 100), "say \\\"hi\\\" \\\\");
        let long = "x".repeat(64 << 20);
        let cut = clean(&long, MAX_SUBJECT);
        assert_eq!(cut.chars().count(), MAX_SUBJECT + 1);
        assert!(cut.ends_with('…'));
        assert!(clean(&"\n".repeat(1000), 20).chars().count() <= 21);
    }

    #[test]
    fn events_are_written_off_the_caller_thread_and_pruned_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let store = Store::open(&path).unwrap();
        for i in 0..10 {
            store.audit("old", &i.to_string(), "").unwrap();
        }
        let log = AuditLog::start(
            path.clone(),
            Retention {
                days: 30,
                max_events: 5,
            },
        )
        .unwrap();
        log.record("job_declined", &"j\n".repeat(1000), "from 10.0.0.1");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = store.recent_audit(100).unwrap();
            if events.iter().any(|e| e.1 == "job_declined") {
                // Pruned to the newest five before the new event came in.
                assert_eq!(events.len(), 6, "{events:?}");
                let subject = &events[0].2;
                assert!(!subject.contains('\n'));
                assert!(subject.chars().count() <= MAX_SUBJECT + 1);
                break;
            }
            assert!(Instant::now() < deadline, "the event was never written");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
