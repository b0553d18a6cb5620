//! NetFlow/IPFIX ingest and export metrics. Exporter labels are the configured names;
//! every exporter not listed shares the label `unlisted`, so spoofed source addresses
//! cannot grow the label sets.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Label: exporter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterLabel {
    /// `exporter:<name>` of a listed exporter, or `unlisted`.
    pub exporter: String,
}

/// Labels: exporter and reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabel {
    /// As [`ExporterLabel::exporter`].
    pub exporter: String,
    /// [`super::decode::Problem::reason`].
    pub reason: String,
}

/// Label: export target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    /// `host:port`.
    pub target: String,
}

/// Metrics of the listeners and exporters.
#[derive(Clone, Default)]
pub struct NetflowMetrics {
    /// Datagrams received.
    pub datagrams: Family<ExporterLabel, Counter>,
    /// Flow records made durable in the spool.
    pub records: Family<ExporterLabel, Counter>,
    /// Datagrams, sets or records not taken, by reason.
    pub dropped: Family<DroppedLabel, Counter>,
    /// Data sets held until their template arrives.
    pub sets_held: Family<ExporterLabel, Counter>,
    /// Records decoded but lost because the spool refused them.
    pub records_lost: Family<ExporterLabel, Counter>,
    /// Template scopes (exporter × domain) held.
    pub template_scopes: Gauge,
    /// IPFIX messages sent, per target.
    pub export_messages: Family<TargetLabel, Counter>,
    /// Records sent as IPFIX, per target.
    pub export_records: Family<TargetLabel, Counter>,
    /// Records not exported (queue full or send error), per target.
    pub export_dropped: Family<TargetLabel, Counter>,
}

impl NetflowMetrics {
    /// Registers under the given registry.
    pub fn register(&self, r: &mut Registry) {
        tidegate_base::register_metrics!(r, self {
            datagrams as "netflow_datagrams": "NetFlow/IPFIX datagrams received, per exporter",
            records as "netflow_records": "Flow records from exporters made durable in the spool",
            dropped as "netflow_dropped": "Datagrams, sets or records from exporters not taken, per reason",
            sets_held as "netflow_sets_held": "Data sets from exporters held until their template arrives",
            records_lost as "netflow_records_lost": "Decoded exporter records lost because the spool refused them",
            template_scopes as "netflow_template_scopes": "Exporter template scopes (address x observation domain) held",
            export_messages as "ipfix_export_messages": "IPFIX messages sent, per target",
            export_records as "ipfix_export_records": "Flow records sent as IPFIX, per target",
            export_dropped as "ipfix_export_dropped": "Flow records not exported (queue full or send failed), per target",
        });
    }
}
