//! Login throttling, per client address and per user name. After [`FREE_FAILURES`]
//! failed logins within [`WINDOW`], an address must wait before its next attempt —
//! [`BASE_DELAY`] doubling with every further failure, up to [`MAX_DELAY`] — and is told
//! so (429 with `Retry-After`). An IPv6 /64 is slowed after [`GROUP_FREE_FAILURES`] (one
//! host may use the whole /64; an office shares one). A user name is slowed the same way
//! after [`USER_FREE_FAILURES`], whatever addresses the guesses come from (a botnet) —
//! except from the addresses that user logged in from before ([`KNOWN_PER_USER`] kept), so
//! strangers failing on purpose cannot lock an analyst out of their usual desk. Other
//! addresses and users are unaffected.
//!
//! An attempt counts as a failure from the moment it is let through ([`LoginLimiter::
//! attempt`]), so parallel guesses cannot all pass the check before the first failure is
//! noted; a success takes it back and clears that user's failures, not the address's (a
//! guesser with an account of its own cannot wipe its slate by logging in). Bounded: at
//! most [`MAX_TRACKED`] addresses and names, the stalest dropped first.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failures an address may make before it is slowed down.
pub const FREE_FAILURES: u32 = 5;
/// Failures against one user name, from any addresses, before it is slowed down (more
/// than an address gets: a stranger failing on purpose should not lock an analyst out
/// early).
pub const USER_FREE_FAILURES: u32 = 20;
/// Failures one IPv6 /64 may make, over all its addresses, before it is slowed down.
pub const GROUP_FREE_FAILURES: u32 = 40;
/// Addresses remembered per user as ones it logged in from (the newest kept).
pub const KNOWN_PER_USER: usize = 16;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Wait after the first failure beyond the free ones.
pub const BASE_DELAY: Duration = Duration::from_secs(2);
/// Longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Addresses and user names tracked at most.
pub const MAX_TRACKED: usize = 100_000;
/// Bytes of a user name kept as its key.
const NAME_BYTES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    Group(IpAddr),
    User(String),
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Record {
    /// Sets the wait its failures call for (none within the `free` ones).
    fn settle(&mut self, free: u32, now: Instant) -> Duration {
        let wait = match self.failures.checked_sub(free) {
            None | Some(0) => Duration::ZERO,
            Some(over) => BASE_DELAY
                .saturating_mul(1u32 << (over - 1).min(20))
                .min(MAX_DELAY),
        };
        self.blocked_until = (!wait.is_zero()).then(|| now + wait);
        wait
    }
}

/// Failed logins per address, /64 and user name.
#[derive(Default)]
pub struct LoginLimiter {
    records: Mutex<HashMap<Key, Record>>,
    /// Per user, the addresses it logged in from lately (newest last).
    known: Mutex<HashMap<String, Vec<IpAddr>>>,
}

/// Where an address's failures count: the address itself, and its /64 for IPv6.
fn addr_keys(ip: IpAddr) -> Vec<(Key, u32)> {
    let ip = ip.to_canonical();
    let group = tidegate_base::limits::peer_group(ip);
    let mut keys = vec![(Key::Addr(ip), FREE_FAILURES)];
    if ip.is_ipv6() {
        keys.push((Key::Group(group), GROUP_FREE_FAILURES));
    }
    keys
}

fn clip(user: &str) -> &str {
    tidegate_base::limits::clip(user, NAME_BYTES)
}

fn user_key(user: &str) -> Key {
    Key::User(clip(user).to_string())
}

/// An attempt let through: a failure until [`LoginLimiter::succeeded`] takes it back.
#[must_use]
pub struct Attempt {
    ip: IpAddr,
    user: String,
}

impl LoginLimiter {
    /// Lets a login of `user` from `ip` through, counted as a failure of both until it
    /// succeeds; `Err(wait)` when either must wait first.
    pub fn attempt(&self, ip: IpAddr, user: &str, now: Instant) -> Result<Attempt, Duration> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(clip(user))
            .is_some_and(|a| a.contains(&ip.to_canonical()));
        let mut m = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys = addr_keys(ip);
        keys.push((user_key(user), USER_FREE_FAILURES));
        let wait = keys
            .iter()
            // A user's own desk is not held back by others' failures on its name.
            .filter(|(k, _)| !(known && matches!(k, Key::User(_))))
            .filter_map(|(k, _)| m.get(k)?.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        for (k, free) in keys {
            if m.len() >= MAX_TRACKED && !m.contains_key(&k) {
                m.retain(|_, r| now.duration_since(r.last) < WINDOW);
                if m.len() >= MAX_TRACKED
                    && let Some(stalest) =
                        m.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| k.clone())
                {
                    m.remove(&stalest);
                }
            }
            let r = m.entry(k).or_insert(Record {
                failures: 0,
                last: now,
                blocked_until: None,
            });
            if now.duration_since(r.last) >= WINDOW {
                r.failures = 0;
            }
            r.failures = r.failures.saturating_add(1);
            r.last = now;
            r.settle(free, now);
        }
        Ok(Attempt {
            ip,
            user: user.to_string(),
        })
    }

    /// The wait an address now has and the failures it made (to log a refusal).
    pub fn address_state(&self, ip: IpAddr, now: Instant) -> (Duration, u32) {
        let m = self.records.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&Key::Addr(ip.to_canonical()))
            .map_or((Duration::ZERO, 0), |r| {
                let wait = r
                    .blocked_until
                    .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
                (wait, r.failures)
            })
    }

    /// The attempt succeeded: it is not a failure of its address, and its user's
    /// failures are forgiven.
    pub fn succeeded(&self, a: Attempt, now: Instant) {
        let mut m = self.records.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&user_key(&a.user));
        for (k, free) in addr_keys(a.ip) {
            if let Some(r) = m.get_mut(&k) {
                r.failures = r.failures.saturating_sub(1);
                r.settle(free, now);
            }
        }
        drop(m);
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_TRACKED && !known.contains_key(clip(&a.user)) {
            known.clear();
        }
        let addrs = known.entry(clip(&a.user).to_string()).or_default();
        let ip = a.ip.to_canonical();
        addrs.retain(|x| *x != ip);
        if addrs.len() >= KNOWN_PER_USER {
            addrs.remove(0);
        }
        addrs.push(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(l: &LoginLimiter, ip: IpAddr, user: &str, t: Instant) -> Result<(), Duration> {
        l.attempt(ip, user, t).map(drop)
    }

    #[test]
    fn an_address_is_slowed_after_its_free_failures_and_others_are_not() {
        let l = LoginLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            fail(&l, a, "x", t).unwrap();
        }
        // The sixth is let through and counted: the seventh waits.
        fail(&l, a, "x", t).unwrap();
        assert_eq!(l.attempt(a, "y", t).err(), Some(BASE_DELAY));
        assert!(fail(&l, b, "z", t).is_ok());
        // Waiting it out lets the address try again, and the wait doubles.
        fail(&l, a, "x", t + BASE_DELAY).unwrap();
        assert_eq!(l.address_state(a, t + BASE_DELAY).0, BASE_DELAY * 2);
        // The delay is capped.
        let mut r = Record {
            failures: 60,
            last: t,
            blocked_until: None,
        };
        assert_eq!(r.settle(FREE_FAILURES, t), MAX_DELAY);
    }

    #[test]
    fn success_for_one_user_does_not_reset_failures_for_another() {
        let l = LoginLimiter::default();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            fail(&l, ip, "admin", t).unwrap();
        }
        // The guesser logs in with its own viewer account: its address keeps the
        // failures against admin.
        let own = l.attempt(ip, "viewer", t).unwrap();
        l.succeeded(own, t);
        fail(&l, ip, "admin", t).unwrap();
        assert!(l.attempt(ip, "admin", t).is_err());
    }

    #[test]
    fn guesses_at_one_user_from_many_addresses_are_slowed() {
        let l = LoginLimiter::default();
        let t = Instant::now();
        for i in 0..USER_FREE_FAILURES {
            let ip = IpAddr::from([198, 51, 100, i as u8]);
            fail(&l, ip, "admin", t).unwrap();
        }
        fail(&l, "203.0.113.1".parse().unwrap(), "admin", t).unwrap();
        assert!(
            l.attempt("203.0.113.2".parse().unwrap(), "admin", t)
                .is_err()
        );
        // Other users are not affected.
        assert!(fail(&l, "203.0.113.2".parse().unwrap(), "ana", t).is_ok());
        // Addresses of one IPv6 /64 count together, for more failures than one.
        for i in 0..=GROUP_FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            fail(&l, ip, &format!("u{i}"), t).unwrap();
        }
        assert!(
            l.attempt("2001:db8:1:2::ffff".parse().unwrap(), "v", t)
                .is_err()
        );
        assert!(fail(&l, "2001:db8:1:3::1".parse().unwrap(), "v", t).is_ok());
    }

    #[test]
    fn strangers_failing_on_a_users_name_do_not_lock_it_out_of_its_usual_desk() {
        let l = LoginLimiter::default();
        let t = Instant::now();
        let desk: IpAddr = "192.0.2.10".parse().unwrap();
        let a = l.attempt(desk, "admin", t).unwrap();
        l.succeeded(a, t);
        for i in 0..=USER_FREE_FAILURES {
            fail(&l, IpAddr::from([198, 51, 100, i as u8]), "admin", t).unwrap();
        }
        assert!(
            l.attempt("203.0.113.9".parse().unwrap(), "admin", t)
                .is_err()
        );
        assert!(l.attempt(desk, "admin", t).is_ok());
    }

    #[test]
    fn parallel_attempts_count_before_any_is_judged() {
        // Attempts let through are failures until they succeed: 64 at once from one
        // address are not all let through.
        let l = LoginLimiter::default();
        let ip: IpAddr = "192.0.2.5".parse().unwrap();
        let t = Instant::now();
        let through: Vec<Attempt> = (0..64)
            .filter_map(|i| l.attempt(ip, &format!("u{i}"), t).ok())
            .collect();
        assert_eq!(through.len(), FREE_FAILURES as usize + 1);
        // A success among them is taken back.
        let mut through = through;
        l.succeeded(through.pop().unwrap(), t);
        assert_eq!(l.address_state(ip, t).1, FREE_FAILURES);
    }
}
