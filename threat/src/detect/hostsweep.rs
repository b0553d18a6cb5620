//! Host sweep: one source probing one port on many hosts.

use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::Rule;
use super::alert::{AlertKind, Detection, Endpoint};
use super::config::ScanConfig;
use super::scan::{DistinctScan, Report, addr_value};
use super::window::Acc;

/// Distinct targets probed per (source, protocol, port) and window.
pub(crate) struct HostSweep(DistinctScan<(IpAddr, u8, u16)>);

impl HostSweep {
    pub fn new(cfg: ScanConfig, evidence_max: usize) -> Self {
        HostSweep(DistinctScan::new(cfg, evidence_max, describe))
    }
}

impl Rule for HostSweep {
    fn observe(&mut self, r: &FlowRecord) {
        self.0
            .observe(r, (r.src, r.proto, r.dport), addr_value(r.dst));
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        self.0.close(watermark, out);
    }

    fn due(&self) -> u64 {
        self.0.due()
    }

    fn early(&mut self, r: &FlowRecord, out: &mut Vec<Detection>) {
        self.0.early(r, &(r.src, r.proto, r.dport), out);
    }
}

fn describe(
    cfg: &ScanConfig,
    &(src, proto, port): &(IpAddr, u8, u16),
    _: &Acc,
    hosts: f64,
) -> Report {
    Report {
        kind: AlertKind::HostSweep,
        key: format!("{src}>{proto}/{port}"),
        src: Endpoint::Addr(src),
        dst: Endpoint::Many(format!("{hosts} hosts")),
        port: Some(port),
        unit: "hosts",
        description: format!(
            "{src} probed port {port} (protocol {proto}) on {hosts} hosts in {}s",
            cfg.window_secs
        ),
    }
}
