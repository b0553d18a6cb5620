//! Metrics of the ClickHouse sink.

use std::fmt::Write as _;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// How one INSERT request ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// ClickHouse acknowledged it (deduplicated retries included).
    Ok,
    /// Failed with an error a retry can cure.
    Retryable,
    /// Failed with a configuration, schema or data error.
    Permanent,
}

impl Outcome {
    /// The label value: `ok`, `retryable` or `permanent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retryable => "retryable",
            Outcome::Permanent => "permanent",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Labels of the per-table INSERT counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InsertLabels {
    /// Target table (`flows`, `probe_health`).
    pub table: &'static str,
    /// How the INSERT ended.
    pub outcome: Outcome,
}

/// Labels of the per-table row counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// Target table.
    pub table: &'static str,
}

/// Counters of the ClickHouse sink. Clones share the same metrics.
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    /// Rows in INSERTs that ClickHouse acknowledged, by table (a retry of an INSERT that had
    /// in fact been stored counts again; ClickHouse itself stores it once).
    pub rows_inserted: Family<TableLabel, Counter>,
    /// INSERT requests by table and outcome.
    pub inserts: Family<InsertLabels, Counter>,
    /// Seconds one INSERT request took, successful or not.
    pub insert_seconds: Histogram,
    /// Highest schema migration applied to the database (0 before `migrate`).
    pub migration_version: Gauge,
}

impl Default for SinkMetrics {
    fn default() -> Self {
        SinkMetrics {
            rows_inserted: Family::default(),
            inserts: Family::default(),
            insert_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            migration_version: Gauge::default(),
        }
    }
}

impl SinkMetrics {
    /// Registers every metric under the `clickhouse_` prefix of `registry`.
    pub fn register(&self, registry: &mut Registry) {
        tidegate_base::register_metrics!(
            registry,
            "clickhouse",
            self {
                rows_inserted: "Rows in INSERTs ClickHouse acknowledged, by table",
                inserts: "INSERT requests by table and outcome (ok, retryable, permanent)",
                insert_seconds: "Duration of one INSERT request",
                migration_version: "Highest schema migration applied to the database",
            }
        );
    }

    /// Records one INSERT request into `table` of `rows` rows that took `seconds`.
    pub(crate) fn record_insert(
        &self,
        table: &'static str,
        rows: usize,
        seconds: f64,
        outcome: Outcome,
    ) {
        self.insert_seconds.observe(seconds);
        self.inserts
            .get_or_create(&InsertLabels { table, outcome })
            .inc();
        if outcome == Outcome::Ok {
            self.rows_inserted
                .get_or_create(&TableLabel { table })
                .inc_by(rows as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn registered_names_and_values() {
        let m = SinkMetrics::default();
        let mut reg = Registry::with_prefix("tidegate_collector");
        m.register(&mut reg);
        m.record_insert("flows", 10, 0.02, Outcome::Ok);
        m.record_insert("flows", 10, 1.0, Outcome::Retryable);
        m.migration_version.set(3);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("tidegate_collector_clickhouse_rows_inserted_total{table=\"flows\"} 10"),
            "{out}"
        );
        assert!(out.contains("tidegate_collector_clickhouse_inserts_total{table=\"flows\",outcome=\"retryable\"} 1"), "{out}");
        assert!(
            out.contains("tidegate_collector_clickhouse_insert_seconds_count 2"),
            "{out}"
        );
        assert!(
            out.contains("tidegate_collector_clickhouse_migration_version 3"),
            "{out}"
        );
    }
}
