//! What an operator runs: probes replaying real captures → mutually-authenticated TLS →
//! `tidegate-collector run` (spool, aggregation) → a real ClickHouse. Per-flow sums in
//! `flows` equal the corpus ground truth, and faults (ClickHouse down, collector killed,
//! probe restarted while the collector is down) leave exact totals: no loss, no duplicate.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use tidegate_testkit::{Stack, TestClickHouse, probe::replay_into, stack::StackOptions};
use tidegate_wire::record::FlowRecord;

type Key = (IpAddr, IpAddr, u8, u16, u16);
type Sums = BTreeMap<Key, (u64, u64)>;

/// The key in 5 text fields: source, destination, protocol, source and destination ports.
fn key(f: &[&str]) -> Key {
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Per-flow (packets, ip_bytes) from `../shared/corpus/truth/<capture>.tsv`.
fn truth(capture: &str) -> Sums {
    let p = tidegate_testkit::paths::corpus_pcap(capture)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("truth")
        .join(format!("{capture}.tsv"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut m = Sums::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split('\t').collect();
        let e = m.entry(key(&f[1..6])).or_default();
        e.0 += f[6].parse::<u64>().unwrap();
        e.1 += f[8].parse::<u64>().unwrap();
    }
    m
}

fn record_sums<'a>(records: impl IntoIterator<Item = &'a FlowRecord>) -> Sums {
    let mut m = Sums::new();
    for r in records {
        let e = m
            .entry((r.src, r.dst, r.proto, r.sport, r.dport))
            .or_default();
        e.0 += r.packets;
        e.1 += r.bytes;
    }
    m
}

fn parse_sums(tsv: &str) -> Sums {
    let mut m = Sums::new();
    for l in tsv.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = l.split('\t').collect();
        m.insert(key(&f[..5]), (f[5].parse().unwrap(), f[6].parse().unwrap()));
    }
    m
}

async fn stored_sums(ch: &TestClickHouse, line: Option<&str>) -> Sums {
    let filter = line
        .map(|l| format!("WHERE line = '{l}'"))
        .unwrap_or_default();
    parse_sums(
        &ch.query(&format!(
            "SELECT src_text, dst_text, proto, sport, dport, sum(packets), sum(bytes) FROM tidegate.flows {filter} \
             GROUP BY src_text, dst_text, proto, sport, dport"
        ))
        .await,
    )
}

async fn rows(ch: &TestClickHouse) -> u64 {
    ch.query("SELECT count() FROM tidegate.flows")
        .await
        .parse()
        .unwrap_or(0)
}

/// Waits until ClickHouse holds `n` rows, then checks it stays there (no late duplicate).
async fn wait_rows(ch: &TestClickHouse, n: usize) {
    let ok = tidegate_testkit::eventually_async(Duration::from_secs(90), async || {
        ch.query("EXISTS TABLE tidegate.flows").await == "1" && rows(ch).await >= n as u64
    })
    .await;
    assert!(ok, "ClickHouse holds {} rows, expected {n}", rows(ch).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rows(ch).await,
        n as u64,
        "rows appeared after the expected total: duplicates"
    );
}

/// Waits until ClickHouse holds exactly `records`: per flow, the same sums.
fn assert_stored(ch: &TestClickHouse, records: &[FlowRecord]) {
    rt().block_on(async {
        wait_rows(ch, records.len()).await;
        assert_eq!(stored_sums(ch, None).await, record_sums(records));
    });
}

const TRUTH_CAPTURES: [&str; 6] = [
    "ndpi-1kxun.pcap",
    "stopddos-pkt.TCP.synflood.spoofed.pcap",
    "ndpi-vxlan.pcap",
    "ndpi-4in6tunnel.pcap",
    "ndpi-dns_exfiltration.pcap",
    "ndpi-synscan.pcap",
];

#[test]
fn corpus_through_probe_collector_and_clickhouse_matches_the_truth() {
    let mut s = Stack::start_with(StackOptions {
        metrics: true,
        ..StackOptions::default()
    });
    let metrics_port = s.config.metrics_port.unwrap();
    let records = s.replay("edge-1", &TRUTH_CAPTURES);
    rt().block_on(async {
        wait_rows(&s.ch, records.len()).await;
        for cap in TRUTH_CAPTURES {
            let line = cap.split('.').next().unwrap();
            let got = stored_sums(&s.ch, Some(line)).await;
            let want = truth(cap);
            let diff: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .take(5)
                .collect();
            assert!(
                diff.is_empty() && got.len() == want.len(),
                "{cap}: {} stored flows vs {} in truth; first differences {diff:?}",
                got.len(),
                want.len()
            );
        }
        // Rollups agree with the raw table.
        let raw: u64 =
            s.ch.query("SELECT sum(packets) FROM tidegate.flows")
                .await
                .parse()
                .unwrap();
        let m1: u64 =
            s.ch.query("SELECT sum(packets) FROM tidegate.flows_1m")
                .await
                .parse()
                .unwrap();
        assert_eq!(raw, m1);
        // The collector's own accounting agrees, on its Prometheus endpoint.
        let text =
            tidegate_testkit::http::http_get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
                .await;
        let n = records.len() as f64;
        assert_eq!(
            tidegate_testkit::http::metric(
                &text,
                "tidegate_collector_ingest_records_stored_total{probe=\"edge-1\"}"
            ),
            n
        );
        assert_eq!(
            tidegate_testkit::http::metric(
                &text,
                "tidegate_collector_pipeline_records_committed_total"
            ),
            n
        );
        assert_eq!(
            tidegate_testkit::http::metric(&text, "tidegate_collector_spool_pending_batches"),
            0.0
        );
        assert!(
            text.contains("tidegate_collector_clickhouse_insert_seconds"),
            "insert latency histogram"
        );
        assert!(
            tidegate_testkit::http::metric(
                &text,
                "tidegate_collector_transport_batches_received_total"
            ) >= 1.0,
            "transport counters"
        );
    });
    assert_eq!(s.collector.stop(), 0, "collector exits cleanly on SIGTERM");
}

#[test]
fn clickhouse_outage_mid_stream_loses_and_doubles_nothing() {
    let mut s = Stack::start();
    let mut ex = s.exporter("edge-1");
    let mut records = replay_into(&["ndpi-1kxun.pcap"], &mut ex);
    std::thread::sleep(Duration::from_millis(1500));
    s.ch.stop();
    // The collector keeps acknowledging into its spool while ClickHouse is down.
    records.extend(replay_into(
        &["stopddos-pkt.TCP.synflood.spoofed.pcap"],
        &mut ex,
    ));
    let rep = ex.finish(Duration::from_secs(60)).unwrap();
    assert_eq!(
        rep.left_batches, 0,
        "acknowledged while ClickHouse was down"
    );
    std::thread::sleep(Duration::from_secs(1));
    s.ch.resume();
    assert_stored(&s.ch, &records);
}

#[test]
fn collector_killed_mid_stream_then_restarted_is_exact() {
    let mut s = Stack::start();
    let mut ex = s.exporter("edge-1");
    let mut records = replay_into(&["ndpi-1kxun.pcap", "ndpi-synscan.pcap"], &mut ex);
    std::thread::sleep(Duration::from_millis(300));
    s.collector.kill();
    // The probe spools while the collector is gone and resends after it returns.
    records.extend(replay_into(
        &["stopddos-pkt.TCP.synflood.spoofed.pcap"],
        &mut ex,
    ));
    std::thread::sleep(Duration::from_millis(500));
    s.restart_collector();
    records.extend(replay_into(&["ndpi-dns_exfiltration.pcap"], &mut ex));
    let rep = ex.finish(Duration::from_secs(90)).unwrap();
    assert_eq!(rep.left_batches, 0);
    assert_stored(&s.ch, &records);
}

#[test]
fn probe_restarted_while_the_collector_is_down_delivers_everything_once() {
    let mut s = Stack::start();
    let mut ex = s.exporter("edge-2");
    let mut records = replay_into(&["ndpi-vxlan.pcap"], &mut ex);
    assert_eq!(ex.finish(Duration::from_secs(30)).unwrap().left_batches, 0);
    assert_eq!(s.collector.stop(), 0);
    // Collector down: the probe spools, gives up waiting, and is restarted.
    let mut ex = s.exporter("edge-2");
    records.extend(replay_into(&["ndpi-1kxun.pcap"], &mut ex));
    let rep = ex.finish(Duration::from_secs(2)).unwrap();
    assert!(
        rep.left_batches > 0,
        "nothing can be delivered while the collector is down"
    );
    s.restart_collector();
    let ex = s.exporter("edge-2");
    assert_eq!(ex.finish(Duration::from_secs(60)).unwrap().left_batches, 0);
    assert_stored(&s.ch, &records);
}
