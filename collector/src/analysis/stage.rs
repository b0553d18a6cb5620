//! The detection stage's thread: enrichment context in, policy and detectors over each
//! record, states out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tidegate_wire::Batch;

use super::outputs::Outputs;
use tidegate_threat::detect::Detector;
use tidegate_threat::enrich::FlowContext;
use tidegate_threat::policy::{Endpoints, PolicyEngine, ViolationBook};

/// What the stage is handed.
pub(crate) enum Input {
    /// One decoded batch with the enrichment of each record.
    Batch {
        batch: Arc<Batch>,
        ctx: Arc<Vec<FlowContext>>,
        /// Its number, reached once its states are stored (see [`super::Progress`]).
        ticket: u64,
    },
    /// An alert raised outside detection (the storage pipeline's quarantine), published
    /// through the same sinks.
    Raise(Box<tidegate_threat::detect::Alert>),
}

/// How often the thread wakes up without input (to notice idle lines).
const TICK: Duration = Duration::from_millis(250);
/// Notified alerts are remembered this long past their last evidence (event time).
const REMEMBER_NS: u64 = 24 * 3600 * 1_000_000_000;

/// State of the stage.
pub(crate) struct Stage {
    pub detector: Option<Detector>,
    /// Saves the detectors' learned state periodically and at shutdown.
    pub learned: Option<super::learned::Learned>,
    pub policy: Option<PolicyEngine>,
    pub violations: ViolationBook,
    pub outputs: Outputs,
    pub idle_advance: Duration,
    /// Records stamped later than the wall clock plus this are clamped to the clock.
    pub max_skew_ns: u64,
    /// Warnings about such records: at most one a minute.
    pub future_warn: tidegate_base::limits::Throttle,
    /// Enforcement control: blocks the source of alerts the policy names
    /// (`[enforce.block_alerts]`).
    pub blocker: Option<Arc<crate::enforce::EnforceHub>>,
    /// What each such alert says about its block (kept for its later updates).
    pub blocked: std::collections::HashMap<String, String>,
}

use tidegate_base::clock::wall_ns;

impl Stage {
    /// Runs until every sender of `rx` is gone, then closes every window.
    pub fn run(mut self, rx: Receiver<Input>) {
        let mut newest_ns = 0u64;
        let mut last_input = Instant::now();
        let mut advanced_ns = 0u64;
        let empty = Endpoints::default();
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Input::Raise(alert)) => {
                    let u = tidegate_threat::detect::AlertUpdate {
                        new: !self.outputs.knows(&alert.id),
                        alert: *alert,
                    };
                    self.outputs.alert(&u);
                    self.outputs.flush();
                }
                Ok(Input::Batch { batch, ctx, ticket }) => {
                    last_input = Instant::now();
                    advanced_ns = 0;
                    let b = &batch;
                    self.outputs.metrics.records.inc_by(b.records.len() as u64);
                    let now = wall_ns();
                    let limit = now.saturating_add(self.max_skew_ns);
                    // Records stamped in the future are judged at this collector's
                    // clock, by the policy and detection alike (stored as sent).
                    let mut clamped: Vec<(usize, tidegate_wire::FlowRecord)> = Vec::new();
                    for (i, r) in b.records.iter().enumerate() {
                        if r.last > limit {
                            self.future_record(&b.probe_id, r, now);
                            let mut c = r.clone();
                            c.last = now;
                            c.first = c.first.min(now);
                            clamped.push((i, c));
                        }
                    }
                    let mut records: Vec<&tidegate_wire::FlowRecord> = b.records.iter().collect();
                    for (i, c) in &clamped {
                        records[*i] = c;
                    }
                    // The batch through detection at once (rule by rule: see
                    // `Detector::observe_refs`), with the alerts record by record gives,
                    // each numbered by its record: published below right after that
                    // record's violations, in the order one record at a time had them.
                    let mut updates = match self.detector.as_mut() {
                        Some(d) => d.observe_refs(&records),
                        None => Vec::new(),
                    }
                    .into_iter()
                    .peekable();
                    for (i, &r) in records.iter().enumerate() {
                        newest_ns = newest_ns.max(r.last);
                        let ctx = ctx.get(i);
                        if let Some(engine) = self.policy.as_mut() {
                            let ends = ctx.map_or(&empty, |c| &c.ends);
                            for v in engine.process(r, ends) {
                                let state = self.violations.merge(v);
                                // Both directions of a breach are one violation, named by
                                // the direction first seen: describe its ends, not this
                                // record's, when the record goes the other way.
                                if state.violation.src != r.src && state.violation.src == r.dst {
                                    let rev = ctx.map(FlowContext::reversed);
                                    self.outputs.violation(&state, rev.as_ref());
                                } else {
                                    self.outputs.violation(&state, ctx);
                                }
                            }
                        }
                        while let Some(u) = tidegate_threat::detect::next_at(&mut updates, i) {
                            self.alert(u);
                        }
                    }
                    self.outputs.flush();
                    self.outputs.processed(ticket);
                }
                Err(RecvTimeoutError::Timeout) => {
                    // An idle line: event time goes on with the wall clock, so windows
                    // that can no longer receive records close.
                    let idle = last_input.elapsed();
                    if idle >= self.idle_advance && newest_ns > 0 {
                        let now = newest_ns.saturating_add(idle.as_nanos() as u64);
                        if now > advanced_ns {
                            advanced_ns = now;
                            self.advance(now);
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if newest_ns > 0 {
                self.outputs
                    .metrics
                    .event_time
                    .set((newest_ns / 1_000_000_000) as i64);
            }
            if let Some(d) = self.detector.as_ref() {
                let held = i64::try_from(d.pending_records()).unwrap_or(i64::MAX);
                self.outputs.metrics.cold_pending.set(held);
            }
            if let (Some(l), Some(d)) = (self.learned.as_mut(), self.detector.as_ref()) {
                l.maybe_save(d, false);
            }
        }
        // What was learned before the partial windows are closed at shutdown (a partial
        // window would teach a baseline a fraction of its real volume).
        if let (Some(l), Some(d)) = (self.learned.as_mut(), self.detector.as_ref()) {
            l.maybe_save(d, true);
        }
        self.finish();
    }

    /// Counts a record stamped in the future and says so (at most once a minute).
    fn future_record(&mut self, probe: &str, r: &tidegate_wire::FlowRecord, now: u64) {
        self.outputs.metrics.future_records.inc();
        if let Some(records) = self.future_warn.due() {
            tracing::warn!(
                records,
                probe = %probe.escape_debug(),
                ahead_secs = (r.last - now) / 1_000_000_000,
                "a record is stamped later than this collector's clock allows \
                 (detect.max_clock_skew_secs); detection judges it at the collector's clock \
                 (stored as sent; counted in detect_future_records). Check the probe's clock."
            );
        }
    }

    /// Publishes an alert state; an alert the policy blocks on has its source blocked at
    /// the lines when it opens, and says so in every state.
    fn alert(&mut self, mut u: tidegate_threat::detect::AlertUpdate) {
        if let Some(hub) = &self.blocker {
            let said = match self.blocked.get(&u.alert.id) {
                Some(s) => Some(s.clone()),
                None => {
                    let s = hub.block_for_alert(&u.alert);
                    if let Some(s) = &s {
                        self.blocked.insert(u.alert.id.clone(), s.clone());
                    }
                    s
                }
            };
            if let Some(s) = said {
                u.alert.description.push_str(&s);
            }
        }
        self.outputs.alert(&u);
    }

    fn advance(&mut self, now_ns: u64) {
        let updates = match self.detector.as_mut() {
            Some(d) => d.advance(now_ns),
            None => Vec::new(),
        };
        for u in updates {
            self.alert(u);
        }
        self.violations.expire(now_ns);
        if let Some(p) = self.policy.as_mut() {
            p.sweep();
        }
        self.outputs
            .forget_before(now_ns.saturating_sub(REMEMBER_NS));
        self.outputs.flush();
    }

    /// At shutdown: closes every window (alerts of partial windows keep the ids they
    /// would have had, so a restart that sees the rest of the window updates them).
    fn finish(&mut self) {
        if let Some(d) = self.detector.as_mut() {
            for a in d.finish() {
                let u = tidegate_threat::detect::AlertUpdate {
                    new: !self.outputs.knows(&a.id),
                    alert: a,
                };
                self.alert(u);
            }
        }
        self.outputs.flush();
    }
}
