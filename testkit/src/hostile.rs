//! Hostile model files: each must give an error, never a panic or a crash.

use crate::Report;
use crate::Sample;
use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::ErrorKind;
use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
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

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn must_fail(
    lib: &PluginLibrary,
    path: &Path,
    sample: &Sample,
    want: Option<ErrorKind>,
) -> Result<(), String> {
    match lib.load(path, &sample.options) {
        Ok(_) => Err("loaded without error".into()),
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

/// Runs the hostile-file checks, using `sample`'s file for the truncated case.
pub(super) fn run(lib: &PluginLibrary, sample: &Sample, report: &mut Report) {
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
    for (name, path, want) in cases {
        report.record(
            format!("hostile file: {name}"),
            must_fail(lib, &path, sample, want),
        );
    }
}
