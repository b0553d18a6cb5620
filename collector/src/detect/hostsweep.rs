//! Host sweep: one source probing one port on many hosts.

use std::net::IpAddr;

use tidegate_common::record::FlowRecord;

use super::alert::{AlertKind, Endpoint, Finding, Severity, fnv1a};
use super::config::ScanConfig;
use super::window::{Acc, Windows};
use super::{NS, Rule, is_probe};

/// Distinct targets probed per (source, protocol, port) and window.
pub(crate) struct HostSweep {
    cfg: ScanConfig,
    evidence_max: usize,
    windows: Windows<(IpAddr, u8, u16)>,
}

impl HostSweep {
    pub fn new(cfg: ScanConfig, evidence_max: usize) -> Self {
        let windows = Windows::new(cfg.window_secs * NS);
        HostSweep {
            cfg,
            evidence_max,
            windows,
        }
    }
}

impl Rule for HostSweep {
    fn observe(&mut self, r: &FlowRecord) {
        if !is_probe(r, self.cfg.probe_max_packets) {
            return;
        }
        let acc = self.windows.at(r.first, (r.src, r.proto, r.dport));
        acc.add(r, r.packets as f64, r.bytes as f64, self.evidence_max);
        acc.mark(fnv1a(&[r.dst.to_string().as_bytes()]));
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
        let (w, key) = (self.windows.start_of(r.first), (r.src, r.proto, r.dport));
        let min = self.cfg.min_distinct;
        if let Some(acc) = self
            .windows
            .take_early(w, &key, |a| a.distinct.len() as u64 >= min)
        {
            out.extend(finding(&self.cfg, w, key, acc));
        }
    }
}

/// The report on one window, if it crosses the threshold.
fn finding(
    cfg: &ScanConfig,
    w: u64,
    (src, proto, port): (IpAddr, u8, u16),
    acc: Acc,
) -> Option<Finding> {
    let hosts = acc.distinct.len() as f64;
    let threshold = cfg.min_distinct as f64;
    if hosts < threshold {
        return None;
    }
    Some(Finding {
        kind: AlertKind::HostSweep,
        key: format!("{src}>{proto}/{port}"),
        window_start: w,
        severity: Severity::scaled(Severity::Low, hosts, threshold),
        first_ns: acc.first_ns,
        last_ns: acc.last_ns,
        src: Some(Endpoint::Addr(src)),
        dst: Some(Endpoint::Many(format!("{hosts} hosts"))),
        port: Some(port),
        line: acc.line,
        measured: hosts,
        threshold,
        unit: "hosts",
        description: format!(
            "{src} probed port {port} (protocol {proto}) on {hosts} hosts in {}s",
            cfg.window_secs
        ),
        evidence: acc.evidence,
    })
}
