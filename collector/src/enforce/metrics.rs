//! Enforcement control metrics.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Metrics of the enforcement control plane.
#[derive(Clone, Debug)]
pub struct EnforceMetrics {
    /// Version of the published plan.
    pub version: Gauge,
    /// Plans published.
    pub published: Counter,
    /// Seconds from publishing a plan to a probe's acknowledgement that it enforces it.
    pub apply_seconds: Histogram,
    /// Plans a probe reported it could not install.
    pub failures: Counter,
}

impl Default for EnforceMetrics {
    fn default() -> Self {
        EnforceMetrics {
            version: Gauge::default(),
            published: Counter::default(),
            apply_seconds: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]),
            failures: Counter::default(),
        }
    }
}

impl EnforceMetrics {
    /// Registers under `enforce_`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "enforce_policy_version",
            "Version of the enforcement policy published to probes",
            self.version.clone(),
        );
        r.register(
            "enforce_policies_published",
            "Enforcement policies published (start, reloads, blocks)",
            self.published.clone(),
        );
        r.register(
            "enforce_apply_seconds",
            "Seconds from publishing an enforcement policy to a probe enforcing it",
            self.apply_seconds.clone(),
        );
        r.register(
            "enforce_apply_failures",
            "Enforcement policies a probe could not install",
            self.failures.clone(),
        );
    }
}
