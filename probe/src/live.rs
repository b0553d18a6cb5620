//! The live capture loop shared by the eBPF and AF_PACKET backends: collect, sweep the
//! flow table on timeouts, export; on stop, hand over and export everything held.

use std::{
    collections::HashMap,
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tidegate_common::{Counter, FlowKey, FlowStats};

use crate::{
    capture::ebpf::{EbpfCapture, EbpfError, SharedEnforcer},
    clock::realtime_ns,
    export::Exporter,
    metrics::ProbeMetrics,
    record::FlowRecord,
    sink::FlowSink,
    table::{FlowTable, Timeouts},
};

/// Flow observations handed from a backend to the flow table.
pub type Sink<'a> = dyn FlowSink + 'a;

/// A live capture backend.
pub trait LiveSource {
    /// Waits up to `timeout` for capture activity and hands over what arrived.
    fn poll(&mut self, timeout: Duration, sink: &mut Sink<'_>) -> anyhow::Result<()>;
    /// Periodic hand-over of capture-side state (kernel maps).
    fn sweep(&mut self, sink: &mut Sink<'_>) -> anyhow::Result<()>;
    /// Stops capturing and hands over everything left.
    fn finish(&mut self, sink: &mut Sink<'_>) -> anyhow::Result<()>;
    /// Absolute counter values, indexed by [`Counter`].
    fn counters(&self) -> anyhow::Result<[u64; Counter::COUNT as usize]>;
    /// Hands over samples (flow key, kind, bytes: payload starts for application
    /// metadata, tunnels' outer headers), if the source captures any.
    fn app_samples(&mut self, _sink: &mut dyn FnMut(&FlowKey, u8, &[u8])) {}
}

impl LiveSource for EbpfCapture {
    fn app_samples(&mut self, sink: &mut dyn FnMut(&FlowKey, u8, &[u8])) {
        // Bounded per call, so a flood of DNS packets cannot starve the sweep.
        self.drain_app_samples(APP_SAMPLES_PER_POLL, &mut |k, kind, p| sink(k, kind, p));
    }

    fn poll(&mut self, timeout: Duration, sink: &mut Sink<'_>) -> anyhow::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.fallback_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd. EINTR (a signal) simply ends the wait.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        self.drain_fallback(sink);
        Ok(())
    }

    fn sweep(&mut self, sink: &mut Sink<'_>) -> anyhow::Result<()> {
        self.drain_fallback(sink);
        EbpfCapture::sweep(self, sink)?;
        Ok(())
    }

    fn finish(&mut self, sink: &mut Sink<'_>) -> anyhow::Result<()> {
        EbpfCapture::finish(self, sink).map_err(|e: EbpfError| anyhow::anyhow!(e))?;
        Ok(())
    }

    fn counters(&self) -> anyhow::Result<[u64; Counter::COUNT as usize]> {
        Ok(EbpfCapture::counters(self)?)
    }
}

/// Loop settings.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// Export timeouts.
    pub timeouts: Timeouts,
    /// How often capture-side state is swept and timeouts are checked.
    pub sweep_interval: Duration,
    /// Stop by itself after this long (demos, tests).
    pub duration: Option<Duration>,
    /// Interface index -> line name.
    pub lines: HashMap<u32, String>,
    /// Records not held by the source the flow table keeps at most
    /// ([`crate::table::RECORDS_MAX`]).
    pub records_max: usize,
    /// Enforcement tables: names the rule of each judged flow, and per-rule counters
    /// for the metrics.
    pub enforcer: Option<SharedEnforcer>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Records exported.
    pub records: u64,
    /// Final counter totals.
    pub counters: Vec<(&'static str, u64)>,
}

/// Payload samples taken from the kernel per poll at most.
const APP_SAMPLES_PER_POLL: usize = 4096;

/// Runs until `stop` is set (SIGINT/SIGTERM) or the duration passes, then flushes
/// everything: no packet the backend accounted is left unexported. With a `ledger`, what
/// was accounted and exported is checkpointed after every sweep and the ledger is
/// closed clean at the end (see [`crate::ledger`]).
pub fn run_loop(
    src: &mut dyn LiveSource,
    exporter: &mut dyn Exporter,
    metrics: &Arc<Mutex<ProbeMetrics>>,
    stop: &AtomicBool,
    opts: &LoopOptions,
    mut ledger: Option<crate::ledger::Ledger>,
) -> anyhow::Result<RunSummary> {
    // Records held by the kernel table come on top of the bound (see RECORDS_MAX).
    let mut table = FlowTable::new(opts.timeouts).with_max_records(opts.records_max);
    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    let mut next_sweep = started + opts.sweep_interval;
    let mut next_log = started + Duration::from_secs(10);
    // Each line's name once, shared by its records (no allocation per exported flow).
    let lines: HashMap<u32, tidegate_wire::Name> = opts
        .lines
        .iter()
        .map(|(i, l)| (*i, l.as_str().into()))
        .collect();
    let mut out = Out {
        exporter,
        lines: &lines,
        enforcer: opts.enforcer.as_ref(),
        records: 0,
        packets: 0,
        err: None,
    };
    let mut rule_seen: HashMap<(String, tidegate_wire::Verdict), (u64, u64)> = HashMap::new();
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d) {
            break;
        }
        let mut wait = next_sweep.saturating_duration_since(now);
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_duration_since(now));
        }
        src.poll(wait, &mut table)?;
        let now_ns = realtime_ns();
        src.app_samples(&mut |k, kind, p| table.inspect_early(k, kind, p, now_ns));
        if Instant::now() >= next_sweep {
            let t0 = Instant::now();
            src.sweep(&mut table)?;
            let mut m = metrics.lock().expect("metrics lock");
            m.sweep_seconds.observe(t0.elapsed().as_secs_f64());
            table.expire(realtime_ns(), |k, s, app| out.export(k, s, app, &mut m));
            let counters = src.counters()?;
            m.update_counters(&counters);
            m.flows_active.set(table.len() as i64);
            m.records_exported_early.set(table.exported_early() as i64);
            if let Some(e) = &opts.enforcer {
                update_rule_metrics(e, &mut m, &mut rule_seen);
            }
            drop(m);
            out.exporter.flush()?;
            out.check()?;
            if let Some(l) = ledger.as_mut() {
                l.checkpoint(counters[Counter::Accounted as usize], out.packets);
            }
            next_sweep += opts.sweep_interval;
            if next_sweep < Instant::now() {
                next_sweep = Instant::now() + opts.sweep_interval;
            }
        }
        if Instant::now() >= next_log {
            let m = metrics.lock().expect("metrics lock");
            let t = m.totals();
            tracing::info!(
                packets = t[Counter::Packets as usize],
                accounted = t[Counter::Accounted as usize],
                map_full = t[Counter::MapFull as usize],
                fallback_dropped = t[Counter::FallbackDropped as usize],
                flows_active = table.len(),
                records = out.records,
                "probe status"
            );
            next_log += Duration::from_secs(10);
        }
        out.check()?;
    }

    // Shutdown: everything the backend holds, then everything the table holds.
    src.finish(&mut table)?;
    src.app_samples(&mut |k, kind, p| table.inspect_early(k, kind, p, realtime_ns()));
    let mut m = metrics.lock().expect("metrics lock");
    table.flush(|k, s, app| out.export(k, s, app, &mut m));
    let totals = src.counters()?;
    m.update_counters(&totals);
    m.flows_active.set(0);
    drop(m);
    out.check()?;
    out.exporter.flush()?;
    out.check()?;
    if let Some(mut l) = ledger {
        l.checkpoint(totals[Counter::Accounted as usize], out.packets);
        l.close_clean()
            .map_err(|e| anyhow::anyhow!("cannot mark the export ledger clean: {e}"))?;
    }
    let records = out.records;
    let counters: Vec<_> = Counter::ALL
        .iter()
        .map(|c| (c.name(), totals[*c as usize]))
        .collect();
    tracing::info!(records, ?counters, "probe stopped; all flows exported");
    Ok(RunSummary { records, counters })
}

/// Folds the kernel's per-rule counters into the metrics (as deltas).
fn update_rule_metrics(
    e: &SharedEnforcer,
    m: &mut ProbeMetrics,
    seen: &mut HashMap<(String, tidegate_wire::Verdict), (u64, u64)>,
) {
    let g = e.lock();
    m.enforce_policy_version.set(g.version() as i64);
    let totals = match g.rule_totals() {
        Ok(t) => t,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the enforcement counters");
            return;
        }
    };
    drop(g);
    for ((rule, verdict), t) in totals {
        let last = seen.entry((rule.clone(), verdict)).or_default();
        let labels = crate::metrics::RuleVerdict {
            rule,
            verdict: verdict.name().to_string(),
        };
        m.enforce_rule_packets
            .get_or_create(&labels)
            .inc_by(t.packets.saturating_sub(last.0));
        m.enforce_rule_bytes
            .get_or_create(&labels)
            .inc_by(t.bytes.saturating_sub(last.1));
        *last = (last.0.max(t.packets), last.1.max(t.bytes));
    }
}

/// Turns table output into exported records, remembering the first export error.
struct Out<'a> {
    exporter: &'a mut dyn Exporter,
    lines: &'a HashMap<u32, tidegate_wire::Name>,
    enforcer: Option<&'a SharedEnforcer>,
    records: u64,
    /// Packets of the records exported.
    packets: u64,
    err: Option<std::io::Error>,
}

impl Out<'_> {
    fn export(
        &mut self,
        k: &FlowKey,
        s: &FlowStats,
        attrs: crate::app::FlowAttrs,
        m: &mut ProbeMetrics,
    ) {
        if self.err.is_some() {
            return;
        }
        let mut rec = match self.lines.get(&k.ifindex) {
            Some(line) => FlowRecord::new(k, s, line),
            None => FlowRecord::new(k, s, ""),
        };
        attrs.apply(&mut rec);
        if !rec.verdict.is_pass() {
            rec.enforce_rule = Some(
                self.enforcer
                    .and_then(|e| e.lock().rule_name(s.policy, s.rule))
                    .unwrap_or_else(|| format!("#{}", s.rule))
                    .into(),
            );
        }
        if let Err(e) = self.exporter.export(&rec) {
            self.err = Some(e);
            return;
        }
        self.records += 1;
        self.packets = self.packets.saturating_add(s.packets);
        m.records_exported.inc();
        m.export_lag
            .observe(realtime_ns().saturating_sub(s.last_ns) as f64 / 1e9);
    }

    fn check(&mut self) -> anyhow::Result<()> {
        match self.err.take() {
            Some(e) => Err(anyhow::anyhow!("exporting flow records failed: {e}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `held` flows in its own memory, as the kernel table does, and hands over
    /// `free` records it does not hold.
    struct Holding {
        held: u16,
        free: u16,
        started: bool,
    }

    fn key(p: u16) -> FlowKey {
        let mut k = FlowKey::ZERO;
        k.sport = p;
        k
    }

    fn one_packet() -> FlowStats {
        let now = realtime_ns();
        FlowStats {
            packets: 1,
            bytes: 60,
            first_ns: now,
            last_ns: now,
            ..Default::default()
        }
    }

    impl LiveSource for Holding {
        fn poll(&mut self, timeout: Duration, sink: &mut Sink<'_>) -> anyhow::Result<()> {
            if !std::mem::replace(&mut self.started, true) {
                for i in 0..self.held {
                    sink.hold(&key(i));
                }
                for i in 0..self.free {
                    sink.observe(&key(self.held + i), &one_packet());
                }
            }
            std::thread::sleep(timeout.min(Duration::from_millis(10)));
            Ok(())
        }
        fn sweep(&mut self, _sink: &mut Sink<'_>) -> anyhow::Result<()> {
            Ok(())
        }
        fn finish(&mut self, sink: &mut Sink<'_>) -> anyhow::Result<()> {
            for i in 0..self.held {
                sink.release(&key(i), &one_packet(), false);
            }
            Ok(())
        }
        fn counters(&self) -> anyhow::Result<[u64; Counter::COUNT as usize]> {
            Ok([0; Counter::COUNT as usize])
        }
    }

    struct Collect(Vec<FlowRecord>);

    impl Exporter for Collect {
        fn export(&mut self, rec: &FlowRecord) -> std::io::Result<()> {
            self.0.push(rec.clone());
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_kernel_table_larger_than_the_record_bound_does_not_force_early_exports() {
        // The kernel holds 200 flows and the bound on the others is 128: 100 records not
        // held stay within it and wait for their timeouts.
        let mut src = Holding {
            held: 200,
            free: 100,
            started: false,
        };
        let mut out = Collect(Vec::new());
        let metrics = Arc::new(Mutex::new(ProbeMetrics::new()));
        let opts = LoopOptions {
            timeouts: Timeouts {
                active: Duration::from_secs(600),
                idle: Duration::from_secs(600),
            },
            sweep_interval: Duration::from_millis(20),
            duration: Some(Duration::from_millis(200)),
            lines: HashMap::new(),
            enforcer: None,
            records_max: 128,
        };
        let stop = AtomicBool::new(false);
        let ran = run_loop(&mut src, &mut out, &metrics, &stop, &opts, None).unwrap();
        let early = metrics.lock().unwrap().records_exported_early.get();
        assert_eq!(early, 0, "records exported early");
        // Each flow once, at the end.
        assert_eq!((ran.records, out.0.len()), (300, 300));
    }
}
