//! Per-key rate limits: a fixed one-minute window per key, shared by every transport.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// One key's current window.
#[derive(Debug)]
struct Window {
    start: Instant,
    count: u32,
}

/// The outcome of a rate check.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// Allowed this request.
    pub allowed: bool,
    /// The limit per minute.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// Until the window resets.
    pub reset: Duration,
}

/// Fixed one-minute windows per key.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<i64, Window>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// Counts a request of key `id` with a limit of `rpm` per minute.
    pub fn check(&self, id: i64, rpm: u32) -> Decision {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(id).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.duration_since(w.start) >= WINDOW {
            w.start = now;
            w.count = 0;
        }
        let allowed = w.count < rpm;
        if allowed {
            w.count += 1;
        }
        Decision {
            allowed,
            limit: rpm,
            remaining: rpm.saturating_sub(w.count),
            reset: WINDOW.saturating_sub(now.duration_since(w.start)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_rpm_requests_then_refuses_until_it_resets() {
        let limiter = RateLimiter::default();
        for i in 0..3 {
            let d = limiter.check(7, 3);
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i);
        }
        let d = limiter.check(7, 3);
        assert!(!d.allowed);
        assert!(d.reset <= WINDOW && d.reset > Duration::from_secs(50));
        // Other keys have their own window.
        assert!(limiter.check(8, 3).allowed);
    }
}
