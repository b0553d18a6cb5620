//! An analyst replays several captures with `tidegate-probe replay --collector`, all with
//! one `--probe-id` and each with its own `--spool-dir` (one after another, then two side
//! by side): every record reaches ClickHouse. Each spool is its own sequence (epoch), so
//! a new spool's numbers starting again at 1 are never taken for resends of batches the
//! collector already holds.

use std::{path::Path, process::Output, time::Duration};

use tidegate_testkit::{Stack, paths};

const PROBE: &str = "edge-1";
/// In the order replayed: the first alone, the other two at the same time; small
/// batches, so every run spools many.
const CAPTURES: [&str; 3] = [
    "ndpi-gnutella.pcap",
    "ndpi-synscan.pcap",
    "stopddos-amp.UDP.isakmp.pcap",
];

fn replay(s: &Stack, capture: &str, spool: &Path) -> std::process::Child {
    tidegate_testkit::probe::replay_process(
        &s.certs,
        PROBE,
        s.config.addr(),
        &paths::corpus_pcap(capture),
        spool,
    )
}

fn finished(out: Output, capture: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "replay of {capture} failed:\n{stderr}"
    );
    stderr
}

#[test]
fn every_record_of_every_replay_is_stored() {
    let s = Stack::start();
    let spool = |i: usize| s.dir().join(format!("replay-spool-{i}"));

    let first = replay(&s, CAPTURES[0], &spool(0))
        .wait_with_output()
        .unwrap();
    let mut logs = finished(first, CAPTURES[0]);
    let side_by_side: Vec<_> = (1..3).map(|i| replay(&s, CAPTURES[i], &spool(i))).collect();
    for (i, child) in side_by_side.into_iter().enumerate() {
        logs += &finished(child.wait_with_output().unwrap(), CAPTURES[i + 1]);
    }
    assert!(
        !logs.contains("removed them"),
        "a replay deleted spooled batches as already stored:\n{logs}"
    );

    let want: Vec<(String, (u64, u64, u64))> = CAPTURES
        .iter()
        .map(|c| {
            (
                c.rsplit_once('.').unwrap().0.to_string(),
                tidegate_testkit::probe::replay_totals(&paths::corpus_pcap(c)),
            )
        })
        .collect();
    let total: u64 = want.iter().map(|(_, (n, _, _))| n).sum();
    s.wait_for_flows(total, Duration::from_secs(90));
    s.assert_line_totals(PROBE, &want);
    // Each spool was a sequence of its own, and every row says which.
    let epochs =
        s.ch.query_sync(&format!(
            "SELECT uniqExact(batch_epoch), countIf(batch_epoch = 0) FROM tidegate.flows \
             WHERE probe_id = '{PROBE}' FORMAT TSV"
        ))
        .unwrap();
    assert_eq!(epochs.trim(), "3\t0");
    // Nothing more arrives later (no duplicate either).
    std::thread::sleep(Duration::from_secs(2));
    let rows =
        s.ch.query_sync("SELECT count() FROM tidegate.flows FORMAT TSV")
            .unwrap();
    assert_eq!(rows.trim(), total.to_string());
}

#[test]
fn a_replay_older_than_the_retention_is_announced_not_silently_dropped() {
    use tidegate_testkit::{CollectorProcess, TestClickHouse, collector::CollectorConfig};
    let dir = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start();
    let certs = tidegate_testkit::Certs::generate(&dir.path().join("certs"), &[PROBE]);
    let mut config =
        CollectorConfig::new(dir.path(), &certs, tidegate_testkit::free_port(), &ch.url());
    config.retention_days = 30;
    config.metrics_port = Some(tidegate_testkit::free_port());
    let path = config.write(dir.path());
    let collector = CollectorProcess::start(&path, config.addr());
    // A capture from years ago.
    let capture = CAPTURES[1];
    let out = tidegate_testkit::probe::replay_process(
        &certs,
        PROBE,
        config.addr(),
        &paths::corpus_pcap(capture),
        &dir.path().join("replay-spool"),
    )
    .wait_with_output()
    .unwrap();
    finished(out, capture);
    let (n, _, _) = tidegate_testkit::probe::replay_totals(&paths::corpus_pcap(capture));
    let port = config.metrics_port.unwrap();
    tidegate_testkit::eventually(
        "records beyond the retention counted",
        Duration::from_secs(60),
        || {
            let text = tidegate_testkit::block_on(tidegate_testkit::http::http_get(&format!(
                "http://127.0.0.1:{port}/metrics"
            )));
            tidegate_testkit::http::metric_opt(
                &text,
                "tidegate_collector_pipeline_records_beyond_retention_total",
            ) == Some(n as f64)
        },
    );
    assert!(
        collector
            .wait_log(
                "older than clickhouse.retention_days",
                Duration::from_secs(10)
            )
            .is_some(),
        "the operator is told"
    );
}
