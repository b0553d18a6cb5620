//! A merged flow: the counters of every record of one key, from every probe and interval.

use serde::Serialize;
use tidegate_wire::record::FlowRecord;

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

/// What merging the records of one flow adds up: packets and bytes summed, `first` the
/// earliest and `last` the latest packet, TCP flags OR'ed, the ICMP type/code of the
/// latest record that had them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowCounters {
    /// Packets.
    pub packets: u64,
    /// IP-layer bytes.
    pub bytes: u64,
    /// Earliest first packet (Unix-epoch ns).
    pub first: u64,
    /// Latest last packet (Unix-epoch ns).
    pub last: u64,
    /// OR of the TCP flags.
    pub tcp_flags: u16,
    /// ICMP type of the latest record that had one.
    pub icmp_type: Option<u8>,
    /// ICMP code of the latest record that had one.
    pub icmp_code: Option<u8>,
}

impl FlowCounters {
    /// The counters of one record (a record whose `last` is before its `first` spans
    /// the same two instants).
    pub fn of(r: &FlowRecord) -> Self {
        FlowCounters {
            packets: r.packets,
            bytes: r.bytes,
            first: r.first.min(r.last),
            last: r.last.max(r.first),
            tcp_flags: r.tcp_flags,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
        }
    }

    /// Adds `o` (see the type's rules).
    pub fn merge(&mut self, o: &FlowCounters) {
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.tcp_flags |= o.tcp_flags;
        if o.icmp_type.is_some() {
            self.icmp_type = o.icmp_type;
        }
        if o.icmp_code.is_some() {
            self.icmp_code = o.icmp_code;
        }
    }
}

/// One merged flow inside a shard: its counters and the probes that reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlowState {
    pub counters: FlowCounters,
    pub probes: ProbeSet,
}

impl FlowState {
    /// A flow made of one record.
    pub fn new(r: &Rec, probe: u32) -> FlowState {
        let mut probes = ProbeSet::default();
        probes.insert(probe);
        FlowState {
            counters: r.counters,
            probes,
        }
    }

    /// Adds a record (see [`FlowCounters`]) and its probe.
    pub fn merge(&mut self, r: &Rec, probe: u32) {
        self.counters.merge(&r.counters);
        self.probes.insert(probe);
    }
}

/// One merged flow, as returned by [`Aggregator::flows`](super::Aggregator::flows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergedFlow {
    /// The flow's key.
    pub key: AggregateKey,
    /// Its counters over every merged record.
    #[serde(flatten)]
    pub counters: FlowCounters,
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
