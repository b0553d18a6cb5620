//! Transport metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Label of per-reason counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short stable reason (`no_client_cert`, `frame_too_large`, ...).
    pub reason: String,
}

/// Everything the transport counts. Cloning shares the underlying metrics.
#[derive(Clone, Debug)]
pub struct TransportMetrics {
    /// Open probe connections.
    pub connections: Gauge,
    /// Connections refused before a session started, by reason (`no_client_cert`,
    /// `bad_client_cert`, `probe_id_mismatch`, `version_mismatch`, `handshake_timeout`, ...).
    pub probes_rejected: Family<ReasonLabel, Counter>,
    /// Frames received after the handshake.
    pub frames_received: Counter,
    /// Batches received (decoded and valid).
    pub batches_received: Counter,
    /// Batches that were already stored (acknowledged as duplicates).
    pub batches_duplicate: Counter,
    /// Records in received batches.
    pub records_received: Counter,
    /// Frame bytes received (headers included).
    pub bytes_received: Counter,
    /// Connections closed because of a protocol error, by reason.
    pub protocol_errors: Family<ReasonLabel, Counter>,
    /// Batches the sink could not persist.
    pub persist_errors: Counter,
    /// Seconds from a batch frame's arrival to its acknowledgement being sent.
    pub ack_latency: Histogram,
}

impl Default for TransportMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl TransportMetrics {
    /// Fresh metrics (register them with [`register`](Self::register)).
    pub fn new() -> Self {
        TransportMetrics {
            connections: Gauge::default(),
            probes_rejected: Family::default(),
            frames_received: Counter::default(),
            batches_received: Counter::default(),
            batches_duplicate: Counter::default(),
            records_received: Counter::default(),
            bytes_received: Counter::default(),
            protocol_errors: Family::default(),
            persist_errors: Counter::default(),
            ack_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        }
    }

    /// Registers every metric under `transport_*` names.
    pub fn register(&self, registry: &mut Registry) {
        let r = tidegate_base::register_metrics!(
            registry,
            "transport",
            self {
                connections: "Open probe connections",
                probes_rejected: "Probe connections refused before a session started, by reason",
                frames_received: "Frames received from probes after the handshake",
                batches_received: "Valid batches received from probes",
                batches_duplicate: "Batches received that were already stored",
                records_received: "Flow records in received batches",
                bytes_received: "Frame bytes received from probes",
                protocol_errors: "Probe connections closed on a protocol error, by reason",
                persist_errors: "Batches the sink could not make durable",
            }
        );
        r.register(
            "ack_latency_seconds",
            "Seconds from a batch's arrival to its acknowledgement",
            self.ack_latency.clone(),
        );
    }

    /// Counts a refused connection.
    pub(crate) fn rejected(&self, reason: &str) {
        self.probes_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a protocol error.
    pub(crate) fn protocol_error(&self, reason: &str) {
        self.protocol_errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Current value of `probes_rejected{reason}` (tests, status lines).
    pub fn rejected_count(&self, reason: &str) -> u64 {
        self.probes_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .get()
    }

    /// Current value of `protocol_errors{reason}` (tests, status lines).
    pub fn protocol_error_count(&self, reason: &str) -> u64 {
        self.protocol_errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .get()
    }
}
