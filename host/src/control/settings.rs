//! `GetConfig` and `SetConfig`: the settings daemon.proto names, read from the running node's
//! configuration and written into its `config.toml` with `toml_edit` (comments and the other
//! keys are kept). A change takes effect at the next start; the reply says so.

use crate::config::Config;
use cyxwiz_proto::daemon as pb;
use std::path::{Path, PathBuf};

/// Longest `node_name` and `central_server_address` accepted.
pub const MAX_TEXT: usize = 256;
/// Most model directories accepted.
pub const MAX_DIRS: usize = 32;

/// Why a settings change was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value is out of bounds or names a setting this node does not have.
    #[error("{0}")]
    Invalid(String),
    /// The edited file would not load.
    #[error("the change was not written: {0}")]
    Rejected(String),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The settings of `config` as `GetConfigResponse`.
pub fn get(config: &Config) -> pb::GetConfigResponse {
    pb::GetConfigResponse {
        node_name: config.node.name.clone(),
        central_server_address: config.central_server.address.clone(),
        model_directories: config
            .model_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect(),
        max_concurrent_jobs: i32::try_from(config.node.max_concurrent_jobs).unwrap_or(i32::MAX),
        default_gpu_layers: 0,
        default_context_size: 0,
        // `[[deployments]]` always load at start.
        auto_start_deployments: true,
        log_level: config.logging.level.clone(),
    }
}

/// The file `SetConfig` edits: the config file the node read, else `<data-dir>/config.toml`.
pub fn file_of(config: &Config) -> PathBuf {
    config
        .config_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("config.toml"))
}

/// Applies the non-empty fields of `req` to the TOML text `text` and checks that the result
/// loads as a valid configuration. Empty strings, 0 and an empty list leave a setting as it
/// is; `auto_start_deployments` is not a setting of this node and is ignored;
/// `default_gpu_layers` and `default_context_size` are per-deployment load options here
/// and are refused when set.
pub fn edit(text: &str, req: &pb::SetConfigRequest) -> Result<String, SettingsError> {
    let invalid = |m: String| Err(SettingsError::Invalid(m));
    if req.default_gpu_layers != 0 || req.default_context_size != 0 {
        return invalid(
            "default_gpu_layers and default_context_size are load options of each deployment on this node (`options` of [[deployments]]), not node settings".into(),
        );
    }
    for (field, value) in [
        ("node_name", &req.node_name),
        ("central_server_address", &req.central_server_address),
        ("log_level", &req.log_level),
    ] {
        if value.len() > MAX_TEXT {
            return invalid(format!(
                "{field} must be at most {MAX_TEXT} bytes, got {}",
                value.len()
            ));
        }
    }
    if req.model_directories.len() > MAX_DIRS {
        return invalid(format!(
            "model_directories must list at most {MAX_DIRS} directories, got {}",
            req.model_directories.len()
        ));
    }
    if req.max_concurrent_jobs < 0 {
        return invalid(format!(
            "max_concurrent_jobs must be at least 1, got {}",
            req.max_concurrent_jobs
        ));
    }
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| SettingsError::Rejected(e.to_string()))?;
    // A replaced value keeps its comments and spacing.
    let mut set = |table: &str, key: &str, mut value: toml_edit::Value| {
        if !doc.contains_table(table) {
            doc[table] = toml_edit::table();
        }
        let item = &mut doc[table][key];
        if let Some(old) = item.as_value() {
            *value.decor_mut() = old.decor().clone();
        }
        *item = toml_edit::Item::Value(value);
    };
    if !req.node_name.is_empty() {
        set("node", "name", req.node_name.clone().into());
    }
    if !req.central_server_address.is_empty() {
        set(
            "central_server",
            "address",
            req.central_server_address.clone().into(),
        );
    }
    if req.max_concurrent_jobs > 0 {
        set(
            "node",
            "max_concurrent_jobs",
            i64::from(req.max_concurrent_jobs).into(),
        );
    }
    if !req.log_level.is_empty() {
        set("logging", "level", req.log_level.clone().into());
    }
    if !req.model_directories.is_empty() {
        let dirs: toml_edit::Array = req.model_directories.iter().map(String::as_str).collect();
        set("models", "dirs", dirs.into());
    }
    let edited = doc.to_string();
    let config: Config =
        toml::from_str(&edited).map_err(|e| SettingsError::Rejected(e.message().to_string()))?;
    config
        .validate()
        .map_err(|e| SettingsError::Rejected(e.to_string()))?;
    if !req.log_level.is_empty() {
        tracing_subscriber::EnvFilter::try_new(&req.log_level)
            .map_err(|e| SettingsError::Invalid(format!("log_level `{}`: {e}", req.log_level)))?;
    }
    Ok(edited)
}

/// Edits the config file at `path` (created if missing) with `req`; returns whether anything
/// changed. Written to a temporary file beside it, then renamed over it.
pub fn apply(path: &Path, req: &pb::SetConfigRequest) -> Result<bool, SettingsError> {
    let io = |source| SettingsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let edited = edit(&text, req)?;
    if edited == text {
        return Ok(false);
    }
    let staged = path.with_extension("toml.new");
    {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staged)
            .map_err(io)?;
        file.write_all(edited.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&staged, path).map_err(io)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_comments_and_are_validated() {
        let text = "# my node\n[node]\nname = \"a\" # keep me\n\n[api]\nport = 9000\n";
        let req = pb::SetConfigRequest {
            node_name: "rig-2".into(),
            max_concurrent_jobs: 3,
            model_directories: vec!["/srv/models".into()],
            log_level: "debug".into(),
            ..Default::default()
        };
        let out = edit(text, &req).unwrap();
        assert!(out.starts_with("# my node\n"), "{out}");
        assert!(out.contains("name = \"rig-2\" # keep me"), "{out}");
        assert!(out.contains("port = 9000"), "{out}");
        let config: Config = toml::from_str(&out).unwrap();
        assert_eq!(config.node.max_concurrent_jobs, 3);
        assert_eq!(config.logging.level, "debug");
        assert_eq!(config.models.dirs, [PathBuf::from("/srv/models")]);

        // Nothing set: nothing changes.
        assert_eq!(edit(text, &pb::SetConfigRequest::default()).unwrap(), text);
        // Bad values are refused, the file is untouched.
        let bad = |req: pb::SetConfigRequest| edit(text, &req).unwrap_err().to_string();
        assert!(bad(pb::SetConfigRequest {
            central_server_address: "ftp://x".into(),
            ..Default::default()
        })
        .contains("central_server.address"));
        assert!(bad(pb::SetConfigRequest {
            default_gpu_layers: 10,
            ..Default::default()
        })
        .contains("load options"));
        assert!(bad(pb::SetConfigRequest {
            node_name: "x".repeat(MAX_TEXT + 1),
            ..Default::default()
        })
        .contains("at most 256 bytes"));
        assert!(bad(pb::SetConfigRequest {
            log_level: "loud[".into(),
            ..Default::default()
        })
        .contains("level"));
    }

    #[test]
    fn apply_writes_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let req = pb::SetConfigRequest {
            node_name: "n1".into(),
            ..Default::default()
        };
        assert!(apply(&path, &req).unwrap());
        assert!(
            !apply(&path, &req).unwrap(),
            "a second identical change is none"
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("name = \"n1\""));
    }
}
