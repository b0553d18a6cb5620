//! Measurement: rows/s of `ClickHouseSink::insert_batch` against a plain `clickhouse` crate
//! insert of the same rows, in the same run, on a throwaway local server.
//!
//! ```sh
//! cargo test --release -p tidegate-collector --test clickhouse_insert_throughput \
//!     -- --ignored --nocapture
//! ```
//!
//! `TIDEGATE_CH_BENCH_ROWS` sets the number of rows (default 1,000,000). Background merges
//! are stopped during the runs so one run's merges do not slow the next.

#[path = "support/clickhouse.rs"]
mod clickhouse_support;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use clickhouse::Row;
use clickhouse_support::TestClickHouse;
use serde::Serialize;
use tidegate_collector::sinks::clickhouse::{ClickHouseConfig, ClickHouseSink, SinkMetrics};
use tidegate_common::{Direction, record::FlowRecord};

/// Rows per INSERT for every variant (the sink's default `max_rows_per_insert`).
const PER_INSERT: usize = 100_000;

/// What a user of the plain crate would write for `flows`.
#[derive(Row, Serialize)]
struct PlainRow<'a> {
    probe_id: &'a str,
    batch_seq: u64,
    line: &'a str,
    ifindex: u32,
    direction: i8,
    ip_version: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    vlan: Option<u16>,
    packets: u64,
    bytes: u64,
    first: i64,
    last: i64,
    tcp_flags: u16,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
}

fn v6(a: IpAddr) -> (u8, Ipv6Addr) {
    match a {
        IpAddr::V4(v4) => (4, v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => (6, v6),
    }
}

impl<'a> PlainRow<'a> {
    fn new(seq: u64, r: &'a FlowRecord) -> Self {
        let (ip_version, src) = v6(r.src);
        PlainRow {
            probe_id: "edge-bench",
            batch_seq: seq,
            line: &r.line,
            ifindex: r.ifindex,
            direction: r.direction as i8,
            ip_version,
            src,
            dst: v6(r.dst).1,
            sport: r.sport,
            dport: r.dport,
            proto: r.proto,
            vlan: r.vlan,
            packets: r.packets,
            bytes: r.bytes,
            first: r.first as i64,
            last: r.last as i64,
            tcp_flags: r.tcp_flags,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
        }
    }
}

/// `n` deterministic records over one hour of one day: 4 lines, 80 % IPv4, a third tagged.
fn synthetic(n: usize) -> Vec<FlowRecord> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let lines = ["hk-intl-1", "hk-intl-2", "sg-intl-1", "mo-intl-1"];
    let base: u64 = 1_763_900_000_000_000_000;
    (0..n)
        .map(|i| {
            let r = next();
            let (src, dst) = if r % 5 == 0 {
                (
                    IpAddr::V6(Ipv6Addr::from(
                        (0x2001_0db8u128 << 96) | u128::from(next() as u32),
                    )),
                    IpAddr::V6(Ipv6Addr::from(
                        (0x2001_0db9u128 << 96) | u128::from(next() as u32),
                    )),
                )
            } else {
                (
                    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (next() as u32 & 0x00ff_ffff))),
                    IpAddr::V4(Ipv4Addr::from(next() as u32)),
                )
            };
            let proto = [6u8, 17, 1][(r >> 8) as usize % 3];
            let first = base + (i as u64 * 3_600_000_000_000 / n as u64);
            let packets = 1 + (r >> 16) % 1000;
            FlowRecord {
                src,
                dst,
                sport: (r >> 24) as u16,
                dport: [443, 80, 53, 8443][(r >> 40) as usize % 4],
                proto,
                vlan: ((r >> 44) % 3 == 0).then_some(100 + (r >> 48) as u16 % 4),
                packets,
                bytes: packets * (40 + (r >> 50) % 1400),
                first,
                last: first + (r >> 20) % 60_000_000_000,
                tcp_flags: if proto == 6 { 0x1b } else { 0 },
                icmp_type: (proto == 1).then_some(8),
                icmp_code: (proto == 1).then_some(0),
                line: lines[(r >> 56) as usize % 4].to_string(),
                ifindex: 2 + (r >> 60) as u32 % 4,
                direction: if r & 1 == 0 {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
            }
        })
        .collect()
}

async fn sink(ch: &TestClickHouse, database: &str) -> ClickHouseSink {
    let s = ClickHouseSink::connect(
        ClickHouseConfig {
            url: ch.url(),
            database: database.into(),
            retention_days: 0,
            max_rows_per_insert: PER_INSERT,
            insert_timeout: Duration::from_secs(120),
            ..Default::default()
        },
        SinkMetrics::default(),
    )
    .await
    .unwrap();
    s.migrate().await.unwrap();
    s
}

async fn plain(
    ch: &TestClickHouse,
    database: &str,
    table: &str,
    validation: bool,
    records: &[FlowRecord],
) -> Duration {
    let client = ch
        .client()
        .with_database(database)
        .with_validation(validation);
    let started = Instant::now();
    for (i, chunk) in records.chunks(PER_INSERT).enumerate() {
        let mut insert = client.insert::<PlainRow>(table).await.unwrap();
        for r in chunk {
            insert.write(&PlainRow::new(i as u64, r)).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    started.elapsed()
}

async fn through_sink(s: &ClickHouseSink, records: &[FlowRecord]) -> Duration {
    let started = Instant::now();
    for (i, batch) in records.chunks(PER_INSERT).enumerate() {
        s.insert_batch("edge-bench", i as u64 + 1, batch)
            .await
            .unwrap();
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run in release with --ignored --nocapture"]
async fn insert_batch_rows_per_second_vs_the_plain_crate() {
    let n: usize = std::env::var("TIDEGATE_CH_BENCH_ROWS")
        .map(|v| v.parse().expect("TIDEGATE_CH_BENCH_ROWS: a number"))
        .unwrap_or(1_000_000);
    let records = synthetic(n);
    let bytes: u64 = records.iter().map(|r| r.bytes).sum();
    let ch = TestClickHouse::start();

    // Same schema everywhere; "no views" tables have no materialized views attached.
    let with_views = sink(&ch, "tg_bench").await;
    let without_views = sink(&ch, "tg_bench_nomv").await;
    ch.exec("DROP VIEW tg_bench_nomv.flows_1m_mv").await;
    ch.exec("DROP VIEW tg_bench_nomv.flows_1h_mv").await;
    let _plain_views = sink(&ch, "tg_bench_plain").await;
    ch.exec("CREATE TABLE tg_bench.scratch AS tg_bench.flows")
        .await;
    ch.exec("CREATE TABLE tg_bench.scratch_raw AS tg_bench.flows")
        .await;
    ch.exec("SYSTEM STOP MERGES").await;

    let mut results = Vec::new();
    let t = plain(&ch, "tg_bench", "scratch", true, &records).await;
    results.push((
        "plain crate -> scratch (no views), validation on",
        "tg_bench.scratch",
        t,
    ));
    let t = plain(&ch, "tg_bench", "scratch_raw", false, &records).await;
    results.push((
        "plain crate -> scratch (no views), validation off",
        "tg_bench.scratch_raw",
        t,
    ));
    let t = through_sink(&without_views, &records).await;
    results.push((
        "insert_batch -> flows without views",
        "tg_bench_nomv.flows",
        t,
    ));
    let t = plain(&ch, "tg_bench_plain", "flows", true, &records).await;
    results.push((
        "plain crate -> flows + 1m/1h views",
        "tg_bench_plain.flows",
        t,
    ));
    let t = through_sink(&with_views, &records).await;
    results.push((
        "insert_batch -> flows + 1m/1h views (production path)",
        "tg_bench.flows",
        t,
    ));
    ch.exec("SYSTEM START MERGES").await;

    println!("\n{n} rows, {PER_INSERT} rows per INSERT, ClickHouse 26.9 on 127.0.0.1:");
    for (what, table, t) in &results {
        assert_eq!(
            ch.query(&format!("SELECT count(), sum(bytes) FROM {table}"))
                .await,
            format!("{n}\t{bytes}"),
            "{what}"
        );
        println!(
            "  {what:<56} {:>7.2} s  {:>9.0} rows/s",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64()
        );
    }
    assert_eq!(
        ch.query("SELECT sum(flows), sum(bytes) FROM tg_bench.flows_1m")
            .await,
        format!("{n}\t{bytes}")
    );
}
