//! Helpers shared by the bench binaries: where the built plugins are, the reference Python,
//! waiting for a server's `/health`, a median timer, and watching a running server (its
//! `/health` latency, its RSS and threads, the kernel's listen-queue overflows), percentiles.
//! The HTTP client is in `http`, the chat servers and the streaming chat client in `chat`.
#![allow(dead_code)] // each bench binary uses a different subset

pub mod chat;
pub mod http;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
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
        .unwrap_or_else(cyxwiz_e2e::venv_python)
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

/// One `/health` probe: when it started, how long it took, its status (0: no answer).
pub type Probe = (Instant, Duration, u16);

fn open(addr: &str) -> Option<BufReader<TcpStream>> {
    let s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(BufReader::new(s))
}

/// One `GET /health` on `conn`: its status, once the whole answer is read.
fn health(conn: &mut BufReader<TcpStream>, addr: &str, keep_alive: bool) -> Option<u16> {
    let close = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n{close}\r\n");
    conn.get_mut().write_all(request.as_bytes()).ok()?;
    let mut line = String::new();
    conn.read_line(&mut line).ok()?;
    let code = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line).ok()?;
        let h = line.trim().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
    }
    conn.read_exact(&mut vec![0u8; length]).ok()?;
    Some(code)
}

/// Probes `/health` every `every` until `stop`: each time on a new connection (as a
/// load balancer does), or all on one kept-alive connection, reopened within the probe if
/// the server closed it.
pub fn probe_loop(addr: &str, keep_alive: bool, every: Duration, stop: &AtomicBool) -> Vec<Probe> {
    let mut conn = None;
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let mut code = None;
        for _ in 0..2 {
            if conn.is_none() {
                conn = open(addr);
            }
            code = conn.as_mut().and_then(|c| health(c, addr, keep_alive));
            if code.is_none() || !keep_alive {
                conn = None;
            }
            if code.is_some() || !keep_alive {
                break;
            }
        }
        out.push((start, start.elapsed(), code.unwrap_or(0)));
        std::thread::sleep(every.saturating_sub(start.elapsed()));
    }
    out
}

/// A number field of `/proc/<pid>/status` (`VmRSS` and `VmHWM` are in KiB).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    value.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Samples process `pid`'s RSS (KiB) and threads every `every` until `stop`: the peaks.
pub fn sample(pid: u32, every: Duration, stop: &AtomicBool) -> (u64, u64) {
    let (mut rss, mut threads) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        rss = rss.max(proc_status(pid, "VmRSS").unwrap_or(0));
        threads = threads.max(proc_status(pid, "Threads").unwrap_or(0));
        std::thread::sleep(every);
    }
    (rss, threads)
}

/// The kernel's count of connections dropped because a listen queue was full (all sockets).
pub fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut tcp_ext = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (tcp_ext.next(), tcp_ext.next()) else {
        return 0;
    };
    let mut pairs = names.split_whitespace().zip(values.split_whitespace());
    pairs
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The `p`th percentile of `sorted` (nearest rank); zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, rounded.
pub fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}
