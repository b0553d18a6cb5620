//! DNS tunnelling from flow features: many queries with large average size from one
//! client to one resolver.

use std::net::IpAddr;

use tidegate_common::record::FlowRecord;

use super::alert::{AlertKind, Endpoint, Finding, Severity};
use super::config::TunnelConfig;
use super::window::Windows;
use super::{NS, Rule};

/// Query packets and bytes per (client, resolver) and window.
pub(crate) struct DnsTunnel {
    cfg: TunnelConfig,
    evidence_max: usize,
    windows: Windows<(IpAddr, IpAddr)>,
}

impl DnsTunnel {
    pub fn new(cfg: TunnelConfig, evidence_max: usize) -> Self {
        let windows = Windows::new(cfg.window_secs * NS);
        DnsTunnel {
            cfg,
            evidence_max,
            windows,
        }
    }
}

impl Rule for DnsTunnel {
    fn observe(&mut self, r: &FlowRecord) {
        if r.dport != 53 || !matches!(r.proto, 6 | 17) {
            return;
        }
        self.windows.at(r.first, (r.src, r.dst)).add(
            r,
            r.packets as f64,
            r.bytes as f64,
            self.evidence_max,
        );
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Finding>) {
        for (w, (src, dst), acc) in self.windows.drain_closed(watermark) {
            let mean = acc.bytes / acc.packets.max(1.0);
            let threshold = self.cfg.min_bytes as f64;
            if acc.packets < self.cfg.min_packets as f64
                || mean < self.cfg.min_mean_packet_bytes
                || acc.bytes < threshold
            {
                continue;
            }
            out.push(Finding {
                kind: AlertKind::DnsTunnel,
                key: format!("{src}>{dst}"),
                window_start: w,
                severity: Severity::scaled(Severity::Medium, acc.bytes, threshold),
                first_ns: acc.first_ns,
                last_ns: acc.last_ns,
                src: Some(Endpoint::Addr(src)),
                dst: Some(Endpoint::Addr(dst)),
                port: Some(53),
                line: acc.line,
                measured: acc.bytes,
                threshold,
                unit: "bytes",
                description: format!(
                    "{src} sent {:.0} DNS query packets ({:.0} bytes, mean {mean:.0} bytes) to \
                     {dst} in {}s: tunnel-like volume and query size",
                    acc.packets, acc.bytes, self.cfg.window_secs
                ),
                evidence: acc.evidence,
            });
        }
    }
}
