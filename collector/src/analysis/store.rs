//! Stores alert and violation states in ClickHouse from an async task, batching what is
//! queued and retrying while ClickHouse is unreachable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::metrics::AnalysisMetrics;
use crate::sinks::clickhouse::{AlertRow, ClickHouseSink, ViolationRow};

/// One state to store.
#[derive(Debug)]
pub(crate) enum StoreRow {
    /// An alert state.
    Alert(AlertRow),
    /// A violation state.
    Violation(ViolationRow),
    /// Every state of batches up to this ticket is queued before this: reached once
    /// they are stored.
    Reached(u64),
}

/// Most states in one INSERT.
const MAX_BATCH: usize = 2_000;
/// How long the store keeps retrying after the stage has stopped.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// Runs until `rx` closes and everything queued is stored (or, with ClickHouse down at
/// shutdown, until [`DRAIN_DEADLINE`] passes: those states are logged as not stored; the
/// JSONL and webhook sinks still hold them).
pub(crate) async fn run(
    sink: Arc<ClickHouseSink>,
    mut rx: mpsc::Receiver<StoreRow>,
    metrics: AnalysisMetrics,
    progress: Arc<super::Progress>,
) {
    let mut closed_at: Option<tokio::time::Instant> = None;
    loop {
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Newest state per id only.
        let mut alerts: HashMap<String, AlertRow> = HashMap::new();
        let mut violations: HashMap<String, ViolationRow> = HashMap::new();
        let mut reached = None;
        for r in batch {
            match r {
                StoreRow::Alert(a) => {
                    if alerts.get(&a.id).is_none_or(|o| o.version <= a.version) {
                        alerts.insert(a.id.clone(), a);
                    }
                }
                StoreRow::Violation(v) => {
                    if violations.get(&v.id).is_none_or(|o| o.version <= v.version) {
                        violations.insert(v.id.clone(), v);
                    }
                }
                StoreRow::Reached(t) => reached = Some(t),
            }
        }
        let mut alerts: Vec<AlertRow> = alerts.into_values().collect();
        alerts.sort_by(|a, b| a.id.cmp(&b.id));
        let mut violations: Vec<ViolationRow> = violations.into_values().collect();
        violations.sort_by(|a, b| a.id.cmp(&b.id));
        let mut backoff = Duration::from_millis(100);
        loop {
            let r = async {
                sink.insert_alerts(&alerts).await?;
                sink.insert_violations(&violations).await
            }
            .await;
            match r {
                Ok(()) => break,
                Err(e) => {
                    metrics.sink_error("clickhouse");
                    if rx.is_closed() {
                        let t = *closed_at.get_or_insert_with(tokio::time::Instant::now);
                        if t.elapsed() > DRAIN_DEADLINE || !e.is_retryable() {
                            tracing::error!(error = %e, alerts = alerts.len(), violations = violations.len(), "alert states not stored in ClickHouse (the JSONL/webhook sinks hold them)");
                            break;
                        }
                    } else if !e.is_retryable() {
                        tracing::error!(error = %e, "ClickHouse refused alert states; dropping this batch");
                        break;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "storing alert states failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Stored, or given up on with an error logged: either way the spool may move on
        // (states refused by ClickHouse would be refused again at a replay).
        if let Some(t) = reached {
            progress.reach(t);
        }
        metrics.store_pending.set(rx.len() as i64);
    }
}
