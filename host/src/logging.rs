//! Logging setup: `tracing` to stderr (text or JSON), optionally also to a file, and for the
//! daemon a bounded in-memory ring of recent lines with a broadcast of new ones ([`LogRing`]),
//! which the control socket's `GetLogs` and `StreamLogs` read.

use crate::config::Config;
use std::{
    collections::VecDeque,
    fmt::Write as _,
    io::IsTerminal,
    sync::{Arc, Mutex, OnceLock},
};
use tokio::sync::broadcast;
use tracing::{field::Field, Level, Subscriber};
use tracing_subscriber::{
    fmt::writer::MakeWriterExt, layer::Context, prelude::*, registry::Registry, EnvFilter, Layer,
};

/// Lines the daemon keeps in memory for `GetLogs`.
pub const RING_LINES: usize = 2000;
/// Longest line kept (bytes); longer ones are cut with `…`.
pub const MAX_LINE_BYTES: usize = 4096;
/// New lines a slow `StreamLogs` reader may fall behind before it skips some.
const BROADCAST_LINES: usize = 1024;

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was logged (Unix seconds).
    pub timestamp: i64,
    /// Its level.
    pub level: Level,
    /// The message and its fields (`message key=value …`).
    pub message: String,
    /// The module that logged it.
    pub source: String,
}

/// Recent log lines (at most a fixed number) and a broadcast of each new one.
#[derive(Debug)]
pub struct LogRing {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
    tx: broadcast::Sender<LogLine>,
}

impl LogRing {
    /// A ring keeping the last `capacity` lines.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_LINES);
        Self {
            lines: Mutex::new(VecDeque::with_capacity(capacity.min(RING_LINES))),
            capacity: capacity.max(1),
            tx,
        }
    }

    /// Keeps `line` (dropping the oldest when full) and sends it to subscribers.
    pub fn push(&self, line: LogLine) {
        {
            let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() == self.capacity {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        let _ = self.tx.send(line);
    }

    /// The newest `limit` lines at least as severe as `min` and logged at or after `since`,
    /// oldest first.
    pub fn recent(&self, limit: usize, min: Level, since: i64) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<LogLine> = lines
            .iter()
            .rev()
            .filter(|l| l.level <= min && l.timestamp >= since)
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Every line pushed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.tx.subscribe()
    }
}

static RING: OnceLock<Arc<LogRing>> = OnceLock::new();

/// The ring the daemon's logger feeds, if [`init`] installed one.
pub fn ring() -> Option<Arc<LogRing>> {
    RING.get().cloned()
}

/// A `tracing` layer copying every event that passes the filter into a [`LogRing`].
#[derive(Debug)]
pub struct RingLayer(pub Arc<LogRing>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            self.0.push_str(&rest);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let mut message = fields.0;
        if message.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.0.push(LogLine {
            timestamp,
            level: *event.metadata().level(),
            message,
            source: event.metadata().target().to_string(),
        });
    }
}

type Filtered = tracing_subscriber::layer::Layered<EnvFilter, Registry>;

/// Installs the global subscriber. `level` overrides the configured level (one-shot commands
/// log only warnings unless the operator asked for more). With `capture` (the daemon), lines
/// that pass the filter are also kept in the [`ring`] for the control socket.
pub fn init(config: &Config, level: &str, capture: bool) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log level `{level}`: {e}"))?;
    let json = config.logging.format == "json";
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let output: Box<dyn Layer<Filtered> + Send + Sync> = if config.logging.file.is_empty() {
        let fmt = fmt.with_ansi(colour).with_writer(std::io::stderr);
        if json {
            fmt.json().boxed()
        } else {
            fmt.boxed()
        }
    } else {
        let path = config.resolve(std::path::Path::new(&config.logging.file));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("log file {}: {e}", path.display()))?;
        let fmt = fmt
            .with_ansi(false)
            .with_writer(std::io::stderr.and(Mutex::new(file)));
        if json {
            fmt.json().boxed()
        } else {
            fmt.boxed()
        }
    };
    let ring = capture.then(|| {
        RING.get_or_init(|| Arc::new(LogRing::new(RING_LINES)))
            .clone()
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .with(ring.map(RingLayer))
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: i64, level: Level, text: &str) -> LogLine {
        LogLine {
            timestamp: ts,
            level,
            message: text.to_string(),
            source: "t".to_string(),
        }
    }

    #[test]
    fn the_ring_is_bounded_filtered_and_broadcast() {
        let ring = LogRing::new(3);
        let mut rx = ring.subscribe();
        for i in 0..5 {
            let level = if i % 2 == 0 { Level::INFO } else { Level::WARN };
            ring.push(line(i, level, &format!("l{i}")));
        }
        let all: Vec<String> = ring
            .recent(10, Level::TRACE, 0)
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(all, ["l2", "l3", "l4"], "only the last 3 are kept");
        let warn: Vec<String> = ring
            .recent(10, Level::WARN, 0)
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(warn, ["l3"]);
        assert_eq!(ring.recent(1, Level::TRACE, 0)[0].message, "l4");
        assert!(ring.recent(10, Level::TRACE, 5).is_empty());
        assert_eq!(rx.try_recv().unwrap().message, "l0");
    }

    #[test]
    fn the_layer_records_message_fields_and_cuts_long_lines() {
        let ring = Arc::new(LogRing::new(10));
        let subscriber = tracing_subscriber::registry().with(RingLayer(ring.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(model = "chat", n = 3, "loaded {}", "x");
            tracing::info!("{}", "y".repeat(MAX_LINE_BYTES + 10));
        });
        let lines = ring.recent(10, Level::TRACE, 0);
        assert_eq!(lines[0].message, "loaded x model=chat n=3");
        assert_eq!(lines[0].level, Level::WARN);
        assert!(lines[0].source.contains("logging"));
        assert!(lines[1].message.ends_with('…'));
        assert_eq!(lines[1].message.len(), MAX_LINE_BYTES + '…'.len_utf8());
    }
}
