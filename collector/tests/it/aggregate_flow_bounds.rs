//! The flow tables stay bounded: CLOCK eviction (flows not seen again go first) at
//! `max_flows_per_shard`, idle flows forgotten in event time; line statistics keep
//! counting every record.

use std::ops::Range;
use std::time::Duration;

use crate::support::aggregate::record;
use tidegate_collector::aggregate::{AggregateConfig, AggregateMetrics, Aggregator};

fn start(shards: usize, max_flows: usize, idle: Duration) -> (Aggregator, AggregateMetrics) {
    let metrics = AggregateMetrics::default();
    let cfg = AggregateConfig {
        shards,
        max_flows_per_shard: max_flows,
        flow_idle: idle,
        ..AggregateConfig::default()
    };
    (
        Aggregator::start(cfg, metrics.clone()).expect("start"),
        metrics,
    )
}

const HOUR: Duration = Duration::from_secs(3600);

/// Submits one record of each flow of `sports` on line l1, from second `first_s` to
/// `last_s`, 10 bytes, one batch per record.
fn submit_each(agg: &Aggregator, sports: Range<u16>, first_s: u64, last_s: u64) {
    for i in sports {
        agg.submit("p", &[record(i, "l1", first_s, last_s, 10)]);
    }
}

/// The source ports of the flows held, sorted.
fn held(agg: &Aggregator) -> Vec<u16> {
    let mut held: Vec<u16> = agg.flows().iter().map(|f| f.key.sport).collect();
    held.sort();
    held
}

#[test]
fn a_full_shard_evicts_flows_not_seen_again_and_counts_them() {
    let (agg, metrics) = start(1, 100, HOUR);
    submit_each(&agg, 0..100, 0, 1);
    // Flow 0 seen again: it outlasts the flows seen once (flow 1 goes first).
    agg.submit("p", &[record(0, "l1", 1, 2, 10)]);
    submit_each(&agg, 100..199, 2, 3);
    agg.flush();
    // 99 evictions: flows 1..=99, not the recently seen flow 0.
    assert_eq!(metrics.evictions.get(), 99);
    let mut expect: Vec<u16> = vec![0];
    expect.extend(100..199);
    assert_eq!(held(&agg), expect);
    submit_each(&agg, 199..250, 2, 3);
    agg.flush();
    assert_eq!(metrics.evictions.get(), 150);
    assert_eq!(held(&agg), (150..250).collect::<Vec<u16>>());
    let snap = agg.snapshot();
    assert_eq!(snap.active_flows, 100);
    let l = &snap.lines["l1"];
    assert_eq!(l.active_flows, 100);
    // Every record still counts in the line's totals.
    assert_eq!(l.ingress.totals.records, 251);
    assert_eq!(l.ingress.totals.bytes, 2510);
    assert_eq!(l.ingress.totals.flows, 250);
    agg.shutdown();
}

#[test]
fn every_shard_respects_its_bound() {
    let (agg, metrics) = start(3, 50, HOUR);
    let recs: Vec<_> = (0..1000u16).map(|i| record(i, "l1", 0, 1, 10)).collect();
    agg.submit("p", &recs);
    agg.flush();
    let held = agg.flows().len() as u64;
    assert!(held <= 150, "{held} flows held");
    assert_eq!(metrics.evictions.get() + held, 1000);
    assert_eq!(agg.snapshot().active_flows, held);
    agg.shutdown();
}

#[test]
fn idle_flows_are_forgotten_in_event_time() {
    let (agg, metrics) = start(2, 1000, Duration::from_secs(10));
    agg.submit(
        "p",
        &[record(1, "l1", 0, 1, 100), record(2, "l1", 0, 1, 100)],
    );
    // Flow 1 resumes after an idle gap longer than flow_idle: a new merged flow.
    agg.submit("p", &[record(1, "l1", 50, 51, 7)]);
    agg.submit("p", &[record(3, "l1", 55, 56, 100)]);
    agg.flush();
    let mut flows = agg.flows();
    flows.sort_by_key(|f| f.key.sport);
    let got: Vec<(u16, u64)> = flows
        .iter()
        .map(|f| (f.key.sport, f.counters.bytes))
        .collect();
    assert_eq!(got, vec![(1, 7), (3, 100)]);
    assert_eq!(metrics.expired.get(), 2);
    // A record of flow 1 from before its old incarnation was forgotten is late: counted in
    // the line, not merged into the new flow.
    agg.submit("p", &[record(1, "l1", 0, 1, 1000)]);
    agg.flush();
    assert_eq!(metrics.late_records.get(), 1);
    let snap = agg.snapshot();
    let l = &snap.lines["l1"];
    assert_eq!(l.active_flows, 2);
    assert_eq!(l.ingress.totals.records, 5);
    assert_eq!(l.ingress.totals.bytes, 1307);
    assert_eq!(l.ingress.totals.flows, 4);
    assert_eq!(
        agg.flows()
            .iter()
            .find(|f| f.key.sport == 1)
            .unwrap()
            .counters
            .bytes,
        7
    );
    agg.shutdown();
}

#[test]
fn records_of_one_flow_from_two_probes_merge() {
    let (agg, _) = start(4, 1000, HOUR);
    agg.submit("probe-b", &[record(9, "l1", 5, 6, 300)]);
    agg.submit("probe-a", &[record(9, "l1", 0, 4, 200)]);
    agg.submit("probe-a", &[record(9, "l2", 0, 4, 1)]);
    agg.flush();
    let mut flows = agg.flows();
    flows.sort_by(|a, b| a.key.line.cmp(&b.key.line));
    assert_eq!(flows.len(), 2);
    let f = &flows[0];
    assert_eq!(f.key.line, "l1");
    assert_eq!((f.counters.bytes, f.counters.packets), (500, 2));
    assert_eq!(f.counters.last - f.counters.first, 6_000_000_000);
    assert_eq!(f.probes, vec!["probe-a".to_string(), "probe-b".to_string()]);
    // One merged flow started, at second 0 (it moved from second 5 to second 0).
    let snap = agg.snapshot();
    let l1 = &snap.lines["l1"].ingress;
    assert_eq!(l1.totals.flows, 1);
    assert_eq!(l1.window_sum().flows, 1);
    let start_cell = (f.counters.first / 1_000_000_000 - snap.window_start_s) as usize;
    assert_eq!(l1.per_second[start_cell].flows, 1);
    agg.shutdown();
}

#[test]
fn a_record_stamped_in_the_far_future_does_not_make_every_flow_idle() {
    let (agg, metrics) = start(2, 1000, Duration::from_secs(300));
    let now_s = tidegate_base::clock::wall_ns() / 1_000_000_000;
    submit_each(&agg, 0..10, now_s - 2, now_s - 1);
    // One record from a clock in 2100.
    agg.submit("p", &[record(99, "l1", 4_102_444_800, 4_102_444_801, 10)]);
    agg.submit("p", &[record(11, "l1", now_s, now_s, 10)]);
    agg.flush();
    let watermark = agg.watermark_ns();
    let limit = tidegate_base::clock::wall_ns() + tidegate_collector::aggregate::AHEAD_NS;
    assert!(watermark <= limit, "event time at {watermark}");
    assert_eq!(metrics.expired.get(), 0, "flows forgotten as idle");
    let held = held(&agg);
    assert!((0..10).all(|p| held.contains(&p)), "{held:?}");
    agg.shutdown();
}

#[test]
fn a_peer_naming_a_new_line_per_record_is_bounded_and_counted_under_other_lines() {
    let (agg, _) = start(1, 100_000, HOUR);
    let lines: Vec<String> = (0..3000).map(|i| format!("spoofed-{i}")).collect();
    let recs: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| record(i as u16, l, 0, 1, 10))
        .collect();
    agg.submit("p", &recs);
    agg.flush();
    let snap = agg.snapshot();
    let max = tidegate_collector::aggregate::MAX_LINES;
    assert_eq!(snap.lines.len(), max + 1);
    let other = &snap.lines[tidegate_collector::aggregate::OTHER_LINES];
    assert_eq!(other.ingress.totals.records, 3000 - max as u64);
    // Every record still counts once.
    let total: u64 = snap.lines.values().map(|l| l.ingress.totals.bytes).sum();
    assert_eq!(total, 30_000);
    agg.shutdown();
}
