//! `tidegate-probe run --collector ...` as a user runs it: live capture on a veth line in
//! a namespace, records delivered to a collector transport in that namespace over mutual
//! TLS, everything flushed and acknowledged on SIGINT, with health snapshots carrying
//! the capture counters.

use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use tidegate_probe::record::FlowRecord;
use tidegate_testkit::{
    certs::Certs,
    net::VethPair,
    transport::{MemSink, TestServer},
};

use crate::support::probe_cli::{ProbeProcess, collector_args};
use tidegate_testkit::net::frames::send_udp_flows;

// The crafted flows' source and destination.
const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn sums(records: &[FlowRecord]) -> HashMap<u16, (u64, u64)> {
    let mut m = HashMap::new();
    for r in records {
        if r.src == SRC {
            let e = m.entry(r.sport).or_insert((0, 0));
            e.0 += r.packets;
            e.1 += r.bytes;
        }
    }
    m
}

/// `user`: run the probe with `--user` (it then writes its spool as that user).
fn capture_to_collector(backend: &str, user: Option<&str>) {
    let pair = VethPair::new(&format!("c{}", &backend[..3])).expect("veth pair");
    let mac_b = VethPair::mac(&pair.ns_b, &pair.if_b).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let probe = format!("edge-live-{backend}");
    let certs = Certs::generate(&tmp.path().join("pki"), &[&probe]);
    let sink = MemSink::new();
    // The collector listens on the probe namespace's loopback.
    let server = VethPair::in_ns(&pair.ns_b, || {
        TestServer::start(&certs.transport_config(0), sink.clone())
    })
    .unwrap();
    let spool = tmp.path().join("spool");
    let addr = server.addr.to_string();
    // A dropped-privilege probe must reach its spool: the parent is searchable.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut args = vec![];
    if let Some(u) = user {
        args.extend(["--user", u]);
    }
    args.extend([
        "--backend",
        backend,
        "--flow-entries",
        "4096",
        "--sweep-interval-ms",
        "100",
    ]);
    let to_collector = collector_args(&certs, &probe, &addr, &spool);
    args.extend(to_collector.iter().map(String::as_str));
    let proc = ProbeProcess::run_on(&pair, &args);
    let flows = [(2000u16, 64u16, 300u64), (2001, 1400, 40), (2002, 28, 1)];
    send_udp_flows(&pair, mac_b, SRC, DST, &flows);
    std::thread::sleep(Duration::from_millis(300));
    let (code, stdout_records, err) = proc.stop();
    assert_eq!(code, 0, "probe exit code; stderr: {err:#?}");
    assert!(stdout_records.is_empty(), "records went to stdout too");
    assert!(
        err.iter()
            .any(|l| l.contains("every batch acknowledged by the collector")),
        "stderr: {err:#?}"
    );

    let records = sink.records(&probe);
    let got = sums(&records);
    for (sport, len, count) in flows {
        assert_eq!(
            got.get(&sport),
            Some(&(count, count * len as u64)),
            "flow {sport} via {backend}: {got:?}"
        );
    }
    assert!(records.iter().all(|r| r.line == pair.if_b));
    let batches = sink.batches(&probe);
    let seqs: Vec<u64> = batches.keys().copied().collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // The final batch carries a health snapshot with the capture counters.
    let h = batches
        .last_key_value()
        .unwrap()
        .1
        .health
        .clone()
        .expect("final health snapshot");
    assert_eq!(h.lines, vec![pair.if_b.clone()]);
    let counter = |k: &str| h.counters.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert!(
        counter("packets").is_some_and(|p| p >= 341),
        "{:?}",
        h.counters
    );
    assert_eq!(counter("export_records"), Some(records.len() as u64));
    server.stop();
}

#[test]
fn afpacket_capture_is_delivered_to_the_collector() {
    capture_to_collector("afpacket", None);
}

#[test]
fn ebpf_capture_is_delivered_to_the_collector() {
    capture_to_collector("ebpf", None);
}

#[test]
fn a_probe_that_dropped_its_privileges_spools_and_delivers_everything() {
    capture_to_collector("ebpf", Some("nobody"));
}

#[test]
fn a_killed_probe_reports_at_its_next_start_the_packets_it_never_exported() {
    let pair = VethPair::new("ckil").expect("veth pair");
    let mac_b = VethPair::mac(&pair.ns_b, &pair.if_b).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let probe = "edge-killed";
    let certs = Certs::generate(&tmp.path().join("pki"), &[probe]);
    let sink = MemSink::new();
    let server = VethPair::in_ns(&pair.ns_b, || {
        TestServer::start(&certs.transport_config(0), sink.clone())
    })
    .unwrap();
    let spool = tmp.path().join("spool");
    let addr = server.addr.to_string();
    // Timeouts far beyond the test: every flow stays in the probe until it stops.
    let mut args = vec![
        "--backend",
        "ebpf",
        "--sweep-interval-ms",
        "100",
        "--idle-timeout",
        "600",
        "--active-timeout",
        "600",
    ];
    let to_collector = collector_args(&certs, probe, &addr, &spool);
    args.extend(to_collector.iter().map(String::as_str));
    let first = ProbeProcess::run_on(&pair, &args);
    let flows = [(3000u16, 64u16, 250u64), (3001, 900, 17)];
    send_udp_flows(&pair, mac_b, SRC, DST, &flows);
    let sent: u64 = flows.iter().map(|f| f.2).sum();
    // Wait until a sweep has counted them (the checkpoint beside the spool says so).
    let ledger = spool.join(tidegate_probe::ledger::FILE);
    tidegate_testkit::wait::eventually(
        "a checkpoint of the packets",
        Duration::from_secs(20),
        || {
            std::fs::read(&ledger)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["accounted_packets"].as_u64())
                .is_some_and(|n| n >= sent)
        },
    );
    let _ = first.kill();
    assert!(
        sink.records(probe).iter().all(|r| r.src != SRC),
        "exported before the kill"
    );

    // The next start says how many it lost, in its log and in its health reports.
    let second = ProbeProcess::run_on(&pair, &args);
    let (code, _, err) = second.stop();
    assert_eq!(code, 0, "{err:#?}");
    let warned = err
        .iter()
        .find(|l| l.contains("did not stop cleanly"))
        .unwrap_or_else(|| panic!("no report of the loss: {err:#?}"));
    assert!(warned.contains(&format!("packets={sent}")), "{warned}");
    let batches = sink.batches(probe);
    let h = batches
        .last_key_value()
        .unwrap()
        .1
        .health
        .clone()
        .expect("final health snapshot");
    let lost = h
        .counters
        .iter()
        .find(|(n, _)| n == "previous_run_unexported_packets")
        .map(|(_, v)| *v);
    assert_eq!(lost, Some(sent), "{:?}", h.counters);

    // A clean stop leaves nothing to report: the third start is silent.
    let third = ProbeProcess::run_on(&pair, &args);
    let (code, _, err) = third.stop();
    assert_eq!(code, 0, "{err:#?}");
    assert!(
        !err.iter().any(|l| l.contains("did not stop cleanly")),
        "{err:#?}"
    );
    server.stop();
}
