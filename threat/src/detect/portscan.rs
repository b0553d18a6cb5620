//! Port scan: one source probing many destination ports of one target.

use std::net::IpAddr;

use tidegate_wire::record::FlowRecord;

use super::Rule;
use super::alert::{AlertKind, Detection, Endpoint};
use super::config::ScanConfig;
use super::scan::{DistinctScan, Report};
use super::window::Acc;

/// Distinct destination ports probed per (source, target) and window.
pub(crate) struct PortScan(DistinctScan<(IpAddr, IpAddr)>);

impl PortScan {
    pub fn new(cfg: ScanConfig, evidence_max: usize) -> Self {
        PortScan(DistinctScan::new(cfg, evidence_max, describe))
    }
}

impl Rule for PortScan {
    fn observe(&mut self, r: &FlowRecord) {
        let port = u64::from(r.proto) << 16 | u64::from(r.dport);
        self.0.observe(r, (r.src, r.dst), port);
    }

    fn close(&mut self, watermark: u64, out: &mut Vec<Detection>) {
        self.0.close(watermark, out);
    }

    fn due(&self) -> u64 {
        self.0.due()
    }

    fn early(&mut self, r: &FlowRecord, out: &mut Vec<Detection>) {
        self.0.early(r, &(r.src, r.dst), out);
    }
}

fn describe(cfg: &ScanConfig, &(src, dst): &(IpAddr, IpAddr), acc: &Acc, ports: f64) -> Report {
    Report {
        kind: AlertKind::PortScan,
        key: format!("{src}>{dst}"),
        src: Endpoint::Addr(src),
        dst: Endpoint::Addr(dst),
        port: None,
        unit: "ports",
        description: format!(
            "{src} probed {ports} ports of {dst} in {}s ({} probe flows)",
            cfg.window_secs, acc.flows
        ),
    }
}
