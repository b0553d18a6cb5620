//! From the spool to storage: read entries in order, feed the aggregation shards, insert
//! into ClickHouse (retrying while it is unreachable), then commit the spool position.
//! Nothing is committed before ClickHouse has it, so a crash or an outage only delays.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tidegate_threat::enrich::{Contextualizer, FlowContext};
use tidegate_wire::{Batch, FlowRecord, decode_batch};
use tokio::sync::watch;

use crate::{
    aggregate::Aggregator,
    analysis::Feed,
    sinks::clickhouse::{ClickHouseSink, GroupPart, ProbeHealthRow},
    spool::{Entry, Spool, SpoolError, SpoolReader},
};

/// Pipeline metrics.
#[derive(Clone, Default)]
pub struct PipelineMetrics {
    /// Batches stored downstream and committed.
    pub batches_committed: Counter,
    /// Records stored downstream.
    pub records_committed: Counter,
    /// Insert attempts that failed and will be retried.
    pub insert_retries: Counter,
    /// Spool entries that could not be decoded (moved to the dead-letter directory).
    pub dead_letters: Counter,
    /// 1 while ClickHouse is failing inserts.
    pub clickhouse_down: Gauge,
    /// Bytes held in the spool.
    pub spool_bytes: Gauge,
    /// Entries waiting in the spool.
    pub spool_pending: Gauge,
    /// Records stored already older than `retention_days` (ClickHouse's TTL drops them
    /// from `flows` and `flows_1m` at its next merge).
    pub records_beyond_retention: Counter,
}

impl PipelineMetrics {
    /// Registers under the given registry.
    pub fn register(&self, r: &mut Registry) {
        tidegate_base::register_metrics!(r, self {
            batches_committed as "pipeline_batches_committed": "Batches stored in ClickHouse and committed",
            records_committed as "pipeline_records_committed": "Flow records stored in ClickHouse",
            insert_retries as "pipeline_insert_retries": "ClickHouse inserts retried after a retryable failure",
            dead_letters as "pipeline_dead_letters": "Spool entries that could not be decoded",
            clickhouse_down: "1 while ClickHouse is failing inserts",
            spool_bytes: "Bytes held in the write-ahead spool",
            spool_pending as "spool_pending_batches": "Batches in the spool not yet stored",
            records_beyond_retention as "pipeline_records_beyond_retention": "Records stored already older than retention_days (the TTL drops them from flows and flows_1m)",
        });
    }
}

/// A spool entry on its way to storage.
struct Item {
    entry: Entry,
    /// `None` when the payload could not be decoded (it goes to the dead-letter directory).
    batch: Option<Arc<Batch>>,
    /// Enrichment of each record of `batch` (empty when nothing enriches).
    ctx: Arc<Vec<FlowContext>>,
    error: Option<String>,
    /// Its detection ticket, when detection runs (see [`crate::analysis::Progress`]).
    ticket: Option<u64>,
    /// Its share of [`READ_AHEAD_KIB`], given back once it is committed.
    _memory: tokio::sync::OwnedSemaphorePermit,
}

/// What the reading stage does with each decoded batch besides handing it to storage.
pub struct Stages {
    /// The aggregation shards.
    pub aggregator: Arc<Aggregator>,
    /// Enrichment stored with every flow (and handed to detection).
    pub context: Contextualizer,
    /// The detection stage's input, when detection runs.
    pub analysis: Option<Feed>,
    /// The evidence log: a digest of the stored flows of each group goes in, durably,
    /// before the spool is committed past it.
    pub evidence: Option<Arc<tidegate_evidence::EvidenceLog>>,
    /// IPFIX export, when `[[netflow.export]]` targets are configured.
    pub export: Option<crate::netflow::export::ExportFeed>,
    /// Batches the transport decoded already (else each spool entry is decoded here).
    pub decoded: Option<crate::decoded::DecodedCache>,
}

/// Decoded entries the reading stage may run ahead of storage (bounds memory).
const READ_AHEAD: usize = 64;
/// Memory those entries may take together, in KiB (256 MiB; an entry's share is its
/// payload plus three times its declared body). The largest entry always fits.
const READ_AHEAD_KIB: u32 = 256 << 10;

/// Runs until `stop` turns true and the spool has been drained as far as it can be.
///
/// Two stages overlap: a reader decodes the next spool entries and feeds the
/// aggregation shards while the storing stage inserts the previous ones into ClickHouse
/// and commits the spool in order. The storing stage groups the entries that are ready
/// (up to `max_rows_per_insert` rows) into one INSERT — batched by size, and by time since
/// it never waits to fill a group — after saving the group's bounds in the spool: after a
/// crash the same group is rebuilt with the same token, so ClickHouse stores it once.
pub async fn run(
    mut reader: SpoolReader,
    spool: Spool,
    sink: Arc<ClickHouseSink>,
    stages: Stages,
    metrics: PipelineMetrics,
    dead_letter_dir: std::path::PathBuf,
    stop: watch::Receiver<bool>,
) -> Result<(), SpoolError> {
    let mut committer = reader.take_committer().ok_or(SpoolError::Closed)?;
    let evidence = stages.evidence.clone();
    let detection = stages.analysis.as_ref().map(|f| f.progress().clone());
    let mut stop_wait = stop.clone();
    let quarantine = Quarantine {
        dir: dead_letter_dir,
        alerts: stages.analysis.clone(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(READ_AHEAD);
    let read = tokio::spawn(read_stage(reader, stages, tx, stop.clone()));
    let max_rows = sink.config().max_rows_per_insert.max(1);
    // A group cut short by a crash is rebuilt to the same bounds.
    let mut replay = committer.pending_intent()?;
    let mut next: Option<Item> = None;
    let mut expired = Expired::new(sink.config().retention_days);
    loop {
        metrics.spool_bytes.set(spool.bytes() as i64);
        metrics.spool_pending.set(spool.pending() as i64);
        let first = match next.take() {
            Some(i) => i,
            None => match rx.recv().await {
                Some(i) => i,
                None => break,
            },
        };
        if first.batch.is_none() {
            metrics.dead_letters.inc();
            quarantine.keep(
                &first.entry,
                &[],
                first.error.as_deref().unwrap_or("undecodable"),
            )?;
            committer.commit(first.entry.end, 1)?;
            replay = None;
            continue;
        }
        let mut group = vec![first];
        let mut rows = group[0].rows();
        match replay.take() {
            Some(intent) => {
                while group.last().expect("non-empty").entry.end < intent.end {
                    match rx.recv().await {
                        Some(i) if i.batch.is_some() => group.push(i),
                        Some(i) => {
                            next = Some(i);
                            break;
                        }
                        None => break,
                    }
                }
            }
            None => {
                while rows < max_rows {
                    match rx.try_recv() {
                        Ok(i) if i.batch.is_some() && rows + i.rows() <= max_rows => {
                            rows += i.rows();
                            group.push(i);
                        }
                        Ok(i) => {
                            next = Some(i);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        let end = group.last().expect("non-empty").entry.end;
        let intent = committer.save_intent(end)?;
        let parts: Vec<GroupPart<'_>> = group
            .iter()
            .map(|i| {
                let b = i.batch.as_ref().expect("grouped items are decoded");
                (
                    b.probe_id.as_str(),
                    b.epoch,
                    b.seq,
                    b.records.as_slice(),
                    i.ctx.as_slice(),
                )
            })
            .collect();
        // The flows digests are computed while ClickHouse takes the insert.
        let digests = evidence.as_ref().map(|_| {
            let owned: Vec<(Arc<Batch>, Arc<Vec<FlowContext>>)> = group
                .iter()
                .filter_map(|i| Some((i.batch.clone()?, i.ctx.clone())))
                .collect();
            tokio::task::spawn_blocking(move || {
                let parts: Vec<GroupPart<'_>> = owned
                    .iter()
                    .map(|(b, c)| {
                        (
                            b.probe_id.as_str(),
                            b.epoch,
                            b.seq,
                            b.records.as_slice(),
                            c.as_slice(),
                        )
                    })
                    .collect();
                crate::evidence::digest::of_group(&parts)
            })
        });
        let stored = store(
            &sink,
            &spool,
            &metrics,
            &stop,
            spool.id(),
            intent.start,
            &parts,
        )
        .await;
        let stored_parts: Vec<GroupPart<'_>> = if stored {
            parts
        } else {
            match store_one_by_one(&sink, &metrics, &quarantine, &group).await {
                Ok(kept) => parts
                    .into_iter()
                    .zip(kept)
                    .filter_map(|(p, k)| k.then_some(p))
                    .collect(),
                Err(StoreOutcome::Stopped) => {
                    tracing::warn!(
                        pending = spool.pending(),
                        "stopping with ClickHouse unreachable; the spool keeps the rest for the next start"
                    );
                    read.abort();
                    return Ok(());
                }
                Err(StoreOutcome::Failed(e)) => {
                    read.abort();
                    return Err(e);
                }
            }
        };
        if let (Some(log), Some(d)) = (&evidence, digests) {
            let all = d.await.unwrap_or_default();
            let digests = if stored {
                all
            } else {
                // Some batches went to the dead-letter directory: digest what was kept.
                crate::evidence::digest::of_group(&stored_parts)
            };
            log_digests(log, digests);
        }
        for item in &group {
            let b = item.batch.as_ref().expect("decoded");
            if let Some(h) = &b.health {
                let row = ProbeHealthRow {
                    ts_ns: h.ts_ns,
                    probe_id: b.probe_id.clone(),
                    counters: h.counters.clone(),
                    spool_bytes: h.spool_bytes,
                    spool_batches: h.spool_batches,
                    lines: h.lines.clone(),
                };
                if let Err(e) = sink.insert_health(&b.probe_id, &row).await {
                    tracing::warn!(error = %e, "probe health row not stored");
                }
            }
        }
        // Not past batches whose alerts and violations are not stored yet: a crash now
        // replays them through detection.
        if let (Some(p), Some(t)) = (&detection, group.iter().filter_map(|i| i.ticket).max()) {
            match detection_done(p, t, &mut stop_wait).await {
                Detection::Done => {}
                Detection::Stopped => {
                    read.abort();
                    return Err(SpoolError::DetectionStopped);
                }
                Detection::ShuttingDown => {
                    tracing::warn!(
                        pending = spool.pending(),
                        "stopping with alert and violation states not yet stored (ClickHouse refuses or is slow); \
                         the spool keeps their batches for the next start"
                    );
                    read.abort();
                    return Ok(());
                }
            }
        }
        committer.commit(end, group.len() as u64)?;
        expired.note(&group, &metrics);
        metrics.batches_committed.inc_by(group.len() as u64);
        metrics
            .records_committed
            .inc_by(group.iter().map(Item::rows).sum::<usize>() as u64);
    }
    match read.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "spool reader task failed");
            Err(SpoolError::Closed)
        }
    }
}

/// How long a stopping collector waits for detection to store the states of batches
/// already in ClickHouse before it stops without committing them.
const SHUTDOWN_DETECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

enum Detection {
    /// The ticket is reached: commit.
    Done,
    /// The stage ended first (a supervised failure).
    Stopped,
    /// The collector is stopping and the ticket was not reached in time: leave the
    /// batches in the spool (a replay at the next start redoes their detection).
    ShuttingDown,
}

/// Waits for detection to reach `ticket`; once `stop` is set, at most
/// [`SHUTDOWN_DETECTION_WAIT`] more.
async fn detection_done(
    p: &crate::analysis::Progress,
    ticket: u64,
    stop: &mut watch::Receiver<bool>,
) -> Detection {
    let reached = |r: bool| {
        if r {
            Detection::Done
        } else {
            Detection::Stopped
        }
    };
    if !*stop.borrow() {
        tokio::select! {
            r = p.wait(ticket) => return reached(r),
            // Stop requested (a dropped sender never stops the wait).
            Ok(_) = stop.wait_for(|s| *s) => {}
        }
    }
    match tokio::time::timeout(SHUTDOWN_DETECTION_WAIT, p.wait(ticket)).await {
        Ok(r) => reached(r),
        Err(_) => Detection::ShuttingDown,
    }
}

/// Says when stored records are already older than the retention (a forensic import of
/// an old capture): the TTL drops them from `flows` and `flows_1m` right away, which
/// would otherwise look like a silent loss. Counted always, logged once a minute.
struct Expired {
    retention_ns: Option<u64>,
    warn: tidegate_base::limits::Throttle,
}

impl Expired {
    fn new(retention_days: u32) -> Self {
        Expired {
            retention_ns: (retention_days > 0)
                .then(|| u64::from(retention_days) * 86_400 * 1_000_000_000),
            warn: tidegate_base::limits::Throttle::new(Duration::from_secs(60)),
        }
    }

    fn note(&mut self, group: &[Item], metrics: &PipelineMetrics) {
        let Some(keep) = self.retention_ns else {
            return;
        };
        let now = tidegate_base::clock::wall_ns();
        let cutoff = now.saturating_sub(keep);
        let mut old = 0u64;
        let mut probe = "";
        for b in group.iter().filter_map(|i| i.batch.as_ref()) {
            let n = b.records.iter().filter(|r| r.first < cutoff).count() as u64;
            if n > 0 {
                old += n;
                probe = &b.probe_id;
            }
        }
        if old == 0 {
            return;
        }
        metrics.records_beyond_retention.inc_by(old);
        if self.warn.due().is_some() {
            tracing::warn!(
                records = old,
                probe = %probe.escape_debug(),
                retention_days = keep / 86_400_000_000_000,
                "stored records older than clickhouse.retention_days: ClickHouse's TTL drops them \
                 from flows and flows_1m at its next merge (flows_1h keeps them for \
                 rollup_retention_days); for forensic imports of old captures use a collector \
                 with retention_days = 0"
            );
        }
    }
}

/// Logs the digests of the flows just stored and makes them durable; a failure is loud
/// but does not hold storage back (the rows are in ClickHouse already).
fn log_digests(log: &tidegate_evidence::EvidenceLog, digests: Vec<serde_json::Value>) {
    let r = digests
        .into_iter()
        .try_for_each(|d| log.append(crate::evidence::FLOWS_DIGEST, d).map(|_| ()))
        .and_then(|()| log.sync());
    if let Err(e) = r {
        tracing::error!(error = %e, "evidence log: flows digest not recorded");
    }
}

/// Why storing one by one ended early.
enum StoreOutcome {
    /// Stopping while ClickHouse is unreachable: the spool keeps the rest.
    Stopped,
    /// A rejected batch could not be quarantined: storage cannot go past it.
    Failed(SpoolError),
}

/// Inserts a group, retrying while ClickHouse is unreachable. `true` when stored;
/// `false` when ClickHouse rejected it permanently (the caller then isolates the bad
/// batch) or the collector is stopping with ClickHouse down.
async fn store(
    sink: &ClickHouseSink,
    spool: &Spool,
    metrics: &PipelineMetrics,
    stop: &watch::Receiver<bool>,
    spool_id: &str,
    start: crate::spool::Position,
    parts: &[GroupPart<'_>],
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match sink
            .insert_group(spool_id, start.segment, start.offset, parts)
            .await
        {
            Ok(()) => {
                metrics.clickhouse_down.set(0);
                return true;
            }
            Err(e) if e.is_retryable() => {
                metrics.insert_retries.inc();
                metrics.clickhouse_down.set(1);
                tracing::warn!(error = %e, retry_in = ?backoff, pending = spool.pending(), "ClickHouse insert failed; keeping the batches spooled");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if *stop.borrow() && !sink.ping().await {
                    return false;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "ClickHouse rejected a group of batches; storing them one by one to isolate the bad one");
                return false;
            }
        }
    }
}

/// Fallback after a permanent rejection (or a stop with ClickHouse down): each batch on
/// its own token; a batch ClickHouse rejects goes to the dead-letter directory.
async fn store_one_by_one(
    sink: &ClickHouseSink,
    metrics: &PipelineMetrics,
    quarantine: &Quarantine,
    group: &[Item],
) -> Result<Vec<bool>, StoreOutcome> {
    if !sink.ping().await {
        return Err(StoreOutcome::Stopped);
    }
    let mut kept = Vec::with_capacity(group.len());
    for item in group {
        kept.push(true);
        let b = item.batch.as_ref().expect("decoded");
        if let Err(e) = sink
            .insert_batch_enriched(&b.probe_id, b.epoch, b.seq, &b.records, &item.ctx)
            .await
        {
            if e.is_retryable() {
                return Err(StoreOutcome::Stopped);
            }
            metrics.dead_letters.inc();
            *kept.last_mut().expect("pushed") = false;
            if let Err(io) = quarantine.keep(
                &item.entry,
                &b.records,
                &format!("ClickHouse rejected it: {e}"),
            ) {
                tracing::error!(error = %io, "cannot quarantine a batch ClickHouse rejected");
                return Err(StoreOutcome::Failed(io));
            }
        }
    }
    Ok(kept)
}

impl Item {
    fn rows(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.records.len())
    }
}

/// Reads and decodes spool entries in order, feeds the aggregation shards, enriches the
/// records, hands them to detection, and hands the entries to the storing stage. Ends
/// when `stop` is set and nothing more is spooled.
async fn read_stage(
    mut reader: SpoolReader,
    stages: Stages,
    tx: tokio::sync::mpsc::Sender<Item>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SpoolError> {
    let memory = Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_KIB as usize));
    loop {
        let entry = if *stop.borrow() {
            // Draining at shutdown: take what is there, never wait for more.
            match reader.try_next()? {
                Some(e) => e,
                None => return Ok(()),
            }
        } else {
            tokio::select! {
                e = reader.next() => e?,
                _ = stop.changed() => continue,
            }
        };
        let declared = tidegate_wire::peek_batch_header(&entry.payload)
            .map(|h| h.body_len)
            .unwrap_or(0)
            .min(tidegate_wire::MAX_BATCH_BODY);
        let kib = ((entry.payload.len() + 3 * declared) / 1024 + 1).min(READ_AHEAD_KIB as usize);
        let Ok(permit) = memory.clone().acquire_many_owned(kib as u32).await else {
            return Ok(());
        };
        let cached = stages
            .decoded
            .as_ref()
            .and_then(|c| c.take(&entry.probe_id, entry.epoch, entry.seq));
        let decoded = match cached {
            Some(b) => Ok(b),
            None => decode_batch(&entry.payload).map(Arc::new),
        };
        let item = match decoded {
            Ok(b) => {
                if let Some(export) = &stages.export {
                    export.offer(&b);
                }
                let (agg, context, feed, batch) = (
                    stages.aggregator.clone(),
                    stages.context.clone(),
                    stages.analysis.clone(),
                    b.clone(),
                );
                let (ctx, ticket) = tokio::task::spawn_blocking(move || {
                    agg.submit(&batch.probe_id, &batch.records);
                    let ctx = Arc::new(context.contexts(&batch.records));
                    // Blocks while detection is behind (bounded queue): backpressure.
                    let ticket = feed.map(|feed| feed.send(batch, ctx.clone()));
                    (ctx, ticket)
                })
                .await
                .expect("aggregation and enrichment");
                Item {
                    entry,
                    batch: Some(b),
                    ctx,
                    error: None,
                    ticket,
                    _memory: permit,
                }
            }
            Err(e) => Item {
                entry,
                batch: None,
                ctx: Arc::default(),
                error: Some(e.to_string()),
                ticket: None,
                _memory: permit,
            },
        };
        if tx.send(item).await.is_err() {
            return Ok(());
        }
    }
}

/// Where entries that cannot be stored go: the dead-letter directory, and an alert.
struct Quarantine {
    dir: std::path::PathBuf,
    /// The detection stage publishes the `data_quarantined` alert through its sinks.
    alerts: Option<Feed>,
}

impl Quarantine {
    /// Keeps an entry that cannot be stored, next to the spool, and says so loudly (log,
    /// and an alert). The file is named after the entry's place in the spool (never after
    /// anything the probe sent); a `.json` beside it says whose batch it was and why it is
    /// there. `records` are its decoded records (empty when it could not be decoded).
    fn keep(&self, entry: &Entry, records: &[FlowRecord], why: &str) -> Result<(), SpoolError> {
        let dir = &self.dir;
        let name = format!("{:020}-{:012}", entry.end.segment, entry.end.offset);
        let p = dir.join(format!("{name}.bin"));
        tracing::error!(probe = %entry.probe_id.escape_debug(), seq = entry.seq, reason = why, file = %p.display(),
            "spool entry quarantined in the dead-letter directory (it is not replayed again)");
        tidegate_base::durable::private_dir(dir)
            .map_err(SpoolError::io(dir, "create dead-letter directory"))?;
        let about = serde_json::json!({
            "probe_id": entry.probe_id,
            "epoch": entry.epoch,
            "seq": entry.seq,
            "reason": why,
            "quarantined_at": chrono_like_now(),
        });
        let meta = dir.join(format!("{name}.json"));
        tidegate_base::durable::write_renamed(&p, &entry.payload)
            .map_err(SpoolError::io(&p, "write dead letter"))?;
        tidegate_base::durable::write_durable(&meta, about.to_string().as_bytes())
            .map_err(SpoolError::io(&meta, "write dead letter"))?;
        if let Some(feed) = self.alerts.clone() {
            let alert = tidegate_threat::detect::Alert::data_quarantined(
                &entry.probe_id,
                &name,
                records,
                why,
                &p.display().to_string(),
                tidegate_base::clock::wall_ns(),
            );
            // The stage's queue may be full (it blocks): off the async threads.
            tokio::task::spawn_blocking(move || feed.raise(alert));
        }
        Ok(())
    }
}

/// Now as RFC 3339 (UTC).
fn chrono_like_now() -> String {
    let ns = tidegate_base::clock::wall_ns();
    tidegate_wire::record::rfc3339_ns::format(ns)
}
