//! Login throttling per client address: after [`FREE_FAILURES`] failed logins within
//! [`WINDOW`], an address must wait before its next attempt — [`BASE_DELAY`] doubling
//! with every further failure, up to [`MAX_DELAY`] — and is told so (429 with
//! `Retry-After`). A success clears the address. Other addresses are unaffected, so one
//! guesser cannot lock the analysts out. Bounded: at most [`MAX_ADDRESSES`] tracked,
//! the stalest dropped first.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failures an address may make before it is slowed down.
pub const FREE_FAILURES: u32 = 5;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Wait after the first failure beyond the free ones.
pub const BASE_DELAY: Duration = Duration::from_secs(2);
/// Longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most.
pub const MAX_ADDRESSES: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Failed logins per address.
#[derive(Default)]
pub struct LoginLimiter {
    by_addr: Mutex<HashMap<IpAddr, Record>>,
}

impl LoginLimiter {
    /// `Err(wait)` when `ip` must wait before trying again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let m = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(&ip).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed login from `ip`; returns how long it must now wait (zero while
    /// it has free failures left) and how many failures it has made.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> (Duration, u32) {
        let mut m = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_ADDRESSES && !m.contains_key(&ip) {
            m.retain(|_, r| now.duration_since(r.last) < WINDOW);
            if m.len() >= MAX_ADDRESSES
                && let Some(stalest) = m.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| *k)
            {
                m.remove(&stalest);
            }
        }
        let r = m.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(r.last) >= WINDOW {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        let wait = match r.failures.checked_sub(FREE_FAILURES) {
            None | Some(0) => Duration::ZERO,
            Some(over) => BASE_DELAY
                .saturating_mul(1u32 << (over - 1).min(20))
                .min(MAX_DELAY),
        };
        r.blocked_until = (!wait.is_zero()).then(|| now + wait);
        (wait, r.failures)
    }

    /// Clears `ip` after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        self.by_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_slowed_after_its_free_failures_and_others_are_not() {
        let l = LoginLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(l.failed(a, t).0, Duration::ZERO);
        }
        assert!(l.check(a, t).is_ok());
        assert_eq!(l.failed(a, t).0, BASE_DELAY);
        assert!(l.check(a, t).is_err());
        assert!(l.check(b, t).is_ok());
        assert_eq!(l.failed(a, t).0, BASE_DELAY * 2);
        // Waiting it out lets the address try again; a success clears it.
        assert!(l.check(a, t + BASE_DELAY * 3).is_ok());
        l.succeeded(a);
        assert_eq!(l.failed(a, t).0, Duration::ZERO);
        // The delay is capped.
        for _ in 0..60 {
            l.failed(b, t);
        }
        assert_eq!(l.failed(b, t).0, MAX_DELAY);
    }
}
