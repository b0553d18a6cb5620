//! From the spool to storage: read entries in order, feed the aggregation shards, insert
//! into ClickHouse (retrying while it is unreachable), then commit the spool position.
//! Nothing is committed before ClickHouse has it, so a crash or an outage only delays.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tidegate_common::wire::decode_batch;
use tokio::sync::watch;

use crate::{
    aggregate::Aggregator,
    sinks::clickhouse::{ClickHouseSink, ProbeHealthRow},
    spool::{Spool, SpoolError, SpoolReader},
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
}

impl PipelineMetrics {
    /// Registers under the given registry.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "pipeline_batches_committed",
            "Batches stored in ClickHouse and committed",
            self.batches_committed.clone(),
        );
        r.register(
            "pipeline_records_committed",
            "Flow records stored in ClickHouse",
            self.records_committed.clone(),
        );
        r.register(
            "pipeline_insert_retries",
            "ClickHouse inserts retried after a retryable failure",
            self.insert_retries.clone(),
        );
        r.register(
            "pipeline_dead_letters",
            "Spool entries that could not be decoded",
            self.dead_letters.clone(),
        );
        r.register(
            "clickhouse_down",
            "1 while ClickHouse is failing inserts",
            self.clickhouse_down.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes held in the write-ahead spool",
            self.spool_bytes.clone(),
        );
        r.register(
            "spool_pending_batches",
            "Batches in the spool not yet stored",
            self.spool_pending.clone(),
        );
    }
}

/// Runs until `stop` turns true and the spool has been drained as far as it can be.
pub async fn run(
    mut reader: SpoolReader,
    spool: Spool,
    sink: Arc<ClickHouseSink>,
    aggregator: Arc<Aggregator>,
    metrics: PipelineMetrics,
    dead_letter_dir: std::path::PathBuf,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SpoolError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        metrics.spool_bytes.set(spool.bytes() as i64);
        metrics.spool_pending.set(spool.pending() as i64);
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
        let batch = match decode_batch(&entry.payload) {
            Ok(b) => b,
            Err(e) => {
                metrics.dead_letters.inc();
                let p = dead_letter_dir.join(format!("{}-{}.bin", entry.probe_id, entry.seq));
                tracing::error!(probe = %entry.probe_id, seq = entry.seq, error = %e, file = %p.display(), "undecodable spool entry moved aside");
                let _ = std::fs::create_dir_all(&dead_letter_dir);
                if let Err(e) = std::fs::write(&p, &entry.payload) {
                    tracing::error!(error = %e, "cannot write dead letter; keeping the entry");
                    return Err(SpoolError::Io {
                        path: p,
                        op: "write dead letter",
                        source: e,
                    });
                }
                reader.commit(entry.end, 1)?;
                continue;
            }
        };
        let agg = aggregator.clone();
        let (probe, records) = (batch.probe_id.clone(), batch.records.clone());
        tokio::task::spawn_blocking(move || agg.submit(&probe, &records))
            .await
            .expect("aggregator submit");
        loop {
            match sink
                .insert_batch(&batch.probe_id, batch.seq, &batch.records)
                .await
            {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    metrics.insert_retries.inc();
                    metrics.clickhouse_down.set(1);
                    tracing::warn!(error = %e, retry_in = ?backoff, "ClickHouse insert failed; keeping the batch spooled");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if *stop.borrow() && !sink.ping().await {
                        tracing::warn!(
                            pending = spool.pending(),
                            "stopping with ClickHouse unreachable; the spool keeps the rest for the next start"
                        );
                        return Ok(());
                    }
                }
                Err(e) => {
                    metrics.dead_letters.inc();
                    let p = dead_letter_dir.join(format!("{}-{}.bin", entry.probe_id, entry.seq));
                    tracing::error!(probe = %entry.probe_id, seq = entry.seq, error = %e, file = %p.display(), "ClickHouse rejected the batch permanently; moved aside");
                    let _ = std::fs::create_dir_all(&dead_letter_dir);
                    std::fs::write(&p, &entry.payload).map_err(|e| SpoolError::Io {
                        path: p,
                        op: "write dead letter",
                        source: e,
                    })?;
                    break;
                }
            }
        }
        metrics.clickhouse_down.set(0);
        backoff = Duration::from_millis(100);
        if let Some(h) = &batch.health {
            let row = ProbeHealthRow {
                ts_ns: h.ts_ns,
                probe_id: batch.probe_id.clone(),
                counters: h.counters.clone(),
                spool_bytes: h.spool_bytes,
                spool_batches: h.spool_batches,
                lines: h.lines.clone(),
            };
            if let Err(e) = sink.insert_health(&batch.probe_id, &row).await {
                tracing::warn!(error = %e, "probe health row not stored");
            }
        }
        reader.commit(entry.end, 1)?;
        metrics.batches_committed.inc();
        metrics.records_committed.inc_by(batch.records.len() as u64);
    }
}
