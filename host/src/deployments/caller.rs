//! What a remote caller may ask for when it creates a deployment: load options only from the
//! plugin's allow-list ([`crate::config::LimitsSection::caller_options`]), every number
//! within the operator's `[limits]`. Checked before anything reaches a plugin, so a caller
//! never picks a native library, a device, or a thread count that the runtime cannot take.

use crate::config::{DeploymentConfig, LimitsSection};

/// Why a caller's deployment request was refused: the message names the key and the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn integer(options: &toml::Table, key: &str) -> Result<Option<u64>, Refused> {
    match options.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(n)) => u64::try_from(*n)
            .map(Some)
            .map_err(|_| Refused(format!("`{key}` must be a positive integer, got {n}"))),
        Some(other) => Err(Refused(format!(
            "`{key}` must be an integer, got {}",
            other.type_str()
        ))),
    }
}

fn at_most(key: &str, value: u64, max: u64, setting: &str) -> Result<(), Refused> {
    if value > max {
        return Err(Refused(format!(
            "`{key}` must be at most {max} ([limits] {setting}), got {value}"
        )));
    }
    Ok(())
}

/// Checks a deployment a remote caller asked for. `plugins` are the plugins that could load
/// it (the one the caller named, else every candidate for the file's format); an option is
/// allowed when one of them lists it.
pub fn check(
    limits: &LimitsSection,
    plugins: &[String],
    deployment: &DeploymentConfig,
) -> Result<(), Refused> {
    let allowed: Vec<String> = plugins
        .iter()
        .flat_map(|p| limits.caller_options(p))
        .collect();
    let mut keys: Vec<&String> = deployment.options.keys().collect();
    keys.sort();
    for key in keys {
        if !allowed.iter().any(|a| a == key) {
            let list = if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            };
            return Err(Refused(format!(
                "load option `{key}` is set by the node's operator, not by callers (callers may set: {list}; [limits] caller_options)"
            )));
        }
    }
    at_most(
        "threads",
        u64::from(deployment.threads),
        u64::from(limits.thread_cap()),
        "max_threads",
    )?;
    at_most(
        "batch_size",
        u64::from(deployment.max_batch),
        u64::from(limits.max_batch),
        "max_batch",
    )?;
    if let Some(slots) = integer(&deployment.options, "slots")? {
        if slots == 0 {
            return Err(Refused("`slots` must be at least 1, got 0".into()));
        }
        at_most("slots", slots, u64::from(limits.max_slots), "max_slots")?;
    }
    if let Some(context) = integer(&deployment.options, "context_length")? {
        at_most(
            "context_length",
            context,
            u64::from(limits.max_context_length),
            "max_context_length",
        )?;
    }
    for key in ["queue", "embed_batch_tokens"] {
        if let Some(n) = integer(&deployment.options, key)? {
            at_most(key, n, 100_000, "(fixed)")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(options: &str, threads: u32) -> DeploymentConfig {
        DeploymentConfig {
            threads,
            options: options.parse().unwrap(),
            ..DeploymentConfig::new("m", "/m.gguf")
        }
    }

    #[test]
    fn callers_never_choose_libraries_devices_or_unbounded_numbers() {
        let limits = LimitsSection::default();
        let ort = ["onnx-ort".to_string()];
        let llama = ["gguf-llama".to_string()];
        let err = check(&limits, &ort, &deployment(r#"library = "/tmp/x.so""#, 0)).unwrap_err();
        assert!(
            err.0.contains("`library` is set by the node's operator"),
            "{err}"
        );
        assert!(check(&limits, &ort, &deployment(r#"device = "cuda""#, 0)).is_err());
        let err = check(&limits, &llama, &deployment("", 2_147_483_647)).unwrap_err();
        assert!(err.0.starts_with("`threads` must be at most"), "{err}");
        assert!(err.0.contains("max_threads"), "{err}");
        let err = check(&limits, &llama, &deployment("slots = 64", 0)).unwrap_err();
        assert_eq!(
            err.0,
            "`slots` must be at most 8 ([limits] max_slots), got 64"
        );
        let err = check(&limits, &llama, &deployment("context_length = 10000000", 0)).unwrap_err();
        assert!(err.0.contains("max_context_length"), "{err}");
        assert!(check(&limits, &llama, &deployment("slots = -1", 0)).is_err());
        assert!(check(&limits, &llama, &deployment(r#"slots = "4""#, 0)).is_err());
        assert!(check(
            &limits,
            &llama,
            &deployment("slots = 2\ncontext_length = 512", 1)
        )
        .is_ok());
        // A plugin nobody listed accepts no caller options at all.
        assert!(check(&limits, &["third-party".into()], &deployment("x = 1", 0)).is_err());
        // The operator may open more.
        let mut opened = limits.clone();
        opened
            .caller_options
            .insert("onnx-ort".into(), vec!["inter_threads".into()]);
        assert!(check(&opened, &ort, &deployment("inter_threads = 1", 0)).is_ok());
    }
}
