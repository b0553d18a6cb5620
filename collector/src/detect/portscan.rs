//! Port scan: one source probing many destination ports of one target.

use std::net::IpAddr;

use tidegate_common::record::FlowRecord;

use super::alert::{AlertKind, Endpoint, Finding, Severity};
use super::config::ScanConfig;
use super::window::{Acc, Windows};
use super::{NS, Rule, is_probe};

/// Distinct destination ports probed per (source, target) and window.
pub(crate) struct PortScan {
    cfg: ScanConfig,
    evidence_max: usize,
    windows: Windows<(IpAddr, IpAddr)>,
}

impl PortScan {
    pub fn new(cfg: ScanConfig, evidence_max: usize) -> Self {
        let windows = Windows::new(cfg.window_secs * NS);
        PortScan {
            cfg,
            evidence_max,
            windows,
        }
    }
}

impl Rule for PortScan {
    fn observe(&mut self, r: &FlowRecord) {
        if !is_probe(r, self.cfg.probe_max_packets) {
            return;
        }
        let acc = self.windows.add(r, (r.src, r.dst), self.evidence_max);
        acc.mark(u64::from(r.proto) << 16 | u64::from(r.dport));
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Finding>) {
        for (w, key, acc) in self.windows.drain_closed(watermark) {
            out.extend(finding(&self.cfg, w, key, acc));
        }
    }

    fn early(&mut self, r: &FlowRecord, out: &mut Vec<Finding>) {
        if !is_probe(r, self.cfg.probe_max_packets) {
            return;
        }
        let (w, key) = (self.windows.start_of(r.first), (r.src, r.dst));
        let min = self.cfg.min_distinct;
        if let Some(acc) = self
            .windows
            .take_early(w, &key, |a| a.distinct() as u64 >= min)
        {
            out.extend(finding(&self.cfg, w, key, acc));
        }
    }
}

/// The report on one window, if it crosses the threshold.
fn finding(
    cfg: &ScanConfig,
    w: u64,
    (src, dst): (IpAddr, IpAddr),
    mut acc: Acc,
) -> Option<Finding> {
    let ports = acc.distinct() as f64;
    let threshold = cfg.min_distinct as f64;
    if ports < threshold {
        return None;
    }
    Some(Finding {
        kind: AlertKind::PortScan,
        key: format!("{src}>{dst}"),
        window_start: w,
        severity: Severity::scaled(Severity::Low, ports, threshold),
        first_ns: acc.first_ns,
        last_ns: acc.last_ns,
        src: Some(Endpoint::Addr(src)),
        dst: Some(Endpoint::Addr(dst)),
        port: None,
        line: acc.line(),
        measured: ports,
        threshold,
        unit: "ports",
        description: format!(
            "{src} probed {ports} ports of {dst} in {}s ({} probe flows)",
            cfg.window_secs, acc.flows
        ),
        evidence: acc.take_evidence(),
    })
}
