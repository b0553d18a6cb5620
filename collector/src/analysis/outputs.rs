//! Fan-out of alert and violation states: every state to ClickHouse; openings (and
//! severity escalations of alerts) as notifications to the JSONL file, the webhook outbox
//! and syslog.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::metrics::{AnalysisMetrics, KindLabel};
use super::store::StoreRow;
use super::violations::ViolationState;
use crate::detect::{Alert, AlertUpdate, Endpoint, Severity};
use crate::enrich::{Enricher, FlowContext};
use crate::sinks::alerts::{JsonlSink, Notification, WebhookSink};
use crate::sinks::clickhouse::{AlertRow, ViolationRow};
use crate::sinks::syslog::{SyslogConfig, SyslogSink};

/// Wait between two connection attempts to an unreachable syslog receiver.
const SYSLOG_RETRY: Duration = Duration::from_secs(5);

/// Where alert and violation states go.
pub(crate) struct Outputs {
    pub jsonl: Option<JsonlSink>,
    pub webhook: Option<Arc<WebhookSink>>,
    pub syslog: Option<SyslogOut>,
    pub store: Option<mpsc::Sender<StoreRow>>,
    pub enricher: Option<Arc<Enricher>>,
    pub metrics: AnalysisMetrics,
    /// Severity last notified per alert id (openings and escalations notify).
    notified: HashMap<String, (Severity, u64)>,
    /// Notifications of the current step, written together.
    pending: Vec<Notification>,
}

/// A syslog receiver, connected lazily (a TCP receiver may be down at start).
pub(crate) struct SyslogOut {
    cfg: SyslogConfig,
    sink: Option<SyslogSink>,
    next_try: Instant,
}

impl SyslogOut {
    pub fn new(cfg: SyslogConfig) -> Self {
        SyslogOut {
            cfg,
            sink: None,
            next_try: Instant::now(),
        }
    }

    fn sink(&mut self) -> Option<&mut SyslogSink> {
        if self.sink.is_none() && Instant::now() >= self.next_try {
            match SyslogSink::connect(&self.cfg) {
                Ok(s) => self.sink = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "syslog receiver unreachable; retrying later");
                    self.next_try = Instant::now() + SYSLOG_RETRY;
                }
            }
        }
        self.sink.as_mut()
    }
}

impl Outputs {
    pub fn new(metrics: AnalysisMetrics) -> Self {
        Outputs {
            jsonl: None,
            webhook: None,
            syslog: None,
            store: None,
            enricher: None,
            metrics,
            notified: HashMap::new(),
            pending: Vec::new(),
        }
    }

    fn store(&self, row: StoreRow) {
        if let Some(tx) = &self.store {
            // Blocks while ClickHouse is behind (bounded queue): backpressure.
            if tx.blocking_send(row).is_err() {
                self.metrics.sink_error("clickhouse");
            }
            self.metrics
                .store_pending
                .set((tx.max_capacity() - tx.capacity()) as i64);
        }
    }

    /// Publishes an alert state.
    pub fn alert(&mut self, u: &AlertUpdate) {
        let a = &u.alert;
        if u.new {
            self.metrics
                .alerts_opened
                .get_or_create(&KindLabel {
                    kind: a.kind.as_str(),
                })
                .inc();
        } else {
            self.metrics.alert_updates.inc();
        }
        self.store(StoreRow::Alert(self.alert_row(a)));
        let notify_id = match self.notified.get(&a.id) {
            None => Some(format!("alert-{}", a.id)),
            Some((sev, _)) if a.severity > *sev => {
                Some(format!("alert-{}-{}", a.id, severity_name(a.severity)))
            }
            Some(_) => None,
        };
        if let Some(id) = notify_id {
            self.notified.insert(a.id.clone(), (a.severity, a.last_ns));
            match serde_json::to_value(a) {
                Ok(body) => match Notification::new(id, "alert", body) {
                    Ok(n) => {
                        self.send_syslog(|s| s.send_alert(a));
                        self.pending.push(n);
                    }
                    Err(e) => tracing::error!(error = %e, "alert notification"),
                },
                Err(e) => tracing::error!(error = %e, "alert to JSON"),
            }
        } else if let Some(n) = self.notified.get_mut(&a.id) {
            n.1 = a.last_ns;
        }
    }

    /// Publishes a violation state; `ctx` is the enrichment of its flow.
    pub fn violation(&mut self, s: &ViolationState, ctx: Option<&FlowContext>) {
        if s.new {
            self.metrics.violations_opened.inc();
        } else {
            self.metrics.violation_updates.inc();
        }
        self.store(StoreRow::Violation(violation_row(s, ctx)));
        if s.new {
            let body = serde_json::to_value(&s.violation).map(|mut b| {
                if let Some(o) = b.as_object_mut() {
                    o.insert("id".into(), s.id.clone().into());
                }
                b
            });
            match body.map_err(|e| e.to_string()).and_then(|b| {
                Notification::new(s.id.clone(), "violation", b).map_err(|e| e.to_string())
            }) {
                Ok(n) => {
                    self.send_syslog(|sy| sy.send_violation(&s.violation));
                    self.pending.push(n);
                }
                Err(e) => tracing::error!(error = %e, "violation notification"),
            }
        }
    }

    fn send_syslog(
        &mut self,
        f: impl FnOnce(&mut SyslogSink) -> Result<(), crate::sinks::syslog::SyslogError>,
    ) {
        let Some(out) = self.syslog.as_mut() else {
            return;
        };
        match out.sink() {
            Some(s) => {
                if let Err(e) = f(s) {
                    tracing::warn!(error = %e, "syslog send failed");
                    self.metrics.sink_error("syslog");
                }
            }
            None => self.metrics.sink_error("syslog"),
        }
    }

    /// Writes the notifications of this step (JSONL fsync'd once, webhook outbox).
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        self.metrics.notifications.inc_by(batch.len() as u64);
        if let Some(j) = self.jsonl.as_mut()
            && let Err(e) = j.write(&batch)
        {
            tracing::error!(error = %e, "alert JSONL write failed");
            self.metrics.sink_error("jsonl");
        }
        if let Some(w) = &self.webhook {
            for n in &batch {
                if let Err(e) = w.enqueue(n) {
                    tracing::error!(error = %e, id = %n.id, "webhook outbox write failed");
                    self.metrics.sink_error("webhook");
                }
            }
        }
    }

    /// Whether alert `id` was already notified.
    pub fn knows(&self, id: &str) -> bool {
        self.notified.contains_key(id)
    }

    /// Forgets notified alerts whose last evidence is before `before_ns`.
    pub fn forget_before(&mut self, before_ns: u64) {
        self.notified.retain(|_, (_, last)| *last >= before_ns);
    }

    fn info(&self, e: &Option<Endpoint>) -> (String, u32) {
        match (e, &self.enricher) {
            (Some(Endpoint::Addr(ip)), Some(en)) => {
                let i = en.lookup(*ip);
                (i.country.unwrap_or_default(), i.asn.unwrap_or(0))
            }
            _ => (String::new(), 0),
        }
    }

    fn alert_row(&self, a: &Alert) -> AlertRow {
        let (src_country, src_asn) = self.info(&a.src);
        let (dst_country, dst_asn) = self.info(&a.dst);
        AlertRow {
            id: a.id.clone(),
            version: a.last_ns,
            kind: a.kind.as_str().to_string(),
            severity: a.severity as i8,
            first: ns(a.first_ns),
            last: ns(a.last_ns),
            src: a.src.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            dst: a.dst.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            port: a.port,
            line: a.line.clone(),
            key: a.key.clone(),
            src_country,
            dst_country,
            src_asn,
            dst_asn,
            measured: a.measured,
            threshold: a.threshold,
            unit: a.unit.clone(),
            description: a.description.clone(),
            evidence: serde_json::to_string(&a.evidence).unwrap_or_else(|_| "[]".into()),
        }
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn ns(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn violation_row(s: &ViolationState, ctx: Option<&FlowContext>) -> ViolationRow {
    let v = &s.violation;
    let text = |ip: std::net::IpAddr| crate::enrich::unmap(ip).to_string();
    ViolationRow {
        id: s.id.clone(),
        version: v.last_ns,
        rule_id: v.rule_id.clone(),
        rule_name: v.rule_name.clone(),
        rule_location: v.rule_location.clone(),
        rule_text: v.rule_text.clone(),
        kind: serde_json::to_value(v.kind)
            .ok()
            .and_then(|k| k.as_str().map(str::to_string))
            .unwrap_or_default(),
        severity: v.severity as i8 + 1,
        line: v.line.clone(),
        src: text(v.src),
        dst: text(v.dst),
        src_zone: ctx.map(|c| c.src_zone.to_string()).unwrap_or_default(),
        dst_zone: ctx.map(|c| c.dst_zone.to_string()).unwrap_or_default(),
        src_country: ctx
            .and_then(|c| c.ends.src.country.clone())
            .unwrap_or_default(),
        dst_country: ctx
            .and_then(|c| c.ends.dst.country.clone())
            .unwrap_or_default(),
        src_asn: ctx.and_then(|c| c.ends.src.asn).unwrap_or(0),
        dst_asn: ctx.and_then(|c| c.ends.dst.asn).unwrap_or(0),
        first: ns(v.first_ns),
        last: ns(v.last_ns),
        flows: s.flows,
        packets: s.packets,
        bytes: s.bytes,
        description: v.description.clone(),
        evidence: serde_json::to_string(&v.evidence).unwrap_or_else(|_| "[]".into()),
    }
}
