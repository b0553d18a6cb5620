//! Metrics of the webhook sink.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// Counters of the webhook sink. Clones share the same metrics.
#[derive(Clone, Debug, Default)]
pub struct WebhookMetrics {
    /// Notifications the receiver accepted (2xx).
    pub delivered: Counter,
    /// Failed attempts that will be retried (connection error, timeout, 5xx, 429).
    pub retries: Counter,
    /// Notifications moved to the dead-letter folder (refused with a 4xx other than 429,
    /// or unreadable in the outbox).
    pub dead_letters: Counter,
    /// Notifications waiting in the outbox.
    pub queued: Gauge,
}

impl WebhookMetrics {
    /// Registers every metric under the `alert_webhook_` prefix of `registry`.
    pub fn register(&self, registry: &mut Registry) {
        tidegate_base::register_metrics!(
            registry,
            "alert_webhook",
            self {
                delivered: "Notifications the webhook receiver accepted",
                retries: "Failed webhook attempts that will be retried",
                dead_letters: "Notifications refused by the receiver and kept in the dead-letter folder",
                queued: "Notifications waiting in the webhook outbox",
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn registered_names_and_values() {
        let m = WebhookMetrics::default();
        let mut reg = Registry::with_prefix("tidegate_collector");
        m.register(&mut reg);
        m.delivered.inc_by(3);
        m.queued.set(2);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("tidegate_collector_alert_webhook_delivered_total 3"),
            "{out}"
        );
        assert!(
            out.contains("tidegate_collector_alert_webhook_queued 2"),
            "{out}"
        );
        assert!(
            out.contains("tidegate_collector_alert_webhook_dead_letters_total 0"),
            "{out}"
        );
    }
}
