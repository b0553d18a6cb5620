//! The collector's detection stage: enrichment, policy and the anomaly detectors over the
//! live flow stream, with alert and violation delivery.
//!
//! The pipeline's reading stage enriches every decoded batch (country, ASN and zone of
//! both ends — also stored with each flow) and hands it to this stage through a bounded
//! queue ([`Feed`]); a dedicated thread runs the policy engine and the detectors on event
//! time (so a replay raises what live traffic raised) and publishes:
//! - every alert and violation state to ClickHouse (`alerts`, `policy_violations`;
//!   replacing by id, newest version wins);
//! - each opening (and each severity escalation of an alert) as a [`Notification`] to the
//!   JSONL file, the webhook outbox (durable before delivery, signed, retried) and syslog.
//!
//! Repeats of an alert (same kind and key) or a violation (same rule, kind, line and
//! address pair, in either direction) close in event time update the open one instead of
//! raising a new one.
//! Ids are deterministic, so states re-derived after a restart replace, not duplicate.
//!
//! [`Notification`]: crate::sinks::alerts::Notification

pub mod config;
mod learned;
mod metrics;
mod outputs;
mod progress;
mod stage;
mod store;

use std::sync::Arc;

use tidegate_wire::Batch;

pub use config::{AnalysisConfig, LoadedSources};
pub use metrics::AnalysisMetrics;
pub use progress::Progress;

use crate::sinks::alerts::{AlertSinkError, JsonlSink, WebhookSink};
use crate::sinks::clickhouse::ClickHouseSink;
use tidegate_threat::detect::Detector;
use tidegate_threat::enrich::FlowContext;
use tidegate_threat::policy::{PolicyEngine, ViolationBook};

/// Batches the reading stage may run ahead of detection.
const QUEUE: usize = 64;
/// Alert/violation states waiting for ClickHouse before the stage blocks.
const STORE_QUEUE: usize = 10_000;

/// Errors starting the stage.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A configured file (database, policy, thresholds) is invalid; the message names it.
    #[error("{0}")]
    Sources(String),
    /// The detector thresholds are invalid.
    #[error("detection settings: {0}")]
    Detect(#[from] tidegate_base::FieldError),
    /// A delivery sink could not be opened.
    #[error("alert sink: {0}")]
    Sink(#[from] AlertSinkError),
    /// The stage thread could not be started.
    #[error("cannot start the detection thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The detection stage's input queue (cheap to clone).
#[derive(Clone)]
pub struct Feed {
    tx: crossbeam_channel::Sender<stage::Input>,
    issued: Arc<std::sync::atomic::AtomicU64>,
    progress: Arc<Progress>,
}

impl Feed {
    /// Queues a batch and the enrichment of each of its records; blocks while the stage
    /// is behind. Returns the batch's ticket: once [`Feed::progress`] reaches it, the
    /// batch is processed and its states are stored. A stopped stage drops the batch
    /// (and never reaches its ticket).
    ///
    /// Tickets follow the order of the calls; one reader sends the batches.
    pub fn send(&self, batch: Arc<Batch>, ctx: Arc<Vec<FlowContext>>) -> u64 {
        let ticket = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        let _ = self.tx.send(stage::Input::Batch { batch, ctx, ticket });
        ticket
    }

    /// How far the stage has got through the tickets.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Publishes an alert raised outside detection (a quarantined spool entry) through
    /// the stage's sinks; blocks while the stage is behind.
    pub fn raise(&self, alert: tidegate_threat::detect::Alert) {
        if self.tx.send(stage::Input::Raise(Box::new(alert))).is_err() {
            tracing::error!("the detection stage has stopped: an alert could not be raised");
        }
    }
}

/// Ends a [`Progress`] when dropped (the stage thread or the store task has stopped).
struct EndOnDrop(Arc<Progress>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The running stage.
pub struct Analysis {
    thread: Option<std::thread::JoinHandle<()>>,
    store: Option<tokio::task::JoinHandle<()>>,
    webhook: Option<Arc<WebhookSink>>,
    ended: tokio::sync::watch::Receiver<Option<String>>,
}

impl Analysis {
    /// Starts the stage inside the current Tokio runtime (for the ClickHouse store task and
    /// webhook delivery). `store` is where alert states go (`None`: not stored). Returns
    /// the stage and its input; the stage ends once every [`Feed`] clone is dropped.
    pub fn start(
        cfg: &AnalysisConfig,
        sources: LoadedSources,
        store: Option<Arc<ClickHouseSink>>,
        evidence: Option<Arc<tidegate_evidence::EvidenceLog>>,
        blocker: Option<Arc<crate::enforce::EnforceHub>>,
        metrics: AnalysisMetrics,
    ) -> Result<(Analysis, Feed), AnalysisError> {
        let mut detector = if cfg.detect_enabled {
            Some(Detector::new(sources.detect)?.streaming())
        } else {
            None
        };
        let learned = match (&mut detector, &cfg.detect_state) {
            (Some(d), Some(path)) => {
                let l = learned::Learned::new(path.clone(), cfg.detect_state_every);
                l.restore(d);
                Some(l)
            }
            _ => None,
        };
        let mut outputs = outputs::Outputs::new(metrics.clone());
        outputs.enricher = sources.enricher.clone();
        outputs.evidence = evidence;
        if let Some(p) = &cfg.jsonl {
            outputs.jsonl = Some(JsonlSink::open(p)?);
        }
        let webhook = match &cfg.webhook {
            Some(w) => Some(Arc::new(WebhookSink::start(w.clone())?)),
            None => None,
        };
        outputs.webhook = webhook.clone();
        outputs.syslog = cfg.syslog.clone().map(outputs::SyslogOut::new);
        let progress = Arc::new(Progress::default());
        outputs.progress = progress.clone();
        let store_task = store.map(|sink| {
            let (tx, rx) = tokio::sync::mpsc::channel(STORE_QUEUE);
            outputs.store = Some(tx);
            let progress = progress.clone();
            tokio::spawn(async move {
                // However the store ends, waiters for tickets it will not reach wake.
                let _ended = EndOnDrop(progress.clone());
                store::run(sink, rx, metrics.clone(), progress).await
            })
        });
        let st = stage::Stage {
            detector,
            learned,
            policy: sources.policy.map(PolicyEngine::new),
            violations: ViolationBook::new(cfg.violation_merge_gap.as_nanos() as u64),
            outputs,
            idle_advance: cfg.idle_advance,
            max_skew_ns: cfg.max_clock_skew.as_nanos() as u64,
            future_warn: tidegate_base::limits::Throttle::new(std::time::Duration::from_secs(60)),
            blocker,
            blocked: Default::default(),
        };
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let (ended_tx, ended) = tokio::sync::watch::channel(None);
        let thread_progress = progress.clone();
        let thread = std::thread::Builder::new()
            .name("detect".into())
            .spawn(move || {
                let _ended = EndOnDrop(thread_progress);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| st.run(rx)));
                let how = match r {
                    Ok(()) => "finished".to_string(),
                    Err(p) => {
                        let what = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into());
                        tracing::error!(panic = %what, "the detection stage panicked");
                        format!("panicked: {what}")
                    }
                };
                let _ = ended_tx.send(Some(how));
            })
            .map_err(AnalysisError::Thread)?;
        Ok((
            Analysis {
                thread: Some(thread),
                store: store_task,
                webhook,
                ended,
            },
            Feed {
                tx,
                issued: Arc::default(),
                progress,
            },
        ))
    }

    /// Says how the stage thread ended (`finished` or `panicked: ...`) once it has.
    pub fn ended(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.ended.clone()
    }

    /// Waits for the stage to finish (after every [`Feed`] is dropped): closes every
    /// window, stores the last states, and stops webhook delivery after its in-flight
    /// request (the outbox keeps the rest for the next start).
    pub async fn shutdown(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        if let Some(s) = self.store.take() {
            let _ = s.await;
        }
        if let Some(w) = self.webhook.take() {
            match Arc::try_unwrap(w) {
                Ok(w) => w.shutdown().await,
                Err(w) => drop(w),
            }
        }
    }
}
