//! Helpers shared by the bench binaries: where the built plugins are, the reference Python,
//! waiting for a server's `/health`, and a median timer.
#![allow(dead_code)] // each bench binary uses a different subset

use std::{
    io::{Read, Write},
    net::TcpStream,
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
        .unwrap_or_else(cyxwiz_sdk::testkit::venv_python)
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

/// Waits up to two minutes for `GET /health` on `addr` to answer 200 (the node answers 503
/// while its models load, llama-server while its model loads).
pub fn wait_healthy(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = write!(
                s,
                "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            );
            let mut t = String::new();
            let _ = s.read_to_string(&mut t);
            if t.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what} never became healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
}
