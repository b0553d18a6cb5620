//! Fan-out of alert and violation states: every state to ClickHouse; openings (and
//! severity escalations of alerts) as notifications to the JSONL file, the webhook outbox
//! and syslog.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::metrics::{AnalysisMetrics, KindLabel};
use super::store::StoreRow;
use crate::sinks::alerts::{JsonlSink, Notification, WebhookSink};
use crate::sinks::clickhouse::{AlertRow, ViolationRow};
use crate::sinks::syslog::format::Event;
use crate::sinks::syslog::{SyslogConfig, SyslogSink};
use tidegate_evidence::{Appended, EvidenceLog};
use tidegate_threat::detect::{Alert, AlertUpdate, Endpoint};
use tidegate_threat::enrich::{Enricher, FlowContext};
use tidegate_threat::policy::ViolationState;
use tidegate_threat::{Finding, Severity};

/// Wait between two connection attempts to an unreachable syslog receiver.
const SYSLOG_RETRY: Duration = Duration::from_secs(5);

/// Where alert and violation states go.
pub(crate) struct Outputs {
    pub jsonl: Option<JsonlSink>,
    pub webhook: Option<Arc<WebhookSink>>,
    pub syslog: Option<SyslogOut>,
    pub store: Option<mpsc::Sender<StoreRow>>,
    pub enricher: Option<Arc<Enricher>>,
    /// The evidence log: every state is appended, and made durable before anything of
    /// the step is sent to a sink.
    pub evidence: Option<Arc<EvidenceLog>>,
    pub metrics: AnalysisMetrics,
    /// Detection's progress: a batch's ticket is reached once its states are stored.
    pub progress: Arc<super::Progress>,
    /// Severity last notified per finding id (openings and escalations notify).
    notified: HashMap<String, (Severity, u64)>,
    /// Notifications of the current step, written together.
    pending: Vec<Notification>,
    /// States of the current step for ClickHouse.
    pending_rows: Vec<StoreRow>,
    /// Syslog messages of the current step.
    pending_syslog: Vec<Event>,
    /// Notifications of the current step (to JSONL, webhook or syslog), for the metric.
    pending_count: u64,
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
            evidence: None,
            metrics,
            progress: Arc::default(),
            notified: HashMap::new(),
            pending: Vec::new(),
            pending_rows: Vec::new(),
            pending_syslog: Vec::new(),
            pending_count: 0,
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
        if u.new {
            self.metrics
                .alerts_opened
                .get_or_create(&KindLabel {
                    kind: u.alert.kind.as_str(),
                })
                .inc();
        } else {
            self.metrics.alert_updates.inc();
        }
        let Some((ev, json)) = self.log(Finding::Alert(&u.alert)) else {
            return;
        };
        let row = self.alert_row(&u.alert);
        self.pending_rows.push(StoreRow::Alert(row));
        self.notify(Finding::Alert(&u.alert), ev, json);
    }

    /// Appends a finding's state to the evidence log; returns where it went and the
    /// finding as JSON (made for the log, so a notification reuses it rather than
    /// serializing the finding again). `None` when the log failed: the state then goes
    /// nowhere (nothing is sent that is not in the log), loudly. `Some((None, None))`
    /// when there is no log.
    fn log(&mut self, f: Finding<'_>) -> Option<(Option<Appended>, Option<serde_json::Value>)> {
        let Some(log) = &self.evidence else {
            return Some((None, None));
        };
        let data = match f.to_json() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, id = f.id(), "finding to JSON");
                return None;
            }
        };
        match log.append_ref(f.class(), &data) {
            Ok(a) => Some((Some(a), Some(data))),
            Err(e) => {
                tracing::error!(error = %e, class = f.class(), id = f.id(),
                    "evidence log append failed; the state is not sent to any sink");
                self.metrics.sink_error("evidence");
                None
            }
        }
    }

    /// Publishes a violation state; `ctx` is the enrichment of its flow.
    pub fn violation(&mut self, s: &ViolationState, ctx: Option<&FlowContext>) {
        if s.new {
            self.metrics.violations_opened.inc();
        } else {
            self.metrics.violation_updates.inc();
        }
        let Some((ev, json)) = self.log(Finding::Violation(s)) else {
            return;
        };
        self.pending_rows
            .push(StoreRow::Violation(violation_row(s, ctx)));
        self.notify(Finding::Violation(s), ev, json);
    }

    /// Notifies a finding's opening and each escalation of its severity (a violation's
    /// severity is its rule's, so only its opening notifies); later states of the same
    /// severity only move the time it is remembered until.
    /// `json` is the finding as JSON when the caller has it already.
    fn notify(&mut self, f: Finding<'_>, ev: Option<Appended>, json: Option<serde_json::Value>) {
        let id = match self.notified.get(f.id()) {
            None => f.notification_id(),
            Some((sev, _)) if f.severity() > *sev => {
                format!("{}-{}", f.notification_id(), f.severity())
            }
            Some(_) => {
                if let Some(n) = self.notified.get_mut(f.id()) {
                    n.1 = f.last_ns();
                }
                return;
            }
        };
        self.notified
            .insert(f.id().to_string(), (f.severity(), f.last_ns()));
        if self.syslog.is_some() {
            let e = Event::from_finding(f);
            self.pending_syslog.push(match ev {
                Some(a) => e.with_evidence(a.index, &tidegate_evidence::hex(&a.leaf)),
                None => e,
            });
            self.pending_count += 1;
        }
        if self.jsonl.is_none() && self.webhook.is_none() {
            // No notification sink: the body would be built only to be dropped.
            return;
        }
        let origin = self.evidence.as_ref().map(|l| l.origin().to_string());
        let with_evidence = |mut body: serde_json::Value| {
            if let (Some(a), Some(o)) = (ev, body.as_object_mut()) {
                o.insert(
                    "evidence".into(),
                    serde_json::json!({
                        "log": origin,
                        "log_index": a.index,
                        "leaf_hash": tidegate_evidence::hex(&a.leaf),
                    }),
                );
            }
            body
        };
        let json = match json {
            Some(j) => Ok(j),
            None => f.to_json(),
        };
        match json
            .map(with_evidence)
            .map_err(|e| e.to_string())
            .and_then(|body| Notification::new(id, f.class(), body).map_err(|e| e.to_string()))
        {
            Ok(n) => {
                if self.syslog.is_none() {
                    self.pending_count += 1;
                }
                self.pending.push(n);
            }
            Err(e) => tracing::error!(error = %e, class = f.class(), "notification"),
        }
    }

    fn send_syslog(&mut self, e: &Event) {
        let Some(out) = self.syslog.as_mut() else {
            return;
        };
        match out.sink() {
            Some(s) => {
                if let Err(e) = s.send_event(e) {
                    tracing::warn!(error = %e, "syslog send failed");
                    self.metrics.sink_error("syslog");
                }
            }
            None => self.metrics.sink_error("syslog"),
        }
    }

    /// Sends the states of this step: first the evidence log is made durable (one
    /// fsync), then ClickHouse rows, syslog, the JSONL file (fsync'd once) and the
    /// webhook outbox. If the log cannot be made durable, nothing of the step is sent.
    pub fn flush(&mut self) {
        if let Some(log) = &self.evidence
            && let Err(e) = log.sync()
        {
            let lost = self.pending_rows.len();
            tracing::error!(error = %e, states = lost,
                "evidence log fsync failed; this step's alerts and violations are not sent");
            self.metrics.sink_error("evidence");
            self.pending_rows.clear();
            self.pending_syslog.clear();
            self.pending.clear();
            self.pending_count = 0;
            return;
        }
        for row in std::mem::take(&mut self.pending_rows) {
            self.store(row);
        }
        for e in std::mem::take(&mut self.pending_syslog) {
            self.send_syslog(&e);
        }
        self.metrics
            .notifications
            .inc_by(std::mem::take(&mut self.pending_count));
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
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

    /// Batch `ticket` is processed and its states flushed: it is reached once the store
    /// has them in ClickHouse (at once when states are not stored).
    pub fn processed(&mut self, ticket: u64) {
        match &self.store {
            Some(tx) => {
                if tx.blocking_send(StoreRow::Reached(ticket)).is_err() {
                    // The store has stopped; it ended the progress when it did.
                    self.metrics.sink_error("clickhouse");
                }
            }
            None => self.progress.reach(ticket),
        }
    }

    /// Whether finding `id` was already notified.
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
            severity: a.severity.code(),
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
            packets: a.volume.map(|v| v.packets),
            bytes: a.volume.map(|v| v.bytes),
        }
    }
}

fn ns(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn violation_row(s: &ViolationState, ctx: Option<&FlowContext>) -> ViolationRow {
    let v = &s.violation;
    let text = |ip: std::net::IpAddr| tidegate_threat::enrich::unmap(ip).to_string();
    ViolationRow {
        id: s.id.clone(),
        version: v.last_ns,
        rule_id: v.rule_id.clone(),
        rule_name: v.rule_name.clone(),
        rule_location: v.rule_location.clone(),
        rule_text: v.rule_text.clone(),
        kind: v.kind.as_str().to_string(),
        severity: v.severity.code(),
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
        action: v.action.map(|a| a.name().to_string()).unwrap_or_default(),
    }
}
