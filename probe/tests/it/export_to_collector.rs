//! Corpus captures replayed into the collector exporter reach a real collector transport
//! (mutual TLS on 127.0.0.1, an in-memory sink) exactly once and in order — through the
//! library and through `tidegate-probe replay --collector`, including a run that finds
//! the collector down and leaves its batches spooled for the next one.

use std::{path::Path, process::Command, time::Duration};

use tidegate_probe::{
    export::collector::{CollectorExporter, ExportMetrics},
    record::FlowRecord,
};
use tidegate_testkit::{
    certs::Certs,
    paths::corpus_pcap,
    ports::free_port,
    probe::probe_options,
    transport::{MemSink, TestServer, assert_same_records},
};

use crate::support::{
    files::count_with_extension,
    probe_cli::bin,
    replay::{records_of, replay, stem},
};

#[test]
fn a_corpus_replay_arrives_exactly_once_and_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&tmp.path().join("pki"), &["edge-lib"]);
    let sink = MemSink::new();
    let server = TestServer::start(&certs.transport_config(0), sink.clone());
    let files = vec![
        corpus_pcap("ndpi-1kxun.pcap"),
        corpus_pcap("stopddos-pkt.TCP.synflood.spoofed.pcap"),
    ];
    let want = records_of(&files);

    let mut o = probe_options(&certs, "edge-lib", server.addr, &tmp.path().join("spool"));
    o.batch_records = 1000;
    o.lines = files.iter().map(|f| stem(f)).collect();
    let metrics = ExportMetrics::new();
    let mut exp = CollectorExporter::start(o, metrics.clone()).unwrap();
    replay(&files, &mut exp);
    let report = exp.finish(Duration::from_secs(60)).unwrap();
    assert!(report.delivered(), "{report:?}");

    assert_same_records(&sink.records("edge-lib"), &want, "sink vs replay");
    let batches = sink.batches("edge-lib");
    let seqs: Vec<u64> = batches.keys().copied().collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        seqs.len() as u64 > want.len() as u64 / 1000,
        "{} batches",
        seqs.len()
    );
    assert_eq!(sink.duplicates(), 0);
    assert_eq!(server.metrics.records_received.get(), want.len() as u64);
    assert_eq!(metrics.batches_acked.get(), seqs.len() as u64);
    assert_eq!(metrics.spool_batches.get(), 0);
    // The first and the last batch carry health (first ever, and the final snapshot).
    for b in [batches.first_key_value(), batches.last_key_value()] {
        let h = b.unwrap().1.health.as_ref().expect("health attached");
        assert_eq!(h.lines, files.iter().map(|f| stem(f)).collect::<Vec<_>>());
        assert!(h.counters.iter().any(|(k, _)| k == "export_records"));
    }
    let last = batches.last_key_value().unwrap().1.health.clone().unwrap();
    let sealed = last
        .counters
        .iter()
        .find(|(k, _)| k == "export_records")
        .unwrap()
        .1;
    assert_eq!(
        sealed,
        want.len() as u64,
        "health counts every record sealed before it"
    );
    server.stop();
}

struct Cli {
    ok: bool,
    stderr: String,
}

fn probe_cli(args: &[&str]) -> Cli {
    let out = Command::new(bin())
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run tidegate-probe");
    Cli {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_replay_cli_delivers_and_keeps_what_the_collector_did_not_take() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&tmp.path().join("pki"), &["edge-cli"]);
    let sink = MemSink::new();
    let port = free_port();
    let cfg = certs.transport_config(port);
    let spool = tmp.path().join("spool");
    let p = certs.probe("edge-cli");
    let (ca, cert, key) = (certs.ca().cert, p.cert, p.key);
    let addr = format!("127.0.0.1:{port}");
    let args = |file: &Path, drain: &str| -> Vec<String> {
        [
            "replay",
            file.to_str().unwrap(),
            "--collector",
            &addr,
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--probe-id",
            "edge-cli",
            "--spool-dir",
            spool.to_str().unwrap(),
            "--batch-records",
            "40",
            "--drain-timeout",
            drain,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |file: &Path, drain: &str| {
        let a = args(file, drain);
        probe_cli(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let f1 = corpus_pcap("ndpi-1kxun.pcap");
    let f2 = corpus_pcap("pcapforge-it-scan-auth-failures.pcap");
    let f3 = corpus_pcap("ndpi-443-safari.pcap");

    // 1. Collector up: everything delivered, same records as `replay --json`.
    let server = TestServer::start(&cfg, sink.clone());
    let r = run(&f1, "30");
    assert!(r.ok, "stderr:\n{}", r.stderr);
    let json = Command::new(bin())
        .args(["replay", "--json", f1.to_str().unwrap()])
        .output()
        .unwrap();
    let want1: Vec<FlowRecord> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_same_records(&sink.records("edge-cli"), &want1, "run 1 vs replay --json");
    let after1 = sink.batches("edge-cli").len() as u64;

    // 2. Collector down: the command fails, saying where the batches wait.
    server.kill();
    let r = run(&f2, "1");
    assert!(!r.ok);
    assert!(
        r.stderr.contains("did not acknowledge") && r.stderr.contains(spool.to_str().unwrap()),
        "stderr:\n{}",
        r.stderr
    );
    let spooled = count_with_extension(&spool, "batch");
    assert!(spooled > 0);

    // 3. Collector back: the next run sends the leftovers first, then its own records,
    //    numbering on from where the previous runs stopped.
    let server = TestServer::start(&cfg, sink.clone());
    let r = run(&f3, "30");
    assert!(r.ok, "stderr:\n{}", r.stderr);
    let mut want = want1;
    want.extend(records_of(&[f2]));
    want.extend(records_of(&[f3]));
    assert_same_records(&sink.records("edge-cli"), &want, "three runs");
    let seqs: Vec<u64> = sink.batches("edge-cli").keys().copied().collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(seqs.len() as u64 > after1 + spooled as u64);
    assert_eq!(sink.duplicates(), 0);
    server.stop();
}
