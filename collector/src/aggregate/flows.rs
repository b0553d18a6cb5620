//! A merged flow: the counters of every record of one key, from every probe and interval.

use serde::Serialize;

use super::key::AggregateKey;
use super::message::Rec;

/// The set of probes (shard-local indexes) that reported a flow: a bit per probe for the
/// first 64 probes a shard sees, a sorted list for the rest (16 bytes inline).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProbeSet {
    bits: u64,
    #[expect(
        clippy::box_collection,
        reason = "a thin 8-byte pointer keeps every flow's ProbeSet at 16 bytes"
    )]
    more: Option<Box<Vec<u32>>>,
}

impl ProbeSet {
    pub fn insert(&mut self, probe: u32) {
        if probe < 64 {
            self.bits |= 1 << probe;
        } else {
            let v = self.more.get_or_insert_with(Default::default);
            if let Err(at) = v.binary_search(&probe) {
                v.insert(at, probe);
            }
        }
    }

    /// Probe indexes in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..64u32)
            .filter(|i| self.bits & (1 << i) != 0)
            .chain(self.more.iter().flat_map(|v| v.iter().copied()))
    }
}

/// Counters of one merged flow inside a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FlowState {
    pub packets: u64,
    pub bytes: u64,
    pub first: u64,
    pub last: u64,
    pub tcp_flags: u16,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub probes: ProbeSet,
}

impl FlowState {
    /// A flow made of one record.
    pub fn new(r: &Rec, probe: u32) -> FlowState {
        let mut probes = ProbeSet::default();
        probes.insert(probe);
        FlowState {
            packets: r.packets,
            bytes: r.bytes,
            first: r.first.min(r.last),
            last: r.last.max(r.first),
            tcp_flags: r.tcp_flags,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
            probes,
        }
    }

    /// Adds a record: counters summed, first = min, last = max, flags OR, probe added;
    /// ICMP type/code are those of the latest record that had them.
    pub fn merge(&mut self, r: &Rec, probe: u32) {
        self.packets = self.packets.saturating_add(r.packets);
        self.bytes = self.bytes.saturating_add(r.bytes);
        self.first = self.first.min(r.first.min(r.last));
        self.last = self.last.max(r.last.max(r.first));
        self.tcp_flags |= r.tcp_flags;
        if r.icmp_type.is_some() {
            self.icmp_type = r.icmp_type;
        }
        if r.icmp_code.is_some() {
            self.icmp_code = r.icmp_code;
        }
        self.probes.insert(probe);
    }
}

/// One merged flow, as returned by [`Aggregator::flows`](super::Aggregator::flows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergedFlow {
    /// The flow's key.
    pub key: AggregateKey,
    /// Packets of every merged record.
    pub packets: u64,
    /// IP-layer bytes of every merged record.
    pub bytes: u64,
    /// Earliest first packet (Unix-epoch ns).
    pub first: u64,
    /// Latest last packet (Unix-epoch ns).
    pub last: u64,
    /// OR of the records' TCP flags.
    pub tcp_flags: u16,
    /// ICMP type of the latest record that had one.
    pub icmp_type: Option<u8>,
    /// ICMP code of the latest record that had one.
    pub icmp_code: Option<u8>,
    /// Ids of the probes that reported it, sorted.
    pub probes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_set_keeps_small_and_large_indexes_sorted() {
        let mut s = ProbeSet::default();
        for p in [70, 3, 63, 0, 70, 200, 3, 64] {
            s.insert(p);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 63, 64, 70, 200]);
        assert_eq!(std::mem::size_of::<ProbeSet>(), 16);
    }
}
