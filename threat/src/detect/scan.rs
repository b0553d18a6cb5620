//! The shape the distinct-count rules share (port scan, host sweep): probe flows counted
//! per key and window with the distinct values they reach (ports, hosts), reported once a
//! window reaches `min_distinct` — early while it is still open, then at its close.

use std::hash::Hash;
use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::alert::{AlertKind, Detection, Endpoint};
use super::config::ScanConfig;
use super::window::{Acc, Windows};
use super::{NS, is_probe};
use crate::Severity;

/// What a rule says about one of its windows.
pub(crate) struct Report {
    pub kind: AlertKind,
    pub key: String,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub port: Option<u16>,
    pub unit: &'static str,
    pub description: String,
}

/// Builds the report of a window from its key, accumulator and distinct count.
pub(crate) type Describe<K> = fn(&ScanConfig, &K, &Acc, f64) -> Report;

/// Probe flows per key and window, with their distinct values.
pub(crate) struct DistinctScan<K: Eq + Hash + Clone> {
    cfg: ScanConfig,
    evidence_max: usize,
    windows: Windows<K>,
    describe: Describe<K>,
}

impl<K: Eq + Hash + Clone> DistinctScan<K> {
    pub fn new(cfg: ScanConfig, evidence_max: usize, describe: Describe<K>) -> Self {
        let windows = Windows::new(cfg.window_secs * NS);
        DistinctScan {
            cfg,
            evidence_max,
            windows,
            describe,
        }
    }

    /// Counts `r` under `key` with the distinct value `value`, if it is a probe.
    pub fn observe(&mut self, r: &FlowRecord, key: K, value: u64) {
        if is_probe(r, self.cfg.probe_max_packets) {
            self.windows.add(r, key, self.evidence_max).mark(value);
        }
    }

    /// See [`super::Rule::due`].
    pub fn due(&self) -> u64 {
        self.windows.due()
    }

    /// Reports the windows that close by `watermark` and reach the threshold.
    pub fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        for (w, key, acc) in self.windows.drain_closed(watermark) {
            out.extend(self.finding(w, &key, acc));
        }
    }

    /// Reports `key`'s open window holding `r` the first time it reaches the threshold.
    pub fn early(&mut self, r: &FlowRecord, key: &K, out: &mut Vec<Detection>) {
        if !is_probe(r, self.cfg.probe_max_packets) {
            return;
        }
        let w = self.windows.start_of(r.first);
        let min = self.cfg.min_distinct;
        if let Some(acc) = self
            .windows
            .take_early(w, key, |a| a.distinct() as u64 >= min)
        {
            out.extend(self.finding(w, key, acc));
        }
    }

    /// The report on one window, if it reaches the threshold.
    fn finding(&self, w: u64, key: &K, mut acc: Acc) -> Option<Detection> {
        let measured = acc.distinct() as f64;
        let threshold = self.cfg.min_distinct as f64;
        if measured < threshold {
            return None;
        }
        let r = (self.describe)(&self.cfg, key, &acc, measured);
        Some(Detection {
            kind: r.kind,
            key: r.key,
            window_start: w,
            severity: Severity::scaled(Severity::Low, measured, threshold),
            first_ns: acc.first_ns,
            last_ns: acc.last_ns,
            src: Some(r.src),
            dst: Some(r.dst),
            port: r.port,
            line: self.windows.line(&acc),
            measured,
            threshold,
            unit: r.unit,
            description: r.description,
            volume: Some(super::alert::Volume::of(&acc)),
            evidence: acc.take_evidence(),
        })
    }
}

/// A distinct value per address: the address itself for IPv4, a hash of it for IPv6.
pub(crate) fn addr_value(a: IpAddr) -> u64 {
    match a {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => super::alert::fnv1a(&[&v6.octets()]) | 1 << 63,
    }
}
