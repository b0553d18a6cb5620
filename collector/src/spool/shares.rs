//! Each probe's share of the spool. The spool is shared by every probe; while ClickHouse
//! is down, or slower than the probes, it fills, and a full spool holds every probe back.
//! A probe that sends without pause (a busy line in an outage, or a compromised probe
//! with a valid certificate) would take all of it. So once the spool is half full, a
//! probe may add to it only while it holds less than an equal share (`max_bytes` over
//! the probes holding data); a probe that holds nothing is let in while there is room.
//! A probe that waits keeps its batches in its own spool and is not acknowledged: it
//! loses nothing, and the others keep being spooled.
//!
//! What a probe holds is counted from its append until the segment holding the entry
//! is deleted (commits free whole segments). When nothing is left to commit, nothing can
//! free space but new appends rolling the segment being written: then every append the
//! spool has room for is let in (the shares would otherwise wait for a commit that never
//! comes).
//!
//! NetFlow/IPFIX exporters ([`Holder::Exporter`]) have no spool of their own and UDP has
//! no resend: one waiting would stop the listener's socket for every exporter on it. So
//! exporters are bound by the spool's room only, and do not count as holders. (After a
//! restart, their entries still in the spool count as a holder's until deleted: the
//! spool does not record who wrote an entry.)

use std::collections::{BTreeMap, HashMap};

/// Who appends: a probe (under the share rule) or a NetFlow/IPFIX exporter (bound by the
/// spool's room only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A probe over TLS: it keeps what waits in its own spool.
    Probe,
    /// A NetFlow/IPFIX exporter, through the collector's UDP listener.
    Exporter,
}

/// Spool bytes per probe, and per probe in each segment.
#[derive(Debug, Default)]
pub(crate) struct Shares {
    /// Bytes each probe holds: in segments not yet deleted, or on their way to one.
    held: HashMap<String, u64>,
    /// Bytes per probe written to each segment.
    segments: BTreeMap<u64, HashMap<String, u64>>,
}

impl Shares {
    /// Whether `probe` may add `len` bytes to a spool holding `used` of `max` bytes with
    /// `uncommitted` entries not yet committed downstream (see the module's
    /// documentation).
    pub fn admits(
        &self,
        holder: Holder,
        probe: &str,
        len: u64,
        (used, max): (u64, u64),
        uncommitted: u64,
    ) -> bool {
        if used == 0 {
            return true; // an entry is never larger than a segment, at most half of max
        }
        if used + len > max {
            return false;
        }
        let held = self.held(probe);
        if holder == Holder::Exporter || held == 0 || uncommitted == 0 || used + len <= max / 2 {
            return true;
        }
        // `probe` holds data, so it is one of the holders.
        held + len <= max / self.held.len().max(1) as u64
    }

    /// Bytes `probe` holds.
    pub fn held(&self, probe: &str) -> u64 {
        self.held.get(probe).copied().unwrap_or(0)
    }

    /// Counts `len` bytes for `probe` (an append admitted).
    pub fn reserve(&mut self, probe: &str, len: u64) {
        match self.held.get_mut(probe) {
            Some(n) => *n += len,
            None => {
                self.held.insert(probe.to_string(), len);
            }
        }
    }

    /// Records that `len` bytes of `probe` were written to `segment`.
    pub fn place(&mut self, segment: u64, probe: &str, len: u64) {
        let seg = self.segments.entry(segment).or_default();
        match seg.get_mut(probe) {
            Some(n) => *n += len,
            None => {
                seg.insert(probe.to_string(), len);
            }
        }
    }

    /// Gives back `len` bytes of `probe` (an append that failed, or a deleted segment).
    pub fn release(&mut self, probe: &str, len: u64) {
        if let Some(n) = self.held.get_mut(probe) {
            *n = n.saturating_sub(len);
            if *n == 0 {
                self.held.remove(probe);
            }
        }
    }

    /// Gives back what the segments before `segment` held (they were deleted).
    pub fn free_before(&mut self, segment: u64) {
        let kept = self.segments.split_off(&segment);
        for (probe, len) in std::mem::replace(&mut self.segments, kept)
            .into_values()
            .flatten()
        {
            self.release(&probe, len);
        }
    }

    /// Probes holding data.
    #[cfg(test)]
    pub fn holders(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(parts: &[(u64, &str, u64)]) -> Shares {
        let mut s = Shares::default();
        for &(seg, p, n) in parts {
            s.reserve(p, n);
            s.place(seg, p, n);
        }
        s
    }

    const MAX: u64 = 1000;

    /// Whether probe `p` may add `len` to `used` bytes, with entries left to commit.
    fn ok(s: &Shares, p: &str, len: u64, used: u64) -> bool {
        s.admits(Holder::Probe, p, len, (used, MAX), 1)
    }

    #[test]
    fn below_half_everyone_is_let_in_and_past_it_only_probes_under_their_share() {
        // One probe filled half the spool alone.
        let s = holding(&[(0, "busy", 500)]);
        assert!(ok(&s, "busy", 0, 500), "nothing more is always fine");
        // Alone, its share is the whole spool.
        assert!(ok(&s, "busy", 100, 500));
        // A second probe holds nothing: let in, and the busy one's share is now half.
        assert!(ok(&s, "quiet", 100, 500));
        let s = holding(&[(0, "busy", 500), (0, "quiet", 100)]);
        assert!(!ok(&s, "busy", 10, 600), "past its half");
        assert!(ok(&s, "quiet", 100, 600), "under its half");
        assert!(!ok(&s, "quiet", 401, 600), "the spool's room is the bound");
        // A third probe arrives: shares are a third.
        assert!(ok(&s, "third", 300, 600));
        let s = holding(&[(0, "busy", 500), (0, "quiet", 300), (1, "third", 10)]);
        assert!(!ok(&s, "quiet", 34, 810), "over a third");
        assert!(ok(&s, "quiet", 33, 810));
        // Below half, shares do not matter.
        let s = holding(&[(0, "busy", 400), (0, "quiet", 10)]);
        assert!(ok(&s, "busy", 90, 410));
        assert!(ok(&s, "anyone", 400, 0), "an empty spool takes anything");
    }

    #[test]
    fn with_nothing_left_to_commit_every_append_with_room_is_let_in() {
        // Two probes' data sits in the segment being written, all of it committed: no
        // commit will free anything until an append rolls the segment.
        let s = holding(&[(0, "a", 268), (0, "b", 268)]);
        assert!(!ok(&s, "a", 400, 536), "with entries to commit, a waits");
        assert!(!ok(&s, "b", 400, 536), "and so does b");
        assert!(s.admits(Holder::Probe, "a", 400, (536, MAX), 0));
        assert!(s.admits(Holder::Probe, "b", 400, (536, MAX), 0));
        assert!(
            !s.admits(Holder::Probe, "a", 465, (536, MAX), 0),
            "the spool's room is still the bound"
        );
    }

    #[test]
    fn exporters_are_bound_by_the_room_only() {
        let s = holding(&[(0, "exporter:rtr", 900), (0, "p", 10)]);
        assert!(s.admits(Holder::Exporter, "exporter:rtr", 90, (910, MAX), 1));
        assert!(!s.admits(Holder::Exporter, "exporter:rtr", 91, (910, MAX), 1));
        assert!(
            !ok(&s, "exporter:rtr", 10, 910),
            "the same id as a probe is under the share rule"
        );
    }

    #[test]
    fn deleted_segments_and_failed_appends_give_their_bytes_back() {
        let mut s = holding(&[(0, "a", 100), (0, "b", 50), (1, "a", 30), (2, "b", 5)]);
        assert_eq!((s.held("a"), s.held("b"), s.holders()), (130, 55, 2));
        s.reserve("c", 7);
        s.release("c", 7); // its append failed
        assert_eq!(s.holders(), 2);
        s.free_before(1);
        assert_eq!((s.held("a"), s.held("b")), (30, 5));
        s.free_before(3);
        assert_eq!((s.held("a"), s.held("b"), s.holders()), (0, 0, 0));
        s.free_before(3);
        assert_eq!(s.holders(), 0);
    }
}
