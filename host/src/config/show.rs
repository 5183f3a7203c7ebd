//! `config show`: the effective configuration as TOML, each key annotated with its source.

use super::Config;

/// Keys whose values are never printed.
const SECRETS: [&str; 1] = ["central_server.auth_token"];

/// Renders `config` as commented TOML: `key = value  # source`.
pub fn render(config: &Config) -> String {
    let mut out = format!(
        "# data directory: {}\n# config file: {}\n",
        config.data_dir.display(),
        config
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none (defaults)".to_string())
    );
    let value = match toml::Value::try_from(config) {
        Ok(v) => v,
        Err(e) => return format!("{out}# cannot render: {e}\n"),
    };
    let Some(table) = value.as_table() else {
        return out;
    };
    for (section, body) in table {
        match body {
            toml::Value::Table(keys) => {
                out.push_str(&format!("\n[{section}]\n"));
                for (key, v) in keys {
                    let dotted = format!("{section}.{key}");
                    let shown = match v {
                        toml::Value::String(s)
                            if SECRETS.contains(&dotted.as_str()) && !s.is_empty() =>
                        {
                            "\"<redacted>\"".to_string()
                        }
                        v => v.to_string(),
                    };
                    out.push_str(&format!("{key} = {shown}  # {}\n", config.source(&dotted)));
                }
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&format!("\n[[{section}]]\n"));
                    if let Some(keys) = item.as_table() {
                        for (key, v) in keys {
                            let dotted = format!("{section}[{i}].{key}");
                            out.push_str(&format!("{key} = {v}  # {}\n", config.source(&dotted)));
                        }
                    }
                }
            }
            other => out.push_str(&format!("{section} = {other}\n")),
        }
    }
    out
}
