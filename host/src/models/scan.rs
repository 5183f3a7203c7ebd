//! `models list`: model files found in the model directories, with their format (the plugin
//! format their extension maps to) and size.

use crate::plugins::{extension_of, Registry};
use std::path::{Path, PathBuf};

/// Extensions recognised as model files even when no loaded plugin handles them.
const KNOWN: &[(&str, &str)] = &[
    ("onnx", "onnx"),
    ("gguf", "gguf"),
    ("tflite", "tflite"),
    ("pt", "torchscript"),
    ("safetensors", "safetensors"),
];

/// One model file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelFile {
    /// Where it is.
    pub path: PathBuf,
    /// Format name.
    pub format: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Plugins that would load it, most preferred first (empty: none loaded handles it).
    pub plugins: Vec<String>,
}

/// Scans `dirs` (recursively, 4 levels, skipping hidden directories) for model files.
pub fn scan(dirs: &[PathBuf], registry: &Registry) -> Vec<ModelFile> {
    let mut found = Vec::new();
    for dir in dirs {
        walk(dir, 0, registry, &mut found);
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found.dedup_by(|a, b| a.path == b.path);
    found
}

fn walk(dir: &Path, depth: usize, registry: &Registry, out: &mut Vec<ModelFile>) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        if path.is_dir() {
            if depth < 4 {
                walk(&path, depth + 1, registry, out);
            }
            continue;
        }
        let Some(ext) = extension_of(&path) else {
            continue;
        };
        let candidates = registry.candidates(&path);
        let plugins: Vec<String> = candidates
            .iter()
            .map(|l| l.metadata().name.clone())
            .collect();
        let format = candidates
            .first()
            .and_then(|l| {
                l.metadata()
                    .formats
                    .iter()
                    .find(|(_, exts)| exts.contains(&ext))
                    .map(|(f, _)| f.clone())
            })
            .or_else(|| {
                KNOWN
                    .iter()
                    .find(|(e, _)| *e == ext)
                    .map(|(_, f)| f.to_string())
            });
        if let Some(format) = format {
            out.push(ModelFile {
                size_bytes: entry.metadata().map(|m| m.len()).unwrap_or(0),
                path,
                format,
                plugins,
            });
        }
    }
}
