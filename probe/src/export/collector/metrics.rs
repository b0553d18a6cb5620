//! Metrics of the collector exporter.

use prometheus_client::{
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::metrics::Reason;

/// Everything the collector exporter counts. Cloning shares the underlying metrics.
#[derive(Clone, Debug)]
pub struct ExportMetrics {
    /// Records sealed into batches.
    pub records: Counter,
    /// Batches sealed into the spool.
    pub batches_sealed: Counter,
    /// Batch frames sent (resends included).
    pub batches_sent: Counter,
    /// Batches acknowledged (and removed from the spool).
    pub batches_acked: Counter,
    /// Acknowledged batches the collector already had (resends after a lost ack).
    pub batches_duplicate: Counter,
    /// Batch bytes sent.
    pub bytes_sent: Counter,
    /// Successful connections (handshake completed).
    pub connects: Counter,
    /// Failed connection attempts.
    pub connect_failures: Counter,
    /// Connections that ended on an error, by reason.
    pub session_errors: Family<Reason, Counter>,
    /// Bytes in the spool.
    pub spool_bytes: Gauge,
    /// Batches in the spool.
    pub spool_batches: Gauge,
    /// Times a seal had to wait for spool space (backpressure).
    pub spool_full_waits: Counter,
    /// Seconds from sending a batch to its acknowledgement.
    pub ack_latency: Histogram,
    /// Moves to another collector of the list (failovers and failbacks).
    pub failovers: Counter,
    /// Position in the list of the collector in use (0: the first choice).
    pub target: Gauge,
}

impl Default for ExportMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ExportMetrics {
    /// Fresh metrics (register them with [`register`](Self::register)).
    pub fn new() -> Self {
        ExportMetrics {
            records: Counter::default(),
            batches_sealed: Counter::default(),
            batches_sent: Counter::default(),
            batches_acked: Counter::default(),
            batches_duplicate: Counter::default(),
            bytes_sent: Counter::default(),
            connects: Counter::default(),
            connect_failures: Counter::default(),
            session_errors: Family::default(),
            spool_bytes: Gauge::default(),
            spool_batches: Gauge::default(),
            spool_full_waits: Counter::default(),
            ack_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            failovers: Counter::default(),
            target: Gauge::default(),
        }
    }

    /// Registers every metric under `collector_*` names.
    pub fn register(&self, registry: &mut Registry) {
        let r = tidegate_base::register_metrics!(
            registry,
            "collector",
            self {
                records: "Flow records sealed into batches for the collector",
                batches_sealed: "Batches sealed into the spool",
                batches_sent: "Batch frames sent, resends included",
                batches_acked: "Batches acknowledged by the collector",
                batches_duplicate: "Acknowledged batches the collector already had",
                bytes_sent: "Batch bytes sent",
                connects: "Connections to the collector established",
                connect_failures: "Failed connection attempts to the collector",
                session_errors: "Collector connections that ended on an error, by reason",
                spool_bytes: "Bytes of unacknowledged batches in the spool",
                spool_batches: "Unacknowledged batches in the spool",
                spool_full_waits: "Times export waited for spool space",
                failovers: "Moves to another collector of the list (failover or failback)",
                target: "Position in the list of the collector in use (0: the first)",
            }
        );
        r.register(
            "ack_latency_seconds",
            "Seconds from sending a batch to its acknowledgement",
            self.ack_latency.clone(),
        );
    }

    /// Counts a connection that ended on an error.
    pub(crate) fn session_error(&self, reason: &str) {
        self.session_errors
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The exporter's own counters, for the health snapshot attached to batches.
    pub(crate) fn snapshot(&self) -> Vec<(String, u64)> {
        [
            ("export_records", self.records.get()),
            ("export_batches_sealed", self.batches_sealed.get()),
            ("export_batches_sent", self.batches_sent.get()),
            ("export_batches_acked", self.batches_acked.get()),
            ("export_batches_duplicate", self.batches_duplicate.get()),
            ("export_connects", self.connects.get()),
            ("export_connect_failures", self.connect_failures.get()),
            ("export_spool_full_waits", self.spool_full_waits.get()),
            ("export_failovers", self.failovers.get()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}
