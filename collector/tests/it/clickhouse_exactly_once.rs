//! The collector's spool replays a batch until the sink accepts it: whatever the number of
//! attempts, ClickHouse holds its records once, in `flows` and in the rollups.

use crate::support::clickhouse::start_sink;
use tidegate_testkit::probe::corpus_records;

#[tokio::test]
async fn a_retried_batch_is_stored_once_and_other_batches_are_not_mistaken_for_it() {
    let records = corpus_records();
    let batch = &records[..150];
    let (ch, s) = start_sink("tg_once", 100_000).await;
    let count = async || {
        ch.query("SELECT count(), sum(packets) FROM tg_once.flows")
            .await
    };
    let packets: u64 = batch.iter().map(|r| r.packets).sum();

    s.insert_batch("edge-1", 1, batch).await.unwrap();
    s.insert_batch("edge-1", 1, batch).await.unwrap();
    assert_eq!(
        count().await,
        format!("150\t{packets}"),
        "same (probe, seq) twice"
    );

    s.insert_batch("edge-1", 2, batch).await.unwrap();
    assert_eq!(
        count().await,
        format!("300\t{}", 2 * packets),
        "same records, next seq"
    );

    s.insert_batch("edge-2", 1, batch).await.unwrap();
    assert_eq!(
        count().await,
        format!("450\t{}", 3 * packets),
        "same seq, other probe"
    );

    // Separators in probe ids cannot make two batches share a token.
    s.insert_batch("a:1", 2, &batch[..3]).await.unwrap();
    s.insert_batch("a", 1, &batch[..3]).await.unwrap();
    assert_eq!(
        ch.query("SELECT probe_id, batch_seq, count() FROM tg_once.flows WHERE probe_id IN ('a', 'a:1') GROUP BY ALL ORDER BY ALL")
            .await,
        "a\t1\t3\na:1\t2\t3"
    );
}

#[tokio::test]
async fn a_split_batch_interrupted_half_way_is_completed_by_its_retry() {
    let records = corpus_records();
    let batch = &records[..50];
    // 7 rows per INSERT: 50 records go in 8 parts, tokens edge-1:5:0 ... edge-1:5:7.
    let (ch, s) = start_sink("tg_split", 7).await;

    // The first attempt stored parts 0 and 1 (rows 0..14) and then failed: exactly what
    // sending the first 14 records of the batch stores.
    s.insert_batch("edge-1", 5, &batch[..14]).await.unwrap();
    assert_eq!(ch.query("SELECT count() FROM tg_split.flows").await, "14");

    // The spool's retry sends the whole batch: parts 0 and 1 are dropped, 2..7 stored.
    s.insert_batch("edge-1", 5, batch).await.unwrap();
    s.insert_batch("edge-1", 5, batch).await.unwrap();
    let packets: u64 = batch.iter().map(|r| r.packets).sum();
    let bytes: u64 = batch.iter().map(|r| r.bytes).sum();
    assert_eq!(
        ch.query("SELECT count(), sum(packets), sum(bytes), uniqExact(first, src, dst, sport, dport) FROM tg_split.flows")
            .await,
        format!("50\t{packets}\t{bytes}\t{}", {
            let mut keys: Vec<_> = batch
                .iter()
                .map(|r| (r.first, r.src, r.dst, r.sport, r.dport))
                .collect();
            keys.sort();
            keys.dedup();
            keys.len()
        })
    );
}

#[tokio::test]
async fn rollups_equal_the_raw_sums_even_after_retries() {
    let records = corpus_records();
    let (ch, s) = start_sink("tg_roll", 64).await;
    for (i, batch) in records.chunks(100).enumerate() {
        let seq = i as u64 + 1;
        // Every batch is retried once, the first one three times.
        let attempts = if i == 0 { 3 } else { 2 };
        for _ in 0..attempts {
            s.insert_batch("edge-roll", seq, batch).await.unwrap();
        }
    }

    let totals = format!(
        "{}\t{}\t{}",
        records.iter().map(|r| r.packets).sum::<u64>(),
        records.iter().map(|r| r.bytes).sum::<u64>(),
        records.len()
    );
    assert_eq!(
        ch.query("SELECT sum(packets), sum(bytes), count() FROM tg_roll.flows")
            .await,
        totals
    );
    for (table, window) in [
        ("flows_1m", "toStartOfMinute"),
        ("flows_1h", "toStartOfHour"),
    ] {
        let raw = ch
            .query(&format!(
                "SELECT {window}(toDateTime(first, 'UTC')) AS ts, line, direction, proto, \
                 src_country, dst_country, sum(packets), sum(bytes), count() \
                 FROM tg_roll.flows GROUP BY ALL ORDER BY ALL"
            ))
            .await;
        let rollup = ch
            .query(&format!(
                "SELECT ts, line, direction, proto, src_country, dst_country, \
                 sum(packets), sum(bytes), sum(flows) FROM tg_roll.{table} GROUP BY ALL ORDER BY ALL"
            ))
            .await;
        assert!(
            raw.lines().count() >= 8,
            "{table}: several windows, lines, protocols: {raw}"
        );
        assert_eq!(rollup, raw, "{table}");
        assert_eq!(
            ch.query(&format!(
                "SELECT sum(packets), sum(bytes), sum(flows) FROM tg_roll.{table}"
            ))
            .await,
            totals,
            "{table}"
        );
        // Once merged, one row per key, same sums.
        ch.exec(&format!("OPTIMIZE TABLE tg_roll.{table} FINAL"))
            .await;
        assert_eq!(
            ch.query(&format!(
                "SELECT ts, line, direction, proto, src_country, dst_country, packets, bytes, \
                 flows FROM tg_roll.{table} ORDER BY ALL"
            ))
            .await,
            raw,
            "{table} after merge"
        );
    }
}
