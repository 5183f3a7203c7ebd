//! Per-key rate limits, shared by every transport: a GCRA limit per key (the `governor`
//! crate). A key may spend its whole per-minute quota at once and then earns one request back
//! every `60 / rpm` seconds, so no minute ever sees more than the quota plus what was earned
//! back in it (a fixed window allowed twice the quota around a window's edge).

use governor::{
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
    Quota,
};
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, RwLock},
    time::Duration,
};

/// The outcome of a rate check.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// Allowed this request.
    pub allowed: bool,
    /// The limit per minute.
    pub limit: u32,
    /// Requests that could be made right now after this one (0 when refused).
    pub remaining: u32,
    /// When allowed: until the whole quota is back (at most, to within a second). When
    /// refused: until the next request would be allowed (what `Retry-After` says).
    pub reset: Duration,
}

/// One governor limiter for every key with the same limit.
type Keyed<C> =
    governor::RateLimiter<i64, DefaultKeyedStateStore<i64>, C, StateInformationMiddleware>;

/// Per-key GCRA limits. Keys with the same requests-per-minute share one governor limiter
/// (which keeps a state per key); a key whose limit changes starts afresh under the new one.
#[derive(Debug)]
pub struct RateLimiter<C: Clock = DefaultClock> {
    clock: C,
    by_rpm: RwLock<HashMap<NonZeroU32, Arc<Keyed<C>>>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// A limiter reading time from `clock`.
    fn with_clock(clock: C) -> Self {
        Self {
            clock,
            by_rpm: RwLock::default(),
        }
    }

    /// The governor limiter for a limit of `rpm` per minute, made on first use.
    fn limiter(&self, rpm: NonZeroU32) -> Arc<Keyed<C>> {
        if let Some(limiter) = self
            .by_rpm
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rpm)
        {
            return Arc::clone(limiter);
        }
        let mut by_rpm = self.by_rpm.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(by_rpm.entry(rpm).or_insert_with(|| {
            Arc::new(Keyed::new(
                Quota::per_minute(rpm),
                DefaultKeyedStateStore::default(),
                self.clock.clone(),
            ))
        }))
    }

    /// Counts a request of key `id` with a limit of `rpm` per minute (0: no limit).
    pub fn check(&self, id: i64, rpm: u32) -> Decision {
        let Some(quota) = NonZeroU32::new(rpm) else {
            return Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset: Duration::ZERO,
            };
        };
        match self.limiter(quota).check_key(&id) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                // Each used request comes back one replenish interval after the one before;
                // the last of them is back within `used` intervals.
                let used = rpm.saturating_sub(remaining);
                Decision {
                    allowed: true,
                    limit: rpm,
                    remaining,
                    reset: state.quota().replenish_interval() * used,
                }
            }
            Err(not_until) => Decision {
                allowed: false,
                limit: rpm,
                remaining: 0,
                reset: not_until.wait_time_from(self.clock.now()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_key_may_spend_its_quota_at_once_then_earns_requests_back() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(clock.clone());
        for i in 0..3 {
            let d = limiter.check(7, 3);
            assert!(d.allowed);
            assert_eq!((d.limit, d.remaining), (3, 2 - i));
            assert_eq!(d.reset, Duration::from_secs(20) * (i + 1));
        }
        let d = limiter.check(7, 3);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(
            d.reset,
            Duration::from_secs(20),
            "one request back in 60/3 s"
        );
        // Other keys, and other limits, have their own state.
        assert!(limiter.check(8, 3).allowed);
        assert!(limiter.check(9, 1).allowed);
        assert!(!limiter.check(9, 1).allowed);

        // Sliding, not a fixed window: 20 s later exactly one request is back.
        clock.advance(Duration::from_secs(15));
        let d = limiter.check(7, 3);
        assert!(!d.allowed);
        assert_eq!(d.reset, Duration::from_secs(5));
        clock.advance(Duration::from_secs(5));
        let d = limiter.check(7, 3);
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, 0);
        assert!(!limiter.check(7, 3).allowed);

        // A whole minute idle brings the whole quota back, and no more.
        clock.advance(MINUTE);
        for _ in 0..3 {
            assert!(limiter.check(7, 3).allowed);
        }
        assert!(!limiter.check(7, 3).allowed);
    }

    #[test]
    fn no_minute_sees_more_than_the_quota_plus_what_it_earned_back() {
        // At 60 rpm, a client asking five times a second for ten minutes gets the quota
        // once, then one request per second earned back: 60 + 599 by the 600th second.
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(clock.clone());
        let mut allowed = 0;
        for _ in 0..600 {
            for _ in 0..5 {
                allowed += u32::from(limiter.check(1, 60).allowed);
            }
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(allowed, 60 + 599);
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::default();
        for _ in 0..100 {
            assert!(limiter.check(1, 0).allowed);
        }
    }

    #[test]
    fn the_real_clock_reports_the_wait_until_the_next_request() {
        let limiter = RateLimiter::default();
        assert!(limiter.check(1, 2).allowed);
        let d = limiter.check(1, 2);
        assert!(d.allowed && d.remaining == 0);
        assert!(
            d.reset <= MINUTE && d.reset > Duration::from_secs(59),
            "{d:?}"
        );
        let d = limiter.check(1, 2);
        assert!(!d.allowed);
        assert!(d.reset <= Duration::from_secs(30) && d.reset > Duration::from_secs(29));
    }
}
