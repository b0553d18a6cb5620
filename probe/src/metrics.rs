//! Probe metrics: Prometheus text on `/metrics`, and a periodic log line.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tidegate_common::Counter as K;

/// Label of per-reason counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Counter name (see `tidegate_common::Counter::name`).
    pub reason: String,
}

/// Labels of per-rule enforcement counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleVerdict {
    /// Rule id (from the policy).
    pub rule: String,
    /// `would_drop` or `dropped`.
    pub verdict: String,
}

/// Every metric the probe exports.
pub struct ProbeMetrics {
    registry: Registry,
    /// Frames seen.
    pub packets: Counter,
    /// Frame bytes seen (L2 included).
    pub frame_bytes: Counter,
    /// Packets accounted into flows.
    pub accounted: Counter,
    /// Frames not accounted, by reason.
    pub parse_errors: Family<Reason, Counter>,
    /// Frames accounted with reduced detail, by reason.
    pub parse_warnings: Family<Reason, Counter>,
    /// Packets that took the map-full fallback path.
    pub map_full: Counter,
    /// Packets keyed by the header inside their tunnel.
    pub decapsulated: Counter,
    /// Packets lost because the fallback ring buffer was full too.
    pub fallback_dropped: Counter,
    /// DNS/TLS payload samples lost (sample ring buffer full): names missing, counts not.
    pub app_samples_lost: Counter,
    /// Packets the capture socket dropped (AF_PACKET).
    pub capture_drops: Counter,
    /// Flow records exported.
    pub records_exported: Counter,
    /// Flows held in the userspace table.
    pub flows_active: Gauge,
    /// Flow records exported before their timeouts because the userspace table was at
    /// its bound (a spray of new flows).
    pub records_exported_early: Gauge,
    /// Packets the previous run counted and never exported because it did not stop
    /// cleanly (SIGKILL, crash), as of its last checkpoint; 0 after a clean stop.
    pub previous_run_unexported: Gauge,
    /// Seconds from a flow's last packet to its export.
    pub export_lag: Histogram,
    /// Seconds a kernel map sweep took (flip + grace period + drain).
    pub sweep_seconds: Histogram,
    /// Packets judged by a drop rule, by outcome (`would_drop`, `dropped`, `protected`).
    pub enforce_packets: Family<Reason, Counter>,
    /// Packets per drop rule and verdict (kernel per-rule counters).
    pub enforce_rule_packets: Family<RuleVerdict, Counter>,
    /// Bytes per drop rule and verdict.
    pub enforce_rule_bytes: Family<RuleVerdict, Counter>,
    /// Version of the enforcement policy in the kernel (0: none).
    pub enforce_policy_version: Gauge,
    last: [u64; K::COUNT as usize],
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeMetrics {
    /// Registers every metric under the `tidegate_probe` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tidegate_probe");
        let m = ProbeMetrics {
            packets: Counter::default(),
            frame_bytes: Counter::default(),
            accounted: Counter::default(),
            parse_errors: Family::default(),
            parse_warnings: Family::default(),
            map_full: Counter::default(),
            decapsulated: Counter::default(),
            fallback_dropped: Counter::default(),
            app_samples_lost: Counter::default(),
            capture_drops: Counter::default(),
            records_exported: Counter::default(),
            flows_active: Gauge::default(),
            records_exported_early: Gauge::default(),
            previous_run_unexported: Gauge::default(),
            export_lag: Histogram::new([0.5, 1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 120.0]),
            sweep_seconds: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
            enforce_packets: Family::default(),
            enforce_rule_packets: Family::default(),
            enforce_rule_bytes: Family::default(),
            enforce_policy_version: Gauge::default(),
            last: [0; K::COUNT as usize],
            registry: Registry::default(),
        };
        registry.register("packets", "Frames seen", m.packets.clone());
        registry.register(
            "frame_bytes",
            "Frame bytes seen, L2 included",
            m.frame_bytes.clone(),
        );
        registry.register(
            "accounted_packets",
            "Packets accounted into flows",
            m.accounted.clone(),
        );
        registry.register(
            "parse_errors",
            "Frames not accounted, by reason",
            m.parse_errors.clone(),
        );
        registry.register(
            "parse_warnings",
            "Frames accounted with reduced detail, by reason",
            m.parse_warnings.clone(),
        );
        registry.register(
            "map_full_fallbacks",
            "Packets accounted through the map-full fallback ring buffer",
            m.map_full.clone(),
        );
        registry.register(
            "decapsulated_packets",
            "Packets keyed by the header inside their GRE/VXLAN/GTP-U/IP-in-IP tunnel (tunnels = \"inner\")",
            m.decapsulated.clone(),
        );
        registry.register(
            "fallback_dropped",
            "Packets lost: flow map and fallback ring buffer both full",
            m.fallback_dropped.clone(),
        );
        registry.register(
            "app_samples_lost",
            "DNS/TLS payload samples lost to a full sample ring buffer (flows keep their counts, not their names)",
            m.app_samples_lost.clone(),
        );
        registry.register(
            "capture_drops",
            "Packets dropped by the capture socket (AF_PACKET)",
            m.capture_drops.clone(),
        );
        registry.register(
            "records_exported",
            "Flow records exported",
            m.records_exported.clone(),
        );
        registry.register(
            "flows_active",
            "Flows held in the userspace flow table",
            m.flows_active.clone(),
        );
        registry.register(
            "records_exported_early",
            "Flow records exported before their timeouts because the userspace flow table was at its bound (a spray of new flows); counts are unaffected",
            m.records_exported_early.clone(),
        );
        registry.register(
            "previous_run_unexported_packets",
            "Packets the previous run counted but never exported because it was killed or crashed (as of its last checkpoint; 0 after a clean stop)",
            m.previous_run_unexported.clone(),
        );
        registry.register(
            "export_lag_seconds",
            "Seconds from a flow's last packet to its export",
            m.export_lag.clone(),
        );
        registry.register(
            "sweep_seconds",
            "Seconds per kernel map sweep (flip, grace period, drain)",
            m.sweep_seconds.clone(),
        );
        registry.register(
            "enforce_packets",
            "Packets a drop rule matched, by outcome (would_drop: monitor mode; dropped; protected: passed because an address is protected)",
            m.enforce_packets.clone(),
        );
        registry.register(
            "enforce_rule_packets",
            "Packets per enforcement rule and verdict",
            m.enforce_rule_packets.clone(),
        );
        registry.register(
            "enforce_rule_bytes",
            "IP-layer bytes per enforcement rule and verdict",
            m.enforce_rule_bytes.clone(),
        );
        registry.register(
            "enforce_policy_version",
            "Version of the enforcement policy installed in the kernel (0: none)",
            m.enforce_policy_version.clone(),
        );
        ProbeMetrics { registry, ..m }
    }

    /// Folds absolute counter values (kernel or backend totals) into the metrics.
    pub fn update_counters(&mut self, now: &[u64; K::COUNT as usize]) {
        for c in K::ALL {
            let i = c as usize;
            let d = now[i].saturating_sub(self.last[i]);
            self.last[i] = self.last[i].max(now[i]);
            if d == 0 {
                continue;
            }
            let reason = || Reason {
                reason: c.name().to_string(),
            };
            match c {
                K::Packets => drop(self.packets.inc_by(d)),
                K::FrameBytes => drop(self.frame_bytes.inc_by(d)),
                K::Accounted => drop(self.accounted.inc_by(d)),
                K::ErrNonIp
                | K::ErrTruncatedL2
                | K::ErrTruncatedIp
                | K::ErrBadIpHeader
                | K::ErrLinkType => {
                    self.parse_errors.get_or_create(&reason()).inc_by(d);
                }
                K::WarnTruncatedL4 | K::WarnIpv6ExtLimit | K::WarnTunnelUndecoded => {
                    self.parse_warnings.get_or_create(&reason()).inc_by(d);
                }
                K::MapFull => drop(self.map_full.inc_by(d)),
                K::Decapsulated => drop(self.decapsulated.inc_by(d)),
                K::FallbackDropped => drop(self.fallback_dropped.inc_by(d)),
                K::AppSampleLost => drop(self.app_samples_lost.inc_by(d)),
                K::CaptureDropped => drop(self.capture_drops.inc_by(d)),
                K::EnforceWouldDrop | K::EnforceDropped | K::EnforceProtected => {
                    let outcome = c.name().trim_start_matches("enforce_").to_string();
                    let r = Reason { reason: outcome };
                    self.enforce_packets.get_or_create(&r).inc_by(d);
                }
            }
        }
    }

    /// Last absolute counter values seen.
    pub fn totals(&self) -> &[u64; K::COUNT as usize] {
        &self.last
    }

    /// The registry, for components that register their own metrics (the exporter).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        tidegate_base::metrics::render(&self.registry)
    }
}

/// Serves `GET /metrics` on `addr` from a background thread.
pub fn serve(addr: SocketAddr, metrics: Arc<Mutex<ProbeMetrics>>) -> std::io::Result<SocketAddr> {
    tidegate_base::metrics::serve(addr, move || {
        metrics.lock().map(|m| m.encode()).unwrap_or_default()
    })
}
