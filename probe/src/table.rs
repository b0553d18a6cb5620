//! The userspace flow table: merges observations and applies the export timeouts.
//!
//! Every backend feeds it: AF_PACKET and pcap replay packet by packet, the eBPF backend
//! with what its kernel table counted — held open in kernel memory and handed over when
//! the record is due ([`crate::sink::FlowSink`]). A flow is exported (and forgotten)
//! when it has been idle for `idle` or has been open for `active`; the next packet of the
//! same key starts a new record.

use std::time::Duration;

use ahash::AHashMap;
use tidegate_common::{FlowKey, FlowStats};

use crate::{
    app::{AppState, FlowAttrs},
    sink::FlowSink,
};
use tidegate_common::SAMPLE_OUTER_IP;
use tidegate_wire::record::outer_endpoints;

/// Export timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Export a flow that has been open this long (long flows are reported periodically).
    pub active: Duration,
    /// Export a flow that saw no packet for this long.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            active: Duration::from_secs(60),
            idle: Duration::from_secs(15),
        }
    }
}

/// Application metadata kept for flows not (yet) in the table, at most.
pub const APPS_MAX: usize = 1 << 16;

/// Records not held by a capture path the table keeps, at most, by default (~170 bytes
/// each: ~350 MiB). Held records (a flow the kernel table counts) cannot leave early and
/// are bounded by the capture path's own memory: they come on top, so a kernel table
/// sized past this still leaves this many for the others. Past the bound,
/// [`FlowTable::expire`] exports records before their timeouts, those due soonest
/// first, down to seven eighths of it: a spray of new flows (a SYN flood from spoofed
/// sources, a scan) costs more, shorter records, not unbounded memory.
pub const RECORDS_MAX: usize = 1 << 21;

/// Flows currently held, keyed by [`FlowKey`]. Timestamps are Unix-epoch ns.
#[derive(Debug)]
pub struct FlowTable {
    flows: AHashMap<FlowKey, Rec>,
    /// Application metadata of held flows whose first packets had a payload (userspace
    /// capture paths only).
    apps: AHashMap<FlowKey, AppState>,
    active_ns: u64,
    idle_ns: u64,
    /// No record that is not held can be due before this (a lower bound: `expire`
    /// skips its scan until then).
    next_due: u64,
    /// Records not held by a capture path kept at most (see [`RECORDS_MAX`]).
    max_records: usize,
    /// Records held by a capture path (outside that bound: the capture path's own
    /// memory, the kernel table, bounds them).
    held: usize,
    /// Records exported before their timeouts because the table was full.
    exported_early: u64,
}

/// One open record.
#[derive(Clone, Copy, Debug, Default)]
struct Rec {
    stats: FlowStats,
    /// Capture paths counting this flow in their own memory (see [`FlowSink::hold`]):
    /// while any does, no timeout applies.
    holders: u32,
    /// A capture path found it due when it released it.
    due: bool,
}

impl Rec {
    /// When this record, not held, is due: at once if a capture path found it due or
    /// it counted nothing (then it is dropped), else at its idle or active timeout,
    /// whichever comes first.
    #[inline]
    fn due_at(&self, idle_ns: u64, active_ns: u64) -> u64 {
        if self.due || self.stats.packets == 0 {
            return 0;
        }
        self.stats
            .last_ns
            .saturating_add(idle_ns)
            .min(self.stats.first_ns.saturating_add(active_ns))
    }
}

impl FlowTable {
    /// An empty table with the given timeouts.
    pub fn new(t: Timeouts) -> Self {
        FlowTable {
            flows: AHashMap::new(),
            apps: AHashMap::new(),
            active_ns: t.active.as_nanos() as u64,
            idle_ns: t.idle.as_nanos() as u64,
            next_due: u64::MAX,
            max_records: RECORDS_MAX,
            held: 0,
            exported_early: 0,
        }
    }

    /// The same with another bound on the records held (at least 16).
    pub fn with_max_records(mut self, max: usize) -> Self {
        self.max_records = max.max(16);
        self
    }

    /// Records exported before their timeouts because the table was full, so far.
    pub fn exported_early(&self) -> u64 {
        self.exported_early
    }

    /// Adds counters observed for `key`.
    #[inline]
    pub fn observe(&mut self, key: &FlowKey, s: &FlowStats) {
        if s.packets == 0 {
            return;
        }
        let r = self.flows.entry(*key).or_default();
        r.stats.merge(s);
        if r.holders == 0 {
            self.next_due = self.next_due.min(r.due_at(self.idle_ns, self.active_ns));
        }
    }

    /// Adds one packet.
    #[inline]
    pub fn observe_packet(
        &mut self,
        key: &FlowKey,
        ts_ns: u64,
        bytes: u64,
        tcp_flags: u16,
        icmp: u16,
    ) {
        let s = FlowStats {
            packets: 1,
            bytes,
            first_ns: ts_ns,
            last_ns: ts_ns,
            tcp_flags,
            icmp,
            verdict: 0,
            rule: 0,
            policy: 0,
        };
        self.observe(key, &s);
    }

    /// Looks at the L4 payload of a packet of `key` (just observed) for application
    /// metadata, while its flow is in its first packets.
    pub fn inspect_payload(&mut self, key: &FlowKey, payload: &[u8]) {
        let Some(r) = self.flows.get(key) else {
            return;
        };
        if r.stats.packets > crate::app::FIRST_PACKETS && !self.apps.contains_key(key) {
            return;
        }
        let st = self.apps.entry(*key).or_default();
        st.inspect(key.proto, key.sport, key.dport, payload);
    }

    /// Notes the outer endpoints of a packet of `key` (just observed) that came through
    /// a tunnel; the first seen stay.
    pub fn note_outer(&mut self, key: &FlowKey, outer: (std::net::IpAddr, std::net::IpAddr)) {
        if !self.flows.contains_key(key) {
            return;
        }
        self.apps
            .entry(*key)
            .or_default()
            .outer
            .get_or_insert(outer);
    }

    /// Takes a sample a capture path sent for `key` (live capture): a payload start
    /// ([`tidegate_common::SAMPLE_PAYLOAD`]) or a tunnel's outer IP header
    /// ([`SAMPLE_OUTER_IP`]). The sample may come before the flow's counters reach the
    /// table (they arrive at the sweep), so what it tells is kept for a flow not held
    /// yet — at most [`APPS_MAX`] of them, forgotten after the idle timeout if the flow
    /// never shows up.
    pub fn inspect_early(&mut self, key: &FlowKey, kind: u8, data: &[u8], now_ns: u64) {
        if !self.apps.contains_key(key)
            && !self.flows.contains_key(key)
            && self.apps.len() >= APPS_MAX
        {
            return;
        }
        let st = self.apps.entry(*key).or_default();
        if st.born_ns == 0 {
            st.born_ns = now_ns;
        }
        if kind == SAMPLE_OUTER_IP {
            if st.outer.is_none() {
                st.outer = outer_endpoints(data);
            }
        } else {
            st.inspect(key.proto, key.sport, key.dport, data);
        }
    }

    /// Exports every flow not held whose idle or active timeout has passed at `now_ns`,
    /// with what its packets told (application metadata, tunnel endpoints).
    pub fn expire(
        &mut self,
        now_ns: u64,
        mut out: impl FnMut(&FlowKey, &FlowStats, FlowAttrs),
    ) -> usize {
        let (active, idle) = (self.active_ns, self.idle_ns);
        let mut n = 0;
        if now_ns >= self.next_due {
            let mut due = Vec::new();
            let mut next_due = u64::MAX;
            let apps = &mut self.apps;
            self.flows.retain(|k, r| {
                if r.holders > 0 {
                    return true;
                }
                let at = r.due_at(idle, active);
                if at > now_ns {
                    next_due = next_due.min(at);
                    return true;
                }
                // A record held once and released with nothing counted goes silently.
                if r.stats.packets > 0 {
                    due.push((*k, r.stats));
                } else {
                    apps.remove(k);
                }
                false
            });
            self.next_due = next_due;
            n = self.emit(due, &mut out);
        }
        if self.flows.len().saturating_sub(self.held) > self.max_records {
            n += self.shed(&mut out);
        }
        // Metadata of flows that never reached the table.
        let flows = &self.flows;
        self.apps
            .retain(|k, a| flows.contains_key(k) || a.born_ns.saturating_add(idle) > now_ns);
        n
    }

    /// Over the bound: exports the records not held that are due soonest, down to seven
    /// eighths of the bound (held ones are counted in a capture path's own bounded
    /// memory and stay). Nothing is lost; the records are only shorter.
    fn shed(&mut self, out: &mut impl FnMut(&FlowKey, &FlowStats, FlowAttrs)) -> usize {
        let target = self.max_records - self.max_records / 8;
        let (idle, active) = (self.idle_ns, self.active_ns);
        let mut free: Vec<(u64, FlowKey)> = (self.flows.iter())
            .filter(|(_, r)| r.holders == 0)
            .map(|(k, r)| (r.due_at(idle, active), *k))
            .collect();
        let excess = free.len().saturating_sub(target);
        if excess == 0 {
            return 0;
        }
        if excess < free.len() {
            free.select_nth_unstable(excess);
            free.truncate(excess);
        }
        let mut due = Vec::with_capacity(excess);
        for (_, k) in free {
            if let Some(r) = self.flows.remove(&k) {
                if r.stats.packets > 0 {
                    due.push((k, r.stats));
                } else {
                    self.apps.remove(&k);
                }
            }
        }
        self.exported_early += due.len() as u64;
        self.emit(due, out)
    }

    /// Exports every flow (shutdown, end of a replay).
    pub fn flush(&mut self, mut out: impl FnMut(&FlowKey, &FlowStats, FlowAttrs)) -> usize {
        let due = self
            .flows
            .drain()
            .filter(|(_, r)| r.stats.packets > 0)
            .map(|(k, r)| (k, r.stats))
            .collect();
        let n = self.emit(due, &mut out);
        self.apps.clear();
        self.next_due = u64::MAX;
        self.held = 0;
        n
    }

    /// Exports `due` with their metadata in a fixed order — by first packet, then key —
    /// not the hash table's (randomly seeded) order: replaying a capture twice gives the
    /// same records in the same order, so order-sensitive consumers (detection) judge
    /// them alike.
    fn emit(
        &mut self,
        mut due: Vec<(FlowKey, FlowStats)>,
        out: &mut impl FnMut(&FlowKey, &FlowStats, FlowAttrs),
    ) -> usize {
        due.sort_unstable_by(|a, b| (a.1.first_ns, &a.0).cmp(&(b.1.first_ns, &b.0)));
        for (k, stats) in &due {
            let attrs = self.apps.remove(k).map(AppState::attrs).unwrap_or_default();
            out(k, stats, attrs);
        }
        due.len()
    }

    /// Flows currently held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

impl FlowSink for FlowTable {
    fn observe(&mut self, key: &FlowKey, s: &FlowStats) {
        FlowTable::observe(self, key, s);
    }

    fn timeouts_ns(&self) -> Option<(u64, u64)> {
        Some((self.active_ns, self.idle_ns))
    }

    fn hold(&mut self, key: &FlowKey) -> Option<u64> {
        let r = self.flows.entry(*key).or_default();
        r.holders += 1;
        if r.holders == 1 {
            self.held += 1;
        }
        (r.stats.packets > 0).then_some(r.stats.first_ns)
    }

    fn release(&mut self, key: &FlowKey, s: &FlowStats, due: bool) {
        let r = self.flows.entry(*key).or_default();
        if r.holders == 1 {
            self.held -= 1;
        }
        r.holders = r.holders.saturating_sub(1);
        r.stats.merge(s);
        r.due |= due;
        if r.holders == 0 {
            self.next_due = self.next_due.min(r.due_at(self.idle_ns, self.active_ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn key(p: u16) -> FlowKey {
        let mut k = FlowKey::ZERO;
        k.sport = p;
        k
    }

    #[test]
    fn a_spray_of_new_flows_is_exported_early_past_the_bound_and_nothing_is_lost() {
        let mut t = FlowTable::new(Timeouts::default()).with_max_records(1000);
        let mut out: Vec<(FlowKey, FlowStats)> = Vec::new();
        // A held flow (counted in a capture path's memory) never goes early.
        let held = key(u16::MAX);
        assert_eq!(t.hold(&held), None);
        for i in 0..50_000u64 {
            t.observe_packet(&key(i as u16), S + i, 60, 0x02, 0);
            if i % 1000 == 999 {
                t.expire(S + i, |k, s, _| out.push((*k, *s)));
                // The bound is on the records not held: the held one comes on top.
                assert!(t.len() <= 1001, "{} kept after {i}", t.len());
            }
        }
        assert!(t.exported_early() > 40_000, "{}", t.exported_early());
        assert!(out.iter().all(|(k, _)| *k != held));
        t.release(
            &held,
            &FlowStats {
                packets: 3,
                bytes: 180,
                first_ns: S,
                last_ns: S,
                ..Default::default()
            },
            false,
        );
        t.flush(|k, s, _| out.push((*k, *s)));
        // Every packet exported once.
        assert_eq!(out.iter().map(|(_, s)| s.packets).sum::<u64>(), 50_003);
        // The soonest due first: what is left at the end is the newest.
        let early_first = out.iter().take(100).map(|(_, s)| s.first_ns).max().unwrap();
        assert!(early_first < S + 2_000, "{early_first}");
    }

    #[test]
    fn idle_and_active_timeouts_split_records_without_losing_counts() {
        let mut t = FlowTable::new(Timeouts {
            active: Duration::from_secs(60),
            idle: Duration::from_secs(15),
        });
        let mut out = Vec::new();
        // Flow 1: a packet every second for 130 s -> split by the active timeout.
        for i in 0..130u64 {
            t.observe_packet(&key(1), i * S, 100, 0, 0);
            t.expire(i * S, |k, s, _| out.push((*k, *s)));
        }
        // Flow 2: one packet, then idle.
        t.observe_packet(&key(2), 5 * S, 60, 0x02, 0);
        // Idle since 5 s: still held at 19 s, exported at 20 s (5 + 15).
        let mut early = Vec::new();
        t.expire(19 * S, |k, s, _| early.push((*k, *s)));
        assert!(early.iter().all(|(k, _)| k.sport != 2));
        out.extend(early);
        t.expire(20 * S, |k, s, _| out.push((*k, *s)));
        assert!(out.iter().any(|(k, s)| k.sport == 2 && s.packets == 1));
        t.expire(200 * S, |k, s, _| out.push((*k, *s)));
        t.flush(|k, s, _| out.push((*k, *s)));
        let f1: Vec<_> = out.iter().filter(|(k, _)| k.sport == 1).collect();
        assert!(
            f1.len() >= 2,
            "active timeout must split the long flow: {f1:?}"
        );
        assert_eq!(f1.iter().map(|(_, s)| s.packets).sum::<u64>(), 130);
        assert_eq!(f1.iter().map(|(_, s)| s.bytes).sum::<u64>(), 13_000);
        // No record spans more than the active timeout.
        assert!(f1.iter().all(|(_, s)| s.last_ns - s.first_ns <= 60 * S));
        let f2: Vec<_> = out.iter().filter(|(k, _)| k.sport == 2).collect();
        assert_eq!(f2.len(), 1);
        assert_eq!(f2[0].1.tcp_flags, 0x02);
        assert!(t.is_empty());
    }

    #[test]
    fn idle_flow_exported_exactly_at_timeout() {
        let mut t = FlowTable::new(Timeouts::default());
        t.observe_packet(&key(3), 10 * S, 1, 0, 0);
        assert_eq!(t.expire(25 * S - 1, |_, _, _| {}), 0);
        assert_eq!(t.expire(25 * S, |_, _, _| {}), 1);
    }

    #[test]
    fn a_flows_dns_question_goes_out_with_it_and_nothing_is_kept_after() {
        let mut t = FlowTable::new(Timeouts::default());
        let mut k = key(5353);
        k.proto = 17;
        k.sport = 40_000;
        k.dport = 53;
        // A query for a.example (type A).
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
        t.observe_packet(&k, S, 60, 0, 0);
        t.inspect_payload(&k, &q);
        // Later packets do not replace the first question.
        t.observe_packet(&k, 2 * S, 60, 0, 0);
        t.inspect_payload(&k, b"garbage");
        let mut got = Vec::new();
        t.expire(100 * S, |_, _, app| got.push(app));
        match &got[..] {
            [
                FlowAttrs {
                    app: Some(crate::app::AppMeta::Dns(d)),
                    outer: None,
                },
            ] => {
                assert_eq!((d.qname.as_str(), d.qtype, d.rcode), ("a.example", 1, None))
            }
            other => panic!("{other:?}"),
        }
        assert!(t.apps.is_empty() && t.flows.is_empty());
        // A payload for a flow the table does not hold is ignored.
        t.inspect_payload(&k, &q);
        assert!(t.apps.is_empty());
    }
}
