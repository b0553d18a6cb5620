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
//! is deleted (commits free whole segments).

use std::collections::{BTreeMap, HashMap};

/// Spool bytes per probe, and per probe in each segment.
#[derive(Debug, Default)]
pub(crate) struct Shares {
    /// Bytes each probe holds: in segments not yet deleted, or on their way to one.
    held: HashMap<String, u64>,
    /// Bytes per probe written to each segment.
    segments: BTreeMap<u64, HashMap<String, u64>>,
}

impl Shares {
    /// Whether probe `probe` may add `len` bytes to a spool holding `used` of `max`
    /// bytes (see the module's documentation).
    pub fn admits(&self, probe: &str, len: u64, used: u64, max: u64) -> bool {
        if used == 0 {
            return true; // an entry is never larger than a segment, at most half of max
        }
        if used + len > max {
            return false;
        }
        let held = self.held(probe);
        if held == 0 || used + len <= max / 2 {
            return true;
        }
        let holders = self.held.len() as u64 + u64::from(!self.held.contains_key(probe));
        held + len <= max / holders.max(1)
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

    #[test]
    fn below_half_everyone_is_let_in_and_past_it_only_probes_under_their_share() {
        let max = 1000;
        // One probe filled half the spool alone.
        let s = holding(&[(0, "busy", 500)]);
        assert!(s.admits("busy", 0, 500, max), "nothing more is always fine");
        // Alone, its share is the whole spool.
        assert!(s.admits("busy", 100, 500, max));
        // A second probe holds nothing: let in, and the busy one's share is now half.
        assert!(s.admits("quiet", 100, 500, max));
        let s = holding(&[(0, "busy", 500), (0, "quiet", 100)]);
        assert!(!s.admits("busy", 10, 600, max), "past its half");
        assert!(s.admits("quiet", 100, 600, max), "under its half");
        assert!(
            !s.admits("quiet", 401, 600, max),
            "the spool's room is the bound"
        );
        // A third probe arrives: shares are a third.
        assert!(s.admits("third", 300, 600, max));
        let s = holding(&[(0, "busy", 500), (0, "quiet", 300), (1, "third", 10)]);
        assert!(!s.admits("quiet", 34, 810, max), "over a third");
        assert!(s.admits("quiet", 33, 810, max));
        // Below half, shares do not matter.
        let s = holding(&[(0, "busy", 400), (0, "quiet", 10)]);
        assert!(s.admits("busy", 90, 410, max));
        assert!(
            s.admits("anyone", 400, 0, max),
            "an empty spool takes anything"
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
