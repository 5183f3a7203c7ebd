//! Where this repository keeps what its tests run on: the real models that
//! `scripts/fetch-models.py` fetches and the Python venv that `scripts/python-env` makes. The
//! end-to-end tests in `tests/` use it, and so do the plugins' own tests (as a dev-dependency);
//! the conformance kit (`cyxwiz-testkit`) knows nothing of either.
#![deny(missing_docs)]

use std::path::PathBuf;

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
}

/// Where `scripts/fetch-models.py` puts the real test models: `$CYXWIZ_MODELS_DIR`, else
/// `$CYXWIZ_DATA_DIR/models`, else `~/.cyxwiz/server-node/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CYXWIZ_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("CYXWIZ_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cyxwiz/server-node"));
    data.join("models")
}

/// The Python of the test venv that `scripts/python-env` makes (reference runtimes, the
/// `openai` SDK): `$CYXWIZ_VENV/bin/python`, default `~/.cache/cyxwiz-venv/bin/python`.
///
/// # Panics
/// When that file does not exist, with a message saying how to create it.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("CYXWIZ_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/cyxwiz-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/test or scripts/python-env (they create the venv from tests/python/requirements.txt)",
        python.display()
    );
    python
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_dir_follows_the_environment() {
        // One test sets the variables, so no other test in this binary races it.
        std::env::set_var("CYXWIZ_MODELS_DIR", "/m");
        assert_eq!(models_dir(), PathBuf::from("/m"));
        std::env::remove_var("CYXWIZ_MODELS_DIR");
        std::env::set_var("CYXWIZ_DATA_DIR", "/d");
        assert_eq!(models_dir(), PathBuf::from("/d/models"));
        std::env::remove_var("CYXWIZ_DATA_DIR");
        assert!(models_dir().ends_with(".cyxwiz/server-node/models"));
    }
}
