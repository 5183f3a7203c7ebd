//! Plugin-side logging: once the host hands over its log sink, a `tracing` subscriber in the
//! plugin's own copy of `tracing` forwards every event there. Plugin authors (and the native
//! runtimes they wrap, such as llama.cpp through llama-cpp-2) just use `tracing`.

use cyxwiz_plugin_api::{LogLevel, LogSinkBox};
use std::{fmt::Write as _, sync::OnceLock};
use tracing::{
    field::{Field, Visit},
    span, Event, Level, Metadata, Subscriber,
};

static SINK: OnceLock<LogSinkBox> = OnceLock::new();

fn to_abi(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::ERROR,
        Level::WARN => LogLevel::WARN,
        Level::INFO => LogLevel::INFO,
        Level::DEBUG => LogLevel::DEBUG,
        _ => LogLevel::TRACE,
    }
}

/// Collects an event's fields: `message` first, then `key=value` pairs.
#[derive(Default)]
struct Collect {
    message: String,
    fields: String,
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// Forwards events to the host's sink; spans are not forwarded (the host keeps its own).
struct Forwarder {
    max: LogLevel,
}

impl Subscriber for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        to_abi(metadata.level()) <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(match self.max {
            LogLevel::OFF => tracing::level_filters::LevelFilter::OFF,
            LogLevel::ERROR => tracing::level_filters::LevelFilter::ERROR,
            LogLevel::WARN => tracing::level_filters::LevelFilter::WARN,
            LogLevel::INFO => tracing::level_filters::LevelFilter::INFO,
            LogLevel::DEBUG => tracing::level_filters::LevelFilter::DEBUG,
            _ => tracing::level_filters::LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(sink) = SINK.get() else {
            return;
        };
        let mut collect = Collect::default();
        event.record(&mut collect);
        let text = collect.message + &collect.fields;
        let meta = event.metadata();
        sink.log(
            to_abi(meta.level()),
            meta.target().into(),
            text.trim_end().into(),
        );
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// Receives the host's sink and installs the forwarding subscriber (once per plugin image).
pub(crate) extern "C" fn set_log_sink(sink: LogSinkBox) {
    let _ = std::panic::catch_unwind(move || {
        let max = sink.max_level();
        if SINK.set(sink).is_ok() {
            let _ =
                tracing::dispatcher::set_global_default(tracing::Dispatch::new(Forwarder { max }));
        }
    });
}
