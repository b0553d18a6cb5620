//! Admission at accept: a cap on open connections, and on connections still in their
//! handshake (TLS, `Hello`) in total and per IP address, so unauthenticated peers cannot
//! use up the collector's file descriptors, memory or handshake CPU. A connection that
//! finishes its handshake gives its handshake slot back.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// Connections in their handshake, per address.
pub(crate) struct Handshakes {
    max_total: usize,
    max_per_address: usize,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_handshakes` connections are in their handshake.
    Handshakes,
    /// This address has `max_handshakes_per_address` in their handshake.
    PerAddress,
}

impl Refusal {
    /// The `probes_rejected` reason.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Handshakes => "too_many_handshakes",
            Refusal::PerAddress => "too_many_handshakes_from_address",
        }
    }
}

/// A handshake slot; given back when dropped.
pub(crate) struct HandshakePermit {
    owner: Arc<Handshakes>,
    ip: IpAddr,
}

impl Handshakes {
    pub(crate) fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Handshakes {
            max_total,
            max_per_address,
            state: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot for a new connection from `ip`, or why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<HandshakePermit, Refusal> {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *g;
        if *total >= self.max_total {
            return Err(Refusal::Handshakes);
        }
        let n = per.entry(ip).or_insert(0);
        if *n >= self.max_per_address {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        *total += 1;
        Ok(HandshakePermit {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        let mut g = self.owner.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_address_and_in_total_and_given_back() {
        let h = Handshakes::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = h.admit(a).unwrap();
        let _a2 = h.admit(a).unwrap();
        assert_eq!(h.admit(a).err(), Some(Refusal::PerAddress));
        let _b1 = h.admit(b).unwrap();
        assert_eq!(h.admit(b).err(), Some(Refusal::Handshakes));
        drop(a1);
        assert!(h.admit(a).is_ok());
    }
}
