//! A bounded fault soak with the real binaries: probes (`tidegate-probe replay
//! --collector`) deliver corpus captures while ClickHouse is stopped and restarted, the
//! collector is SIGKILLed and restarted (also in the middle of a delivery), and a probe
//! is SIGKILLed with batches it spooled but that were never acknowledged and is started
//! again on its spool. At the end ClickHouse holds exactly what the probes made of the
//! captures: the same number of rows, packets and bytes per capture — nothing lost,
//! nothing twice.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use tidegate_testkit::{
    Stack,
    paths::corpus_pcap,
    probe::{empty_pcap, replay_process, replay_totals},
};

const PROBE: &str = "edge-1";

fn replay(s: &Stack, capture: &Path, spool: &Path) -> Child {
    replay_process(&s.certs, PROBE, s.config.addr(), capture, spool)
}

fn succeeds(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGKILL.
fn kill(child: &mut Child) {
    // SAFETY: signalling our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// Waits until `dir` holds at least one spooled batch file (or `limit` passes).
fn wait_spooled(dir: &Path, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let n = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".batch"))
                    .count()
            })
            .unwrap_or(0);
        if n > 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn every_record_is_stored_once_through_clickhouse_collector_and_probe_failures() {
    let mut s = Stack::start_with(tidegate_testkit::stack::StackOptions {
        metrics: true,
        ..Default::default()
    });
    s.wait_for_schema();
    let captures: Vec<(String, PathBuf)> = [
        "ndpi-gnutella.pcap",
        "ndpi-synscan.pcap",
        "stopddos-amp.UDP.isakmp.pcap",
        "ndpi-1kxun.pcap",
        "ndpi-dns_exfiltration.pcap",
    ]
    .iter()
    .map(|c| (c.rsplit_once('.').unwrap().0.to_string(), corpus_pcap(c)))
    .collect();
    let dir = s.dir().to_path_buf();
    let spool = |i: usize| dir.join(format!("probe-spool-{i}"));
    let empty = s.dir().join("empty.pcap");
    empty_pcap(&empty);

    // 1. ClickHouse down for a whole delivery: the collector's spool takes it.
    s.ch.stop();
    succeeds(
        replay(&s, &captures[0].1, &spool(0)),
        "replay during the outage",
    );
    // The spool gauges show what waits while the pipeline is stuck retrying.
    let port = s.config.metrics_port.unwrap();
    let gauge =
        |text: &str, name: &str| tidegate_testkit::http::metric_opt(text, name).unwrap_or(0.0);
    tidegate_testkit::eventually(
        "spool gauges during the outage",
        Duration::from_secs(10),
        || {
            let text = tidegate_testkit::block_on(tidegate_testkit::http::http_get(&format!(
                "http://127.0.0.1:{port}/metrics"
            )));
            gauge(&text, "tidegate_collector_spool_pending_batches") > 0.0
                && gauge(&text, "tidegate_collector_spool_bytes") > 0.0
        },
    );
    s.ch.resume();

    // 2. The collector is gone; the probe spools, is SIGKILLed with nothing
    //    acknowledged, and is started again on its spool once the collector is back.
    s.collector.kill();
    let mut p = replay(&s, &captures[1].1, &spool(1));
    assert!(
        wait_spooled(&spool(1), Duration::from_secs(30)),
        "the probe spooled nothing"
    );
    std::thread::sleep(Duration::from_millis(500));
    kill(&mut p);
    s.restart_collector();
    succeeds(
        replay(&s, &empty, &spool(1)),
        "the restarted probe delivering its spool",
    );

    // 3. The collector is SIGKILLed in the middle of a delivery and restarted.
    let p = replay(&s, &captures[2].1, &spool(2));
    std::thread::sleep(Duration::from_millis(300));
    s.collector.kill();
    std::thread::sleep(Duration::from_millis(500));
    s.restart_collector();
    succeeds(p, "replay across a collector SIGKILL");

    // 4. Both at once: ClickHouse down and the collector killed while a probe delivers;
    //    the collector comes back first, ClickHouse later.
    let p = replay(&s, &captures[3].1, &spool(3));
    std::thread::sleep(Duration::from_millis(200));
    s.ch.stop();
    s.collector.kill();
    std::thread::sleep(Duration::from_millis(500));
    s.restart_collector();
    succeeds(p, "replay across a collector SIGKILL with ClickHouse down");
    s.ch.resume();

    // 5. And in calm conditions.
    succeeds(replay(&s, &captures[4].1, &spool(4)), "last replay");

    let want: Vec<(&String, (u64, u64, u64))> = captures
        .iter()
        .map(|(line, path)| (line, replay_totals(path)))
        .collect();
    let total: u64 = want.iter().map(|(_, t)| t.0).sum();
    s.wait_for_flows(total, Duration::from_secs(120));
    // Nothing more arrives later (no duplicate).
    std::thread::sleep(Duration::from_secs(2));
    s.assert_line_totals(PROBE, &want);
    let rows =
        s.ch.query_sync("SELECT count() FROM tidegate.flows FORMAT TSV")
            .unwrap();
    assert_eq!(rows.trim(), total.to_string());
}
