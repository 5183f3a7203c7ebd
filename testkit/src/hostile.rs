//! Hostile model files: each must be refused with an error, never a panic or a hang; one
//! that loads anyway is run, to report what the plugin does with it.

use crate::{
    inputs::{generated_inputs, noise},
    watchdog::{is_timeout, within},
    Report, Sample,
};
use cyxwiz_plugin_host::{LoadedModel, PluginLibrary};
use cyxwiz_sdk::{Capabilities, ErrorKind, GenerateRequest, LoadOptions, Tensor};
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "cyxwiz-testkit-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads a hostile file under the deadline: it must be refused with a clean error. A file
/// that loads anyway is then run (infer, generate or embed, under the deadline) so a plugin
/// that hangs or panics on what it wrongly accepted is reported as such.
fn must_fail(
    lib: &Arc<PluginLibrary>,
    path: PathBuf,
    options: &LoadOptions,
    want: Option<ErrorKind>,
    limit: Duration,
) -> Result<(), String> {
    let (l, options) = (lib.clone(), options.clone());
    let loaded = within(limit, move || l.load(&path, &options)).map_err(|e| format!("load {e}"))?;
    match loaded {
        Ok(model) => {
            let then = match within(limit, move || exercise(&model)) {
                Ok(what) => what,
                Err(e) => format!("the call {e}"),
            };
            Err(format!(
                "loaded without error (it must be refused); then {then}"
            ))
        }
        Err(e) if e.kind == ErrorKind::PANICKED => {
            Err(format!("the plugin panicked: {}", e.message))
        }
        Err(e) if e.message.trim().is_empty() => {
            Err(format!("{} error with an empty message", e.kind))
        }
        Err(e) => match want {
            Some(kind) if e.kind != kind => Err(format!("expected {kind}, got {}: {e}", e.kind)),
            _ => Ok(()),
        },
    }
}

/// Calls a model that loaded from a hostile file the way a client would, and says how each
/// call ended.
fn exercise(model: &LoadedModel) -> String {
    let ended = |what: &str, result: cyxwiz_sdk::Result<()>| match result {
        Ok(()) => format!("{what} answered"),
        Err(e) if e.kind == ErrorKind::PANICKED => format!("{what} panicked: {}", e.message),
        Err(e) => format!("{what} failed cleanly ({})", e.kind),
    };
    let caps = model.info().capabilities;
    let mut said = Vec::new();
    if caps.contains(Capabilities::TENSOR_INFERENCE) {
        said.push(match generated_inputs(model.info()) {
            Ok(inputs) => {
                let views: Vec<_> = inputs.iter().map(Tensor::view).collect();
                ended("infer", model.infer(&views).map(drop))
            }
            Err(e) => format!("no inputs to try: {e}"),
        });
    }
    if caps.contains(Capabilities::TEXT_GENERATION) {
        let mut request = GenerateRequest {
            prompt: "Hello".into(),
            ..GenerateRequest::default()
        };
        request.params.max_tokens = 4;
        said.push(ended(
            "generate",
            model.generate(&request, &mut |_: &str| true).map(drop),
        ));
    }
    if caps.contains(Capabilities::EMBEDDINGS) {
        said.push(ended("embed", model.embed(&["hello"]).map(drop)));
    }
    if said.is_empty() {
        "it declares no capability to try".into()
    } else {
        said.join(", ")
    }
}

/// Runs the hostile-file checks, using `sample`'s file for the truncated case, each under
/// `limit`; after one that did not return, the rest are recorded as skipped.
pub(crate) fn run(lib: &Arc<PluginLibrary>, sample: &Sample, limit: Duration, report: &mut Report) {
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            report.record("hostile files: scratch dir", Err(e.to_string()));
            return;
        }
    };
    let ext = lib
        .metadata()
        .extensions()
        .next()
        .unwrap_or("bin")
        .to_string();
    let file = |name: &str| scratch.0.join(format!("{name}.{ext}"));
    let sample_bytes = if sample.model.is_file() {
        std::fs::read(&sample.model).ok()
    } else {
        None
    };

    let mut cases: Vec<(&str, PathBuf, Option<ErrorKind>)> = vec![(
        "missing path",
        file("does-not-exist"),
        Some(ErrorKind::NOT_FOUND),
    )];
    let dir = file("a-directory");
    let writes: Vec<(&str, PathBuf, Vec<u8>)> = vec![
        ("empty file", file("empty"), Vec::new()),
        (
            "random bytes",
            file("random"),
            noise(64 * 1024, 0x9e37_79b9_7f4a_7c15),
        ),
        (
            "a file of another format (PNG)",
            file("png"),
            [b"\x89PNG\r\n\x1a\n".as_slice(), &noise(512, 7)].concat(),
        ),
        (
            "a file of another format (JSON text)",
            file("json"),
            br#"{"this": "is not a model", "layers": [1, 2, 3]}"#.to_vec(),
        ),
        (
            "a file of another format (GGUF header)",
            file("gguf"),
            [b"GGUF\x03\0\0\0".as_slice(), &noise(256, 11)].concat(),
        ),
    ];
    let mut setup_errors = Vec::new();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        setup_errors.push(e.to_string());
    } else {
        cases.push(("a directory", dir, None));
    }
    for (name, path, bytes) in writes {
        match std::fs::write(&path, bytes) {
            Ok(()) => cases.push((name, path, None)),
            Err(e) => setup_errors.push(e.to_string()),
        }
    }
    if let Some(bytes) = sample_bytes {
        for (name, keep) in [
            ("truncated to half", bytes.len() / 2),
            ("truncated to 64 bytes", 64.min(bytes.len())),
        ] {
            if keep == 0 || keep >= bytes.len() {
                continue;
            }
            let path = file(&format!("truncated-{keep}"));
            match std::fs::write(&path, &bytes[..keep]) {
                Ok(()) => cases.push((name, path, None)),
                Err(e) => setup_errors.push(e.to_string()),
            }
        }
    }
    if !setup_errors.is_empty() {
        report.record("hostile files: setup", Err(setup_errors.join("; ")));
    }
    let mut hung = false;
    for (name, path, want) in cases {
        let outcome = if hung {
            Err("skipped: an earlier hostile file hung the plugin".into())
        } else {
            must_fail(lib, path, &sample.options, want, limit)
        };
        hung |= outcome.as_ref().is_err_and(|e| is_timeout(e));
        report.record(format!("hostile file: {name}"), outcome);
    }
}
