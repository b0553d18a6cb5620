//! Replaying the corpus through the aggregator in many small batches from two probes gives
//! exactly the single-threaded sums — per line, per flow, top talkers, histogram counts —
//! whatever the shard count.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::support::aggregate::{Reference, corpus_by_file, probe_of, submit_in_batches};
use tidegate_collector::aggregate::{
    AggregateConfig, AggregateKey, AggregateMetrics, AggregateSnapshot, Aggregator, Talker,
};
use tidegate_common::Direction;
use tidegate_wire::record::FlowRecord;

/// Nothing expires: every record of a key merges.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

fn config(shards: usize) -> AggregateConfig {
    AggregateConfig {
        shards,
        queue_depth: 4,
        flow_idle: FOREVER,
        top_n: 10,
        ..AggregateConfig::default()
    }
}

/// (address, bytes, packets, flows) of each talker, in order.
fn talkers(top: &[Talker]) -> Vec<(IpAddr, u64, u64, u64)> {
    top.iter()
        .map(|t| (t.addr, t.bytes, t.packets, t.flows))
        .collect()
}

fn run(
    shards: usize,
    records: &[FlowRecord],
) -> (
    AggregateSnapshot,
    Vec<tidegate_collector::aggregate::MergedFlow>,
    AggregateMetrics,
) {
    let metrics = AggregateMetrics::default();
    let agg = Aggregator::start(config(shards), metrics.clone()).expect("start");
    submit_in_batches(&agg, records);
    agg.flush();
    let snap = agg.snapshot();
    let flows = agg.flows();
    agg.shutdown();
    (snap, flows, metrics)
}

#[test]
fn corpus_totals_flows_talkers_and_histograms_match_the_reference_for_1_2_7_shards() {
    let records: Vec<FlowRecord> = corpus_by_file().into_iter().flat_map(|(_, r)| r).collect();
    assert!(
        records.len() > 1000,
        "corpus gave only {} records",
        records.len()
    );
    let reference = Reference::of(&records, probe_of);
    // The corpus really exercises merging: flows of several records, from both probes.
    let multi = reference
        .flows
        .values()
        .filter(|f| f.probes.len() == 2)
        .count();
    assert!(multi > 50, "only {multi} flows merged across probes");
    assert!(
        reference
            .totals
            .keys()
            .any(|(_, d)| *d == Direction::Egress)
    );

    let mut rates_of_first: Option<Vec<_>> = None;
    for shards in [1, 2, 7] {
        let (snap, flows, metrics) = run(shards, &records);
        let ctx = format!("{shards} shards");
        assert_eq!(snap.shards_answered, shards, "{ctx}");
        assert_eq!(snap.active_flows, reference.flows.len() as u64, "{ctx}");
        assert_eq!(metrics.records_in.get(), records.len() as u64, "{ctx}");
        assert_eq!(metrics.evictions.get(), 0, "{ctx}");
        assert_eq!(
            snap.watermark_ns,
            records.iter().map(|r| r.last.max(r.first)).max().unwrap(),
            "{ctx}"
        );

        // Per line and direction.
        let lines: BTreeSet<&String> = reference.totals.keys().map(|(l, _)| l).collect();
        assert_eq!(snap.lines.keys().collect::<BTreeSet<_>>(), lines, "{ctx}");
        for ((line, dir), t) in &reference.totals {
            let l = &snap.lines[line];
            let got = match dir {
                Direction::Ingress => l.ingress.totals,
                Direction::Egress => l.egress.totals,
            };
            assert_eq!(
                (got.bytes, got.packets, got.records, got.flows),
                (t.bytes, t.packets, t.records, t.flows),
                "{ctx} {line} {dir:?}"
            );
        }

        // Per flow.
        assert_eq!(flows.len(), reference.flows.len(), "{ctx}");
        for f in &flows {
            let r = reference
                .flows
                .get(&f.key)
                .unwrap_or_else(|| panic!("{ctx}: unknown flow {:?}", f.key));
            assert_eq!(
                {
                    let c = &f.counters;
                    (c.packets, c.bytes, c.first, c.last, c.tcp_flags)
                },
                (r.packets, r.bytes, r.first, r.last, r.tcp_flags),
                "{ctx} {:?}",
                f.key
            );
            assert_eq!(
                f.probes.iter().cloned().collect::<BTreeSet<_>>(),
                r.probes,
                "{ctx}"
            );
        }

        for (line, l) in &snap.lines {
            // Top talkers against brute force.
            let (src, dst, conv) = reference.top(line, 10);
            let got_src = talkers(&l.top.sources);
            let got_dst = talkers(&l.top.destinations);
            let got_conv: Vec<_> = l
                .top
                .conversations
                .iter()
                .map(|c| ((c.src, c.dst), c.bytes, c.packets, c.flows))
                .collect();
            assert_eq!(got_src, src, "{ctx} {line} sources");
            assert_eq!(got_dst, dst, "{ctx} {line} destinations");
            assert_eq!(got_conv, conv, "{ctx} {line} conversations");
            assert_eq!(src.len(), 10, "{line} has at least 10 sources");

            // One histogram value per record.
            let n = reference.records_per_line[line];
            let line_recs: Vec<&FlowRecord> = records.iter().filter(|r| &r.line == line).collect();
            let h = &l.histograms;
            assert_eq!(h.flow_bytes.len(), n, "{ctx} {line}");
            assert_eq!(h.flow_duration_ns.len(), n, "{ctx} {line}");
            assert_eq!(h.packet_size.len(), n, "{ctx} {line}");
            let max_bytes = line_recs.iter().map(|r| r.bytes).max().unwrap();
            assert_eq!(
                h.flow_bytes.max(),
                h.flow_bytes.highest_equivalent(max_bytes),
                "{ctx}"
            );
            let max_dur = line_recs.iter().map(|r| r.last - r.first).max().unwrap();
            assert_eq!(
                h.flow_duration_ns.max(),
                h.flow_duration_ns.highest_equivalent(max_dur)
            );
            let min_pkt = line_recs.iter().map(|r| r.bytes / r.packets).min().unwrap();
            assert_eq!(
                h.packet_size.min(),
                h.packet_size.lowest_equivalent(min_pkt)
            );
            let active: u64 = reference.flows.keys().filter(|k| &k.line == line).count() as u64;
            assert_eq!(l.active_flows, active, "{ctx} {line}");
        }

        // The rate window (the last 5 minutes of event time) is the same for every shard
        // count.
        let rates: Vec<_> = snap
            .lines
            .values()
            .map(|l| (l.ingress.per_second.clone(), l.egress.per_second.clone()))
            .collect();
        match &rates_of_first {
            None => rates_of_first = Some(rates),
            Some(r) => assert_eq!(&rates, r, "{ctx}: rates differ from 1 shard"),
        }
    }
}

#[test]
fn per_second_rates_add_up_to_the_totals_when_the_window_covers_the_capture() {
    // The capture with most records that spans less than the 1-day window.
    let (path, records) = corpus_by_file()
        .into_iter()
        .filter(|(_, r)| {
            !r.is_empty()
                && r.iter().map(|x| x.last).max().unwrap()
                    - r.iter().map(|x| x.first).min().unwrap()
                    < 80_000 * 1_000_000_000
        })
        .max_by_key(|(_, r)| r.len())
        .expect("a capture shorter than a day");
    assert!(
        records.len() > 100,
        "{}: {} records",
        path.display(),
        records.len()
    );
    let reference = Reference::of(&records, |_| "probe-a");
    for shards in [1, 3] {
        let cfg = AggregateConfig {
            shards,
            flow_idle: FOREVER,
            rate_window: Duration::from_secs(86_400),
            ..AggregateConfig::default()
        };
        let agg = Aggregator::start(cfg, AggregateMetrics::default()).expect("start");
        submit_in_batches(&agg, &records);
        let snap = agg.snapshot();
        assert_eq!(snap.window_secs, 86_400);
        for ((line, dir), t) in &reference.totals {
            let d = match dir {
                Direction::Ingress => &snap.lines[line].ingress,
                Direction::Egress => &snap.lines[line].egress,
            };
            let w = d.window_sum();
            assert_eq!(
                (w.bytes, w.packets, w.flows),
                (t.bytes, t.packets, t.flows),
                "{} {line} {dir:?} ({shards} shards)",
                path.display()
            );
            assert_eq!(d.per_second.len(), 86_400);
        }
        // Records are spread over the seconds they span: a record of several seconds
        // shows in more than one bucket.
        let busy = snap
            .lines
            .values()
            .flat_map(|l| l.ingress.per_second.iter().chain(&l.egress.per_second))
            .filter(|c| c.bytes > 0)
            .count();
        let span_secs: BTreeSet<u64> = records.iter().map(|r| r.last / 1_000_000_000).collect();
        assert!(
            busy >= span_secs.len(),
            "{busy} busy seconds for {} distinct end seconds",
            span_secs.len()
        );
        agg.shutdown();
    }
    let _ = AggregateKey::of(&records[0]);
}
