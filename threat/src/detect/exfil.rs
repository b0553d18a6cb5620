//! Exfiltration-like transfers: outbound bytes from an inside host to a foreign
//! destination far above that host's baseline.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::alert::{AlertKind, Detection, Endpoint};
use super::config::ExfilConfig;
use super::window::Windows;
use super::{NS, Rule};
use crate::Severity;
use tidegate_base::Cidr;

/// Inside hosts whose baseline is kept (bounds memory).
const BASELINES_MAX: usize = 1 << 18;

/// Outbound bytes per (inside host, foreign host) and window, against the inside host's
/// moving average of outbound bytes per window.
pub(crate) struct Exfiltration {
    cfg: ExfilConfig,
    inside: Vec<Cidr>,
    evidence_max: usize,
    windows: Windows<(IpAddr, IpAddr)>,
    /// (moving average of bytes per window, windows seen) per inside host.
    baselines: BTreeMap<IpAddr, (f64, u64)>,
}

impl Exfiltration {
    pub fn new(cfg: ExfilConfig, inside: Vec<Cidr>, evidence_max: usize) -> Self {
        let windows = Windows::new(cfg.window_secs * NS);
        Exfiltration {
            cfg,
            inside,
            evidence_max,
            windows,
            baselines: BTreeMap::new(),
        }
    }

    fn is_inside(&self, ip: IpAddr) -> bool {
        self.inside.iter().any(|c| c.contains(ip))
    }
}

impl Rule for Exfiltration {
    fn observe(&mut self, r: &FlowRecord) {
        if !self.is_inside(r.src) || self.is_inside(r.dst) {
            return;
        }
        // Only windows past a quarter of the floor can report (a learned threshold is
        // never below it): only those keep sample flows.
        let gate = self.cfg.floor_bytes as f64 / 4.0;
        self.windows
            .add_spread_gated(r, (r.src, r.dst), self.evidence_max, |acc| {
                acc.bytes >= gate
            });
    }

    fn due(&self) -> u64 {
        self.windows.due()
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        let closed = self.windows.drain_closed(watermark);
        // Per (window, inside host): total outbound bytes, to update the baseline once.
        let mut totals: BTreeMap<(u64, IpAddr), f64> = BTreeMap::new();
        for (w, (src, _), acc) in &closed {
            *totals.entry((*w, *src)).or_default() += acc.bytes;
        }
        for (w, (src, dst), mut acc) in closed {
            let (avg, seen) = self.baselines.get(&src).copied().unwrap_or((0.0, 0));
            let floor = self.cfg.floor_bytes as f64;
            let threshold = if seen >= 3 {
                floor.max(avg * self.cfg.baseline_factor)
            } else {
                floor
            };
            if acc.bytes < threshold {
                continue;
            }
            out.push(Detection {
                kind: AlertKind::Exfiltration,
                key: format!("{src}>{dst}"),
                window_start: w,
                severity: Severity::scaled(Severity::High, acc.bytes, threshold),
                first_ns: acc.first_ns,
                last_ns: acc.last_ns,
                src: Some(Endpoint::Addr(src)),
                dst: Some(Endpoint::Addr(dst)),
                port: super::main_dport(acc.evidence()),
                line: self.windows.line(&acc),
                measured: acc.bytes,
                threshold,
                unit: "bytes",
                description: format!(
                    "inside host {src} sent {:.0} bytes to foreign {dst} in {}s (its baseline: \
                     {avg:.0} bytes per window over {seen} windows)",
                    acc.bytes, self.cfg.window_secs
                ),
                volume: Some(super::alert::Volume::of(&acc)),
                evidence: acc.take_evidence(),
            });
        }
        if self.baselines.len() > BASELINES_MAX {
            // Forget the hosts with the least history first.
            let mut seen: Vec<u64> = self.baselines.values().map(|b| b.1).collect();
            seen.sort_unstable();
            let cutoff = seen[seen.len() - BASELINES_MAX / 2];
            self.baselines.retain(|_, b| b.1 >= cutoff);
        }
        for ((_, src), bytes) in totals {
            let a = self.cfg.baseline_alpha;
            let e = self.baselines.entry(src).or_insert((bytes, 0));
            // A window that alerted still teaches the baseline, but only up to its cap.
            let capped = bytes.min(self.cfg.floor_bytes as f64);
            e.0 += a * (capped - e.0);
            e.1 += 1;
        }
    }
}
