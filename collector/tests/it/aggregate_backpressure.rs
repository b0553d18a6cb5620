//! When shards are slower than the input, submitting blocks (backpressure) instead of
//! dropping records or queueing without bound; `try_submit` refuses a batch whole.

use std::time::{Duration, Instant};

use crate::support::aggregate::record;
use tidegate_collector::aggregate::{AggregateConfig, AggregateMetrics, Aggregator, Full};
use tidegate_wire::record::FlowRecord;

fn slow(shards: usize, shard: usize, per_record: Duration) -> AggregateConfig {
    AggregateConfig {
        shards,
        queue_depth: 1,
        debug_slow_shard: Some((shard, per_record)),
        ..AggregateConfig::default()
    }
}

fn ingress_records(agg: &Aggregator) -> u64 {
    agg.snapshot()
        .lines
        .values()
        .map(|l| l.ingress.totals.records)
        .sum()
}

#[test]
fn a_slow_shard_blocks_submit_and_every_record_is_counted() {
    let metrics = AggregateMetrics::default();
    let agg =
        Aggregator::start(slow(1, 0, Duration::from_millis(20)), metrics.clone()).expect("start");
    let records: Vec<FlowRecord> = (0..20u16).map(|i| record(i, "l1", 0, 1, 100)).collect();
    let t0 = Instant::now();
    for b in records.chunks(2) {
        agg.submit("probe-a", b);
    }
    let submitting = t0.elapsed();
    // The shard needs 40 ms per batch. With one queued batch and one in progress, the
    // submitter can only be two batches ahead: at least 8 batches' time was spent waiting.
    assert!(
        submitting >= Duration::from_millis(8 * 40 - 20),
        "submit returned after {submitting:?}: not held back"
    );
    let blocked = metrics.submit_blocked_seconds.get();
    assert!(blocked >= 0.25, "blocked time {blocked}s");
    agg.flush();
    assert_eq!(ingress_records(&agg), 20);
    let snap = agg.snapshot();
    assert_eq!(snap.lines["l1"].ingress.totals.bytes, 2000);
    assert_eq!(snap.active_flows, 20);
    assert_eq!(metrics.records_in.get(), 20);
    agg.shutdown();
}

#[test]
fn try_submit_refuses_a_batch_whole_when_one_target_queue_is_full() {
    let metrics = AggregateMetrics::default();
    let agg =
        Aggregator::start(slow(2, 0, Duration::from_millis(300)), metrics.clone()).expect("start");
    // Records for each shard.
    let mut on = [Vec::new(), Vec::new()];
    for i in 0..200u16 {
        let r = record(i, "l1", 0, 1, 10);
        on[agg.shard_for(&r)].push(r);
    }
    assert!(on[0].len() >= 3 && !on[1].is_empty(), "hash spreads keys");
    // A occupies shard 0 for 300 ms; B waits in its queue (depth 1).
    agg.submit("probe-a", &on[0][0..1]);
    agg.submit("probe-a", &on[0][1..2]);
    let both = [on[0][2].clone(), on[1][0].clone()];
    assert_eq!(agg.try_submit("probe-a", &both), Err(Full { shard: 0 }));
    assert_eq!(metrics.submit_full.get(), 1);
    // Shard 1 had room but got nothing of the refused batch.
    agg.flush();
    assert_eq!(ingress_records(&agg), 2);
    assert_eq!(metrics.records_in.get(), 2);
    // With room again, the same batch goes through whole.
    assert_eq!(agg.try_submit("probe-a", &both), Ok(()));
    agg.flush();
    assert_eq!(ingress_records(&agg), 4);
    assert_eq!(
        metrics
            .shard_records
            .get_or_create(&tidegate_collector::aggregate::ShardLabel::of(1))
            .get(),
        1
    );
    agg.shutdown();
}

#[test]
fn concurrent_submitters_lose_nothing_under_backpressure() {
    let metrics = AggregateMetrics::default();
    let cfg = AggregateConfig {
        shards: 3,
        queue_depth: 1,
        debug_slow_shard: Some((1, Duration::from_micros(200))),
        flow_idle: Duration::from_secs(3600),
        ..AggregateConfig::default()
    };
    let agg = Aggregator::start(cfg, metrics.clone()).expect("start");
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let agg = &agg;
            s.spawn(move || {
                let recs: Vec<FlowRecord> = (0..500u16)
                    .map(|i| record(t * 1000 + i, "l1", u64::from(i), u64::from(i) + 1, 64))
                    .collect();
                for b in recs.chunks(25) {
                    agg.submit(&format!("probe-{t}"), b);
                }
            });
        }
    });
    agg.flush();
    let snap = agg.snapshot();
    assert_eq!(snap.lines["l1"].ingress.totals.records, 2000);
    assert_eq!(snap.lines["l1"].ingress.totals.bytes, 2000 * 64);
    assert_eq!(snap.active_flows, 2000);
    assert!(metrics.submit_blocked_seconds.get() > 0.0);
    agg.shutdown();
}
