//! Enforcement control: the collector compiles the policy (with the enrichment
//! databases, the live manual blocks and its own addresses as protected ranges) into an
//! [`EnforcePlan`], publishes it to every connected probe that enforces, and tracks which
//! version each probe acknowledges. Every change goes to the evidence log when there is
//! one.
//!
//! - A policy reload is checked by compiling it first ([`EnforceHub::check`]): a policy
//!   whose drop rules cannot be enforced is refused like any invalid policy.
//! - Manual blocks ([`blocks`]) are durable (a JSON file beside the spool), expire on
//!   their own, and are refused when they would cover a protected range.

pub mod blocks;
mod metrics;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use tidegate_base::Cidr;
use tidegate_evidence::EvidenceLog;
use tidegate_threat::{
    enrich::Enricher,
    policy::{
        Policy, PolicyError, PolicyHandle,
        enforce::{ManualBlock, compile},
    },
};
use tidegate_wire::{EnforcePlan, EnforceStatus};
use tokio::sync::watch;

pub use blocks::BlockStore;
pub use metrics::EnforceMetrics;

/// A published plan as probes receive it.
#[derive(Debug)]
pub struct PolicyFrame {
    /// Plan version.
    pub version: u64,
    /// The encoded plan (a `Policy` frame's payload).
    pub bytes: Vec<u8>,
    /// When it was published (for the policy-to-enforcement latency).
    pub published: Instant,
}

/// What one probe reported.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProbeEnforcement {
    /// Version it enforces (0: none).
    pub version: u64,
    /// The last version it could not install, and why.
    pub failed: Option<(u64, String)>,
    /// Whether its connection is up.
    pub connected: bool,
    /// Unix ns of its last report.
    pub reported_ns: u64,
    /// Seconds from publishing `version` to the probe's acknowledgement.
    pub applied_after_secs: Option<f64>,
    /// What the evidence log holds last of this probe (the version it applies, its
    /// last failure): a report that changes neither is not recorded again.
    #[serde(skip)]
    recorded: (Option<u64>, Option<(u64, String)>),
    /// Its evidence entries per period: a probe alternating its reports cannot flood
    /// the log (each entry is a durable append).
    #[serde(skip)]
    allowance: EvidenceAllowance,
}

/// Evidence entries one probe's reports may add: [`EVIDENCE_PER_PROBE`] a minute.
#[derive(Clone, Debug)]
struct EvidenceAllowance(tidegate_base::limits::Allowance);

/// Evidence entries one probe's reports add per minute, at most.
const EVIDENCE_PER_PROBE: u32 = 20;

impl Default for EvidenceAllowance {
    fn default() -> Self {
        EvidenceAllowance(tidegate_base::limits::Allowance::new(
            EVIDENCE_PER_PROBE,
            Duration::from_secs(60),
        ))
    }
}

/// Longest error text kept from a probe's status report.
const MAX_STATUS_ERROR: usize = 1024;

/// The current plan's summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PlanSummary {
    /// Version.
    pub version: u64,
    /// Unix ns of publication.
    pub published_ns: u64,
    /// Rule ids that drop.
    pub drop_rules: Vec<String>,
    /// Prefixes in the plan.
    pub prefixes: usize,
    /// Default line mode.
    pub default_mode: &'static str,
    /// Lines with their own mode.
    pub lines: Vec<(String, &'static str)>,
    /// What caused it (`start`, `reload`, `block`, `unblock`, `expiry`).
    pub cause: String,
}

/// The enforcement control state.
pub struct EnforceHub {
    policy: PolicyHandle,
    enricher: Arc<Enricher>,
    own: Vec<Cidr>,
    blocks: BlockStore,
    version: Mutex<u64>,
    tx: watch::Sender<Option<Arc<PolicyFrame>>>,
    summary: Mutex<PlanSummary>,
    probes: Mutex<BTreeMap<String, ProbeEnforcement>>,
    evidence: Option<Arc<EvidenceLog>>,
    metrics: EnforceMetrics,
    /// Serialises compile + publish.
    publishing: Mutex<()>,
}

fn now_ns() -> u64 {
    tidegate_base::clock::wall_ns()
}

impl EnforceHub {
    /// Compiles the current policy and publishes version 1 of this run (versions start
    /// at the Unix time in ms so they grow across restarts). `own`: the collector's own
    /// addresses, never dropped.
    pub fn start(
        policy: PolicyHandle,
        enricher: Option<Arc<Enricher>>,
        own: Vec<Cidr>,
        blocks: BlockStore,
        evidence: Option<Arc<EvidenceLog>>,
        metrics: EnforceMetrics,
    ) -> Result<Arc<EnforceHub>, PolicyError> {
        let (tx, _) = watch::channel(None);
        let hub = Arc::new(EnforceHub {
            policy,
            enricher: enricher.unwrap_or_default(),
            own,
            blocks,
            version: Mutex::new(now_ns() / 1_000_000),
            tx,
            summary: Mutex::new(PlanSummary::default()),
            probes: Mutex::new(BTreeMap::new()),
            evidence,
            metrics,
            publishing: Mutex::new(()),
        });
        hub.republish("start")?;
        Ok(hub)
    }

    /// Compiles `policy` as it would be enforced, without publishing (reload check).
    pub fn check(&self, policy: &Policy) -> Result<EnforcePlan, PolicyError> {
        compile(
            policy,
            &self.enricher,
            &self.blocks.live(now_ns()),
            &self.own,
            0,
        )
    }

    /// Compiles the policy in force with the live blocks and publishes it.
    pub fn republish(&self, cause: &str) -> Result<u64, PolicyError> {
        let _g = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let version = {
            let mut v = self.version.lock().unwrap_or_else(|e| e.into_inner());
            *v = (*v + 1).max(now_ns() / 1_000_000);
            *v
        };
        let policy = self.policy.current();
        let started = Instant::now();
        let plan = compile(
            &policy,
            &self.enricher,
            &self.blocks.live(now_ns()),
            &self.own,
            version,
        )?;
        let frame = Arc::new(PolicyFrame {
            version,
            bytes: plan.encode(),
            published: Instant::now(),
        });
        let summary = PlanSummary {
            version,
            published_ns: now_ns(),
            drop_rules: {
                let mut r: Vec<String> = plan
                    .rules
                    .iter()
                    .filter(|r| r.drops)
                    .map(|r| r.id.clone())
                    .collect();
                r.dedup();
                r
            },
            prefixes: plan.prefixes.len(),
            default_mode: plan.default_mode.name(),
            lines: plan
                .lines
                .iter()
                .filter_map(|l| l.mode.map(|m| (l.name.clone(), m.name())))
                .collect(),
            cause: cause.to_string(),
        };
        tracing::info!(version, cause, drop_rules = ?summary.drop_rules, prefixes = summary.prefixes,
            bytes = frame.bytes.len(), compile_ms = started.elapsed().as_millis() as u64,
            default_mode = summary.default_mode, "enforcement policy published");
        self.metrics.version.set(version as i64);
        self.metrics.published.inc();
        self.record(serde_json::json!({
            "event": "published",
            "version": version,
            "cause": cause,
            "policy": policy.path.display().to_string(),
            "drop_rules": summary.drop_rules,
            "prefixes": summary.prefixes,
            "default_mode": summary.default_mode,
            "lines": summary.lines,
            "plan_sha256": sha256_hex(&frame.bytes),
        }));
        *self.summary.lock().unwrap_or_else(|e| e.into_inner()) = summary;
        self.tx.send_replace(Some(frame));
        Ok(version)
    }

    /// What probes subscribe to.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<PolicyFrame>>> {
        self.tx.subscribe()
    }

    /// A probe's status report.
    pub fn report(&self, probe: &str, st: &EnforceStatus) {
        let current = self.tx.borrow().clone();
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let e = probes.entry(probe.to_string()).or_default();
        let before = (e.version, e.failed.clone());
        e.connected = true;
        e.reported_ns = now_ns();
        e.version = st.version;
        e.failed = st.failed_version.map(|v| {
            (
                v,
                tidegate_base::limits::clip(&st.error, MAX_STATUS_ERROR).to_string(),
            )
        });
        if before.0 != st.version {
            let latency = current
                .as_ref()
                .filter(|f| f.version == st.version)
                .map(|f| f.published.elapsed().as_secs_f64());
            e.applied_after_secs = latency;
            if let Some(l) = latency {
                self.metrics.apply_seconds.observe(l);
            }
            if e.recorded.0 != Some(st.version)
                && let Some(withheld) = e.allowance.0.take()
            {
                e.recorded.0 = Some(st.version);
                tracing::info!(probe, version = st.version, after_secs = ?latency, "probe enforces the policy");
                self.record(serde_json::json!({
                    "event": "applied", "probe": probe, "version": st.version,
                    "after_secs": latency, "withheld": withheld,
                }));
            }
        }
        if e.failed.is_some() && e.failed != before.1 {
            let (v, why) = e.failed.clone().expect("checked");
            self.metrics.failures.inc();
            if e.recorded.1 != e.failed
                && let Some(withheld) = e.allowance.0.take()
            {
                e.recorded.1 = e.failed.clone();
                tracing::warn!(probe, version = v, error = %why.escape_debug(), "probe could not install the policy; it keeps its previous one");
                self.record(serde_json::json!({
                    "event": "apply_failed", "probe": probe, "version": v, "error": why,
                    "enforcing": st.version, "withheld": withheld,
                }));
            }
        }
    }

    /// A probe's connection ended.
    pub fn disconnected(&self, probe: &str) {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = probes.get_mut(probe)
            && e.connected
        {
            e.connected = false;
            let Some(withheld) = e.allowance.0.take() else {
                return;
            };
            self.record(serde_json::json!({
                "event": "probe_unreachable", "probe": probe, "version": e.version,
                "withheld": withheld,
                "note": "the probe keeps enforcing this version while it runs (unless its [ebpf] enforce_max_offline_secs passes first: then it clears it); when it stops, its XDP program is detached and every packet passes (fail-open)",
            }));
        }
    }

    /// Current plan and every probe's state.
    pub fn status(&self) -> (PlanSummary, BTreeMap<String, ProbeEnforcement>) {
        (
            self.summary
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            self.probes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// The manual blocks.
    pub fn blocks(&self) -> &BlockStore {
        &self.blocks
    }

    /// Adds a block (refused when it covers a protected range or the collector itself),
    /// makes it durable, records it and publishes.
    pub fn block(
        &self,
        cidr: Cidr,
        ttl: Duration,
        reason: String,
        user: &str,
    ) -> Result<ManualBlock, String> {
        let policy = self.policy.current();
        for p in policy
            .enforce
            .protected
            .iter()
            .map(|p| p.cidr)
            .chain(self.own.iter().copied())
        {
            if overlaps(&p, &cidr) {
                return Err(format!(
                    "{cidr} overlaps the protected range {p}: protected ranges are never blocked"
                ));
            }
        }
        let b = self.blocks.add(cidr, ttl, reason, user, now_ns())?;
        self.record(serde_json::json!({
            "event": "block", "block": b, "by": user,
        }));
        if let Err(e) = self.republish("block") {
            // Cannot happen for a block that passed the checks above; undo it if it does.
            let _ = self.blocks.remove(&b.id);
            return Err(e.to_string());
        }
        Ok(b)
    }

    /// Blocks the source of `alert` when the policy's `[enforce.block_alerts]` asks for it;
    /// returns what the alert should say about it (`None`: not configured for this alert).
    pub fn block_for_alert(&self, alert: &tidegate_threat::detect::Alert) -> Option<String> {
        let policy = self.policy.current();
        let cfg = policy.enforce.block_alerts.as_ref()?;
        if !cfg.kinds.contains(&alert.kind) || alert.severity < cfg.min_severity {
            return None;
        }
        let Some(tidegate_threat::detect::Endpoint::Addr(ip)) = &alert.src else {
            return None;
        };
        let cidr = Cidr::host(*ip);
        let enforcing = policy.enforce.default_mode == tidegate_wire::enforce::Mode::Enforce
            || policy
                .enforce
                .lines
                .iter()
                .any(|(_, m)| *m == tidegate_wire::enforce::Mode::Enforce);
        let how = if enforcing {
            "dropped on lines in enforce mode"
        } else {
            "counted as would-drop: every line is in monitor mode"
        };
        if let Some(b) = self
            .blocks
            .live(now_ns())
            .into_iter()
            .find(|b| b.cidr.contains(*ip))
        {
            return Some(format!(
                " — source already blocked at the lines (block {}, {how})",
                b.id
            ));
        }
        let reason = format!("alert {} ({})", alert.id, alert.kind.as_str());
        match self.block(
            cidr,
            Duration::from_secs(cfg.block_secs),
            reason,
            "auto-block",
        ) {
            Ok(b) => {
                tracing::warn!(alert = %alert.id, kind = alert.kind.as_str(), src = %ip, block = %b.id,
                    secs = cfg.block_secs, "alert source blocked at the lines");
                Some(format!(
                    " — source blocked at the lines for {} s (block {}, {how})",
                    cfg.block_secs, b.id
                ))
            }
            Err(e) => {
                tracing::warn!(alert = %alert.id, src = %ip, error = %e, "alert source not blocked");
                Some(format!(" — source not blocked: {e}"))
            }
        }
    }

    /// Lifts a block.
    pub fn unblock(&self, id: &str, user: &str) -> Result<ManualBlock, String> {
        let b = self.blocks.remove(id)?;
        self.record(serde_json::json!({ "event": "unblock", "block": b, "by": user }));
        self.republish("unblock").map_err(|e| e.to_string())?;
        Ok(b)
    }

    /// Drops lapsed blocks; publishes if any lapsed.
    pub fn expire(&self) {
        let gone = self.blocks.expire(now_ns());
        if gone.is_empty() {
            return;
        }
        for b in &gone {
            tracing::info!(id = %b.id, cidr = %b.cidr, "manual block lapsed");
            self.record(serde_json::json!({ "event": "block_expired", "block": b }));
        }
        if let Err(e) = self.republish("expiry") {
            tracing::error!(error = %e, "cannot publish the enforcement policy after a block lapsed");
        }
    }

    /// Checks block expiry every second until the runtime stops.
    pub fn spawn_expiry(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                let h = hub.clone();
                let _ = tokio::task::spawn_blocking(move || h.expire()).await;
            }
        })
    }

    fn record(&self, data: serde_json::Value) {
        if let Some(log) = &self.evidence {
            crate::evidence::record(log, crate::evidence::ENFORCEMENT, data);
        }
    }
}

fn overlaps(a: &Cidr, b: &Cidr) -> bool {
    a.contains(b.first()) || a.contains(b.last()) || b.contains(a.first()) || b.contains(a.last())
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_threat::policy::Policy;

    fn hub() -> Arc<EnforceHub> {
        let text = "[[rule]]\nid = \"d\"\nname = \"d\"\ntype = \"deny_list\"\ncidrs = [\"198.51.100.0/24\"]\naction = \"drop\"\n\n[enforce]\nprotected = [\"10.0.0.0/24\"]\n";
        let p = Policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        EnforceHub::start(
            PolicyHandle::new(p),
            None,
            vec![Cidr::host("192.0.2.1".parse().unwrap())],
            BlockStore::in_memory(),
            None,
            EnforceMetrics::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_probe_alternating_its_status_is_recorded_within_its_allowance() {
        let d = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let log = Arc::new(EvidenceLog::open(d.path(), "t/1", key).unwrap());
        let text = "[[rule]]\nid = \"d\"\nname = \"d\"\ntype = \"deny_list\"\ncidrs = [\"198.51.100.0/24\"]\naction = \"drop\"\n";
        let p = Policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let h = EnforceHub::start(
            PolicyHandle::new(p),
            None,
            Vec::new(),
            BlockStore::in_memory(),
            Some(log.clone()),
            EnforceMetrics::default(),
        )
        .unwrap();
        let before = log.len();
        let v = version(&h);
        for i in 0..1000u64 {
            let failed = i % 3 == 0;
            h.report(
                "p1",
                &EnforceStatus {
                    version: if i % 2 == 0 { v } else { v - 1 },
                    failed_version: failed.then_some(v + 1),
                    error: format!("error {i} {}", "x".repeat(100_000)),
                },
            );
        }
        // Each change is recorded, up to the probe's allowance: not a thousand entries.
        assert_eq!(log.len() - before, u64::from(EVIDENCE_PER_PROBE));
        // Repeating the same report records nothing more; another probe's is recorded.
        let p2 = EnforceStatus {
            version: v,
            failed_version: None,
            error: String::new(),
        };
        h.report("p2", &p2);
        h.report("p2", &p2);
        assert_eq!(log.len() - before, u64::from(EVIDENCE_PER_PROBE) + 1);
        let (_, probes) = h.status();
        let (_, why) = probes["p1"].failed.clone().unwrap();
        assert!(why.len() <= MAX_STATUS_ERROR, "{} bytes kept", why.len());
    }

    fn version(h: &EnforceHub) -> u64 {
        h.status().0.version
    }

    #[test]
    fn blocks_are_published_refused_over_protected_ranges_and_lapse() {
        let h = hub();
        let v0 = version(&h);
        let mut feed = h.subscribe();
        assert_eq!(feed.borrow_and_update().as_ref().unwrap().version, v0);
        // Over a protected range or the collector itself: refused, nothing published.
        for bad in ["10.0.0.128/25", "192.0.2.0/24"] {
            let e = h
                .block(
                    bad.parse().unwrap(),
                    Duration::from_secs(60),
                    "x".into(),
                    "u",
                )
                .unwrap_err();
            assert!(e.contains("protected"), "{e}");
        }
        assert_eq!(version(&h), v0);
        assert!(
            h.block(
                "203.0.113.0/24".parse().unwrap(),
                Duration::ZERO,
                String::new(),
                "u"
            )
            .is_err()
        );
        // A one-second block: published with the manual-block rule, then lapses.
        let b = h
            .block(
                "203.0.113.0/24".parse().unwrap(),
                Duration::from_secs(1),
                "incident".into(),
                "u",
            )
            .unwrap();
        let v1 = version(&h);
        assert!(v1 > v0);
        assert!(feed.has_changed().unwrap());
        let plan = EnforcePlan::decode(&feed.borrow_and_update().as_ref().unwrap().bytes).unwrap();
        assert!(plan.rules.iter().any(|r| r.id == "manual-block"));
        assert_eq!(h.status().0.cause, "block");
        h.expire();
        assert_eq!(h.blocks().live(now_ns()).len(), 1, "not lapsed yet");
        std::thread::sleep(Duration::from_millis(1100));
        h.expire();
        assert!(h.blocks().live(now_ns()).is_empty());
        assert!(version(&h) > v1);
        assert_eq!(h.status().0.cause, "expiry");
        let plan = EnforcePlan::decode(&feed.borrow_and_update().as_ref().unwrap().bytes).unwrap();
        assert!(!plan.rules.iter().any(|r| r.id == "manual-block"));
        // Lifting an unknown block is an error naming it.
        assert!(h.unblock(&b.id, "u").unwrap_err().contains(&b.id));
    }

    #[test]
    fn probe_reports_track_versions_and_failures() {
        let h = hub();
        let v = version(&h);
        h.report(
            "p1",
            &EnforceStatus {
                version: v,
                failed_version: None,
                error: String::new(),
            },
        );
        h.report(
            "p2",
            &EnforceStatus {
                version: 0,
                failed_version: Some(v),
                error: "map full".into(),
            },
        );
        let (_, probes) = h.status();
        assert_eq!(probes["p1"].version, v);
        assert!(probes["p1"].applied_after_secs.is_some());
        assert_eq!(probes["p2"].failed, Some((v, "map full".to_string())));
        h.disconnected("p1");
        assert!(!h.status().1["p1"].connected);
    }
}
