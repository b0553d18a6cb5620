//! Tumbling event-time windows of per-key accumulators.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tidegate_common::record::FlowRecord;

/// Counters of one key over one window.
#[derive(Clone, Debug, Default)]
pub(crate) struct Acc {
    pub packets: f64,
    pub bytes: f64,
    pub flows: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Distinct values (ports, hosts), capped at [`DISTINCT_MAX`].
    pub distinct: BTreeSet<u64>,
    /// Distinct sources, capped at [`DISTINCT_MAX`].
    pub sources: BTreeSet<IpAddr>,
    /// Line of the first flow.
    pub line: String,
    /// Sample flows.
    pub evidence: Vec<FlowRecord>,
    /// Already reported while the window was open (see [`super::Rule::early`]).
    pub early: bool,
}

/// Order of evidence: earliest first, ties broken by the flow key, so the sample does
/// not depend on the order records arrive in.
fn evidence_order(r: &FlowRecord) -> impl Ord + use<> {
    (
        r.first, r.last, r.src, r.dst, r.sport, r.dport, r.proto, r.vlan, r.packets,
    )
}

/// Keeps in `sample` the `max` earliest records (by [`evidence_order`]), sorted.
pub(crate) fn keep_earliest(sample: &mut Vec<FlowRecord>, r: &FlowRecord, max: usize) {
    if max == 0 {
        return;
    }
    let key = evidence_order(r);
    if sample.len() == max {
        match sample.last() {
            Some(last) if evidence_order(last) > key => {
                sample.pop();
            }
            _ => return,
        }
    }
    let at = sample.partition_point(|e| evidence_order(e) <= key);
    sample.insert(at, r.clone());
}

/// Most windows one record is spread over.
const SPREAD_WINDOWS_MAX: u64 = 4096;

/// Largest set kept per accumulator (bounds memory under floods of spoofed sources).
pub(crate) const DISTINCT_MAX: usize = 1 << 16;

impl Acc {
    /// Adds `packets`/`bytes` of `r` (a share of it when spread over windows).
    pub fn add(&mut self, r: &FlowRecord, packets: f64, bytes: f64, evidence_max: usize) {
        if self.flows == 0 {
            self.first_ns = r.first;
            self.last_ns = r.last;
            self.line = r.line.clone();
        }
        self.first_ns = self.first_ns.min(r.first);
        self.last_ns = self.last_ns.max(r.last);
        self.packets += packets;
        self.bytes += bytes;
        self.flows += 1;
        if self.sources.len() < DISTINCT_MAX {
            self.sources.insert(r.src);
        }
        keep_earliest(&mut self.evidence, r, evidence_max);
    }

    /// Records a distinct value.
    pub fn mark(&mut self, v: u64) {
        if self.distinct.len() < DISTINCT_MAX {
            self.distinct.insert(v);
        }
    }
}

/// Accumulators keyed by (window start, key); windows are `len_ns` long and aligned to
/// the Unix epoch, so the same records always fall into the same windows.
#[derive(Debug)]
pub(crate) struct Windows<K: Ord + Clone> {
    len_ns: u64,
    map: BTreeMap<(u64, K), Acc>,
}

impl<K: Ord + Clone> Windows<K> {
    pub fn new(len_ns: u64) -> Self {
        Windows {
            len_ns: len_ns.max(1),
            map: BTreeMap::new(),
        }
    }

    /// Start of the window holding `ts`.
    pub fn start_of(&self, ts: u64) -> u64 {
        ts - ts % self.len_ns
    }

    /// A copy of `key`'s accumulator in the window starting at `w` the first time
    /// `crossed` holds for it (then marked as reported early); `None` otherwise.
    pub fn take_early(&mut self, w: u64, key: &K, crossed: impl Fn(&Acc) -> bool) -> Option<Acc> {
        let acc = self.map.get_mut(&(w, key.clone()))?;
        if acc.early || !crossed(acc) {
            return None;
        }
        acc.early = true;
        Some(acc.clone())
    }

    /// The accumulator of `key` in the window holding `ts`.
    pub fn at(&mut self, ts: u64, key: K) -> &mut Acc {
        let w = self.start_of(ts);
        self.map.entry((w, key)).or_default()
    }

    /// Adds `r` to `key`, spreading its packets and bytes over the windows its
    /// [first, last] span overlaps in proportion to the overlap.
    pub fn add_spread(&mut self, r: &FlowRecord, key: K, evidence_max: usize) {
        let last = r.last.max(r.first);
        // A record spanning more windows than any probe timeout allows is clamped to its
        // most recent ones, so bad timestamps cannot make this loop run for long.
        let first = r
            .first
            .max(last.saturating_sub(SPREAD_WINDOWS_MAX * self.len_ns));
        let span = (last - first) as f64;
        let mut w = self.start_of(first);
        while w <= last {
            let end = w.saturating_add(self.len_ns);
            let share = if span == 0.0 {
                1.0
            } else {
                (end.min(last) as f64 - first.max(w) as f64).max(0.0) / span
            };
            if share > 0.0 || span == 0.0 {
                let (p, b) = (r.packets as f64 * share, r.bytes as f64 * share);
                self.map
                    .entry((w, key.clone()))
                    .or_default()
                    .add(r, p, b, evidence_max);
            }
            if end == u64::MAX {
                break;
            }
            w = end;
        }
    }

    /// Removes and returns (in window then key order) every window that ends at or
    /// before `watermark`.
    pub fn drain_closed(&mut self, watermark: u64) -> Vec<(u64, K, Acc)> {
        let mut out = Vec::new();
        while let Some(entry) = self.map.first_entry() {
            let (w, _) = entry.key();
            if w.saturating_add(self.len_ns) > watermark {
                break;
            }
            let ((w, k), acc) = entry.remove_entry();
            out.push((w, k, acc));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_common::Direction;

    fn rec(first: u64, last: u64, packets: u64) -> FlowRecord {
        FlowRecord {
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            sport: 1,
            dport: 2,
            proto: 17,
            vlan: None,
            packets,
            bytes: packets * 100,
            first,
            last,
            tcp_flags: 0,
            icmp_type: None,
            icmp_code: None,
            line: "l".into(),
            ifindex: 0,
            direction: Direction::Ingress,
        }
    }

    #[test]
    fn spreading_splits_by_overlap_and_windows_close_in_order() {
        let mut w: Windows<u8> = Windows::new(10);
        w.add_spread(&rec(5, 25, 20), 0, 4);
        let closed = w.drain_closed(20);
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].0, 0);
        assert!((closed[0].2.packets - 5.0).abs() < 1e-9);
        assert!((closed[1].2.packets - 10.0).abs() < 1e-9);
        let rest = w.drain_closed(u64::MAX);
        assert!((rest[0].2.packets - 5.0).abs() < 1e-9);
    }

    #[test]
    fn absurd_spans_are_clamped_not_looped_over() {
        let mut w: Windows<u8> = Windows::new(1_000_000_000);
        w.add_spread(&rec(0, u64::MAX - 1, 4096), 0, 1);
        let closed = w.drain_closed(u64::MAX);
        assert!(closed.len() <= SPREAD_WINDOWS_MAX as usize + 1);
        let total: f64 = closed.iter().map(|c| c.2.packets).sum();
        assert!((total - 4096.0).abs() < 1e-6, "{total}");
    }
}
