//! The collector stores the records of real captures in ClickHouse: every record comes
//! back exactly (counters, nanosecond timestamps, IPv4 and IPv6 addresses, VLAN null or
//! set, ICMP type/code, tunnel kind, id and outer endpoints), and the per-flow sums ClickHouse computes equal the records'.

use std::collections::BTreeMap;

use crate::support::clickhouse::start_sink;
use tidegate_collector::sinks::clickhouse::{ErrorClass, FlowRow, SinkError};
use tidegate_testkit::probe::corpus_records;

#[tokio::test]
async fn corpus_records_come_back_exactly_and_per_flow_sums_match() {
    let records = corpus_records();
    // What this test covers is really in the data.
    assert!(records.len() > 300, "{}", records.len());
    assert!(records.iter().any(|r| r.src.is_ipv4()));
    assert!(records.iter().any(|r| r.src.is_ipv6()));
    assert!(records.iter().any(|r| r.vlan.is_none()));
    assert!(records.iter().any(|r| r.vlan.is_some()));
    assert!(records.iter().any(|r| r.icmp_type.is_some()));
    assert!(
        records
            .iter()
            .filter_map(|r| r.tunnel.as_ref())
            .any(|t| t.outer_src.is_some_and(|a| a.is_ipv6()))
    );
    assert!(
        records
            .iter()
            .filter_map(|r| r.tunnel.as_ref())
            .any(|t| t.outer_src.is_some_and(|a| a.is_ipv4()))
    );
    assert!(
        records.iter().any(|r| r.first % 1000 != 0),
        "sub-microsecond timestamps"
    );

    // 40 rows per INSERT: batches of 100 records go in 3 parts.
    let (ch, s) = start_sink("tg_corpus", 40).await;
    let mut expected = Vec::new();
    for (i, batch) in records.chunks(100).enumerate() {
        let seq = i as u64 + 1;
        s.insert_batch("edge-corpus-1", seq, batch).await.unwrap();
        expected.extend(
            batch
                .iter()
                .map(|r| (seq, serde_json::to_string(r).unwrap())),
        );
    }

    // Row by row: every record, with the batch it came in.
    let client = ch.client();
    let mut rows = client
        .query("SELECT ?fields FROM tg_corpus.flows")
        .fetch::<FlowRow<'_>>()
        .unwrap();
    let mut got: Vec<(u64, String)> = Vec::new();
    while let Some(r) = rows.next().await.unwrap() {
        assert_eq!(r.probe_id, "edge-corpus-1");
        got.push((
            r.batch_seq,
            serde_json::to_string(&r.record().unwrap()).unwrap(),
        ));
    }
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);

    // Per flow, as an analyst would sum them (addresses through the text aliases).
    let mut truth: BTreeMap<String, (u64, u64, u64, u64, u16, u64)> = BTreeMap::new();
    for r in &records {
        let vlan = r.vlan.map_or("\\N".to_string(), |v| v.to_string());
        let key = format!(
            "{}\t{:?}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.line, r.direction, r.src, r.dst, r.sport, r.dport, r.proto, vlan
        )
        .replace("Ingress", "ingress")
        .replace("Egress", "egress");
        let e = truth.entry(key).or_insert((0, 0, u64::MAX, 0, 0, 0));
        e.0 += r.packets;
        e.1 += r.bytes;
        e.2 = e.2.min(r.first);
        e.3 = e.3.max(r.last);
        e.4 |= r.tcp_flags;
        e.5 += 1;
    }
    let want: Vec<String> = truth
        .iter()
        .map(|(k, v)| format!("{k}\t{}\t{}\t{}\t{}\t{}\t{}", v.0, v.1, v.2, v.3, v.4, v.5))
        .collect();
    let sums = ch
        .query(
            "SELECT line, direction, src_text, dst_text, sport, dport, proto, vlan, \
             sum(packets), sum(bytes), toUnixTimestamp64Nano(min(first)), \
             toUnixTimestamp64Nano(max(last)), groupBitOr(tcp_flags), count() \
             FROM tg_corpus.flows \
             GROUP BY line, direction, src_text, dst_text, sport, dport, proto, vlan",
        )
        .await;
    let mut sums: Vec<&str> = sums.lines().collect();
    sums.sort();
    let mut want_sorted: Vec<&str> = want.iter().map(String::as_str).collect();
    want_sorted.sort();
    assert_eq!(sums, want_sorted);

    // Filtering by IPv4 text, or on the IPv6 column with toIPv6().
    let v4 = records.iter().find(|r| r.src.is_ipv4()).unwrap().src;
    let n = records.iter().filter(|r| r.src == v4).count().to_string();
    assert_eq!(
        ch.query(&format!(
            "SELECT count() FROM tg_corpus.flows WHERE src_text = '{v4}'"
        ))
        .await,
        n
    );
    assert_eq!(
        ch.query(&format!(
            "SELECT count() FROM tg_corpus.flows WHERE src = toIPv6('{v4}')"
        ))
        .await,
        n
    );
    // Enrichment columns wait for enrichment; received_at is the server's clock.
    assert_eq!(
        ch.query(
            "SELECT countIf(src_country != '' OR dst_asn != 0 OR src_zone != ''), \
             min(received_at) > now64(3) - INTERVAL 1 HOUR FROM tg_corpus.flows"
        )
        .await,
        "0\t1"
    );
    let rows = s
        .metrics()
        .rows_inserted
        .get_or_create(&tidegate_collector::sinks::clickhouse::TableLabel { table: "flows" })
        .get();
    assert_eq!(rows, records.len() as u64);
}

#[tokio::test]
async fn a_record_that_cannot_be_stored_fails_its_whole_batch() {
    let mut records = corpus_records();
    records.truncate(20);
    records[5].last = u64::MAX;
    // 4 rows per INSERT: the bad record is in the second part; the first must not be sent.
    let (ch, s) = start_sink("tg_bad", 4).await;
    let e = s.insert_batch("edge-1", 9, &records).await.unwrap_err();
    assert!(matches!(e, SinkError::Invalid { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Data);
    assert!(!e.is_retryable());
    assert_eq!(
        e.to_string(),
        "record 5 of batch edge-1:9: last = 18446744073709551615 ns is after 2262-04-11, \
         the end of ClickHouse's DateTime64(9)"
    );
    assert_eq!(ch.query("SELECT count() FROM tg_bad.flows").await, "0");
    // An empty batch is a no-op.
    s.insert_batch("edge-1", 10, &[]).await.unwrap();
    assert_eq!(ch.query("SELECT count() FROM tg_bad.flows").await, "0");
}
