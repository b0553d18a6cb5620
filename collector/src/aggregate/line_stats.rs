//! What a shard keeps per line: totals and rates per direction, histograms, active flows.

use std::sync::Arc;

use serde::Serialize;

use super::histograms::LineHistograms;
use super::message::Rec;
use super::rates::{RateCell, RateRing};

/// Totals since the aggregator started, for one line and direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// IP-layer bytes.
    pub bytes: u64,
    /// Packets.
    pub packets: u64,
    /// Flow records.
    pub records: u64,
    /// Merged flows started (a flow forgotten after `flow_idle` and seen again counts
    /// again).
    pub flows: u64,
}

impl Totals {
    /// Adds another set of totals.
    pub fn add(&mut self, o: &Totals) {
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.packets = self.packets.saturating_add(o.packets);
        self.records = self.records.saturating_add(o.records);
        self.flows = self.flows.saturating_add(o.flows);
    }
}

/// One direction of a line inside a shard.
pub(crate) struct DirState {
    pub totals: Totals,
    pub rates: RateRing,
}

/// One line inside a shard.
pub(crate) struct LineState {
    pub name: Arc<str>,
    /// Ingress, egress.
    pub dirs: [DirState; 2],
    pub hist: LineHistograms,
    /// Merged flows of this line currently in the shard's table.
    pub active_flows: u64,
}

impl LineState {
    pub fn new(name: Arc<str>, window: u64) -> LineState {
        let dir = || DirState {
            totals: Totals::default(),
            rates: RateRing::new(window),
        };
        LineState {
            name,
            dirs: [dir(), dir()],
            hist: LineHistograms::default(),
            active_flows: 0,
        }
    }

    /// Counts a record in the totals, rates and histograms.
    pub fn record(&mut self, r: &Rec, clock_sec: u64) {
        let d = &mut self.dirs[r.key.dir_index()];
        let c = &r.counters;
        d.totals.bytes = d.totals.bytes.saturating_add(c.bytes);
        d.totals.packets = d.totals.packets.saturating_add(c.packets);
        d.totals.records += 1;
        d.rates
            .add_span(c.first, c.last, c.bytes, c.packets, clock_sec);
        self.hist.record(r);
    }

    /// Counts a new merged flow of direction `dir` starting at `first`.
    pub fn flow_started(&mut self, dir: usize, first: u64, clock_sec: u64) {
        let d = &mut self.dirs[dir];
        d.totals.flows += 1;
        d.rates.flow_started(first, clock_sec);
        self.active_flows += 1;
    }

    /// A merged flow's start moved earlier (a record of it from before arrived).
    pub fn flow_start_moved(&mut self, dir: usize, from: u64, to: u64, clock_sec: u64) {
        let d = &mut self.dirs[dir];
        d.rates.flow_unstarted(from, clock_sec);
        d.rates.flow_started(to, clock_sec);
    }

    /// A merged flow left the table (idle, evicted or replaced).
    pub fn flow_ended(&mut self) {
        self.active_flows = self.active_flows.saturating_sub(1);
    }

    /// Rates of one direction over `len` seconds from `start_sec`.
    pub fn rates(&self, dir: usize, start_sec: u64, len: u64) -> Vec<RateCell> {
        self.dirs[dir].rates.view(start_sec, len)
    }
}
