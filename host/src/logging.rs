//! Logging setup: `tracing` to stderr (text or JSON), optionally also to a file.

use crate::config::Config;
use std::{io::IsTerminal, sync::Mutex};
use tracing_subscriber::{fmt::writer::MakeWriterExt, EnvFilter};

/// Installs the global subscriber. `level` overrides the configured level (one-shot commands
/// log only warnings unless the operator asked for more).
pub fn init(config: &Config, level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log level `{level}`: {e}"))?;
    let json = config.logging.format == "json";
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour);
    let result = if config.logging.file.is_empty() {
        let builder = builder.with_writer(std::io::stderr);
        if json {
            builder.json().try_init()
        } else {
            builder.try_init()
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
        let builder = builder
            .with_ansi(false)
            .with_writer(std::io::stderr.and(Mutex::new(file)));
        if json {
            builder.json().try_init()
        } else {
            builder.try_init()
        }
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
