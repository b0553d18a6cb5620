//! SYN flood: SYNs that never complete a handshake, towards one target.

use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::alert::{AlertKind, Detection, Endpoint};
use super::config::SynFloodConfig;
use super::window::{Acc, Windows};
use super::{ACK, NS, Rule, SYN, main_dport};
use crate::Severity;

/// More distinct destination ports than this make the SYNs a scan, not a flood.
const SCAN_PORTS: usize = 20;

/// Uncompleted SYN packets per target and window.
pub(crate) struct SynFlood {
    cfg: SynFloodConfig,
    evidence_max: usize,
    windows: Windows<IpAddr>,
}

impl SynFlood {
    pub fn new(cfg: SynFloodConfig, evidence_max: usize) -> Self {
        let windows = Windows::new(cfg.window_secs * NS);
        SynFlood {
            cfg,
            evidence_max,
            windows,
        }
    }
}

impl Rule for SynFlood {
    fn observe(&mut self, r: &FlowRecord) {
        if r.proto != 6 || r.tcp_flags & (SYN | ACK) != SYN {
            return;
        }
        self.windows.add_spread(r, r.dst, self.evidence_max);
        if let Some(acc) = self.windows.get_mut(r.first, &r.dst) {
            acc.mark(u64::from(r.dport));
        }
    }

    fn due(&self) -> u64 {
        self.windows.due()
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        for (w, dst, acc) in self.windows.drain_closed(watermark) {
            out.extend(finding(&self.cfg, &self.windows, w, dst, acc));
        }
    }

    fn early(&mut self, r: &FlowRecord, out: &mut Vec<Detection>) {
        if r.proto != 6 || r.tcp_flags & (SYN | ACK) != SYN {
            return;
        }
        let secs = self.cfg.window_secs as f64;
        let (a, b) = (
            self.windows.start_of(r.first),
            self.windows.start_of(r.last.max(r.first)),
        );
        for w in if a == b { vec![a] } else { vec![a, b] } {
            let min = self.cfg.min_syn_pps;
            if let Some(acc) = self.windows.take_early(w, &r.dst, |a| {
                a.packets / secs >= min && a.distinct() <= SCAN_PORTS
            }) {
                out.extend(finding(&self.cfg, &self.windows, w, r.dst, acc));
            }
        }
    }
}

/// The report on one window, if it crosses the threshold.
fn finding(
    cfg: &SynFloodConfig,
    windows: &Windows<IpAddr>,
    w: u64,
    dst: IpAddr,
    mut acc: Acc,
) -> Option<Detection> {
    let secs = cfg.window_secs as f64;
    let pps = acc.packets / secs;
    let threshold = cfg.min_syn_pps;
    // SYNs spread over many ports are a scan (the port-scan rule's business).
    if pps < threshold || acc.distinct() > SCAN_PORTS {
        return None;
    }
    let port = main_dport(acc.evidence());
    let sources = acc.sources();
    Some(Detection {
        kind: AlertKind::SynFlood,
        key: dst.to_string(),
        window_start: w,
        severity: Severity::scaled(Severity::High, pps, threshold),
        first_ns: acc.first_ns,
        last_ns: acc.last_ns,
        src: Some(acc.source_endpoint()),
        dst: Some(Endpoint::Addr(dst)),
        port,
        line: windows.line(&acc),
        measured: pps,
        threshold,
        unit: "syn/s",
        description: format!(
            "{pps:.0} uncompleted SYN/s towards {dst}{} from {sources} sources",
            port.map(|p| format!(" port {p}")).unwrap_or_default()
        ),
        volume: Some(super::alert::Volume::of(&acc)),
        evidence: acc.take_evidence(),
    })
}
