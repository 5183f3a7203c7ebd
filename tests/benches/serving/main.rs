//! The serving table of issue 16 in one run, each measure next to its reference and goal:
//! - LLM: the node (gguf-llama) against llama.cpp's own `llama-server` with its prompt cache on
//!   (`cache_prompt: true`, its default) and off, SmolLM2-135M Q4_1, 2 threads, 4 slots,
//!   greedy, streamed `/v1/chat/completions`: decode tokens/s of one stream, aggregate tokens/s
//!   of four, first-token latency of one stream on a conversation sent before (as chat clients
//!   resend it every turn) and of four streams;
//! - embeddings: the node's `/v1/embeddings` (MiniLM int8 on the onnx-ort plugin, 2 threads)
//!   with 16 concurrent kept-alive clients sending one text each, and with one client in
//!   sequence, against a Python `onnxruntime` loop on the same model and threads (one text per
//!   call, 16 per call);
//! - the idle RSS of a node with every plugin installed and no models, against 30 MiB.
//!
//! One server runs at a time. The node is the release build in `<target>/release`
//! (`CYXWIZ_BENCH_NODE_DIR` points elsewhere); a missing binary, plugin, model, llama-server
//! or Python ends the run at once with a line saying what to build. `scripts/bench-serving`
//! builds all of it and runs `cargo bench -p cyxwiz-e2e --bench serving`. Here: what the run
//! needs, the goals and the report's header; each section is a module.

#[path = "../support/mod.rs"]
mod support;

mod embeddings;
mod idle;
mod llm;

use std::{
    fmt::Display,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime},
};
use support::{chat::llama_server_path, target_dir};

/// Threads of every runtime measured, node and references alike.
const THREADS: u32 = 2;
/// The workspace's plugin crates: "all plugins installed".
const PLUGINS: [&str; 7] = [
    "onnx-tract",
    "onnx-ort",
    "gguf-llama",
    "tflite-tract",
    "tflite-litert",
    "torch-tch",
    "train-candle",
];

/// Ends the run with one line on stderr.
fn fail(message: impl Display) -> ! {
    eprintln!("serving bench: {message}");
    std::process::exit(2)
}

fn require(path: &Path, what: impl Display) {
    if !path.exists() {
        fail(format_args!("{} missing: {what}", path.display()));
    }
}

/// A goal on the ratio node / reference.
#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    Info,
}

impl Goal {
    fn text(self) -> String {
        match self {
            Goal::AtLeast(x) => format!("≥ {x:.2}x"),
            Goal::AtMost(x) => format!("≤ {x:.2}x"),
            Goal::Info => "-".into(),
        }
    }

    /// "met" when every ratio meets the goal.
    fn verdict(self, ratios: &[f64]) -> &'static str {
        let ok = |r: f64| match self {
            Goal::AtLeast(x) => r >= x,
            Goal::AtMost(x) => r <= x,
            Goal::Info => true,
        };
        match self {
            Goal::Info => "-",
            _ if ratios.iter().all(|&r| ok(r)) => "met",
            _ => "**not met**",
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn lib_name(plugin: &str) -> String {
    format!("libcyxwiz_plugin_{}.so", plugin.replace('-', "_"))
}

/// What the run needs, checked before anything starts.
struct Setup {
    node: PathBuf,
    llama_server: PathBuf,
    python: PathBuf,
    models: PathBuf,
    gguf: PathBuf,
    ort: PathBuf,
}

fn setup() -> Setup {
    let dir = std::env::var_os("CYXWIZ_BENCH_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            target_dir()
                .parent()
                .expect("the target directory")
                .join("release")
        });
    let node = dir.join("cyxwiz-node");
    let missing: Vec<&str> = PLUGINS
        .iter()
        .copied()
        .filter(|p| !dir.join(lib_name(p)).exists())
        .collect();
    if !node.exists() || !missing.is_empty() {
        let crates: Vec<String> = PLUGINS
            .iter()
            .map(|p| format!("-p cyxwiz-plugin-{p}"))
            .collect();
        let what = if node.exists() {
            format!("plugins {}", missing.join(", "))
        } else {
            "cyxwiz-node".into()
        };
        fail(format_args!(
            "{what} missing in {}: build with `cargo build --release -p cyxwiz-node {}` \
             (LIBTORCH set as scripts/test does), or run scripts/bench-serving",
            dir.display(),
            crates.join(" ")
        ));
    }
    let llama_server = llama_server_path();
    require(
        &llama_server,
        "run scripts/build-llama-server first (about 10 min, once)",
    );
    let python = std::env::var_os("CYXWIZ_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CYXWIZ_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/cyxwiz-venv")
                })
                .join("bin/python")
        });
    require(&python, "run scripts/python-env first");
    let models = cyxwiz_e2e::models_dir();
    let gguf = models.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let ort = models.join("runtimes/onnxruntime/libonnxruntime.so.1.31.1");
    let fetch = "run scripts/fetch-models.py --set gguf --set onnx --set runtimes first";
    for path in [&gguf, &ort, &models.join("minilm/model.onnx")] {
        require(path, fetch);
    }
    Setup {
        node,
        llama_server,
        python,
        models,
        gguf,
        ort,
    }
}

/// The profile a binary in `<target>/<dir>/` was built with, and how long ago.
fn build_of(bin: &Path) -> String {
    let dir = bin
        .parent()
        .and_then(Path::file_name)
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let profile = if dir == "debug" { "dev".into() } else { dir };
    let age = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| format!(", built {} min ago", d.as_secs() / 60))
        .unwrap_or_default();
    format!("`{profile}` profile{age}")
}

fn python_versions(python: &Path) -> String {
    let out = Command::new(python)
        .args([
            "-c",
            "import onnxruntime, tokenizers, numpy; print(onnxruntime.__version__)",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => fail(format_args!(
            "{} lacks onnxruntime, tokenizers or numpy: run scripts/python-env",
            python.display()
        )),
    }
}

fn main() {
    let started = Instant::now();
    let load = loadavg();
    let s = setup();
    let ort_version = python_versions(&s.python);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# Serving benchmark (issue 16)\n");
    println!("- node: {} ({})", s.node.display(), build_of(&s.node));
    println!("- llama-server: {}", s.llama_server.display());
    println!(
        "- Python: {} (onnxruntime {ort_version})",
        s.python.display()
    );
    println!("- machine: {cores} cores, load average at start {load} (1/5/15 min)");
    let busy: f64 = load
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    if busy > cores as f64 / 2.0 {
        println!(
            "- **the machine is busy** (load {busy} on {cores} cores): the servers share the cores \
             with other work, so these numbers are not comparable with a quiet run"
        );
    }
    let data = tempfile::tempdir().expect("tempdir");
    let progress = |what: &str| eprintln!("[{:.0} s] {what}", started.elapsed().as_secs_f64());
    progress("idle footprint");
    idle::section(&s, data.path());
    progress("LLM");
    llm::section(&s, data.path());
    progress("embeddings");
    embeddings::section(&s, data.path(), &ort_version);
    println!(
        "\nTook {:.0} s; load average at the end {}.",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
}
