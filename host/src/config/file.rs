//! Reading `config.toml`: TOML syntax, then typed keys with the dotted path of any bad or
//! unknown key, then the provenance of every key the file set.

use super::{Config, ConfigError, Source};
use std::path::Path;

/// Reads and type-checks the config file at `path`.
pub(super) fn read(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().lines().next().unwrap_or("").to_string()
                + &e.span()
                    .map(|s| {
                        let line = text[..s.start.min(text.len())].lines().count().max(1);
                        format!(" (line {line})")
                    })
                    .unwrap_or_default(),
        })?;
    let value = toml::Value::Table(table.clone());
    let mut config: Config =
        serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Key {
            path: path.to_path_buf(),
            key: e.path().to_string(),
            message: e
                .inner()
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid value")
                .to_string(),
        })?;
    let mut keys = Vec::new();
    collect_keys("", &toml::Value::Table(table), &mut keys);
    for key in keys {
        config.sources.insert(key, Source::File(path.to_path_buf()));
    }
    config.config_file = Some(path.to_path_buf());
    Ok(config)
}

/// Dotted paths of the leaves of `value`: scalars and arrays are leaves, tables recurse,
/// arrays of tables recurse with `[i]`.
fn collect_keys(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_keys(&key, v, out);
            }
        }
        toml::Value::Array(items)
            if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
        {
            for (i, item) in items.iter().enumerate() {
                collect_keys(&format!("{prefix}[{i}]"), item, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn seed_keys_parse_and_record_their_source() {
        let config = read_str(
            r#"
            [node]
            name = "rig-1"
            max_concurrent_jobs = 2
            [central_server]
            address = "central.example:50051"
            heartbeat_interval_seconds = 15
            [devices]
            gpu_ids = [0, 1]
            [api]
            port = 8080
            [plugins]
            preference = { onnx = ["onnx-tract"] }
            [[deployments]]
            name = "cls"
            path = "models/cls.onnx"
            "#,
        )
        .unwrap();
        assert_eq!(config.node.name, "rig-1");
        assert_eq!(config.devices.gpu_ids, vec![0, 1]);
        assert_eq!(config.api.port, 8080);
        assert_eq!(config.api.host, "127.0.0.1", "unset keys keep defaults");
        assert_eq!(config.deployments[0].workers, 0, "automatic");
        assert_eq!(config.deployments[0].max_batch, 32);
        assert!(config.deployments[0].normalize);
        assert!(matches!(config.source("api.port"), Source::File(_)));
        assert!(matches!(
            config.source("deployments[0].path"),
            Source::File(_)
        ));
        assert_eq!(config.source("api.host"), Source::Default);
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = read_str("[node]\nnmae = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        assert!(
            err.contains("`node.nmae`") && err.contains("`name`"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_expected_form() {
        let err = read_str("[api]\nport = \"eighty\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`api.port`"), "{err}");
        assert!(err.contains("u16"), "{err}");
        let err = read_str("[api]\nport = 70000\n").unwrap_err().to_string();
        assert!(err.contains("`api.port`"), "{err}");
    }

    #[test]
    fn syntax_error_gives_the_line() {
        let err = read_str("[node]\nname = \n").unwrap_err().to_string();
        assert!(
            err.contains("invalid TOML") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_reported_by_validate() {
        let config = read_str("[central_server]\naddress = \"nohost\"\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("central_server.address") && err.contains("HOST:PORT"),
            "{err}"
        );
        let config = read_str("[logging]\nformat = \"xml\"\n").unwrap();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`text` or `json`"));
    }
}
