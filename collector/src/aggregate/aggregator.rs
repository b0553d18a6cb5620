//! [`Aggregator`]: the handle that fans records out to the shard workers.
//!
//! Submitting hashes every record's flow key on the caller's thread, groups the records
//! per shard and sends each shard one sub-batch over its bounded crossbeam queue. A queue
//! slot is taken from the shard's slot channel (bounded, pre-filled with `queue_depth`
//! tokens) before sending and given back by the shard when it takes the message, so:
//! a full shard blocks [`Aggregator::submit`] (backpressure, timed in
//! `submit_blocked_seconds`), and [`Aggregator::try_submit`] can take the slots of every
//! target shard first and send either the whole batch or nothing. No mutex is taken on
//! this path; the shards own their state alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use prometheus_client::metrics::gauge::Gauge;
use tidegate_wire::record::FlowRecord;

use super::config::AggregateConfig;

/// How far past this collector's clock event time may go.
pub const AHEAD_NS: u64 = 10_000_000_000;
use super::error::{AggregateError, Full};
use super::flows::MergedFlow;
use super::key::{CKey, line_hash, shard_index, shard_seed};
use super::message::{Batch, Msg, Rec};
use super::metrics::{AggregateMetrics, ShardLabel};
use super::rates::window_start;
use super::shard::Shard;
use super::snapshot::AggregateSnapshot;

/// How often a blocked submitter checks that the shard it waits for is still alive.
const ALIVE_CHECK: Duration = Duration::from_millis(200);

struct ShardHandle {
    tx: Sender<Msg>,
    /// Take one before sending a message.
    slots: Receiver<()>,
    /// Gives back slots a refused `try_submit` had taken.
    slots_back: Sender<()>,
    queue_depth: Gauge,
    thread: Option<JoinHandle<()>>,
}

/// The sharded, lock-free flow aggregation. Cheap to share (`&Aggregator` is `Sync`).
pub struct Aggregator {
    shards: Vec<ShardHandle>,
    /// Newest record time submitted (Unix ns).
    watermark: AtomicU64,
    metrics: AggregateMetrics,
    top_n: usize,
    window: u64,
    seed: ahash::RandomState,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("shards", &self.shards.len())
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

/// A submitted batch split per shard.
struct Parts {
    /// (shard, sub-batch), by increasing shard.
    batches: Vec<(usize, Batch)>,
    records: u64,
    watermark: u64,
}

impl Aggregator {
    /// Validates `cfg` and spawns one worker thread per shard.
    pub fn start(
        cfg: AggregateConfig,
        metrics: AggregateMetrics,
    ) -> Result<Aggregator, AggregateError> {
        cfg.validate()?;
        let mut shards = Vec::with_capacity(cfg.shards);
        for i in 0..cfg.shards {
            let (tx, rx) = bounded::<Msg>(cfg.queue_depth);
            let (slots_back, slots) = bounded::<()>(cfg.queue_depth);
            for _ in 0..cfg.queue_depth {
                let _ = slots_back.try_send(());
            }
            let shard = Shard::new(i, &cfg, &metrics);
            let give_back = slots_back.clone();
            let thread = std::thread::Builder::new()
                .name(format!("aggregate-{i}"))
                .spawn(move || shard.run(rx, give_back))
                .map_err(|source| AggregateError::Spawn { shard: i, source })?;
            shards.push(ShardHandle {
                tx,
                slots,
                slots_back,
                queue_depth: metrics
                    .queue_depth
                    .get_or_create(&ShardLabel::of(i))
                    .clone(),
                thread: Some(thread),
            });
        }
        tracing::info!(
            shards = cfg.shards,
            queue_depth = cfg.queue_depth,
            max_flows_per_shard = cfg.max_flows_per_shard,
            "aggregation started"
        );
        Ok(Aggregator {
            shards,
            watermark: AtomicU64::new(0),
            metrics,
            top_n: cfg.top_n,
            window: cfg.rate_window_secs(),
            seed: shard_seed(),
        })
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Newest record time submitted so far (Unix ns, 0 before any record).
    pub fn watermark_ns(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    /// The shard a record's flow key maps to (stable for a given shard count).
    pub fn shard_for(&self, record: &FlowRecord) -> usize {
        let key = CKey::of(record, 0);
        let lh = line_hash(&record.line, &self.seed);
        shard_index(key.shard_hash(lh, &self.seed), self.shards.len())
    }

    /// Submits records from `probe_id`, blocking while a target shard's queue is full
    /// (backpressure: the caller should stop reading from its probes meanwhile, so they
    /// spool). Each shard gets one sub-batch with its share of `records`.
    pub fn submit(&self, probe_id: &str, records: &[FlowRecord]) {
        let Some(parts) = self.partition(probe_id, records) else {
            return;
        };
        for (shard, batch) in parts.batches {
            if self.take_slot(shard) {
                self.send(shard, Msg::Batch(batch));
            }
        }
        self.accepted(parts.records, parts.watermark);
    }

    /// Like [`submit`](Self::submit) but never waits: when a target shard's queue is full
    /// nothing of the batch is submitted and [`Full`] is returned.
    pub fn try_submit(&self, probe_id: &str, records: &[FlowRecord]) -> Result<(), Full> {
        let Some(parts) = self.partition(probe_id, records) else {
            return Ok(());
        };
        for (n, &(shard, _)) in parts.batches.iter().enumerate() {
            if self.shards[shard].slots.try_recv().is_err() {
                for &(taken, _) in &parts.batches[..n] {
                    let _ = self.shards[taken].slots_back.try_send(());
                }
                self.metrics.submit_full.inc();
                return Err(Full { shard });
            }
        }
        for (shard, batch) in parts.batches {
            self.send(shard, Msg::Batch(batch));
        }
        self.accepted(parts.records, parts.watermark);
        Ok(())
    }

    /// Waits until every record submitted before this call has been aggregated.
    pub fn flush(&self) {
        let (tx, rx) = bounded(self.shards.len());
        let sent = self.broadcast(|| Msg::Flush(tx.clone()));
        drop(tx);
        for _ in 0..sent {
            if rx.recv().is_err() {
                break;
            }
        }
    }

    /// The merged view of every shard at the current watermark: per line totals, rates,
    /// top talkers and histograms, and the active flow count. Records submitted before the
    /// call are included (each shard answers after the messages queued before the
    /// request). Costs a pass over every held flow.
    pub fn snapshot(&self) -> AggregateSnapshot {
        let watermark = self.watermark_ns();
        let (tx, rx) = bounded(self.shards.len());
        let sent = self.broadcast(|| Msg::Snapshot {
            watermark,
            reply: tx.clone(),
        });
        drop(tx);
        let views: Vec<_> = rx.iter().take(sent).collect();
        AggregateSnapshot::merge(
            views,
            watermark,
            window_start(watermark, self.window),
            self.window,
            self.top_n,
        )
    }

    /// Every merged flow held at the current watermark (unordered). Costs a copy of the
    /// whole flow table: for tests, debugging and exports, not for dashboards.
    pub fn flows(&self) -> Vec<MergedFlow> {
        let watermark = self.watermark_ns();
        let (tx, rx) = bounded(self.shards.len());
        let sent = self.broadcast(|| Msg::Flows {
            watermark,
            reply: tx.clone(),
        });
        drop(tx);
        rx.iter().take(sent).flatten().collect()
    }

    /// Processes everything queued, then stops and joins the shard threads.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Splits `records` per shard; `None` when there is nothing to send.
    fn partition(&self, probe_id: &str, records: &[FlowRecord]) -> Option<Parts> {
        if records.is_empty() {
            return None;
        }
        let n = self.shards.len();
        let mut lines: Vec<Arc<str>> = Vec::new();
        let mut line_of: HashMap<&str, u32> = HashMap::new();
        let mut hashes: Vec<u64> = Vec::new();
        // One pass over the records (they are large and no longer in the CPU caches: a
        // second pass read each one from memory again): line index, shard and watermark,
        // straight into each shard's part. Parts start at an even share plus slack.
        let cap = records.len() / n + records.len() / 16 + 16;
        let mut per: Vec<Vec<Rec>> = (0..n).map(|_| Vec::with_capacity(cap)).collect();
        let mut watermark = 0u64;
        let mut prev: Option<(&str, u32)> = None;
        for r in records {
            let li = match prev {
                Some((name, li)) if name == r.line => li,
                _ => *line_of.entry(r.line.as_str()).or_insert_with(|| {
                    lines.push(Arc::from(r.line.as_str()));
                    hashes.push(line_hash(&r.line, &self.seed));
                    (lines.len() - 1) as u32
                }),
            };
            prev = Some((r.line.as_str(), li));
            let rec = Rec::of(r, li);
            let s = shard_index(rec.key.shard_hash(hashes[li as usize], &self.seed), n);
            per[s].push(rec);
            watermark = watermark.max(r.first).max(r.last);
        }
        // Event time never runs ahead of this collector's clock by more than the slack:
        // one record stamped in 2100 (a probe's clock, a forger) would otherwise make
        // every flow look idle and hold the rate windows in the future until a restart.
        let watermark = watermark.min(tidegate_base::clock::wall_ns().saturating_add(AHEAD_NS));
        let probe: Arc<str> = Arc::from(probe_id);
        let lines: Arc<[Arc<str>]> = lines.into();
        let batches = per
            .into_iter()
            .enumerate()
            .filter(|(_, recs)| !recs.is_empty())
            .map(|(s, recs)| {
                let b = Batch {
                    probe: probe.clone(),
                    lines: lines.clone(),
                    watermark,
                    recs,
                };
                (s, b)
            })
            .collect();
        Some(Parts {
            batches,
            records: records.len() as u64,
            watermark,
        })
    }

    /// Counts an accepted batch and moves the watermark.
    fn accepted(&self, records: u64, watermark: u64) {
        self.metrics.records_in.inc_by(records);
        self.watermark.fetch_max(watermark, Ordering::AcqRel);
    }

    /// Takes a queue slot of `shard`, waiting while the queue is full. `false` if the
    /// shard's thread is gone (only after a bug made it panic).
    fn take_slot(&self, shard: usize) -> bool {
        let h = &self.shards[shard];
        if h.slots.try_recv().is_ok() {
            return true;
        }
        let t0 = Instant::now();
        let ok = loop {
            match h.slots.recv_timeout(ALIVE_CHECK) {
                Ok(()) => break true,
                Err(RecvTimeoutError::Timeout) => {
                    if h.thread.as_ref().is_none_or(|t| t.is_finished()) {
                        break false;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break false,
            }
        };
        self.metrics
            .submit_blocked_seconds
            .inc_by(t0.elapsed().as_secs_f64());
        if !ok {
            tracing::error!(
                shard,
                "aggregation shard thread is gone; message not delivered"
            );
        }
        ok
    }

    fn send(&self, shard: usize, msg: Msg) {
        let h = &self.shards[shard];
        if let Msg::Batch(b) = &msg {
            self.metrics.batches_in.inc();
            let n = b.recs.len();
            // The slot taken guarantees room: this never blocks.
            if h.tx.send(msg).is_err() {
                tracing::error!(shard, records = n, "aggregation shard thread is gone");
            }
        } else if h.tx.send(msg).is_err() {
            tracing::error!(shard, "aggregation shard thread is gone");
        }
        h.queue_depth.set(h.tx.len() as i64);
    }

    /// Sends `make()` to every shard (behind the messages already queued); returns how
    /// many were sent.
    fn broadcast(&self, make: impl Fn() -> Msg) -> usize {
        let mut sent = 0;
        for shard in 0..self.shards.len() {
            if self.take_slot(shard) {
                self.send(shard, make());
                sent += 1;
            }
        }
        sent
    }
}

impl Drop for Aggregator {
    /// Closes the queues (shards finish what is queued) and joins the shard threads.
    fn drop(&mut self) {
        let mut threads = Vec::new();
        for mut h in self.shards.drain(..) {
            threads.push(h.thread.take());
        }
        for t in threads.into_iter().flatten() {
            if t.join().is_err() {
                tracing::error!("an aggregation shard thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Aggregator>();
    }

    #[test]
    fn an_invalid_config_is_refused_with_the_field_name() {
        let cfg = AggregateConfig {
            queue_depth: 0,
            ..AggregateConfig::default()
        };
        let e = Aggregator::start(cfg, AggregateMetrics::default()).unwrap_err();
        assert!(e.to_string().contains("queue_depth"), "{e}");
    }

    #[test]
    fn empty_batches_and_an_idle_aggregator_answer_at_once() {
        let agg = Aggregator::start(
            AggregateConfig {
                shards: 3,
                ..AggregateConfig::default()
            },
            AggregateMetrics::default(),
        )
        .expect("start");
        agg.submit("p", &[]);
        assert_eq!(agg.try_submit("p", &[]), Ok(()));
        agg.flush();
        let s = agg.snapshot();
        assert_eq!(
            (s.watermark_ns, s.active_flows, s.shards_answered),
            (0, 0, 3)
        );
        assert!(s.lines.is_empty());
        assert!(agg.flows().is_empty());
    }
}
