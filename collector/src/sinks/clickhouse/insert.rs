//! Inserts: a probe batch into `flows`, a health report into `probe_health`.

use std::time::Instant;

use clickhouse::RowWrite;
use tidegate_wire::record::FlowRecord;

use tidegate_threat::enrich::FlowContext;

use super::{
    ClickHouseSink, SinkError,
    config::Dedup,
    metrics::Outcome,
    row::{FlowRow, HealthRow, ProbeHealthRow},
    token,
};

/// Settings of every INSERT (besides the deduplication token).
const INSERT_SETTINGS: &[(&str, &str)] = &[
    // Deduplicate by token (the server default, stated so a profile cannot turn it off).
    ("insert_deduplicate", "1"),
    // Drop a deduplicated block from the rollups too (each target table has a window).
    ("deduplicate_blocks_in_dependent_materialized_views", "1"),
    // Synchronous: the answer means stored. (ClickHouse 26 enables async_insert by default,
    // and asynchronous inserts ignore the token unless async_insert_deduplicate is set.)
    ("async_insert", "0"),
    // A batch may span many days (replayed captures, a probe back from a long outage):
    // one part per day is fine, and failing on the 101st day would fail forever.
    ("max_partitions_per_insert_block", "0"),
];

/// Bytes per chunk of an encoded INSERT body (each compressed on its own): what the
/// client's own inserts send at a time.
const BODY_CHUNK_BYTES: usize = 256 * 1024;
/// A flow row's typical RowBinary size, to size a body once.
const ROW_BYTES_TYPICAL: usize = 192;

/// Flow rows ready to insert.
enum FlowRows<'a> {
    /// As row objects, for the client's validating path.
    Rows(Vec<FlowRow<'a>>),
    /// Encoded as RowBinary; `parts`: the end offset and row count of each INSERT's rows.
    Body {
        body: bytes::Bytes,
        parts: Vec<(usize, usize)>,
    },
}

/// Capacity past which an INSERT body's buffer is let go rather than kept for the next.
const SPARE_BODY_MAX: usize = 64 << 20;

/// One emptied INSERT body buffer, shared by the sink's clones, kept between INSERTs.
///
/// A group's RowBinary body is megabytes (up to `max_rows_per_insert` rows). Allocated
/// afresh, it is memory the allocator takes from the kernel again and again (freed
/// buffers are handed back after a delay), and every page of it is faulted in and zeroed
/// before the rows are written: a sixth of the collector's page faults
/// (`perf record -e page-faults`, bench/src/bin/collector_e2e.rs). Kept, the next body
/// reuses pages already there. At most one buffer of at most [`SPARE_BODY_MAX`] is kept;
/// concurrent INSERTs (`dedup = "batch"`) beyond the first allocate their own.
#[derive(Clone, Default)]
pub(super) struct SpareBody(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SpareBody {
    /// The kept buffer (empty, its capacity kept), or a new one; at least `cap` bytes.
    fn take(&self, cap: usize) -> Vec<u8> {
        let mut body = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        body.clear();
        body.reserve(cap);
        body
    }

    /// Keeps `body`'s buffer for the next INSERT, when nothing else holds a part of it
    /// any more (the client has dropped every chunk it sent) and it is not too large.
    fn give_back(&self, body: bytes::Bytes) {
        let Ok(body) = body.try_into_mut() else {
            return;
        };
        let body = Vec::from(body);
        if body.capacity() > SPARE_BODY_MAX {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if body.capacity() > kept.capacity() {
            *kept = body;
        }
    }
}

/// INSERTs one group may have in flight with `dedup = "batch"`.
pub const BATCH_INSERTS_IN_FLIGHT: usize = 4;

/// One probe batch inside a group insert: (probe id, sequence epoch, sequence number,
/// records, enrichment of each record — empty when nothing enriches them).
pub type GroupPart<'a> = (&'a str, u64, u64, &'a [FlowRecord], &'a [FlowContext]);

impl ClickHouseSink {
    /// Stores several batches (possibly from several probes) with as few INSERTs as
    /// `max_rows_per_insert` allows; rows keep their own probe id and batch sequence.
    ///
    /// Exactly once as long as a retry sends the same group in the same order with the
    /// same `(spool_id, segment, offset)` — the collector persists each group's bounds in
    /// its spool before inserting, so a restart rebuilds the identical group.
    pub async fn insert_group(
        &self,
        spool_id: &str,
        segment: u64,
        offset: u64,
        batches: &[GroupPart<'_>],
    ) -> Result<(), SinkError> {
        if self.cfg.dedup() == Dedup::Batch {
            return self.insert_each(batches).await;
        }
        let total: usize = batches.iter().map(|b| b.3.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let rows = self.encode_flows(batches, total)?;
        self.insert_flows(rows, &|k| token::group(spool_id, segment, offset, k))
            .await
    }

    /// The group as one INSERT per probe batch, each with its batch's token (`dedup =
    /// "batch"`): whichever collector stores a batch, and however it grouped it, ClickHouse
    /// keeps it once. [`BATCH_INSERTS_IN_FLIGHT`] INSERTs run at a time; the first error
    /// is returned once the others of its round have ended (a retry resends the whole group and
    /// the stored batches are dropped by their tokens).
    async fn insert_each(&self, batches: &[GroupPart<'_>]) -> Result<(), SinkError> {
        let mut first_error = None;
        for chunk in batches.chunks(BATCH_INSERTS_IN_FLIGHT) {
            let mut inserts = Vec::with_capacity(chunk.len());
            for (probe_id, epoch, seq, records, ctx) in chunk {
                inserts.push(self.insert_batch_enriched(probe_id, *epoch, *seq, records, ctx));
            }
            for r in futures_util::future::join_all(inserts).await {
                if let Err(e) = r {
                    first_error.get_or_insert(e);
                }
            }
            if first_error.is_some() {
                break;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stores the records of batch `seq` of `probe_id` (of its sequence epoch 0; see
    /// [`insert_batch_enriched`](Self::insert_batch_enriched) for others) in `flows`,
    /// exactly once: calling it again with the same batch (after an error, a timeout or a
    /// restart) adds nothing.
    ///
    /// Every record is checked before anything is sent, so a record that cannot be stored
    /// fails the whole batch ([`ErrorClass::Data`](super::ErrorClass::Data)) and no part of
    /// it is written. A batch of more than `max_rows_per_insert` records goes in several
    /// INSERTs, part `k` with token `<probe>:<seq>:<k>`; if one fails, the retry resends
    /// them all and ClickHouse drops the parts it already has.
    pub async fn insert_batch(
        &self,
        probe_id: &str,
        seq: u64,
        records: &[FlowRecord],
    ) -> Result<(), SinkError> {
        self.insert_batch_enriched(probe_id, 0, seq, records, &[])
            .await
    }

    /// [`insert_batch`](Self::insert_batch) with the enrichment of each record (`ctx[i]`
    /// belongs to `records[i]`; records past the end of `ctx` are stored unenriched).
    pub async fn insert_batch_enriched(
        &self,
        probe_id: &str,
        epoch: u64,
        seq: u64,
        records: &[FlowRecord],
        ctx: &[FlowContext],
    ) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = self.encode_flows(&[(probe_id, epoch, seq, records, ctx)], records.len())?;
        self.insert_flows(rows, &|k| token::batch(probe_id, epoch, seq, k))
            .await
    }

    /// Converts the rows of `batches` (`n` of them) for [`Self::insert_flows`]: every
    /// row before anything is sent, so a row that cannot be stored fails them all and
    /// none is written. Once `flows`' columns were checked, rows are encoded straight
    /// into one RowBinary body by a plain loop (no row objects kept or moved through
    /// iterator adapters, no serializer call per field); before that, they are kept for
    /// the client's validating path.
    fn encode_flows<'a>(
        &self,
        batches: &[GroupPart<'a>],
        n: usize,
    ) -> Result<FlowRows<'a>, SinkError> {
        let max = self.cfg.max_rows_per_insert.max(1);
        if !self.flows_checked() {
            let mut rows = Vec::with_capacity(n);
            for part in batches {
                for_each_row(part, |row| {
                    rows.push(row);
                    Ok(())
                })?;
            }
            return Ok(FlowRows::Rows(rows));
        }
        let mut body = self.spare_body.take(n.saturating_mul(ROW_BYTES_TYPICAL));
        let mut parts = Vec::with_capacity(n.div_ceil(max));
        let mut in_part = 0;
        for part in batches {
            for_each_row(part, |row| {
                row.write_row_binary(&mut body);
                in_part += 1;
                if in_part == max {
                    parts.push((body.len(), in_part));
                    in_part = 0;
                }
                Ok(())
            })?;
        }
        if in_part > 0 {
            parts.push((body.len(), in_part));
        }
        Ok(FlowRows::Body {
            body: bytes::Bytes::from(body),
            parts,
        })
    }

    /// Stores converted rows in `flows`, `max_rows_per_insert` per INSERT, INSERT `k` of
    /// several with deduplication token `token(Some(k))`, a single one with `token(None)`.
    async fn insert_flows(
        &self,
        rows: FlowRows<'_>,
        token: &(dyn Fn(Option<usize>) -> String + Sync),
    ) -> Result<(), SinkError> {
        match rows {
            FlowRows::Rows(rows) => {
                let parts: Vec<_> = rows.chunks(self.cfg.max_rows_per_insert.max(1)).collect();
                let split = parts.len() > 1;
                for (k, part) in parts.into_iter().enumerate() {
                    let token = token(split.then_some(k));
                    self.insert_rows::<FlowRow<'static>>("flows", &token, part)
                        .await?;
                }
            }
            FlowRows::Body { body, parts } => {
                let split = parts.len() > 1;
                let mut start = 0;
                let mut stored = Ok(());
                for (k, (end, rows)) in parts.into_iter().enumerate() {
                    let token = token(split.then_some(k));
                    stored = self
                        .insert_flow_body(&token, body.slice(start..end), rows)
                        .await;
                    if stored.is_err() {
                        break;
                    }
                    start = end;
                }
                self.spare_body.give_back(body);
                stored?;
            }
        }
        Ok(())
    }

    /// Stores one health report of `probe_id` in `probe_health`, exactly once per
    /// (probe, `ts_ns`). `health.probe_id` must be empty or equal `probe_id`.
    pub async fn insert_health(
        &self,
        probe_id: &str,
        health: &ProbeHealthRow,
    ) -> Result<(), SinkError> {
        let row = HealthRow::new(probe_id, health).map_err(|reason| SinkError::Invalid {
            what: format!("health report of {probe_id} at {} ns", health.ts_ns),
            reason,
        })?;
        let token = token::health(probe_id, health.ts_ns);
        self.insert_rows::<HealthRow<'static>>("probe_health", &token, std::slice::from_ref(&row))
            .await
    }

    /// Whether `flows` matched [`FlowRow::COLUMN_TYPES`] at migration (its rows then go
    /// as RowBinary encoded by the sink, without the client's per-row validation).
    fn flows_checked(&self) -> bool {
        self.flows_checked
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// One INSERT of `rows` into `table` with deduplication token `token`, under
    /// `insert_timeout`, recorded in the metrics; the client validates every row against
    /// the table's columns.
    pub(super) async fn insert_rows<T>(
        &self,
        table: &'static str,
        token: &str,
        rows: &[T::Value<'_>],
    ) -> Result<(), SinkError>
    where
        T: RowWrite,
        for<'b> T::Value<'b>: Sync,
    {
        let send = async {
            let mut insert = self
                .client
                .insert::<T>(table)
                .await?
                .with_setting("insert_deduplication_token", token);
            for (name, value) in INSERT_SETTINGS {
                insert = insert.with_setting(*name, *value);
            }
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        };
        self.run_insert(table, token, rows.len(), send).await
    }

    /// One INSERT into `flows` of `rows` rows already encoded as RowBinary in `body`
    /// (see [`FlowRow::write_row_binary`]), like [`Self::insert_rows`] otherwise (the
    /// format is not validated: `flows`' columns were checked at migration); the body goes
    /// in chunks the size the client's own inserts use.
    async fn insert_flow_body(
        &self,
        token: &str,
        body: bytes::Bytes,
        rows: usize,
    ) -> Result<(), SinkError> {
        let send = async {
            let sql = format!(
                "INSERT INTO flows({}) FORMAT RowBinary",
                FlowRow::column_list()
            );
            let mut insert = self
                .client
                .insert_formatted_with(sql)
                .with_setting("insert_deduplication_token", token);
            for (name, value) in INSERT_SETTINGS {
                insert = insert.with_setting(*name, *value);
            }
            let mut at = 0;
            while at < body.len() {
                let end = body.len().min(at + BODY_CHUNK_BYTES);
                insert.send(body.slice(at..end)).await?;
                at = end;
            }
            insert.end().await
        };
        self.run_insert("flows", token, rows, send).await
    }

    /// Runs one INSERT (`send`) of `rows` rows under `insert_timeout`, records it in the
    /// metrics and logs a failure.
    async fn run_insert(
        &self,
        table: &'static str,
        token: &str,
        rows: usize,
        send: impl std::future::Future<Output = Result<(), clickhouse::error::Error>>,
    ) -> Result<(), SinkError> {
        let started = Instant::now();
        let op = format!("insert of {rows} rows into {table} (token {token})");
        let result = self.deadline(&op, send).await;
        let outcome = match &result {
            Ok(()) => Outcome::Ok,
            Err(e) if e.is_retryable() => Outcome::Retryable,
            Err(_) => Outcome::Permanent,
        };
        self.metrics
            .record_insert(table, rows, started.elapsed().as_secs_f64(), outcome);
        if let Err(e) = &result {
            tracing::warn!(
                table,
                token,
                rows,
                retryable = e.is_retryable(),
                "ClickHouse insert failed: {e}"
            );
        } else {
            tracing::debug!(table, token, rows, "ClickHouse insert stored");
        }
        result
    }
}

/// Calls `f` with the row of each record of one batch (`ctx[i]` enriching `records[i]`),
/// converted when taken; an error names the record.
fn for_each_row<'a>(
    &(probe_id, epoch, seq, records, ctx): &GroupPart<'a>,
    mut f: impl FnMut(FlowRow<'a>) -> Result<(), SinkError>,
) -> Result<(), SinkError> {
    for (i, r) in records.iter().enumerate() {
        let row = FlowRow::new(probe_id, epoch, seq, r, ctx.get(i)).map_err(|reason| {
            SinkError::Invalid {
                what: format!("record {i} of batch {probe_id}:{seq}"),
                reason,
            }
        })?;
        f(row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_insert_body_reuses_the_last_ones_buffer() {
        let spare = SpareBody::default();
        let mut body = spare.take(1 << 20);
        body.extend_from_slice(&[7; 300_000]);
        let at = body.as_ptr();
        let body = bytes::Bytes::from(body);
        // The client sends it in chunks, then drops them.
        let chunks: Vec<_> = (0..3)
            .map(|i| body.slice(i * 100_000..(i + 1) * 100_000))
            .collect();
        drop(chunks);
        spare.give_back(body);
        assert_eq!(
            spare.0.lock().unwrap().as_ptr(),
            at,
            "the buffer was not kept"
        );
        let next = spare.clone().take(1 << 20);
        assert_eq!(next.as_ptr(), at, "the buffer was not reused");
        assert!(next.is_empty() && next.capacity() >= 1 << 20);
        // Taken: nothing is kept until it comes back.
        assert_eq!(spare.0.lock().unwrap().capacity(), 0);
    }

    #[test]
    fn a_body_still_held_elsewhere_or_too_large_is_not_kept() {
        let spare = SpareBody::default();
        let body = bytes::Bytes::from(vec![1u8; 4096]);
        let chunk = body.slice(0..10);
        spare.give_back(body);
        assert_eq!(spare.take(0).capacity(), 0, "kept while a chunk was held");
        assert_eq!(&chunk[..], &[1; 10]);
        spare.give_back(bytes::Bytes::from(vec![0u8; SPARE_BODY_MAX + 1]));
        assert_eq!(spare.take(0).capacity(), 0, "kept a buffer past the bound");
    }
}
