//! An operator starts the collector against a ClickHouse server: the schema is created from
//! empty, re-running is a no-op, retention follows the config, an edited migration or a
//! bad configuration stops it with a clear error.

use std::time::{Duration, Instant};

use crate::support::clickhouse::config;
use tidegate_collector::sinks::clickhouse::{
    ClickHouseConfig, ClickHouseSink, ErrorClass, SinkError, SinkMetrics, migrations::MIGRATIONS,
};
use tidegate_testkit::{TestClickHouse, free_port};

async fn sink(cfg: ClickHouseConfig) -> ClickHouseSink {
    ClickHouseSink::connect(cfg, SinkMetrics::default())
        .await
        .expect("valid config")
}

const ALL: [&str; 13] = [
    "0001_flows.sql",
    "0002_rollups.sql",
    "0003_probe_health.sql",
    "0004_alerts.sql",
    "0005_flows_batch_epoch.sql",
    "0006_flows_enforcement.sql",
    "0007_flows_source.sql",
    "0008_flows_app.sql",
    "0009_alerts_volume.sql",
    "0010_alert_triage.sql",
    "0011_audit_log.sql",
    "0012_saved_filters.sql",
    "0013_flows_tunnel.sql",
];

#[tokio::test]
async fn migrations_build_the_schema_from_empty_and_a_rerun_changes_nothing() {
    let ch = TestClickHouse::start();
    let metrics = SinkMetrics::default();
    let s = ClickHouseSink::connect(config(ch.url(), "tg_mig", 30), metrics.clone())
        .await
        .unwrap();

    let first = s.migrate().await.unwrap();
    assert_eq!(first.database, "tg_mig");
    assert_eq!(first.applied, ALL);
    assert!(first.already_applied.is_empty());
    assert_eq!(first.version, 13);
    assert!(
        first.retention_changes.is_empty(),
        "{:?}",
        first.retention_changes
    );
    assert_eq!(metrics.migration_version.get(), 13);

    let tables = ch
        .query("SELECT name, engine FROM system.tables WHERE database = 'tg_mig' ORDER BY name")
        .await;
    assert_eq!(
        tables,
        "alert_triage\tMergeTree\nalerts\tReplacingMergeTree\naudit_log\tMergeTree\nflows\tMergeTree\nflows_1h\tSummingMergeTree\nflows_1h_mv\tMaterializedView\n\
         flows_1m\tSummingMergeTree\nflows_1m_mv\tMaterializedView\npolicy_violations\tReplacingMergeTree\n\
         probe_health\tMergeTree\nsaved_filters\tReplacingMergeTree\nschema_migrations\tMergeTree"
    );
    let engine = |t: &'static str| {
        let ch = &ch;
        async move {
            ch.query(&format!(
                "SELECT engine_full FROM system.tables WHERE database = 'tg_mig' AND name = '{t}'"
            ))
            .await
        }
    };
    let flows = engine("flows").await;
    assert!(flows.contains("PARTITION BY toDate(first)"), "{flows}");
    assert!(
        flows.contains("ORDER BY (line, toStartOfHour(first), src, dst, first)"),
        "{flows}"
    );
    assert!(
        flows.contains("TTL toDate(first) + toIntervalDay(30)"),
        "{flows}"
    );
    assert!(
        flows.contains("non_replicated_deduplication_window = 100000"),
        "{flows}"
    );
    assert!(
        engine("flows_1m")
            .await
            .contains("TTL toDate(ts) + toIntervalDay(30)")
    );
    assert!(
        engine("probe_health")
            .await
            .contains("TTL toDate(ts) + toIntervalDay(30)")
    );
    let hourly = engine("flows_1h").await;
    assert!(!hourly.contains("TTL"), "hourly rollups are kept: {hourly}");
    assert!(
        hourly.contains("non_replicated_deduplication_window = 100000"),
        "{hourly}"
    );

    let columns = ch
        .query(
            "SELECT name, type, default_kind FROM system.columns WHERE database = 'tg_mig' \
             AND table = 'flows' AND name IN ('probe_id', 'direction', 'src', 'vlan', 'first', \
             'icmp_type', 'src_country', 'src_asn', 'src_text', 'received_at', 'source', \
             'sampling', 'dns_qname', 'dns_rcode', 'tls_sni', 'tunnel', 'tunnel_id', \
             'outer_src') ORDER BY name",
        )
        .await;
    assert_eq!(
        columns,
        "direction\tEnum8('ingress' = 0, 'egress' = 1)\t\n\
         dns_qname\tString\tDEFAULT\n\
         dns_rcode\tInt16\tDEFAULT\n\
         first\tDateTime64(9, 'UTC')\t\n\
         icmp_type\tNullable(UInt8)\t\n\
         outer_src\tIPv6\tDEFAULT\n\
         probe_id\tLowCardinality(String)\t\n\
         received_at\tDateTime64(3, 'UTC')\tDEFAULT\n\
         sampling\tUInt32\tDEFAULT\n\
         source\tEnum8('probe' = 0, 'netflow_v5' = 1, 'netflow_v9' = 2, 'ipfix' = 3)\tDEFAULT\n\
         src\tIPv6\t\n\
         src_asn\tUInt32\tDEFAULT\n\
         src_country\tLowCardinality(String)\tDEFAULT\n\
         src_text\tString\tALIAS\n\
         tls_sni\tString\tDEFAULT\n\
         tunnel\tLowCardinality(String)\tDEFAULT\n\
         tunnel_id\tUInt32\tDEFAULT\n\
         vlan\tNullable(UInt16)\t"
    );

    let alert_columns = ch
        .query(
            "SELECT name, type FROM system.columns WHERE database = 'tg_mig' \
             AND table = 'alerts' AND name IN ('packets', 'bytes') ORDER BY name",
        )
        .await;
    assert_eq!(
        alert_columns,
        "bytes\tNullable(UInt64)\npackets\tNullable(UInt64)"
    );

    // Second start: nothing to do, checksums verified, no duplicate bookkeeping.
    let again = s.migrate().await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.already_applied, ALL);
    assert_eq!(again.version, 13);
    assert!(again.retention_changes.is_empty());
    assert_eq!(
        ch.query("SELECT count() FROM tg_mig.schema_migrations")
            .await,
        ALL.len().to_string()
    );
    let checksums = ch
        .query("SELECT checksum FROM tg_mig.schema_migrations ORDER BY version")
        .await;
    let expected: Vec<String> = MIGRATIONS
        .iter()
        .map(|m| tidegate_collector::sinks::clickhouse::migrations::checksum(m.sql))
        .collect();
    assert_eq!(checksums, expected.join("\n"));

    // A migration interrupted half way (its view created, its row never recorded) is
    // completed by the next start: statements are IF NOT EXISTS.
    ch.exec("DROP TABLE tg_mig.flows_1h_mv").await;
    ch.exec("DELETE FROM tg_mig.schema_migrations WHERE version = 2")
        .await;
    let resumed = s.migrate().await.unwrap();
    assert_eq!(resumed.applied, ["0002_rollups.sql"]);
    assert_eq!(
        ch.query(
            "SELECT count() FROM system.tables WHERE database = 'tg_mig' AND name = 'flows_1h_mv'"
        )
        .await,
        "1"
    );
}

#[tokio::test]
async fn retention_follows_the_config_at_each_start() {
    let ch = TestClickHouse::start();
    // A start of the collector on `database` with `retention_days`: what it changed.
    let start = async |database: &str, retention_days| {
        sink(config(ch.url(), database, retention_days))
            .await
            .migrate()
            .await
            .unwrap()
    };
    let engine = async |database: &str, t: &str| {
        ch.query(&format!(
            "SELECT engine_full FROM system.tables WHERE database = '{database}' AND name = '{t}'"
        ))
        .await
    };
    start("tg_ret", 30).await;

    let week = start("tg_ret", 7).await;
    assert!(week.applied.is_empty());
    assert_eq!(
        week.retention_changes,
        [
            "flows: TTL toDate(first) + toIntervalDay(7)",
            "flows_1m: TTL toDate(ts) + toIntervalDay(7)",
            "probe_health: TTL toDate(ts) + toIntervalDay(7)",
        ]
    );
    assert!(
        engine("tg_ret", "flows")
            .await
            .contains("TTL toDate(first) + toIntervalDay(7) SETTINGS")
    );
    let same = start("tg_ret", 7).await;
    assert!(same.retention_changes.is_empty(), "{same:?}");

    let forever = start("tg_ret", 0).await;
    assert_eq!(
        forever.retention_changes,
        [
            "flows: TTL removed",
            "flows_1m: TTL removed",
            "probe_health: TTL removed"
        ]
    );
    for t in ["flows", "flows_1m", "probe_health"] {
        assert!(!engine("tg_ret", t).await.contains("TTL"), "{t}");
    }
    // A fresh database with retention 0 is created without TTL at all.
    let fresh = start("tg_ret0", 0).await;
    assert!(fresh.retention_changes.is_empty());
    assert!(!engine("tg_ret0", "flows").await.contains("TTL"));
    assert!(!engine("tg_ret0", "flows_1h").await.contains("TTL"));

    // Hourly rollups: kept forever by default, or for rollup_retention_days (never
    // shorter than the flows they sum).
    let rollups = async |raw: u32, rollup: u32| {
        let mut c = config(ch.url(), "tg_ret", raw);
        c.rollup_retention_days = rollup;
        sink(c).await.migrate().await.unwrap().retention_changes
    };
    assert_eq!(
        rollups(30, 400).await,
        [
            "flows: TTL toDate(first) + toIntervalDay(30)",
            "flows_1m: TTL toDate(ts) + toIntervalDay(30)",
            "probe_health: TTL toDate(ts) + toIntervalDay(30)",
            "flows_1h: TTL toDate(ts) + toIntervalDay(400)",
        ]
    );
    assert!(
        engine("tg_ret", "flows_1h")
            .await
            .contains("TTL toDate(ts) + toIntervalDay(400)")
    );
    assert_eq!(rollups(30, 0).await, ["flows_1h: TTL removed"]);
    assert!(!engine("tg_ret", "flows_1h").await.contains("TTL"));
}

#[test]
fn hourly_rollups_never_expire_before_the_flows_they_sum() {
    let check = |raw: u32, rollup: u32| {
        let mut c = tidegate_collector::sinks::clickhouse::ClickHouseConfig {
            retention_days: raw,
            ..Default::default()
        };
        c.rollup_retention_days = rollup;
        c.validate().map_err(|e| e.to_string())
    };
    assert!(check(30, 0).is_ok());
    assert!(check(30, 30).is_ok());
    assert!(check(30, 365).is_ok());
    assert!(check(0, 0).is_ok());
    let e = check(30, 7).unwrap_err();
    assert!(
        e.contains("rollup_retention_days") && e.contains("retention_days (30)"),
        "{e}"
    );
    let e = check(0, 365).unwrap_err();
    assert!(e.contains("0: forever"), "{e}");
}

#[tokio::test]
async fn an_edited_or_unknown_migration_stops_the_start() {
    let ch = TestClickHouse::start();
    let s = sink(config(ch.url(), "tg_edit", 30)).await;
    s.migrate().await.unwrap();

    // What an edited 0002_rollups.sql looks like from the database's side: the recorded
    // checksum differs from the embedded file's.
    ch.exec(
        "ALTER TABLE tg_edit.schema_migrations UPDATE checksum = 'deadbeef' WHERE version = 2 \
         SETTINGS mutations_sync = 2",
    )
    .await;
    let e = s.migrate().await.unwrap_err();
    assert!(
        matches!(e, SinkError::MigrationChanged { version: 2, .. }),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert_eq!(e.class(), ErrorClass::Config);
    let msg = e.to_string();
    assert!(
        msg.contains(
            "migration 0002_rollups in database tg_edit was applied with checksum deadbeef"
        ) && msg.contains("must never be edited"),
        "{msg}"
    );

    // A newer collector's migration.
    ch.exec("ALTER TABLE tg_edit.schema_migrations DELETE WHERE version = 2 SETTINGS mutations_sync = 2")
        .await;
    s.migrate().await.unwrap();
    ch.exec(
        "INSERT INTO tg_edit.schema_migrations (version, name, checksum) VALUES (99, 'future', 'x')",
    )
    .await;
    let e = s.migrate().await.unwrap_err();
    assert!(
        matches!(e, SinkError::MigrationUnknown { version: 99, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("migration 0099_future, which this build does not know"),
        "{e}"
    );
}

#[tokio::test]
async fn a_flows_column_altered_by_hand_stops_the_start_naming_it() {
    let ch = TestClickHouse::start();
    // Retention 0: the record's 2023 timestamps must not expire on insert. LZ4-compressed
    // INSERT bodies (every other test's go uncompressed: `auto` to a server on loopback).
    let mut cfg = config(ch.url(), "tg_cols", 0);
    cfg.compression = tidegate_collector::sinks::clickhouse::Compression::Lz4;
    let s = sink(cfg).await;
    s.migrate().await.unwrap();
    // Flows are stored as checked (plain RowBinary) and read back as they were written.
    let r = tidegate_wire::FlowRecord {
        src: "192.0.2.1".parse().unwrap(),
        dst: "198.51.100.7".parse().unwrap(),
        sport: 1234,
        dport: 443,
        proto: 6,
        packets: 3,
        bytes: 180,
        first: 1_700_000_000_000_000_001,
        last: 1_700_000_000_500_000_000,
        line: "line-a".into(),
        ..Default::default()
    };
    s.insert_batch("edge-1", 1, std::slice::from_ref(&r))
        .await
        .unwrap();
    assert_eq!(
        ch.query(
            "SELECT src_text, dst_text, sport, packets, bytes, toUnixTimestamp64Nano(first) \
             FROM tg_cols.flows"
        )
        .await,
        "192.0.2.1\t198.51.100.7\t1234\t3\t180\t1700000000000000001"
    );

    ch.exec("ALTER TABLE tg_cols.flows MODIFY COLUMN tcp_flags UInt32")
        .await;
    let e = s.migrate().await.unwrap_err();
    assert!(matches!(e, SinkError::SchemaDrift { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("flows.tcp_flags is of type UInt32 where this collector writes UInt16"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_configuration_gives_clear_errors() {
    // A configuration the sink refuses to be created with.
    let refused = async |url: &str, database: &str| {
        ClickHouseSink::connect(config(url.into(), database, 30), SinkMetrics::default())
            .await
            .unwrap_err()
    };
    // Wrong database name characters: refused before any network traffic.
    let e = refused("http://127.0.0.1:8123", "tide-gate").await;
    assert_eq!(
        e.to_string(),
        "clickhouse.database: \"tide-gate\" is not a valid database name: use 1 to 64 \
         characters from [A-Za-z0-9_], not starting with a digit"
    );
    assert_eq!(e.class(), ErrorClass::Config);
    let e = refused("https://ch.example:8443", "tidegate").await;
    assert!(
        e.to_string()
            .starts_with("clickhouse.url: \"https://ch.example:8443\": https is not supported"),
        "{e}"
    );

    // Unreachable URL: the sink is created (the server may come later); calls fail fast
    // with a retryable error naming the URL and the operation.
    let url = format!("http://127.0.0.1:{}", free_port());
    let s = sink(config(url.clone(), "tidegate", 30)).await;
    assert!(!s.ping().await);
    let started = Instant::now();
    let e = s.migrate().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, SinkError::Unreachable { .. }), "{e:?}");
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "ClickHouse at {url} unreachable during create database:"
        )),
        "{msg}"
    );

    // Wrong credentials: a configuration error, not worth retrying.
    let ch = TestClickHouse::start();
    assert!(sink(config(ch.url(), "tidegate", 30)).await.ping().await);
    let mut cfg = config(ch.url(), "tidegate", 30);
    cfg.user = "nobody".into();
    cfg.password = "wrong".into();
    let e = sink(cfg).await.migrate().await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(e.class(), ErrorClass::Config, "{e}");
    assert!(
        matches!(
            e,
            SinkError::Server {
                code: Some(516),
                ..
            }
        ),
        "{e:?}"
    );
}
