//! Address rules for the one unauthenticated RPC (AssignJob): CIDR allow-lists and a
//! per-address call budget.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

pub use crate::config::Cidr;

/// Calls per address per minute, with a bounded table (the oldest windows are forgotten
/// first when it is full, so spoofed-looking address churn cannot grow memory).
#[derive(Debug)]
pub struct AddressBudget {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const MAX_ADDRESSES: usize = 4096;

impl AddressBudget {
    /// A budget of `per_minute` calls per address.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a call from `ip`; false when its budget for this minute is spent.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&ip) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < minute);
            if windows.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let w = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(w.0) >= minute {
            *w = (now, 0);
        }
        if w.1 >= self.per_minute {
            return false;
        }
        w.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_budgets() {
        let lan = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(lan.contains("10.1.2.3".parse().unwrap()));
        assert!(!lan.contains("10.2.0.1".parse().unwrap()));
        assert!(lan.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("central"), None);

        let budget = AddressBudget::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(budget.allow(a) && budget.allow(a));
        assert!(!budget.allow(a));
        assert!(budget.allow("10.0.0.2".parse().unwrap()));
    }
}
