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
        let acc = self
            .windows
            .add(r, (r.src, r.proto, r.dport), self.evidence_max);
        acc.mark(host_value(r.dst));
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
            .take_early(w, &key, |a| a.distinct() as u64 >= min)
        {
            out.extend(finding(&self.cfg, w, key, acc));
        }
    }
}

/// A distinct value per host: the address itself for IPv4, a hash of it for IPv6.
fn host_value(a: IpAddr) -> u64 {
    match a {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => fnv1a(&[&v6.octets()]) | 1 << 63,
    }
}

/// The report on one window, if it crosses the threshold.
fn finding(
    cfg: &ScanConfig,
    w: u64,
    (src, proto, port): (IpAddr, u8, u16),
    mut acc: Acc,
) -> Option<Finding> {
    let hosts = acc.distinct() as f64;
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
        line: acc.line(),
        measured: hosts,
        threshold,
        unit: "hosts",
        description: format!(
            "{src} probed port {port} (protocol {proto}) on {hosts} hosts in {}s",
            cfg.window_secs
        ),
        evidence: acc.take_evidence(),
    })
}
