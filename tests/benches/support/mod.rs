//! Helpers shared by the bench binaries: where the built plugins are, and a median timer.
#![allow(dead_code)] // each bench binary uses a different subset

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// `target/<profile>/`, where cargo put the bench binary's plugin libraries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

/// The Python that runs the reference measurements: `CYXWIZ_BENCH_PYTHON`, else the venv of
/// `scripts/python-env`.
pub fn bench_python() -> PathBuf {
    std::env::var_os("CYXWIZ_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/cyxwiz-venv/bin/python")
        })
}

/// Median time per call over 7 rounds of `iters` calls, after a short warm-up.
pub fn time(iters: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iters.min(100) {
        f();
    }
    let mut rounds: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed() / iters
        })
        .collect();
    rounds.sort();
    rounds[3]
}
