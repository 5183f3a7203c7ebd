//! Training throughput (issue 14, item 8): samples/s of the two training backends,
//! train-candle (pure Rust) and torch-tch (libtorch), against PyTorch on the same problems, in
//! one table per model. The backends are driven as the node drives them: the plugin library
//! opened with `PluginLibrary::open`, its `training_backend()`, `Trainer::train` with a
//! `TrainingHost` (here in memory) serving the batches, models parsed from the plain form by
//! the node's own parser. PyTorch runs `train_reference.py` beside this file.
//!
//! Problems: the first 10,640 Fashion-MNIST training images (pixels / 255) in file order,
//! batch 64, one epoch with no validation; the first 10 batches warm up and the other 10,000
//! samples are timed (from the report after batch 10 to the one after the last batch, so the
//! per-step loss/accuracy read-back is timed in every backend, and the closing checkpoint is
//! not). Models: MLP 784-128-10 (Flatten, Dense 128, ReLU, Dense 10) and a small CNN
//! (Conv 1→8 3×3 same, ReLU, MaxPool 2, Conv 8→16 3×3 same, ReLU, MaxPool 2, Flatten,
//! Dense 10), cross-entropy, Adam lr 1e-3. Same threads everywhere (`TrainingJob.threads`,
//! `torch.set_num_threads`).
//!
//! Once: `scripts/bench-training-setup` (the PyTorch venv) and
//! `cargo build --release -p cyxwiz-plugin-train-candle -p cyxwiz-plugin-torch-tch`; then
//! `cargo bench -p cyxwiz-e2e --bench training`. The plugins come from `target/release` when
//! they are there, whatever profile builds the bench; `--profile dev` builds the bench much
//! faster but leaves the host's side of each step (the SDK's batch encoding) unoptimised,
//! and says so.
//! Environment: `CYXWIZ_BENCH_THREADS` (2), `CYXWIZ_BENCH_SAMPLES` (10000),
//! `CYXWIZ_BENCH_REPEATS` (3: the fastest epoch counts), `CYXWIZ_BENCH_MODELS` (`mlp,cnn`),
//! `CYXWIZ_BENCH_BACKENDS` (`train-candle,torch-tch,pytorch`),
//! `CYXWIZ_BENCH_PLUGIN_DIR` (looked in first), `CYXWIZ_BENCH_TORCH_PYTHON` (default
//! `~/.cache/cyxwiz-bench-venv/bin/python`).

mod support;

use cyxwiz_node::jobs::graph::parse_model_definition;
use cyxwiz_plugin_host::PluginLibrary;
use cyxwiz_sdk::{
    serde_json,
    training::{
        Batch, Checkpoint, DataSplit, DatasetShape, Directive, ModelSpec, TrainingHost,
        TrainingJob, TrainingProgress,
    },
    Error, Result,
};
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

const BATCH: usize = 64;
const WARMUP_BATCHES: usize = 10;
const FASHION: &str = "/usr/share/datasets/fashion-mnist";

const MLP: &str = r#"{"input": [1, 28, 28],
  "layers": [{"type": "flatten"},
             {"type": "dense", "units": 128, "activation": "relu"},
             {"type": "dense", "units": 10}],
  "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.001}}"#;

const CNN: &str = r#"{"input": [1, 28, 28],
  "layers": [{"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
             {"type": "maxpool2d", "pool_size": 2},
             {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
             {"type": "maxpool2d", "pool_size": 2},
             {"type": "flatten"},
             {"type": "dense", "units": 10}],
  "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.001}}"#;

/// The backends, by plugin crate.
const BACKENDS: [(&str, &str); 2] = [
    ("train-candle", "cyxwiz_plugin_train_candle"),
    ("torch-tch", "cyxwiz_plugin_torch_tch"),
];

/// Labelled images, `[1, 28, 28]` each, row-major.
struct Data {
    inputs: Vec<f32>,
    labels: Vec<i64>,
}

fn gunzip_prefix(path: &Path, len: usize) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (install the Debian package dataset-fashion-mnist: scripts/install-deps)",
            path.display()
        )
    });
    let mut out = vec![0u8; len];
    flate2::read::GzDecoder::new(file)
        .read_exact(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// The first `count` Fashion-MNIST training images, pixels / 255, and their labels.
fn fashion_mnist(count: usize) -> Data {
    let dir = Path::new(FASHION);
    let images = gunzip_prefix(&dir.join("train-images-idx3-ubyte.gz"), 16 + count * 784);
    assert_eq!(be32(&images[0..4]), 0x0803, "IDX image magic");
    assert!(be32(&images[4..8]) >= count);
    let labels = gunzip_prefix(&dir.join("train-labels-idx1-ubyte.gz"), 8 + count);
    assert_eq!(be32(&labels[0..4]), 0x0801, "IDX label magic");
    Data {
        inputs: images[16..].iter().map(|&p| f32::from(p) / 255.0).collect(),
        labels: labels[8..].iter().map(|&l| i64::from(l)).collect(),
    }
}

/// One backend's result on one model, or why there is none.
type Outcome = std::result::Result<Measured, String>;

/// One backend's result on one model.
struct Measured {
    samples_per_s: f64,
    /// Mean training loss and accuracy over the epoch (warm-up included), as reported.
    loss: f64,
    accuracy: f64,
}

/// The host's side of a bench job: batches in file order, the time of the report after the
/// warm-up batches and of the one after the last batch, checkpoints counted and dropped.
struct BenchHost<'d> {
    data: &'d Data,
    batches: u64,
    started: Option<Instant>,
    finished: Option<(Instant, TrainingProgress)>,
}

impl TrainingHost for BenchHost<'_> {
    fn batch(&mut self, split: DataSplit, _epoch: u32, index: u64) -> Result<Batch> {
        if split != DataSplit::TRAIN || index >= self.batches {
            return Err(Error::invalid_input(format!("no batch {index} here")));
        }
        let start = index as usize * BATCH;
        let end = (start + BATCH).min(self.data.labels.len());
        Ok(Batch {
            inputs: self.data.inputs[start * 784..end * 784].to_vec(),
            shape: vec![end - start, 1, 28, 28],
            labels: self.data.labels[start..end].to_vec(),
        })
    }

    fn report(&mut self, progress: &TrainingProgress) -> Directive {
        if !progress.epoch_end {
            if progress.step == WARMUP_BATCHES as u64 {
                self.started = Some(Instant::now());
            }
            if progress.step == self.batches {
                self.finished = Some((Instant::now(), progress.clone()));
            }
        }
        Directive::CONTINUE
    }

    fn checkpoint(&mut self, _checkpoint: Checkpoint) -> Result<()> {
        Ok(())
    }

    fn wait_while_paused(&mut self) -> Directive {
        Directive::CONTINUE
    }
}

/// Settings shared by every measurement.
struct Setup {
    threads: u32,
    samples: usize,
    repeats: usize,
    data: Data,
}

impl Setup {
    fn total(&self) -> usize {
        WARMUP_BATCHES * BATCH + self.samples
    }
}

/// One epoch of a fresh job of `model` on a plugin's training backend.
fn epoch(lib: &PluginLibrary, model: &ModelSpec, setup: &Setup) -> Result<Measured> {
    let trainer = lib.training_backend()?;
    let work = tempfile::tempdir().map_err(|e| Error::runtime(e.to_string()))?;
    let batches = setup.total().div_ceil(BATCH) as u64;
    let job = TrainingJob {
        job_id: "bench".into(),
        model: model.clone(),
        epochs: 1,
        batch_size: BATCH as u32,
        train_batches: batches,
        validation_batches: 0,
        seed: 7,
        device: "cpu".into(),
        threads: setup.threads,
        work_dir: work.path().to_path_buf(),
        resume: Vec::new(),
    };
    let mut host = BenchHost {
        data: &setup.data,
        batches,
        started: None,
        finished: None,
    };
    trainer.train(&job, &mut host)?;
    let (Some(start), Some((end, last))) = (host.started, host.finished) else {
        return Err(Error::runtime("the backend skipped progress reports"));
    };
    Ok(Measured {
        samples_per_s: setup.samples as f64 / (end - start).as_secs_f64(),
        loss: last.metric("loss").unwrap_or(f64::NAN),
        accuracy: last.metric("accuracy").unwrap_or(f64::NAN),
    })
}

/// The Python with PyTorch: `CYXWIZ_BENCH_TORCH_PYTHON`, else the venv that
/// `scripts/bench-training-setup` makes.
fn torch_python() -> PathBuf {
    std::env::var_os("CYXWIZ_BENCH_TORCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/cyxwiz-bench-venv/bin/python")
        })
}

/// The same epoch in PyTorch (a fresh process and model); `Err` says why there is no number.
fn measure_torch(model: &str, setup: &Setup) -> std::result::Result<Measured, String> {
    let python = torch_python();
    if !python.is_file() {
        return Err(format!(
            "{} missing: run scripts/bench-training-setup",
            python.display()
        ));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/train_reference.py");
    let out = Command::new(&python)
        .arg(script)
        .args(["--model", model, "--data", FASHION])
        .args(["--samples", &setup.samples.to_string()])
        .args(["--warmup-batches", &WARMUP_BATCHES.to_string()])
        .args(["--batch", &BATCH.to_string()])
        .args(["--threads", &setup.threads.to_string()])
        .args(["--repeats", "1"])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no message");
        return Err(format!("PyTorch failed ({}): {last}", out.status));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("PyTorch printed no JSON: {e}"))?;
    let num = |k: &str| v[k].as_f64().ok_or(format!("PyTorch's JSON has no {k}"));
    Ok(Measured {
        samples_per_s: num("samples_per_s")?,
        loss: num("loss")?,
        accuracy: num("accuracy")?,
    })
}

/// The PyTorch version the reference Python imports, for the header.
fn torch_version() -> Option<String> {
    let out = Command::new(torch_python())
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A plugin library: `CYXWIZ_BENCH_PLUGIN_DIR`, else `target/release`, else this bench's
/// own profile directory, else `target/debug`.
fn find_plugin(crate_name: &str) -> Option<PathBuf> {
    let file = format!("lib{crate_name}.so");
    let own = support::target_dir();
    let root = own.parent().map(Path::to_path_buf).unwrap_or_default();
    let env = std::env::var_os("CYXWIZ_BENCH_PLUGIN_DIR").map(PathBuf::from);
    env.into_iter()
        .chain([root.join("release"), own, root.join("debug")])
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
}

/// Which cargo profile built a library, from its directory.
fn profile(lib: &Path) -> &str {
    match lib
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some("release") => "release",
        Some("debug") => "dev",
        _ => "unknown profile",
    }
}

/// Whether `name` is in the comma-separated list `var` (every name when `var` is unset).
fn listed(var: &str, name: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.split(',').any(|n| n.trim() == name))
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether libgomp's threads sleep rather than spin while they wait (`OMP_WAIT_POLICY`).
fn omp_passive() -> bool {
    std::env::var("OMP_WAIT_POLICY").is_ok_and(|v| v.eq_ignore_ascii_case("passive"))
}

/// The load averages, and a warning when other work competes for the cores. libtorch's
/// OpenMP threads (torch-tch and PyTorch alike) spin while they wait for each other by default,
/// so when another process takes one of their cores both collapse, four to ten times on this
/// two-core machine, where rayon (train-candle) degrades gently; `OMP_WAIT_POLICY=PASSIVE`
/// (inherited by the plugin and by PyTorch) makes them sleep instead.
fn print_load(when: &str) {
    let load = load_average();
    let text: Vec<String> = load.iter().map(|l| format!("{l:.2}")).collect();
    println!("load average {when}: {}", text.join(" "));
    match load.first() {
        Some(&l) if l >= 1.0 && !omp_passive() => println!(
            "WARNING: the machine is busy (load {l:.2}) and libtorch's OpenMP threads spin-wait: \
             torch-tch and PyTorch lose far more to other processes than train-candle; rerun \
             on an idle machine or with OMP_WAIT_POLICY=PASSIVE"
        ),
        Some(&l) if l >= 1.0 => {
            println!("note: the machine is busy (load {l:.2}); every row is noisier")
        }
        _ => {}
    }
}

fn main() {
    let threads = env_number("CYXWIZ_BENCH_THREADS", 2) as u32;
    let samples = env_number("CYXWIZ_BENCH_SAMPLES", 10_000).max(1);
    let repeats = env_number("CYXWIZ_BENCH_REPEATS", 3).max(1);
    let setup = Setup {
        threads,
        samples,
        repeats,
        data: fashion_mnist(WARMUP_BATCHES * BATCH + samples),
    };
    let dataset = DatasetShape {
        sample: vec![1, 28, 28],
        classes: 10,
    };
    let libraries: Vec<(&str, std::result::Result<PluginLibrary, String>)> = BACKENDS
        .iter()
        .map(|&(name, krate)| {
            let lib = match find_plugin(krate) {
                None => Err(format!(
                    "not built (cargo build --release -p {})",
                    krate.replace('_', "-")
                )),
                Some(path) => PluginLibrary::open(&path).map_err(|e| e.to_string()),
            };
            (name, lib)
        })
        .collect();

    println!("Training throughput: Fashion-MNIST, {samples} timed samples after {WARMUP_BATCHES} warm-up batches, one epoch, no validation");
    println!("batch size {BATCH}, threads {threads}, Adam lr 1e-3, cross-entropy; fastest of {repeats} epochs each, the backends taking turns");
    println!(
        "OMP_WAIT_POLICY {} (libtorch's OpenMP threads, in torch-tch and PyTorch alike)",
        if omp_passive() {
            "PASSIVE: waiting threads sleep"
        } else {
            "default: waiting threads spin first"
        }
    );
    print_load("before");
    for (name, lib) in &libraries {
        match lib {
            Ok(lib) => {
                let p = profile(lib.path());
                println!("  {name}: {} ({p} build)", lib.path().display());
                if p != "release" {
                    println!("  WARNING: {name} is not a release build; its own code is unoptimised and its numbers understate it");
                }
            }
            Err(why) => println!("  {name}: {why}"),
        }
    }
    match torch_version() {
        Some(v) => println!("  PyTorch {v}: {}", torch_python().display()),
        None => println!(
            "  PyTorch: cannot import torch with {} (run scripts/bench-training-setup)",
            torch_python().display()
        ),
    }
    if cfg!(debug_assertions) {
        println!("  WARNING: this bench binary is a dev build: the host's side of every step (the SDK's batch encoding) is unoptimised, which slows every plugin row; use the bench profile");
    }

    for (title, key, definition) in [
        ("MLP 784-128-10", "mlp", MLP),
        ("CNN conv8-pool-conv16-pool-dense10", "cnn", CNN),
    ] {
        if !listed("CYXWIZ_BENCH_MODELS", key) {
            continue;
        }
        let model = parse_model_definition(definition, &dataset, None)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        // Rounds of one epoch per backend, the fastest epoch of each counting, so that load
        // from other processes, which comes and goes, falls on every backend alike. A
        // backend's first error ends its turns.
        let mut rows: Vec<(String, Option<Outcome>)> = libraries
            .iter()
            .map(|(name, lib)| (name.to_string(), lib.as_ref().err().cloned().map(Err)))
            .chain([("PyTorch".to_string(), None)])
            .map(|(name, m)| {
                let skipped = !listed("CYXWIZ_BENCH_BACKENDS", &name.to_lowercase());
                (name, m.or_else(|| skipped.then(|| Err("skipped".into()))))
            })
            .collect();
        for _ in 0..setup.repeats {
            for (i, (_, slot)) in rows.iter_mut().enumerate() {
                if matches!(slot, Some(Err(_))) {
                    continue;
                }
                let m = match libraries.get(i) {
                    Some((_, Ok(lib))) => epoch(lib, &model, &setup).map_err(|e| e.to_string()),
                    Some((_, Err(why))) => Err(why.clone()),
                    None => measure_torch(key, &setup),
                };
                *slot = Some(match (slot.take(), m) {
                    (Some(Ok(mut b)), Ok(m)) => {
                        b.samples_per_s = b.samples_per_s.max(m.samples_per_s);
                        Ok(b)
                    }
                    (_, m) => m,
                });
            }
        }
        let torch = rows.last().and_then(|(_, m)| m.as_ref());
        let reference = torch.and_then(|m| m.as_ref().ok()).map(|m| m.samples_per_s);
        println!();
        println!(
            "{title} ({} parameters), batch {BATCH}, threads {threads}",
            model.parameter_count()
        );
        println!(
            "| {:<12} | {:>10} | {:>13} | {:>10} | {:>9} |",
            "backend", "samples/s", "vs PyTorch", "epoch loss", "epoch acc"
        );
        println!(
            "|{:-<14}|{:->12}|{:->15}|{:->12}|{:->11}|",
            "", "", "", "", ""
        );
        for (name, m) in rows {
            match m.unwrap_or_else(|| Err("not run".into())) {
                Ok(m) => {
                    let ratio = reference
                        .map(|r| format!("{:.2}x", m.samples_per_s / r))
                        .unwrap_or_else(|| "n/a".into());
                    println!(
                        "| {name:<12} | {:>10.0} | {ratio:>13} | {:>10.4} | {:>9.4} |",
                        m.samples_per_s, m.loss, m.accuracy
                    );
                }
                Err(why) => println!("| {name:<12} | {why}"),
            }
        }
    }
    println!();
    print_load("after");
}
