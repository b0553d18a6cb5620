//! Top talkers per line by bytes: sources, destinations and conversations (src, dst).
//!
//! Computed over the merged flows held when the snapshot is taken (flows seen within
//! `flow_idle` of the watermark, and not evicted). Each shard sums its flows exactly per
//! address and sends every sum; the snapshot adds the shards' sums and then takes the
//! top N, so the result is exact: no per-shard truncation, no approximation error. The
//! price is a snapshot cost linear in the number of active flows, off the hot path.
//! Ties in bytes are broken by address order, so the lists are deterministic.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use serde::Serialize;

use super::flows::FlowState;
use super::key::Addr;

/// Sums of one talker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Acc {
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
}

impl Acc {
    fn add(&mut self, o: &Acc) {
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.packets = self.packets.saturating_add(o.packets);
        self.flows = self.flows.saturating_add(o.flows);
    }
}

/// Exact per-address sums of one line.
#[derive(Debug, Default)]
pub(crate) struct TalkerMaps {
    pub sources: HashMap<Addr, Acc>,
    pub destinations: HashMap<Addr, Acc>,
    pub conversations: HashMap<(Addr, Addr), Acc>,
}

impl TalkerMaps {
    /// Counts one merged flow.
    pub fn add_flow(&mut self, src: Addr, dst: Addr, f: &FlowState) {
        let a = Acc {
            bytes: f.counters.bytes,
            packets: f.counters.packets,
            flows: 1,
        };
        self.sources.entry(src).or_default().add(&a);
        self.destinations.entry(dst).or_default().add(&a);
        self.conversations.entry((src, dst)).or_default().add(&a);
    }

    /// Adds another shard's sums.
    pub fn merge(&mut self, o: TalkerMaps) {
        merge_map(&mut self.sources, o.sources);
        merge_map(&mut self.destinations, o.destinations);
        merge_map(&mut self.conversations, o.conversations);
    }

    /// The `n` largest of each list.
    pub fn top(&self, n: usize) -> TopTalkers {
        let talker = |(a, s): (Addr, Acc)| Talker {
            addr: a.ip(),
            bytes: s.bytes,
            packets: s.packets,
            flows: s.flows,
        };
        TopTalkers {
            sources: top_n(&self.sources, n).into_iter().map(talker).collect(),
            destinations: top_n(&self.destinations, n)
                .into_iter()
                .map(talker)
                .collect(),
            conversations: top_n(&self.conversations, n)
                .into_iter()
                .map(|((s, d), a)| Conversation {
                    src: s.ip(),
                    dst: d.ip(),
                    bytes: a.bytes,
                    packets: a.packets,
                    flows: a.flows,
                })
                .collect(),
        }
    }
}

fn merge_map<K: Hash + Eq>(into: &mut HashMap<K, Acc>, mut from: HashMap<K, Acc>) {
    if from.len() > into.len() {
        std::mem::swap(into, &mut from);
    }
    for (k, v) in from {
        into.entry(k).or_default().add(&v);
    }
}

/// The `n` entries with the most bytes, ties by key order.
fn top_n<K: Ord + Copy>(m: &HashMap<K, Acc>, n: usize) -> Vec<(K, Acc)> {
    let mut v: Vec<(K, Acc)> = m.iter().map(|(k, a)| (*k, *a)).collect();
    let order = |x: &(K, Acc), y: &(K, Acc)| y.1.bytes.cmp(&x.1.bytes).then(x.0.cmp(&y.0));
    if v.len() > n {
        if n == 0 {
            return Vec::new();
        }
        v.select_nth_unstable_by(n - 1, order);
        v.truncate(n);
    }
    v.sort_unstable_by(order);
    v
}

/// One address and what its flows carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Talker {
    /// The address.
    pub addr: IpAddr,
    /// IP-layer bytes of its active flows.
    pub bytes: u64,
    /// Packets of its active flows.
    pub packets: u64,
    /// Number of its active merged flows.
    pub flows: u64,
}

/// One (source, destination) pair and what its flows carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conversation {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP-layer bytes of its active flows.
    pub bytes: u64,
    /// Packets of its active flows.
    pub packets: u64,
    /// Number of its active merged flows.
    pub flows: u64,
}

/// The top N of a line, largest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TopTalkers {
    /// Sources by bytes sent.
    pub sources: Vec<Talker>,
    /// Destinations by bytes received.
    pub destinations: Vec<Talker>,
    /// (source, destination) pairs by bytes.
    pub conversations: Vec<Conversation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Addr {
        Addr::from_ip(s.parse().unwrap())
    }

    fn flow(bytes: u64) -> FlowState {
        let mut f = FlowState::default();
        f.counters.packets = 1;
        f.counters.bytes = bytes;
        f
    }

    #[test]
    fn merged_shards_give_the_exact_top() {
        // Shard 1 sees a lot of small flows from .1, shard 2 one big flow from .2: .1 is
        // the top source only once both are added.
        let mut a = TalkerMaps::default();
        for _ in 0..10 {
            a.add_flow(addr("10.0.0.1"), addr("10.0.0.9"), &flow(100));
        }
        a.add_flow(addr("10.0.0.2"), addr("10.0.0.9"), &flow(10));
        let mut b = TalkerMaps::default();
        b.add_flow(addr("10.0.0.2"), addr("10.0.0.8"), &flow(600));
        b.add_flow(addr("10.0.0.1"), addr("10.0.0.8"), &flow(50));
        a.merge(b);
        let t = a.top(1);
        assert_eq!(t.sources.len(), 1);
        assert_eq!(t.sources[0].addr, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((t.sources[0].bytes, t.sources[0].flows), (1050, 11));
        assert_eq!(t.destinations[0].bytes, 1010);
        assert_eq!(t.conversations[0].bytes, 1000);
        let all = a.top(10);
        assert_eq!(
            all.sources.iter().map(|s| s.bytes).collect::<Vec<_>>(),
            vec![1050, 610]
        );
    }

    #[test]
    fn ties_are_broken_by_address() {
        let mut m = TalkerMaps::default();
        for s in ["10.0.0.3", "10.0.0.1", "::1", "10.0.0.2"] {
            m.add_flow(addr(s), addr("10.0.0.9"), &flow(5));
        }
        let t = m.top(3);
        let got: Vec<String> = t.sources.iter().map(|s| s.addr.to_string()).collect();
        assert_eq!(got, vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert!(m.top(0).sources.is_empty());
    }
}
