//! Probes report their health; the collector stores each report once in `probe_health`.

use crate::support::clickhouse::{config, migrated};
use tidegate_collector::sinks::clickhouse::{ErrorClass, ProbeHealthRow};
use tidegate_testkit::TestClickHouse;

#[tokio::test]
async fn health_reports_are_stored_once_with_their_counters() {
    let ch = TestClickHouse::start();
    // The default retention: 30 days.
    let s = migrated(config(ch.url(), "tg_health", 30)).await;

    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let report = ProbeHealthRow {
        ts_ns: now_ns,
        probe_id: "edge-hk-1".into(),
        counters: vec![
            ("packets".into(), 1_000_000),
            ("parse_error_truncated".into(), 3),
            ("fallback_dropped".into(), 0),
        ],
        spool_bytes: 65536,
        spool_batches: 2,
        lines: vec!["hk-intl-1".into(), "hk-intl-2".into()],
    };
    s.insert_health("edge-hk-1", &report).await.unwrap();
    s.insert_health("edge-hk-1", &report).await.unwrap(); // a retry
    let later = ProbeHealthRow {
        ts_ns: now_ns + 10_000_000_000,
        probe_id: String::new(), // taken from the authenticated id
        ..report.clone()
    };
    s.insert_health("edge-hk-1", &later).await.unwrap();

    assert_eq!(
        ch.query(
            "SELECT probe_id, toUnixTimestamp64Nano(ts), counters['packets'], \
             counters['parse_error_truncated'], length(counters), spool_bytes, spool_batches, \
             lines FROM tg_health.probe_health ORDER BY ts"
        )
        .await,
        format!(
            "edge-hk-1\t{now_ns}\t1000000\t3\t3\t65536\t2\t['hk-intl-1','hk-intl-2']\n\
             edge-hk-1\t{}\t1000000\t3\t3\t65536\t2\t['hk-intl-1','hk-intl-2']",
            now_ns + 10_000_000_000
        )
    );

    // A report claiming another identity is refused, and nothing is written.
    let e = s.insert_health("edge-sg-1", &report).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Data);
    assert_eq!(
        e.to_string(),
        format!(
            "health report of edge-sg-1 at {now_ns} ns: the report names probe \"edge-hk-1\" \
             but came from \"edge-sg-1\""
        )
    );
    assert_eq!(
        ch.query("SELECT count() FROM tg_health.probe_health").await,
        "2"
    );
}
