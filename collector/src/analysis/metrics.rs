//! Metrics of the detection stage.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Label of a delivery sink.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// `clickhouse`, `jsonl`, `webhook` or `syslog`.
    pub sink: &'static str,
}

/// Label of an alert kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Alert kind, e.g. `syn_flood`.
    pub kind: &'static str,
}

/// Counters of the detection stage. Clones share the same metrics.
#[derive(Clone, Debug, Default)]
pub struct AnalysisMetrics {
    /// Flow records analysed.
    pub records: Counter,
    /// Alerts opened, by kind.
    pub alerts_opened: Family<KindLabel, Counter>,
    /// Updates of open alerts (merged repeats).
    pub alert_updates: Counter,
    /// Policy violations opened.
    pub violations_opened: Counter,
    /// Repeats merged into open violations.
    pub violation_updates: Counter,
    /// Notifications handed to the delivery sinks.
    pub notifications: Counter,
    /// Delivery failures, by sink (ClickHouse failures are retried, not dropped).
    pub sink_errors: Family<SinkLabel, Counter>,
    /// Alert/violation states waiting to be stored in ClickHouse.
    pub store_pending: Gauge,
    /// Event time the detectors have reached (Unix seconds).
    pub event_time: Gauge,
    /// Records the detectors hold for cold keys until their windows are taught.
    pub cold_pending: Gauge,
    /// Records stamped beyond the collector's clock plus the allowed skew.
    pub future_records: Counter,
}

impl AnalysisMetrics {
    /// Registers under `registry`.
    pub fn register(&self, r: &mut Registry) {
        tidegate_base::register_metrics!(r, self {
            records as "analysis_records": "Flow records analysed",
            alerts_opened: "Alerts opened, by kind",
            alert_updates: "Updates of open alerts",
            violations_opened: "Policy violations opened",
            violation_updates: "Repeats merged into open policy violations",
            notifications: "Alert and violation notifications handed to delivery sinks",
            sink_errors as "alert_sink_errors": "Delivery failures by sink",
            store_pending as "alert_store_pending": "Alert/violation states waiting for ClickHouse",
            event_time as "detect_event_time_seconds": "Event time reached by the detectors",
            cold_pending as "detect_cold_records_pending": "Records held for cold detection keys until their windows teach the baselines (2^20 per rule past which they are taught early)",
            future_records as "detect_future_records": "Records stamped later than the collector's clock plus max_clock_skew_secs (judged at the collector's clock)",
        });
    }

    /// Counts a failure of `sink`.
    pub fn sink_error(&self, sink: &'static str) {
        self.sink_errors.get_or_create(&SinkLabel { sink }).inc();
    }
}
