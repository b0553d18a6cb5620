//! [`AggregateSnapshot`]: the shards' partial views merged into one picture per line.

use std::collections::BTreeMap;

use serde::Serialize;

use super::histograms::LineHistograms;
use super::line_stats::Totals;
use super::rates::RateCell;
use super::shard::ShardView;
use super::top_talkers::{TalkerMaps, TopTalkers};

/// One direction of a line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirectionStats {
    /// Totals since the aggregator started.
    pub totals: Totals,
    /// One cell per second of the window, oldest first (second
    /// [`AggregateSnapshot::window_start_s`] + index).
    pub per_second: Vec<RateCell>,
}

impl DirectionStats {
    /// Sum of the window's cells.
    pub fn window_sum(&self) -> RateCell {
        let mut s = RateCell::default();
        for c in &self.per_second {
            s.add(c);
        }
        s
    }
}

/// Everything known about one line.
#[derive(Clone, Debug)]
pub struct LineSnapshot {
    /// Received traffic.
    pub ingress: DirectionStats,
    /// Sent traffic.
    pub egress: DirectionStats,
    /// Merged flows of this line currently held.
    pub active_flows: u64,
    /// Top talkers over the held flows.
    pub top: TopTalkers,
    /// Flow size, duration and packet size distributions (one value per record).
    pub histograms: LineHistograms,
}

/// The merged view of every shard at one event time.
#[derive(Clone, Debug)]
pub struct AggregateSnapshot {
    /// Event time of the snapshot: the newest record time submitted (Unix ns; 0 before
    /// any record).
    pub watermark_ns: u64,
    /// First second (Unix seconds) of the rate window.
    pub window_start_s: u64,
    /// Seconds in the rate window (length of every `per_second`).
    pub window_secs: u64,
    /// Merged flows held by all shards.
    pub active_flows: u64,
    /// Shards that answered (fewer than configured only if a shard thread died).
    pub shards_answered: usize,
    /// Per line name.
    pub lines: BTreeMap<String, LineSnapshot>,
}

/// A line being merged: talker sums are kept until every shard is in.
struct Pending {
    ingress: DirectionStats,
    egress: DirectionStats,
    active_flows: u64,
    talkers: TalkerMaps,
    histograms: LineHistograms,
}

fn add_cells(into: &mut Vec<RateCell>, from: &[RateCell]) {
    if into.len() < from.len() {
        into.resize(from.len(), RateCell::default());
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.add(b);
    }
}

impl AggregateSnapshot {
    /// Merges shard views taken at `watermark_ns`; top lists keep `top_n` entries.
    pub(crate) fn merge(
        views: Vec<ShardView>,
        watermark_ns: u64,
        window_start_s: u64,
        window_secs: u64,
        top_n: usize,
    ) -> AggregateSnapshot {
        let shards_answered = views.len();
        let mut active_flows = 0;
        let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
        for v in views {
            active_flows += v.active_flows;
            for l in v.lines {
                let p = pending
                    .entry(l.name.to_string())
                    .or_insert_with(|| Pending {
                        ingress: DirectionStats::default(),
                        egress: DirectionStats::default(),
                        active_flows: 0,
                        talkers: TalkerMaps::default(),
                        histograms: LineHistograms::default(),
                    });
                for (d, i) in [(&mut p.ingress, 0), (&mut p.egress, 1)] {
                    d.totals.add(&l.totals[i]);
                    add_cells(&mut d.per_second, &l.rates[i]);
                }
                p.active_flows += l.active_flows;
                p.histograms.add(&l.hist);
                p.talkers.merge(l.talkers);
            }
        }
        let lines = pending
            .into_iter()
            .map(|(name, p)| {
                let snap = LineSnapshot {
                    ingress: p.ingress,
                    egress: p.egress,
                    active_flows: p.active_flows,
                    top: p.talkers.top(top_n),
                    histograms: p.histograms,
                };
                (name, snap)
            })
            .collect();
        AggregateSnapshot {
            watermark_ns,
            window_start_s,
            window_secs,
            active_flows,
            shards_answered,
            lines,
        }
    }
}
