//! Metrics of the aggregation (registered under `aggregate_`).
//!
//! Every handle is an atomic shared by clones: shards and submitters update clones taken
//! at start, so the hot path never touches a metric family's lock.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Label of per-shard series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// Shard index.
    pub shard: String,
}

impl ShardLabel {
    /// The label of shard `i`.
    pub fn of(i: usize) -> ShardLabel {
        ShardLabel {
            shard: i.to_string(),
        }
    }
}

/// Counters and gauges of the aggregator.
#[derive(Clone, Debug, Default)]
pub struct AggregateMetrics {
    /// Records submitted.
    pub records_in: Counter,
    /// Sub-batches sent to shards.
    pub batches_in: Counter,
    /// Records processed, per shard.
    pub shard_records: Family<ShardLabel, Counter>,
    /// Sub-batches waiting in each shard's queue.
    pub queue_depth: Family<ShardLabel, Gauge>,
    /// Merged flows held, per shard.
    pub active_flows: Family<ShardLabel, Gauge>,
    /// Flows evicted because a shard's table reached `max_flows_per_shard`.
    pub evictions: Counter,
    /// Flows forgotten after `flow_idle` of event-time idleness.
    pub expired: Counter,
    /// Records older (by more than `flow_idle`) than the flow they belong to; counted in
    /// the line's totals, rates and histograms but not merged into the flow.
    pub late_records: Counter,
    /// Seconds submitters spent blocked on full shard queues (backpressure).
    pub submit_blocked_seconds: Counter<f64, AtomicU64>,
    /// `try_submit` calls refused because a shard queue was full.
    pub submit_full: Counter,
}

impl AggregateMetrics {
    /// Registers every metric under the `aggregate` prefix of `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = tidegate_base::register_metrics!(
            registry,
            "aggregate",
            self {
                records_in: "Flow records submitted",
                batches_in: "Sub-batches sent to shard queues",
                shard_records: "Flow records processed per shard",
                queue_depth: "Sub-batches waiting in each shard queue",
                active_flows: "Merged flows held per shard",
                evictions: "Flows evicted because a shard's flow table was full",
                expired: "Flows forgotten after flow_idle of event-time idleness",
                late_records: "Records older than their flow by more than flow_idle",
            }
        );
        r.register_with_unit(
            "submit_blocked",
            "Time submitters spent blocked on full shard queues",
            Unit::Seconds,
            self.submit_blocked_seconds.clone(),
        );
        r.register(
            "submit_full",
            "try_submit calls refused because a shard queue was full",
            self.submit_full.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported() {
        let m = AggregateMetrics::default();
        m.records_in.inc_by(3);
        m.shard_records.get_or_create(&ShardLabel::of(1)).inc();
        m.submit_blocked_seconds.inc_by(0.5);
        let mut reg = Registry::with_prefix("tidegate_collector");
        m.register(&mut reg);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for name in [
            "tidegate_collector_aggregate_records_in_total 3",
            "tidegate_collector_aggregate_shard_records_total{shard=\"1\"} 1",
            "tidegate_collector_aggregate_submit_blocked_seconds_total 0.5",
            "tidegate_collector_aggregate_evictions_total 0",
            "tidegate_collector_aggregate_late_records_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
