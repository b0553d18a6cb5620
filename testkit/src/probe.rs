//! The probe library feeding a collector as `tidegate-probe replay --collector` does, and
//! corpus captures turned into flow records.

use std::{net::SocketAddr, path::Path, time::Duration};

use tidegate_probe::{
    capture::pcap::Replay,
    export::{
        Exporter,
        collector::{CollectorExporter, CollectorOptions, ExportMetrics},
    },
    table::Timeouts,
};
use tidegate_wire::record::FlowRecord;

use crate::{certs::Certs, paths::corpus_pcap};

/// Options for probe `id` sending to `addr`, spooling in `spool` (batches of 2000
/// records, reconnect backoff capped at 500 ms).
pub fn probe_options(certs: &Certs, id: &str, addr: SocketAddr, spool: &Path) -> CollectorOptions {
    let p = certs.probe(id);
    let mut o = CollectorOptions::new(
        addr.to_string(),
        id,
        certs.ca().cert,
        p.cert,
        p.key,
        spool.to_path_buf(),
    );
    o.batch_records = 2000;
    o.backoff_max = Duration::from_millis(500);
    o
}

/// The line a corpus capture is replayed on: its file name up to the first dot.
pub fn capture_line(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

/// Starts an exporter.
pub fn exporter(o: CollectorOptions) -> CollectorExporter {
    CollectorExporter::start(o, ExportMetrics::default()).expect("start exporter")
}

/// The records of one capture file on `line`, as the probe's replay exports them with
/// `timeouts` (a truncated capture gives what was read before the damage).
pub fn replay(path: &Path, line: &str, timeouts: Timeouts) -> Vec<FlowRecord> {
    let mut out: Vec<FlowRecord> = Vec::new();
    let mut r = Replay::new(timeouts);
    r.replay_file(path, line, &mut out)
        .unwrap_or_else(|e| panic!("replay {}: {e}", path.display()));
    r.finish(&mut out).expect("flush the replay");
    out
}

/// The records of corpus capture `name` on `line`, with the probe's default timeouts.
pub fn corpus_records_of(name: &str, line: &str) -> Vec<FlowRecord> {
    replay(&corpus_pcap(name), line, Timeouts::default())
}

/// The flow records of real captures, replayed together by the probe with its default
/// timeouts: `ndpi-1kxun.pcap` (IPv4 and IPv6, untagged) on line `hk-intl-1`,
/// `ndpi-vxlan.pcap` (VLAN 5) on `sg-intl-2`, `ndpi-icmp-tunnel.pcap` (ICMP) on
/// `mo-intl-3`, `ndpi-steam.pcapng` (nanosecond timestamps) on `tw-intl-4`; and keyed
/// by their inner headers (`tunnels = "inner"`), `ndpi-6in4tunnel.pcap` and
/// `ndpi-4in6tunnel.pcap` on `hk-intl-5` (tunnel kind, id and outer endpoints of both
/// families).
pub fn corpus_records() -> Vec<FlowRecord> {
    let mut records = Vec::new();
    let mut replay = Replay::new(Timeouts::default());
    for (file, line) in [
        ("ndpi-1kxun.pcap", "hk-intl-1"),
        ("ndpi-vxlan.pcap", "sg-intl-2"),
        ("ndpi-icmp-tunnel.pcap", "mo-intl-3"),
        ("ndpi-steam.pcapng", "tw-intl-4"),
    ] {
        let path = corpus_pcap(file);
        let report = replay
            .replay_file(&path, line, &mut records)
            .unwrap_or_else(|e| panic!("replay {}: {e}", path.display()));
        assert!(
            report.error.is_none(),
            "{}: {:?}",
            path.display(),
            report.error
        );
    }
    replay.finish(&mut records).expect("flush the replay");
    let mut inner = Replay::new(Timeouts::default());
    inner.set_tunnels(tidegate_common::Tunnels::Inner);
    for file in ["ndpi-6in4tunnel.pcap", "ndpi-4in6tunnel.pcap"] {
        let path = corpus_pcap(file);
        inner
            .replay_file(&path, "hk-intl-5", &mut records)
            .unwrap_or_else(|e| panic!("replay {}: {e}", path.display()));
    }
    inner.finish(&mut records).expect("flush the replay");
    records
}

/// Replays corpus captures (each on a line named after it) into `exporter`, and also
/// returns the records so tests can compare.
pub fn replay_into(files: &[&str], exporter: &mut dyn Exporter) -> Vec<FlowRecord> {
    replay_into_keyed(files, exporter, tidegate_common::Tunnels::Outer)
}

/// [`replay_into`] keying tunnelled packets as `tunnels` says (`Inner`: as a probe with
/// `tunnels = "inner"`).
pub fn replay_into_keyed(
    files: &[&str],
    exporter: &mut dyn Exporter,
    tunnels: tidegate_common::Tunnels,
) -> Vec<FlowRecord> {
    let mut all: Vec<FlowRecord> = Vec::new();
    let mut replay = Replay::new(Timeouts::default());
    replay.set_tunnels(tunnels);
    let mut tee = Tee {
        a: exporter,
        b: &mut all,
    };
    for f in files {
        let path = corpus_pcap(f);
        let r = replay
            .replay_file(&path, capture_line(f), &mut tee)
            .expect("replay");
        assert!(r.error.is_none(), "{f}: {:?}", r.error);
    }
    replay.finish(&mut tee).expect("flush");
    all
}

struct Tee<'a> {
    a: &'a mut dyn Exporter,
    b: &'a mut Vec<FlowRecord>,
}

impl Exporter for Tee<'_> {
    fn export(&mut self, rec: &FlowRecord) -> std::io::Result<()> {
        self.b.push(rec.clone());
        self.a.export(rec)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.a.flush()
    }
}

/// `tidegate-probe replay CAPTURE --collector ADDR` as probe `id` spooling in `spool`
/// (batches of 100 records), as an operator runs it; stdout and stderr piped.
pub fn replay_process(
    certs: &Certs,
    id: &str,
    addr: SocketAddr,
    capture: &Path,
    spool: &Path,
) -> std::process::Child {
    let me = certs.probe(id);
    std::process::Command::new(crate::paths::bin("tidegate-probe"))
        .arg("replay")
        .arg(capture)
        .args(["--probe-id", id, "--batch-records", "100"])
        .args(["--collector", &addr.to_string()])
        .args(["--tls-server-name", "localhost"])
        .arg("--tls-ca")
        .arg(certs.ca().cert)
        .arg("--tls-cert")
        .arg(me.cert)
        .arg("--tls-key")
        .arg(me.key)
        .arg("--spool-dir")
        .arg(spool)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tidegate-probe replay")
}

/// (records, packets, bytes) `tidegate-probe replay --json` makes of `capture`.
pub fn replay_totals(capture: &Path) -> (u64, u64, u64) {
    let out = std::process::Command::new(crate::paths::bin("tidegate-probe"))
        .args(["replay", "--json"])
        .arg(capture)
        .output()
        .expect("run tidegate-probe replay --json");
    assert!(out.status.success(), "{out:?}");
    let mut t = (0, 0, 0);
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
        t.0 += 1;
        t.1 += v["packets"].as_u64().unwrap_or(0);
        t.2 += v["bytes"].as_u64().unwrap_or(0);
    }
    t
}

/// Writes a pcap file without packets (a replay of it only delivers what its spool
/// holds).
pub fn empty_pcap(path: &Path) {
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65_535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(path, h).expect("write an empty pcap");
}
