//! Anomaly detectors over flow records, all on event time (flow timestamps), so replaying
//! a capture raises the same alerts, with the same ids, as seeing it live.
//!
//! [`Detector::observe`] feeds one record to every enabled rule; rules count per key in
//! tumbling windows aligned to the epoch ([`window`]) and report when a window closes,
//! i.e. once the newest record's `last` is `lateness_secs` past the window's end (or on
//! [`Detector::advance`] / [`Detector::finish`]). Reports of the same kind and key close
//! in time update one open [`Alert`] ([`alert`]).

pub mod alert;
mod baseline;
mod beacon;
pub mod config;
mod dns_names;
mod exfil;
mod hostsweep;
mod keyed;
mod portscan;
mod scan;
mod surge;
mod synflood;
mod tiered;
mod tunnel;
mod upload;
mod volumetric;
mod window;

pub use alert::{Alert, AlertKind, AlertUpdate, Endpoint, Volume};
pub use config::DetectConfig;
// DetectorState and STATE_VERSION are defined below.

use tidegate_wire::record::FlowRecord;

use alert::{AlertBook, Detection};

const NS: u64 = 1_000_000_000;

/// One detection rule: counts records, reports findings when windows close.
pub(crate) trait Rule: Send {
    /// Counts one record.
    fn observe(&mut self, r: &FlowRecord);
    /// Feeds each of `records` in turn and, after each, closes at its watermark in
    /// `marks` (or tells the rule event time reached it) as the detector does record by
    /// record; reports go to `reports` with the record's number. The detector makes one
    /// call per rule and batch: this loop is compiled for each rule, with direct calls
    /// (not four through the rule's vtable per record).
    fn observe_all(&mut self, records: &[&FlowRecord], marks: &[u64], reports: &mut Reports) {
        debug_assert_eq!(records.len(), marks.len());
        for (i, (r, &watermark)) in records.iter().zip(marks).enumerate() {
            self.observe(r);
            self.early(r, &mut reports.found);
            reports.take(i, false);
            if watermark >= self.due() {
                self.close(watermark, &mut reports.found);
                reports.take(i, true);
            } else {
                self.reached(watermark);
            }
        }
    }
    /// Reports on every window that ends at or before `watermark` (event time, ns).
    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>);
    /// The lowest watermark at which [`Self::close`] has anything to do (a window or
    /// batch to close, a sweep to run); the detector skips the call below it. The
    /// default, 0, has it called for every record.
    fn due(&self) -> u64 {
        0
    }
    /// Event time has reached `watermark`, though nothing of the rule is due: what a
    /// [`Self::close`] at `watermark` would have learned about event time without
    /// closing anything (see `tiered`: when a hot key turns cold again).
    fn reached(&mut self, _watermark: u64) {}
    /// Records held for cold keys whose windows are not taught yet (see `tiered`).
    fn pending(&self) -> usize {
        0
    }
    /// After `observe(r)`: reports, once per window, an open window `r` touched whose
    /// count already crosses the threshold — an early warning that does not wait for the
    /// window to close. Only for counts that can only grow (distinct ports or hosts,
    /// packets), so the window's final report confirms it: both carry the same kind, key
    /// and window, and merge into one alert (same id). Rules whose verdict can still
    /// change before the window closes keep the default (nothing early).
    fn early(&mut self, _r: &FlowRecord, _out: &mut Vec<Detection>) {}
    /// Name of the rule's learned state in a saved [`DetectorState`].
    fn name(&self) -> &'static str {
        ""
    }
    /// The rule's learned state (baselines), for [`Detector::state`]; `None` when it
    /// learns nothing worth keeping across restarts.
    fn save(&self) -> Option<serde_json::Value> {
        None
    }
    /// Replaces the learned state with a saved one.
    fn restore(&mut self, _saved: serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// What rules report over a batch ([`Rule::observe_all`]), each with the number of the
/// record after which it was reported.
#[derive(Default)]
pub(crate) struct Reports {
    early: Vec<(usize, Detection)>,
    closed: Vec<(usize, Detection)>,
    /// Where a rule reports; emptied after each call.
    found: Vec<Detection>,
}

impl Reports {
    /// Moves what the rule just reported after record `i` to the early or closed ones.
    fn take(&mut self, i: usize, closed: bool) {
        if self.found.is_empty() {
            return;
        }
        let to = if closed {
            &mut self.closed
        } else {
            &mut self.early
        };
        to.extend(self.found.drain(..).map(|f| (i, f)));
    }
}

/// What the detectors have learned (baselines, first sightings, each rule's history
/// start), as saved to the collector's state file and restored at start: after a
/// restart — even a SIGKILL — the detectors judge against the baselines they had, not
/// from scratch. Open windows are not in it: they are rebuilt from the records that
/// arrive, and records already acknowledged are not replayed into detection.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectorState {
    /// Format of this structure.
    pub version: u32,
    /// Event time (Unix ns) the detectors had reached.
    pub newest_ns: u64,
    /// Per rule name, its saved state.
    pub rules: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Current [`DetectorState::version`].
pub const STATE_VERSION: u32 = 1;

/// TCP SYN flag.
pub(crate) const SYN: u16 = 0x02;
/// TCP RST flag.
pub(crate) const RST: u16 = 0x04;
/// TCP ACK flag.
pub(crate) const ACK: u16 = 0x10;

/// Whether a flow looks like a probe: TCP without ACK (SYN, FIN, NULL, XMAS scans) or a
/// connection aborted with RST or a tiny UDP datagram flow to a service port.
pub(crate) fn is_probe(r: &FlowRecord, max_packets: u64) -> bool {
    if r.packets > max_packets {
        return false;
    }
    match r.proto {
        // SYN, FIN, NULL and XMAS probes carry no ACK; connect probes end in RST.
        6 => r.tcp_flags & ACK == 0 || (r.tcp_flags & SYN != 0 && r.tcp_flags & RST != 0),
        17 => r.dport != 0 && r.dport < 1024 && r.sport >= 1024,
        _ => false,
    }
}

/// The most frequent destination port among sample flows.
pub(crate) fn main_dport(evidence: &[FlowRecord]) -> Option<u16> {
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for r in evidence {
        *counts.entry(r.dport).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(p, n)| (*n, std::cmp::Reverse(*p)))
        .map(|(p, _)| p)
}

/// Runs every enabled detector over a stream of flow records.
pub struct Detector {
    rules: Vec<Box<dyn Rule>>,
    book: AlertBook,
    lateness_ns: u64,
    newest_ns: u64,
    /// Watermark at which the alert book is next swept for alerts past the merge gap.
    next_expire_ns: u64,
    /// [`Self::observe_batch`]'s watermarks, kept between calls.
    marks: Vec<u64>,
}

impl Detector {
    /// Builds the detectors `cfg` enables (after validating it).
    pub fn new(cfg: DetectConfig) -> Result<Self, tidegate_base::FieldError> {
        cfg.validate()?;
        let ev = cfg.evidence_max;
        let mut rules: Vec<Box<dyn Rule>> = Vec::new();
        if cfg.port_scan.enabled {
            rules.push(Box::new(portscan::PortScan::new(cfg.port_scan.clone(), ev)));
        }
        if cfg.host_sweep.enabled {
            rules.push(Box::new(hostsweep::HostSweep::new(
                cfg.host_sweep.clone(),
                ev,
            )));
        }
        if cfg.syn_flood.enabled {
            rules.push(Box::new(synflood::SynFlood::new(cfg.syn_flood.clone(), ev)));
        }
        if cfg.volumetric.enabled {
            rules.push(Box::new(volumetric::Volumetric::new(
                cfg.volumetric.clone(),
                cfg.amplification.ports.clone(),
                ev,
            )));
        }
        if cfg.amplification.enabled {
            rules.push(Box::new(volumetric::Amplification::new(
                cfg.amplification.clone(),
                ev,
            )));
        }
        if cfg.dns_tunnel.enabled {
            rules.push(Box::new(tunnel::Tunnel::new(
                tunnel::Carrier::Dns,
                cfg.dns_tunnel.clone(),
                ev,
            )));
        }
        if cfg.icmp_tunnel.enabled {
            rules.push(Box::new(tunnel::Tunnel::new(
                tunnel::Carrier::IcmpEcho,
                cfg.icmp_tunnel.clone(),
                ev,
            )));
        }
        if cfg.exfiltration.enabled {
            rules.push(Box::new(exfil::Exfiltration::new(
                cfg.exfiltration.clone(),
                cfg.inside_cidrs()?,
                ev,
            )));
        }
        if cfg.beaconing.enabled {
            rules.push(Box::new(beacon::Beaconing::new(cfg.beaconing.clone(), ev)));
        }
        if cfg.surge.enabled {
            let floors = cfg
                .volumetric
                .enabled
                .then_some((cfg.volumetric.floor_pps, cfg.volumetric.floor_bps));
            rules.push(Box::new(surge::Surge::new(
                cfg.surge.clone(),
                cfg.inside_cidrs()?,
                floors,
                ev,
            )));
        }
        if cfg.dns_names.enabled {
            rules.push(Box::new(dns_names::DnsNames::new(
                cfg.dns_names.clone(),
                ev,
            )));
        }
        if cfg.upload.enabled {
            rules.push(Box::new(upload::Upload::new(
                cfg.upload.clone(),
                cfg.inside_cidrs()?,
                ev,
            )));
        }
        Ok(Detector {
            rules,
            book: AlertBook::new(cfg.merge_gap_secs * NS, ev),
            lateness_ns: cfg.lateness_secs * NS,
            newest_ns: 0,
            next_expire_ns: 0,
            marks: Vec::new(),
        })
    }

    /// For a live stream, whose caller publishes every [`AlertUpdate`] as it comes:
    /// alerts that close (past the merge gap) are dropped rather than kept for
    /// [`Self::finish`], so memory is bounded by the open alerts however long the stream
    /// runs, and `finish` returns only the alerts still open (their final states).
    pub fn streaming(mut self) -> Self {
        self.book.keep_closed(false);
        self
    }

    /// Feeds one record; returns alerts opened or updated by it: early reports of open
    /// windows that already cross their threshold, then the windows it closed.
    pub fn observe(&mut self, r: &FlowRecord) -> Vec<AlertUpdate> {
        let updates = self.observe_refs(&[r]);
        updates.into_iter().map(|(_, u)| u).collect()
    }

    /// Feeds `records` in order, with the same updates, in the same order, as
    /// [`Self::observe`] on each in turn: for each record, its early reports, then the
    /// windows it closed. (See [`Self::observe_refs`].)
    pub fn observe_batch<R: std::borrow::Borrow<FlowRecord>>(
        &mut self,
        records: &[R],
    ) -> Vec<AlertUpdate> {
        let records: Vec<&FlowRecord> = records.iter().map(|r| r.borrow()).collect();
        let updates = self.observe_refs(&records);
        updates.into_iter().map(|(_, u)| u).collect()
    }

    /// [`Self::observe_batch`], each update with the number of the record that made it
    /// (in order), for a caller that interleaves them with its own per-record output.
    ///
    /// Each rule takes the whole batch before the next rule starts, rather than each
    /// record going through every rule: a rule's state (its tables, its code) stays in
    /// the caches for the batch instead of being evicted by the eleven others at every
    /// record. The result cannot differ, because rules share nothing: rule *j* sees the
    /// same records, watermarks and closes in the same order either way. Only the alert
    /// book is shared, and it takes the reports afterwards, record by record, in the
    /// order one-at-a-time feeding gives it (rule order for the early ones, then the
    /// closed ones sorted as [`Self::close`] sorts them, then the once-a-second sweep).
    pub fn observe_refs(&mut self, records: &[&FlowRecord]) -> Vec<(usize, AlertUpdate)> {
        // The watermark after each record, as one-at-a-time feeding moves it.
        let mut marks = std::mem::take(&mut self.marks);
        marks.clear();
        let mut newest = self.newest_ns;
        for r in records {
            newest = newest.max(r.last);
            marks.push(newest.saturating_sub(self.lateness_ns));
        }
        self.newest_ns = newest;
        let mut reports = Reports::default();
        for rule in &mut self.rules {
            rule.observe_all(records, &marks, &mut reports);
        }
        let Reports {
            mut early,
            mut closed,
            ..
        } = reports;
        // Stable sorts: by record, the early reports keep their rule order; the closed
        // ones take `close`'s order.
        early.sort_by_key(|(i, _)| *i);
        closed.sort_by(|(i, a), (j, b)| {
            (i, a.window_start, a.kind, &a.key).cmp(&(j, b.window_start, b.kind, &b.key))
        });
        let mut updates = Vec::new();
        let (mut early, mut closed) = (early.into_iter().peekable(), closed.into_iter().peekable());
        for (i, &watermark) in marks.iter().enumerate() {
            while let Some(f) = next_at(&mut early, i) {
                updates.push((i, self.book.merge(f)));
            }
            while let Some(f) = next_at(&mut closed, i) {
                updates.push((i, self.book.merge(f)));
            }
            self.expire(watermark);
        }
        self.marks = marks;
        updates
    }

    /// Declares that event time has reached `now_ns` (e.g. on an idle line): closes the
    /// windows that can no longer receive records.
    pub fn advance(&mut self, now_ns: u64) -> Vec<AlertUpdate> {
        self.newest_ns = self.newest_ns.max(now_ns);
        self.close(self.newest_ns.saturating_sub(self.lateness_ns))
    }

    /// What the detectors have learned so far (see [`DetectorState`]).
    pub fn state(&self) -> DetectorState {
        DetectorState {
            version: STATE_VERSION,
            newest_ns: self.newest_ns,
            rules: self
                .rules
                .iter()
                .filter_map(|r| Some((r.name().to_string(), r.save()?)))
                .collect(),
        }
    }

    /// Restores learned state saved by [`Self::state`]; rules not in it (or disabled
    /// now) start fresh. Returns the names of the rules restored; a rule whose saved
    /// state does not parse is an error naming it (the caller decides whether to start
    /// fresh).
    pub fn restore(&mut self, saved: DetectorState) -> Result<Vec<&'static str>, String> {
        if saved.version != STATE_VERSION {
            return Err(format!(
                "detector state version {} (this build reads {STATE_VERSION})",
                saved.version
            ));
        }
        let mut rules = saved.rules;
        let mut restored = Vec::new();
        for rule in &mut self.rules {
            if let Some(v) = rules.remove(rule.name()) {
                rule.restore(v)
                    .map_err(|e| format!("detector state of {}: {e}", rule.name()))?;
                restored.push(rule.name());
            }
        }
        Ok(restored)
    }

    /// Records the rules hold for cold keys until their windows are taught to the
    /// baselines (bounded: see `tiered`), for the collector's metrics.
    pub fn pending_records(&self) -> usize {
        self.rules.iter().map(|r| r.pending()).sum()
    }

    /// Closes every window and returns every alert (only the open ones when
    /// [`Self::streaming`]), ordered by first time then id.
    pub fn finish(&mut self) -> Vec<Alert> {
        self.close(u64::MAX);
        self.book.drain()
    }

    fn close(&mut self, watermark: u64) -> Vec<AlertUpdate> {
        let mut findings = Vec::new();
        for rule in &mut self.rules {
            if watermark >= rule.due() {
                rule.close(watermark, &mut findings);
            } else {
                rule.reached(watermark);
            }
        }
        let updates = if findings.is_empty() {
            Vec::new()
        } else {
            findings.sort_by(|a, b| {
                (a.window_start, a.kind, &a.key).cmp(&(b.window_start, b.kind, &b.key))
            });
            findings.into_iter().map(|f| self.book.merge(f)).collect()
        };
        // Sweeping is only a memory clean-up (merging checks the gap itself), so it runs
        // once per second of event time, not once per record: with thousands of open
        // alerts a per-record sweep would make every record cost O(alerts).
        self.expire(watermark);
        updates
    }

    /// Sweeps closed alerts out of the book, once per second of event time.
    fn expire(&mut self, watermark: u64) {
        if watermark != u64::MAX && watermark >= self.next_expire_ns {
            self.book.expire(watermark);
            self.next_expire_ns = watermark.saturating_add(NS);
        }
    }
}

/// The next of `items` (numbered, in order) when it is numbered `i`. It looks with
/// `peek`, which moves an item only once, into the peeked place: `next_if` moves it out
/// and back for every number it does not match, i.e. for nearly every record of a batch,
/// and a report is 250–290 bytes (a `Detection`, an `AlertUpdate`): ~1.5 KB copied per
/// record over the three loops that take reports by record, ~4 % of detection's time
/// (perf, bench/src/bin/collector_e2e.rs).
pub fn next_at<T, I: Iterator<Item = (usize, T)>>(
    items: &mut std::iter::Peekable<I>,
    i: usize,
) -> Option<T> {
    if items.peek().is_some_and(|(j, _)| *j == i) {
        items.next().map(|(_, t)| t)
    } else {
        None
    }
}

#[cfg(test)]
mod early_tests {
    use super::*;

    fn syn(i: u32, t: u64) -> FlowRecord {
        FlowRecord {
            src: std::net::IpAddr::from([198, 51, (i >> 8) as u8, i as u8]),
            dst: "192.0.2.80".parse().unwrap(),
            sport: 1024 + (i % 60_000) as u16,
            dport: 443,
            proto: 6,
            packets: 1,
            bytes: 40,
            first: t,
            last: t,
            tcp_flags: SYN,
            line: "l".into(),
            ..Default::default()
        }
    }

    #[test]
    fn records_held_for_cold_keys_are_counted_until_their_windows_are_taught() {
        let mut d = Detector::new(DetectConfig::default()).unwrap();
        let start = 1_700_000_000 * NS;
        // 300 one-packet flows to one target, a millisecond apart: far below the
        // volumetric floors, so its key stays cold and holds them as pending records.
        for i in 0..300u32 {
            d.observe(&syn(i, start + u64::from(i) * 1_000_000));
        }
        assert_eq!(d.pending_records(), 300);
        // Ten minutes of event time later, their windows have been taught.
        d.observe(&syn(0, start + 600 * NS));
        assert_eq!(d.pending_records(), 1);
        d.finish();
        assert_eq!(d.pending_records(), 0);
    }

    #[test]
    fn a_live_stream_keeps_only_open_alerts_and_finish_returns_those() {
        let start = 1_700_000_000 * NS;
        let run = |d: Detector| {
            let mut d = d;
            let mut published = Vec::new();
            for i in 0..5_000u32 {
                published.extend(d.observe(&syn(i, start + u64::from(i) * 1_000_000)));
            }
            // Long after the flood: its alert closes (past the merge gap).
            let cfg = DetectConfig::default();
            let later = start + (cfg.merge_gap_secs + cfg.lateness_secs + 600) * NS;
            published.extend(d.advance(later));
            published.extend(d.advance(later + 2 * NS));
            (published, d)
        };
        let (published, mut kept) = run(Detector::new(DetectConfig::default()).unwrap());
        let flood = |a: &Alert| a.kind == AlertKind::SynFlood;
        assert!(published.iter().any(|u| flood(&u.alert)));
        assert_eq!(kept.finish().iter().filter(|a| flood(a)).count(), 1);

        let (live_published, mut live) =
            run(Detector::new(DetectConfig::default()).unwrap().streaming());
        assert_eq!(live_published, published, "the same states are published");
        assert!(live.book.closed.is_empty());
        assert_eq!(live.finish().iter().filter(|a| flood(a)).count(), 0);

        // An alert still open at the end is returned by finish.
        let mut open = Detector::new(DetectConfig::default()).unwrap().streaming();
        for i in 0..5_000u32 {
            open.observe(&syn(i, start + u64::from(i) * 1_000_000));
        }
        assert_eq!(open.finish().iter().filter(|a| flood(a)).count(), 1);
    }

    #[test]
    fn a_flood_is_reported_while_its_window_is_still_open_and_confirmed_at_close() {
        let mut d = Detector::new(DetectConfig::default()).unwrap();
        let start = 1_700_000_000 * NS;
        let mut early = None;
        for i in 0..5_000u32 {
            for u in d.observe(&syn(i, start + u64::from(i) * 1_000_000)) {
                if u.alert.kind == AlertKind::SynFlood && early.is_none() {
                    early = Some((i, u));
                }
            }
        }
        let (at, first) = early.expect("no early warning");
        assert!(first.new);
        // min_syn_pps × window: reported as soon as the count crosses it, 75 s of
        // lateness before the window could close.
        let cfg = DetectConfig::default();
        let need = (cfg.syn_flood.min_syn_pps * cfg.syn_flood.window_secs as f64) as u32;
        assert!(at + 1 >= need && at < need + 10, "reported at record {at}");
        let all = d.finish();
        let flood: Vec<_> = all
            .iter()
            .filter(|a| a.kind == AlertKind::SynFlood)
            .collect();
        assert_eq!(flood.len(), 1);
        assert_eq!(flood[0].id, first.alert.id);
        assert!(flood[0].measured > first.alert.measured);
        assert_eq!(flood[0].evidence.len(), cfg.evidence_max.min(5_000));
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use std::net::IpAddr;

    /// Feeding one record the way `observe` did before batches: every rule takes the
    /// record, the early reports go to the book, then every rule closes (or hears of the
    /// watermark). The reference the batched path must match.
    /// Returns the updates and how many of them are early reports (the first ones).
    fn observe_record_major(d: &mut Detector, r: &FlowRecord) -> (Vec<AlertUpdate>, usize) {
        let mut early = Vec::new();
        for rule in &mut d.rules {
            rule.observe(r);
            rule.early(r, &mut early);
        }
        let mut updates: Vec<AlertUpdate> = early.into_iter().map(|f| d.book.merge(f)).collect();
        let n_early = updates.len();
        d.newest_ns = d.newest_ns.max(r.last);
        updates.extend(d.close(d.newest_ns.saturating_sub(d.lateness_ns)));
        (updates, n_early)
    }

    fn flow(src: IpAddr, dst: IpAddr, ports: (u16, u16), proto: u8, t: u64) -> FlowRecord {
        FlowRecord {
            src,
            dst,
            sport: ports.0,
            dport: ports.1,
            proto,
            packets: 1,
            bytes: 60,
            first: t,
            last: t,
            tcp_flags: if proto == 6 { SYN } else { 0 },
            line: "l".into(),
            ..Default::default()
        }
    }

    /// Two hours of a port scan, a host sweep, SYN floods, a DNS tunnel, a beacon and
    /// background traffic, interleaved and up to 40 s out of order: many rules report,
    /// often after the same record (early reports beside windows closing).
    fn mixed() -> Vec<FlowRecord> {
        let t0 = 1_700_000_000 * NS;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut v = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for k in 0..7200u64 {
            let t = t0 + k * NS;
            // Background: inside hosts talking to the world and to each other.
            for _ in 0..2 {
                let h = rnd();
                let mut r = flow(
                    ip(&format!("10.0.{}.{}", h % 4, 1 + (h >> 8) % 200)),
                    ip(&format!("198.51.100.{}", 1 + (h >> 16) % 50)),
                    (
                        40_000 + (h >> 24) as u16 % 1000,
                        [443, 80, 53][(h >> 40) as usize % 3],
                    ),
                    if (h >> 40) % 3 == 2 { 17 } else { 6 },
                    t.saturating_sub((h >> 44) % 40 * NS),
                );
                r.tcp_flags = if r.proto == 6 { SYN | ACK } else { 0 };
                r.packets = 1 + (h >> 50) % 40;
                r.bytes = r.packets * 700;
                r.last = r.first + (h >> 32) % 20 * NS;
                v.push(r);
            }
            // A port scan every 20 minutes, a sweep every 30, from changing sources.
            if k % 1200 < 60 {
                let s = ip(&format!("203.0.113.{}", 1 + k / 1200));
                let mut r = flow(s, ip("10.0.0.7"), (55_000, 1 + (k % 1200) as u16 * 3), 6, t);
                if k % 1200 == 5 {
                    // The probe that crosses the threshold (an early report) ends two
                    // minutes later, moving event time on: windows close after it too.
                    r.last += 120 * NS;
                }
                v.push(r);
            }
            if k % 1800 < 40 {
                let s = ip(&format!("203.0.113.{}", 100 + k / 1800));
                let d = ip(&format!("10.0.2.{}", 1 + k % 1800));
                v.push(flow(s, d, (56_000, 22), 6, t));
            }
            // A SYN flood of 150/s for 20 s each half hour.
            if k % 1800 >= 600 && k % 1800 < 620 {
                for j in 0..150u64 {
                    let s = ip(&format!("192.0.2.{}", 1 + j % 250));
                    v.push(flow(
                        s,
                        ip("10.0.0.80"),
                        (1024 + j as u16, 443),
                        6,
                        t + j * 6_000_000,
                    ));
                }
            }
            // A DNS tunnel: large queries every 2 s.
            if k % 2 == 0 {
                let mut r = flow(ip("10.0.0.50"), ip("198.51.100.53"), (50_000, 53), 17, t);
                r.bytes = 180;
                v.push(r);
            }
            // A beacon every 60 s.
            if k % 60 == 0 {
                let mut r = flow(
                    ip("10.0.0.66"),
                    ip("198.51.100.99"),
                    (50_000 + k as u16 % 7, 443),
                    6,
                    t,
                );
                r.tcp_flags = SYN | ACK;
                v.push(r);
            }
        }
        v
    }

    #[test]
    fn batches_of_any_size_report_and_learn_exactly_what_record_by_record_does() {
        let records = mixed();
        let mut one = Detector::new(DetectConfig::default()).unwrap();
        let mut reference = Vec::new();
        // Records after which some rule reported early and another closed windows.
        let mut both_on_one_record = 0;
        for r in &records {
            let (u, early) = observe_record_major(&mut one, r);
            both_on_one_record += usize::from(early > 0 && u.len() > early);
            reference.extend(u);
        }
        let kinds: std::collections::BTreeSet<_> = reference.iter().map(|u| u.alert.kind).collect();
        assert!(
            kinds.len() >= 4 && reference.len() >= 20 && both_on_one_record > 0,
            "the mix should make several rules report, early and closing after one record: \
             {} updates of {kinds:?}, {both_on_one_record} records with both",
            reference.len()
        );
        for sizes in [&[1usize][..], &[3, 17, 256], &[4096, 5], &[100_000]] {
            let mut d = Detector::new(DetectConfig::default()).unwrap();
            let (mut got, mut at) = (Vec::new(), 0);
            for size in sizes.iter().cycle() {
                if at == records.len() {
                    break;
                }
                let end = (at + size).min(records.len());
                got.extend(d.observe_batch(&records[at..end]));
                at = end;
            }
            assert_eq!(got.len(), reference.len(), "batches of {sizes:?}");
            for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                assert_eq!(g, r, "update {i}, batches of {sizes:?}");
            }
            assert_eq!(
                d.state(),
                one.state(),
                "learned state, batches of {sizes:?}"
            );
            assert_eq!(d.pending_records(), one.pending_records());
            assert_eq!(d.newest_ns, one.newest_ns);
        }
        // And the alerts left at the end.
        let mut d = Detector::new(DetectConfig::default()).unwrap();
        d.observe_batch(&records);
        assert_eq!(d.finish(), one.finish());
    }
}
