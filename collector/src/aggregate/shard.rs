//! A shard worker: owns a merged-flow table and per-line statistics, alone (no locks).
//!
//! Event time: each shard keeps a clock, the newest record time (`max(first, last)`) of
//! any batch it was sent (every sub-batch carries the watermark of the whole submitted
//! batch) or of a snapshot request. Flows idle for more than `flow_idle` behind that clock
//! are forgotten; rate buckets older than `rate_window` behind it are dropped.
//!
//! Merging: a record joins its key's flow when its span is within `flow_idle` of the
//! flow's span. A record starting more than `flow_idle` after the flow's last packet
//! starts a new flow (the old one is forgotten, as idle expiry would have done); a record
//! ending more than `flow_idle` before the flow's first packet belongs to a flow already
//! forgotten and is only counted in the line statistics (`late_records`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::config::AggregateConfig;
use super::flow_table::FlowTable;
use super::flows::{FlowState, MergedFlow};
use super::histograms::LineHistograms;
use super::key::CKey;
use super::line_stats::{LineState, Totals};
use super::message::{Batch, Msg, Rec};
use super::metrics::{AggregateMetrics, ShardLabel};
use super::rates::{RateCell, window_start};

/// Lines a shard keeps apart, at most; the records of any further line count under
/// [`OTHER_LINES`] (each line holds rate windows and histograms: a peer naming a new
/// line per record, or a spoofed exporter per datagram, must not grow memory forever).
pub const MAX_LINES: usize = 1024;
/// Where the lines past [`MAX_LINES`] are counted.
pub const OTHER_LINES: &str = "(other lines)";
/// Probe ids a shard keeps apart, at most; the others count as [`OTHER_PROBES`].
pub const MAX_PROBES: usize = 4096;
/// Where the probes past [`MAX_PROBES`] are counted.
pub const OTHER_PROBES: &str = "(other probes)";
use super::top_talkers::TalkerMaps;

const NS: u64 = 1_000_000_000;

/// One line of a shard's partial view.
pub(crate) struct LineView {
    pub name: Arc<str>,
    /// Ingress, egress.
    pub totals: [Totals; 2],
    /// Ingress, egress; one cell per second of the snapshot window.
    pub rates: [Vec<RateCell>; 2],
    pub hist: LineHistograms,
    pub active_flows: u64,
    pub talkers: TalkerMaps,
}

/// A shard's answer to a snapshot request.
pub(crate) struct ShardView {
    pub lines: Vec<LineView>,
    pub active_flows: u64,
}

/// Handles the worker updates.
struct ShardMetrics {
    records: Counter,
    queue_depth: Gauge,
    active_flows: Gauge,
    evictions: Counter,
    expired: Counter,
    late_records: Counter,
}

/// The state of one shard, owned by its thread.
pub(crate) struct Shard {
    table: FlowTable,
    lines: Vec<LineState>,
    line_ids: HashMap<Arc<str>, u32>,
    probes: Vec<Arc<str>>,
    probe_ids: HashMap<Arc<str>, u32>,
    /// Event time (ns).
    clock: u64,
    last_sweep: u64,
    sweep_every: u64,
    idle_ns: u64,
    window: u64,
    delay: Option<Duration>,
    m: ShardMetrics,
}

impl Shard {
    pub fn new(index: usize, cfg: &AggregateConfig, metrics: &AggregateMetrics) -> Shard {
        let label = ShardLabel::of(index);
        let idle_ns = cfg.flow_idle_ns();
        Shard {
            table: FlowTable::new(cfg.max_flows_per_shard),
            lines: Vec::new(),
            line_ids: HashMap::new(),
            probes: Vec::new(),
            probe_ids: HashMap::new(),
            clock: 0,
            last_sweep: 0,
            // Sweeping costs a pass over the table: do it every quarter of the idle time
            // (at least every event-time second), so flows linger at most 25% longer.
            sweep_every: (idle_ns / 4).max(NS),
            idle_ns,
            window: cfg.rate_window_secs(),
            delay: cfg
                .debug_slow_shard
                .and_then(|(s, d)| (s == index).then_some(d)),
            m: ShardMetrics {
                records: metrics.shard_records.get_or_create(&label).clone(),
                queue_depth: metrics.queue_depth.get_or_create(&label).clone(),
                active_flows: metrics.active_flows.get_or_create(&label).clone(),
                evictions: metrics.evictions.clone(),
                expired: metrics.expired.clone(),
                late_records: metrics.late_records.clone(),
            },
        }
    }

    /// The worker loop: runs until every sender is gone. Each received message gives its
    /// queue slot back (`slots`) before it is processed.
    pub fn run(mut self, rx: Receiver<Msg>, slots: Sender<()>) {
        while let Ok(msg) = rx.recv() {
            // Cannot be full: a slot is only taken for a message that is now consumed.
            let _ = slots.try_send(());
            self.m.queue_depth.set(rx.len() as i64);
            match msg {
                Msg::Batch(b) => self.apply(&b),
                Msg::Flush(reply) => {
                    let _ = reply.send(());
                }
                Msg::Snapshot { watermark, reply } => {
                    let _ = reply.send(self.view(watermark));
                }
                Msg::Flows { watermark, reply } => {
                    let _ = reply.send(self.flows(watermark));
                }
            }
        }
    }

    fn line_id(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&id) = self.line_ids.get(name) {
            return id;
        }
        if self.lines.len() >= MAX_LINES && &**name != OTHER_LINES {
            return self.line_id(&Arc::from(OTHER_LINES));
        }
        let id = self.lines.len() as u32;
        self.lines.push(LineState::new(name.clone(), self.window));
        self.line_ids.insert(name.clone(), id);
        id
    }

    fn probe_id(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&id) = self.probe_ids.get(name) {
            return id;
        }
        if self.probes.len() >= MAX_PROBES && &**name != OTHER_PROBES {
            return self.probe_id(&Arc::from(OTHER_PROBES));
        }
        let id = self.probes.len() as u32;
        self.probes.push(name.clone());
        self.probe_ids.insert(name.clone(), id);
        id
    }

    /// Aggregates one sub-batch.
    pub fn apply(&mut self, b: &Batch) {
        let probe = self.probe_id(&b.probe);
        let mut local: Vec<u32> = vec![u32::MAX; b.lines.len()];
        self.advance(b.watermark);
        let clock_sec = self.clock / NS;
        // Two passes: the lines' totals, rates and histograms first, while they stay in
        // the CPU caches, then the flow table, whose scattered slots would evict them
        // between one record's updates and the next (measured: the histogram counters'
        // loads missed the caches when both ran per record). The line statistics do not
        // depend on the table, and what the table does to them (flows started, moved,
        // ended) adds to other counters, so the result is the same.
        for r in &b.recs {
            let bi = r.key.line as usize;
            if local[bi] == u32::MAX {
                local[bi] = self.line_id(&b.lines[bi]);
            }
            self.lines[local[bi] as usize].record(r, clock_sec);
        }
        for r in &b.recs {
            if let Some(d) = self.delay {
                std::thread::sleep(d);
            }
            let mut key = r.key;
            key.line = local[key.line as usize];
            self.upsert(key, r, probe, clock_sec);
        }
        self.m.records.inc_by(b.recs.len() as u64);
        self.m.active_flows.set(self.table.len() as i64);
    }

    /// Moves event time forward and forgets idle flows when it is time to.
    fn advance(&mut self, watermark: u64) {
        self.clock = self.clock.max(watermark);
        if self.clock.saturating_sub(self.last_sweep) >= self.sweep_every {
            self.sweep();
        }
    }

    /// Forgets every flow idle for more than `flow_idle` at the clock.
    fn sweep(&mut self) {
        self.last_sweep = self.clock;
        let (clock, idle) = (self.clock, self.idle_ns);
        let lines = &mut self.lines;
        let mut n = 0u64;
        self.table.retain(
            |_, f| f.counters.last.saturating_add(idle) >= clock,
            |k, _| {
                lines[k.line as usize].flow_ended();
                n += 1;
            },
        );
        self.m.expired.inc_by(n);
        self.m.active_flows.set(self.table.len() as i64);
    }

    fn upsert(&mut self, key: CKey, r: &Rec, probe: u32, clock_sec: u64) {
        let (lo, hi) = (r.counters.first, r.counters.last);
        let dir = key.dir_index();
        let h = self.table.hash(&key);
        if let Some(slot) = self.table.find_hashed(h, &key) {
            let f = self.table.state(slot);
            if lo > f.counters.last.saturating_add(self.idle_ns) {
                // The flow went idle and started again: forget the old one.
                self.table.remove(slot);
                self.lines[key.line as usize].flow_ended();
                self.m.expired.inc();
            } else if hi.saturating_add(self.idle_ns) < f.counters.first {
                self.m.late_records.inc();
                return;
            } else {
                let old_first = f.counters.first;
                let f = self.table.state_mut(slot);
                f.merge(r, probe);
                let new_first = f.counters.first;
                self.table.touch(slot);
                if new_first < old_first {
                    self.lines[key.line as usize]
                        .flow_start_moved(dir, old_first, new_first, clock_sec);
                }
                return;
            }
        }
        let (_, evicted) = self.table.insert_hashed(h, key, FlowState::new(r, probe));
        if let Some((k, _)) = evicted {
            self.lines[k.line as usize].flow_ended();
            self.m.evictions.inc();
        }
        self.lines[key.line as usize].flow_started(dir, lo, clock_sec);
    }

    /// The partial view at event time `watermark`.
    fn view(&mut self, watermark: u64) -> ShardView {
        self.clock = self.clock.max(watermark);
        self.sweep();
        let start = window_start(watermark, self.window);
        let mut talkers: Vec<TalkerMaps> = (0..self.lines.len())
            .map(|_| TalkerMaps::default())
            .collect();
        for (k, f) in self.table.iter() {
            talkers[k.line as usize].add_flow(k.src(), k.dst(), f);
        }
        let lines = self
            .lines
            .iter()
            .zip(talkers)
            .map(|(l, talkers)| LineView {
                name: l.name.clone(),
                totals: [l.dirs[0].totals, l.dirs[1].totals],
                rates: [
                    l.rates(0, start, self.window),
                    l.rates(1, start, self.window),
                ],
                hist: l.hist.clone(),
                active_flows: l.active_flows,
                talkers,
            })
            .collect();
        ShardView {
            lines,
            active_flows: self.table.len() as u64,
        }
    }

    /// Every merged flow held at event time `watermark`.
    fn flows(&mut self, watermark: u64) -> Vec<MergedFlow> {
        self.clock = self.clock.max(watermark);
        self.sweep();
        self.table
            .iter()
            .map(|(k, f)| MergedFlow {
                key: k.public(&self.lines[k.line as usize].name),
                counters: f.counters,
                probes: {
                    let mut p: Vec<String> = f
                        .probes
                        .iter()
                        .map(|i| self.probes[i as usize].to_string())
                        .collect();
                    p.sort();
                    p
                },
            })
            .collect()
    }
}
