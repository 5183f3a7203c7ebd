//! Run-time thread adaptation for llama.cpp. Measured on 2 cores (SmolLM2): two threads are
//! fastest on a quiet machine (172 tokens/s vs 137 with one), but collapse under contention
//! (23 vs 94), because ggml's workers wait actively for each other. So the engine picks its
//! thread count each time it starts work after being idle: the cores free of other processes
//! (measured from /proc over the last second by one process-wide monitor thread) minus the
//! threads other busy llama engines of this node hold.

use std::sync::{
    atomic::{AtomicI32, AtomicU32, Ordering},
    OnceLock,
};
use std::time::Duration;

/// CPU used by other processes over the last second, in thousandths of a core.
static OTHER_MILLICORES: AtomicU32 = AtomicU32::new(0);
/// Threads held by busy engines in this process.
static ENGINE_THREADS: AtomicI32 = AtomicI32::new(0);

/// Cumulative CPU ticks: (all non-idle, all, this process).
fn ticks() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = own.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((total - idle, total, utime + stime))
}

fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Starts the monitor thread once per process (no-op where /proc is missing).
fn monitor() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        if ticks().is_none() {
            return;
        }
        let _ = std::thread::Builder::new()
            .name("llama-load".into())
            .spawn(|| {
                let mut last = ticks();
                loop {
                    std::thread::sleep(Duration::from_millis(1000));
                    let now = ticks();
                    if let (Some((b0, t0, s0)), Some((b1, t1, s1))) = (last, now) {
                        let total = t1.saturating_sub(t0).max(1);
                        let others = b1.saturating_sub(b0).saturating_sub(s1.saturating_sub(s0));
                        let milli = others * 1000 * u64::from(cores()) / total;
                        OTHER_MILLICORES
                            .store(milli.min(u64::from(u32::MAX)) as u32, Ordering::Relaxed);
                    }
                    last = now;
                }
            });
    });
}

/// Threads for an engine allowed at most `max`: the free cores, at least one.
pub fn choose(max: i32) -> i32 {
    monitor();
    let others = OTHER_MILLICORES.load(Ordering::Relaxed) as f64 / 1000.0;
    let engines = ENGINE_THREADS.load(Ordering::Relaxed).max(0) as f64;
    pick(cores() as f64, others, engines, max)
}

/// The rule: the cores left after other processes and other engines, rounded so that a
/// quarter core of background noise does not cost a thread.
pub fn pick(cores: f64, others: f64, engines: f64, max: i32) -> i32 {
    let free = cores - others - engines;
    ((free + 0.25).floor() as i32).clamp(1, max.max(1))
}

/// Marks `threads` busy until dropped.
pub struct Busy(i32);

impl Busy {
    pub fn new(threads: i32) -> Self {
        ENGINE_THREADS.fetch_add(threads, Ordering::Relaxed);
        Self(threads)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        ENGINE_THREADS.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// Other processes' recent CPU use in cores (for logs and tests).
pub fn others() -> f64 {
    monitor();
    OTHER_MILLICORES.load(Ordering::Relaxed) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_cores_decide_within_bounds() {
        assert_eq!(pick(2.0, 0.0, 0.0, 2), 2);
        assert_eq!(
            pick(2.0, 0.2, 0.0, 2),
            2,
            "a little noise keeps both threads"
        );
        assert_eq!(pick(2.0, 0.5, 0.0, 2), 1);
        assert_eq!(pick(2.0, 1.9, 0.0, 2), 1, "never below one");
        assert_eq!(
            pick(2.0, 0.0, 1.0, 2),
            1,
            "another busy engine holds a core"
        );
        assert_eq!(pick(16.0, 0.0, 0.0, 4), 4, "never above the maximum");
        assert_eq!(pick(16.0, 3.0, 2.0, 16), 11);
    }

    #[test]
    fn proc_ticks_are_readable_and_the_monitor_reports() {
        let (busy, total, own) = ticks().expect("/proc/stat and /proc/self/stat");
        assert!(busy <= total && own <= busy + 1_000_000);
        let t = choose(64);
        assert!((1..=64).contains(&t));
        assert!(others() >= 0.0);
    }
}
