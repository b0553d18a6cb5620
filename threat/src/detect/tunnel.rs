//! Tunnelling from flow features: many packets with a large average size from one sender
//! to one receiver, for a protocol that normally carries small messages — DNS queries
//! (client → resolver) or ICMP echo requests.

use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::alert::{AlertKind, Detection, Endpoint};
use super::config::TunnelConfig;
use super::window::Windows;
use super::{NS, Rule};
use crate::Severity;

/// Which carrier a [`Tunnel`] rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// DNS queries (TCP or UDP to port 53).
    Dns,
    /// ICMP / ICMPv6 echo requests.
    IcmpEcho,
}

impl Carrier {
    fn carries(self, r: &FlowRecord) -> bool {
        match self {
            Carrier::Dns => r.dport == 53 && matches!(r.proto, 6 | 17),
            Carrier::IcmpEcho => matches!((r.proto, r.icmp_type), (1, Some(8)) | (58, Some(128))),
        }
    }

    fn kind(self) -> AlertKind {
        match self {
            Carrier::Dns => AlertKind::DnsTunnel,
            Carrier::IcmpEcho => AlertKind::IcmpTunnel,
        }
    }

    fn port(self) -> Option<u16> {
        match self {
            Carrier::Dns => Some(53),
            Carrier::IcmpEcho => None,
        }
    }

    /// (what the packets are, what makes them suspicious), for the description.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Carrier::Dns => ("DNS query packets", "tunnel-like volume and query size"),
            Carrier::IcmpEcho => ("ICMP echo requests", "tunnel-like payloads"),
        }
    }
}

/// Carrier packets and bytes per (sender, receiver) and window.
pub(crate) struct Tunnel {
    carrier: Carrier,
    cfg: TunnelConfig,
    evidence_max: usize,
    windows: Windows<(IpAddr, IpAddr)>,
}

impl Tunnel {
    pub fn new(carrier: Carrier, cfg: TunnelConfig, evidence_max: usize) -> Self {
        let windows = Windows::new(cfg.window_secs * NS);
        Tunnel {
            carrier,
            cfg,
            evidence_max,
            windows,
        }
    }
}

impl Rule for Tunnel {
    fn observe(&mut self, r: &FlowRecord) {
        if !self.carrier.carries(r) {
            return;
        }
        self.windows.add(r, (r.src, r.dst), self.evidence_max);
    }

    fn due(&self) -> u64 {
        self.windows.due()
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        let (what, why) = self.carrier.words();
        for (w, (src, dst), mut acc) in self.windows.drain_closed(watermark) {
            let mean = acc.bytes / acc.packets.max(1.0);
            let threshold = self.cfg.min_bytes as f64;
            if acc.packets < self.cfg.min_packets as f64
                || mean < self.cfg.min_mean_packet_bytes
                || acc.bytes < threshold
            {
                continue;
            }
            out.push(Detection {
                kind: self.carrier.kind(),
                key: format!("{src}>{dst}"),
                window_start: w,
                severity: Severity::scaled(Severity::Medium, acc.bytes, threshold),
                first_ns: acc.first_ns,
                last_ns: acc.last_ns,
                src: Some(Endpoint::Addr(src)),
                dst: Some(Endpoint::Addr(dst)),
                port: self.carrier.port(),
                line: self.windows.line(&acc),
                measured: acc.bytes,
                threshold,
                unit: "bytes",
                description: format!(
                    "{src} sent {:.0} {what} ({:.0} bytes, mean {mean:.0} bytes) to {dst} in {}s: {why}",
                    acc.packets, acc.bytes, self.cfg.window_secs
                ),
                volume: Some(super::alert::Volume::of(&acc)),
                evidence: acc.take_evidence(),
            });
        }
    }
}
