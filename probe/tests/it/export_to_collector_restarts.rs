//! Delivery across failures, with a real collector transport on 127.0.0.1: the collector
//! dies between storing a batch and acknowledging it and comes back on the same port; the
//! probe restarts with a non-empty spool; the probe loses its spool; the collector stays
//! away until the spool is full. Every time, the sink ends with every record exactly once.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tidegate_probe::export::collector::{CollectorExporter, CollectorOptions, ExportMetrics};
use tidegate_testkit::{
    certs::Certs,
    logs::{capture_logs, log_line},
    paths::corpus_pcap,
    ports::free_port,
    probe::probe_options,
    transport::{MemSink, TestServer, assert_same_records},
};

use crate::support::replay::{records_of, replay};

fn contiguous(sink: &MemSink, probe: &str) -> Vec<u64> {
    let seqs: Vec<u64> = sink.batches(probe).keys().copied().collect();
    assert_eq!(
        seqs,
        (seqs[0]..seqs[0] + seqs.len() as u64).collect::<Vec<_>>(),
        "gaps"
    );
    seqs
}

struct World {
    tmp: tempfile::TempDir,
    certs: Certs,
    sink: std::sync::Arc<MemSink>,
    port: u16,
}

fn world(probe: &str) -> World {
    capture_logs();
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&tmp.path().join("pki"), &[probe]);
    World {
        tmp,
        certs,
        sink: MemSink::new(),
        port: free_port(),
    }
}

impl World {
    fn server(&self) -> TestServer {
        TestServer::start(&self.certs.transport_config(self.port), self.sink.clone())
    }
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    fn spool(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    /// Options for `probe` spooling in `spool`: batches of 20 records, reconnect backoff
    /// capped at 300 ms.
    fn options(&self, probe: &str, spool: &str) -> CollectorOptions {
        let mut o = probe_options(&self.certs, probe, self.addr(), &self.spool(spool));
        o.backoff_max = Duration::from_millis(300);
        o.batch_records = 20;
        o
    }
    /// An exporter with [`Self::options`] and metrics of its own.
    fn exporter(&self, probe: &str, spool: &str) -> CollectorExporter {
        CollectorExporter::start(self.options(probe, spool), ExportMetrics::new()).unwrap()
    }
}

/// The collector stores batch 5 and dies before its Ack leaves; it comes back on the
/// same port. `sink_tells_last_seq`: whether the sink reports the stored batch in
/// `HelloAck` (the probe then drops it unsent) or not (the probe resends it and gets a
/// duplicate Ack).
fn collector_dies_before_acknowledging(sink_tells_last_seq: bool) {
    let probe = if sink_tells_last_seq {
        "edge-a1"
    } else {
        "edge-a2"
    };
    let w = world(probe);
    if !sink_tells_last_seq {
        w.sink.hide_last_seq();
    }
    let file = corpus_pcap("ndpi-1kxun.pcap");
    let want = records_of(&[&file]);
    let stalled = w.sink.stall_after(probe, 5);
    let server = w.server();
    let metrics = ExportMetrics::new();
    let mut exp = CollectorExporter::start(w.options(probe, "s"), metrics.clone()).unwrap();
    replay(&[&file], &mut exp);
    stalled
        .recv_timeout(Duration::from_secs(30))
        .expect("batch 5 reached the sink");
    server.kill();
    // The probe keeps everything unacknowledged and retries while the collector is away.
    std::thread::sleep(Duration::from_millis(800));
    assert!(exp.spool().seqs().contains(&5));
    // Acks the collector sent for 1..=4 may die with the connection (a reset discards
    // what the probe had not read yet): those batches are stored but unacknowledged.
    let acked_before_kill = metrics.batches_acked.get();
    assert!(acked_before_kill <= 4, "batch 5 was never acknowledged");
    let server = w.server();
    let report = exp.finish(Duration::from_secs(60)).unwrap();
    assert!(report.delivered(), "{report:?}");

    assert_same_records(&w.sink.records(probe), &want, "records lost or repeated");
    let seqs = contiguous(&w.sink, probe);
    assert_eq!(seqs[0], 1);
    assert_eq!(metrics.batches_acked.get(), seqs.len() as u64);
    assert!(metrics.connects.get() >= 2);
    assert!(metrics.connect_failures.get() >= 1);
    let addr = format!("addr=127.0.0.1:{}", w.port);
    assert!(log_line(&["collector connection lost", "resent", &addr]).is_some());
    if sink_tells_last_seq {
        // HelloAck said 5 is stored: dropped from the spool, never resent.
        assert_eq!(w.sink.duplicates(), 0);
        assert_eq!(metrics.batches_duplicate.get(), 0);
        assert!(log_line(&["had stored these spooled batches", "last_acked_seq=5"]).is_some());
    } else {
        // Every stored but unacknowledged batch (5, and any of 1..=4 whose Ack was lost)
        // is resent, stored once, and acknowledged as a duplicate.
        let unacked = 5 - acked_before_kill;
        assert_eq!(w.sink.duplicates(), unacked);
        assert_eq!(metrics.batches_duplicate.get(), unacked);
        assert_eq!(server.metrics.batches_duplicate.get(), unacked);
    }
    server.stop();
}

#[test]
fn the_collector_dies_before_acknowledging_and_comes_back() {
    collector_dies_before_acknowledging(true);
}

#[test]
fn the_collector_dies_before_acknowledging_and_acks_the_resend_as_duplicate() {
    collector_dies_before_acknowledging(false);
}

#[test]
fn a_restarted_probe_resends_its_spool_and_numbers_on() {
    let w = world("edge-b");
    let f1 = corpus_pcap("ndpi-1kxun.pcap");
    let f2 = corpus_pcap("pcapforge-it-scan-auth-failures.pcap");

    // Run 1: the collector is not there; the batches stay spooled.
    let mut exp = w.exporter("edge-b", "s");
    replay(&[&f1], &mut exp);
    let left = exp.spool().seqs();
    let report = exp.finish(Duration::from_millis(300)).unwrap();
    assert!(!report.delivered());
    assert_eq!(
        report.left_batches,
        left.len() as u64 + 1,
        "plus the final health batch"
    );
    let n1 = report.left_batches;

    // Run 2: the spool is resent first and the numbering continues after it.
    let mut exp = w.exporter("edge-b", "s");
    assert_eq!(exp.spool().seqs(), (1..=n1).collect::<Vec<_>>());
    assert_eq!(exp.spool().next_seq(), n1 + 1);
    let server = w.server();
    replay(&[&f2], &mut exp);
    assert!(exp.finish(Duration::from_secs(60)).unwrap().delivered());
    let mut want = records_of(&[&f1]);
    want.extend(records_of(&[&f2]));
    assert_same_records(&w.sink.records("edge-b"), &want, "sink");
    let seqs = contiguous(&w.sink, "edge-b");
    assert_eq!(seqs[0], 1);
    assert_eq!(w.sink.duplicates(), 0);

    // Run 3 with an empty spool still numbers on (the high-water mark).
    let exp = w.exporter("edge-b", "s");
    assert_eq!(exp.spool().next_seq(), *seqs.last().unwrap() + 1);
    drop(exp);
    server.stop();
}

#[test]
fn a_probe_that_lost_its_spool_is_not_taken_for_a_duplicate() {
    let w = world("edge-c");
    let f1 = corpus_pcap("ndpi-1kxun.pcap");
    let f2 = corpus_pcap("ndpi-443-safari.pcap");
    let server = w.server();
    let mut exp = w.exporter("edge-c", "old");
    replay(&[&f1], &mut exp);
    assert!(exp.finish(Duration::from_secs(60)).unwrap().delivered());
    let before = w.sink.batches("edge-c").len() as u64;

    // Same probe, fresh spool: its numbers restart at 1, which the collector already has
    // for the first spool's sequence — but this spool is a sequence of its own (epoch).
    let mut exp = w.exporter("edge-c", "new");
    let epoch = exp.spool().epoch();
    replay(&[&f2], &mut exp);
    assert!(exp.finish(Duration::from_secs(60)).unwrap().delivered());
    let mut want = records_of(&[&f1]);
    want.extend(records_of(&[&f2]));
    assert_same_records(
        &w.sink.records("edge-c"),
        &want,
        "records of the second run were dropped",
    );
    let sequences = w.sink.sequences("edge-c");
    assert_eq!(sequences.len(), 2, "one sequence per spool");
    for (epoch, batches) in &sequences {
        let seqs: Vec<u64> = batches.keys().copied().collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "epoch {epoch}"
        );
    }
    assert!(
        sequences.iter().any(|(_, b)| b.len() as u64 == before),
        "the first spool's sequence is unchanged"
    );
    assert_eq!(w.sink.duplicates(), 0);
    assert!(
        // (Other tests of this binary share the log and remove batches of their own.)
        log_line(&["removed them", &format!("epoch={epoch}")]).is_none(),
        "nothing deleted on a guess"
    );
    server.stop();
}

#[test]
fn a_full_spool_holds_export_back_until_the_collector_drains_it() {
    let w = world("edge-d");
    let file = corpus_pcap("pcapforge-it-scan-auth-failures.pcap");
    let want = records_of(&[&file]);
    let mut o = w.options("edge-d", "s");
    o.batch_records = 10;
    o.spool_max_bytes = 4096;
    let max = o.spool_max_bytes;
    let metrics = ExportMetrics::new();
    let exp = CollectorExporter::start(o, metrics.clone()).unwrap();
    let worker = std::thread::spawn(move || {
        let mut exp = exp;
        replay(&[&file], &mut exp);
        exp
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!worker.is_finished(), "export did not wait for spool space");
    assert!(metrics.spool_full_waits.get() >= 1);
    assert!(metrics.spool_bytes.get() as u64 <= max);
    let server = w.server();
    let exp = worker.join().unwrap();
    assert!(exp.finish(Duration::from_secs(60)).unwrap().delivered());
    assert_same_records(&w.sink.records("edge-d"), &want, "sink");
    assert_eq!(w.sink.duplicates(), 0);
    server.stop();
}
