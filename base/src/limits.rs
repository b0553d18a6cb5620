//! Resource limits against many or hostile peers: the process's open-file limit, raised
//! at start; [`Slots`], a cap on concurrent connections in total and per IP address; and
//! [`Throttle`], which lets a repeated warning through at most once per period.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The open-file limit after raising the soft limit to the hard one: `(soft, hard)`.
/// An error names the system call that failed (the limit is then unchanged).
pub fn raise_open_files() -> std::io::Result<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if l.rlim_cur < l.rlim_max {
        let want = libc::rlimit {
            rlim_cur: l.rlim_max,
            rlim_max: l.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            l.rlim_cur = l.rlim_max;
        } else {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((l.rlim_cur, l.rlim_max))
}

/// Where a peer's address counts for per-address limits: an IPv4 address (IPv4-mapped
/// ones as IPv4), or an IPv6 address's /64 (one host is routinely given a whole /64, so
/// counting its addresses one by one would give it billions of shares).
pub fn peer_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// How many addresses' shares one IPv6 /64 ([`peer_group`]) gets together: an office or
/// a server VLAN is one /64 with many hosts, and one host can use the whole /64.
pub const GROUP_SHARES: usize = 8;

/// Concurrent slots (connections, handshakes) capped in total, per IP address, and per
/// IPv6 /64 ([`GROUP_SHARES`] addresses' worth); a [`SlotPermit`] gives its slot back
/// when dropped.
#[derive(Debug)]
pub struct Slots {
    max_total: usize,
    max_per_address: usize,
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    per_group: HashMap<IpAddr, usize>,
}

/// Why [`Slots::admit`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Total,
    /// The address holds its share already.
    PerAddress,
}

/// One taken slot.
#[derive(Debug)]
pub struct SlotPermit {
    owner: Arc<Slots>,
    ip: IpAddr,
    /// The /64 it counts in too (IPv6 only).
    group: Option<IpAddr>,
}

impl Slots {
    /// At most `max_total` slots, `max_per_address` of them per address.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Slots {
            max_total,
            max_per_address,
            state: Mutex::default(),
        })
    }

    /// Takes a slot for `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SlotPermit, Refusal> {
        let ip = ip.to_canonical();
        let group = ip.is_ipv6().then(|| peer_group(ip));
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *g;
        if st.total >= self.max_total {
            return Err(Refusal::Total);
        }
        if st.per_address.get(&ip).copied().unwrap_or(0) >= self.max_per_address {
            return Err(Refusal::PerAddress);
        }
        if let Some(grp) = group
            && st.per_group.get(&grp).copied().unwrap_or(0)
                >= self.max_per_address.saturating_mul(GROUP_SHARES)
        {
            return Err(Refusal::PerAddress);
        }
        *st.per_address.entry(ip).or_insert(0) += 1;
        if let Some(grp) = group {
            *st.per_group.entry(grp).or_insert(0) += 1;
        }
        st.total += 1;
        Ok(SlotPermit {
            owner: self.clone(),
            ip,
            group,
        })
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let mut g = self.owner.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *g;
        st.total = st.total.saturating_sub(1);
        let give_back = |m: &mut HashMap<IpAddr, usize>, k: &IpAddr| {
            if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        };
        give_back(&mut st.per_address, &self.ip);
        if let Some(grp) = &self.group {
            give_back(&mut st.per_group, grp);
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary: what a peer's string may take
/// in a log line or a stored record.
pub fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lets at most `per` events through in each period (a burst of ordinary ones passes
/// whole; a flood is cut to `per` a period), counting those withheld.
#[derive(Clone, Debug)]
pub struct Allowance {
    per: u32,
    period: Duration,
    start: Option<Instant>,
    used: u32,
    withheld: u64,
}

impl Allowance {
    /// At most `per` events per `period`.
    pub const fn new(per: u32, period: Duration) -> Self {
        Allowance {
            per,
            period,
            start: None,
            used: 0,
            withheld: 0,
        }
    }

    /// Notes one event: `Some(n)` when it goes through, `n` being the events withheld
    /// since the last one that did; `None` when it is withheld.
    pub fn take(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .start
            .is_none_or(|s| now.duration_since(s) >= self.period)
        {
            self.start = Some(now);
            self.used = 0;
        }
        if self.used >= self.per {
            self.withheld += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.withheld))
    }
}

/// Lets a repeated message through at most once per period (a flood of refusals must
/// not flood the log too), counting the occurrences in between.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Option<Instant>,
    since: u64,
}

impl Throttle {
    /// At most one message per `period`.
    pub const fn new(period: Duration) -> Self {
        Throttle {
            period,
            last: None,
            since: 0,
        }
    }

    /// Notes one occurrence; `Some(n)` when it should be logged now, `n` being the
    /// occurrences since the last one logged (this one included).
    pub fn due(&mut self) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < self.period) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_one_ipv6_64_share_a_few_addresses_worth_of_slots() {
        let h = Slots::new(1000, 2);
        let addr = |i: usize| -> IpAddr { format!("2001:db8:0:1::{i:x}").parse().unwrap() };
        // Each address its own share...
        let mut held: Vec<SlotPermit> = (0..2).map(|_| h.admit(addr(1)).unwrap()).collect();
        assert_eq!(h.admit(addr(1)).err(), Some(Refusal::PerAddress));
        // ... and the /64 as many as GROUP_SHARES addresses, however many it uses.
        for i in 2..=GROUP_SHARES {
            held.extend((0..2).map(|_| h.admit(addr(i)).unwrap()));
        }
        assert_eq!(h.admit(addr(999)).err(), Some(Refusal::PerAddress));
        assert!(h.admit("2001:db8:0:2::1".parse().unwrap()).is_ok());
        held.pop();
        assert!(h.admit(addr(999)).is_ok());
        // IPv4-mapped addresses count as IPv4.
        let _c = h.admit("::ffff:192.0.2.1".parse().unwrap()).unwrap();
        let _d = h.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert!(h.admit("192.0.2.1".parse().unwrap()).is_err());
    }

    #[test]
    fn an_allowance_passes_a_burst_and_cuts_a_flood_counting_what_it_withheld() {
        let mut a = Allowance::new(3, Duration::from_millis(200));
        assert_eq!(
            (0..5).map(|_| a.take()).collect::<Vec<_>>(),
            [Some(0), Some(0), Some(0), None, None]
        );
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(a.take(), Some(2));
        assert_eq!(a.take(), Some(0));
    }

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn slots_are_capped_per_address_and_in_total_and_given_back() {
        let h = Slots::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = h.admit(a).unwrap();
        let _a2 = h.admit(a).unwrap();
        assert_eq!(h.admit(a).err(), Some(Refusal::PerAddress));
        let _b1 = h.admit(b).unwrap();
        assert_eq!(h.admit(b).err(), Some(Refusal::Total));
        drop(a1);
        assert!(h.admit(a).is_ok());
    }

    #[test]
    fn a_throttle_lets_one_through_per_period_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_millis(200));
        assert_eq!(t.due(), Some(1));
        assert_eq!(t.due(), None);
        assert_eq!(t.due(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.due(), Some(3));
    }
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let (soft, hard) = super::raise_open_files().unwrap();
        assert_eq!(soft, hard);
        assert!(soft >= 64);
    }
}
