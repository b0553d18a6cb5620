//! Batches decoded once: the transport decodes (and checks) every batch before it
//! acknowledges it, and spools the bytes exactly as the probe sent them; the storage
//! pipeline then reads those bytes back in order. Rather than decompress and decode them
//! a second time, the pipeline takes the transport's decoded batch from here, keyed by the
//! batch's place in its probe's sequence (`probe`, `epoch`, `seq` — unique in the spool).
//!
//! The cache is only a shortcut: an entry not found (after a restart, or evicted because
//! the pipeline fell far behind) is decoded from the spooled bytes, which are the same
//! bytes the cached batch was decoded from. It holds at most [`MAX_RECORDS`] records (a
//! batch weighs its records, its health report's items and one for itself, so empty
//! batches count too) and [`MAX_BATCHES`] batches, evicting the oldest first.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tidegate_wire::Batch;

/// Records the cache may hold in total (about 100 MB of decoded records).
pub const MAX_RECORDS: usize = 250_000;
/// Batches the cache may hold.
pub const MAX_BATCHES: usize = 4096;

/// What a batch counts against [`MAX_RECORDS`].
fn weight(b: &Batch) -> usize {
    1 + b.records.len()
        + b.health
            .as_ref()
            .map_or(0, |h| h.counters.len() + h.lines.len())
}

type Key = (String, u64, u64);

/// Decoded batches waiting for the storage pipeline (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct DecodedCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    batches: HashMap<Key, Arc<Batch>>,
    /// Insertion order, for eviction (keys already taken are skipped).
    order: VecDeque<Key>,
    records: usize,
}

impl DecodedCache {
    /// Keeps `batch` for the pipeline (before its bytes are spooled, so the pipeline
    /// never reads them first).
    pub fn put(&self, batch: Arc<Batch>) {
        let key = (batch.probe_id.clone(), batch.epoch, batch.seq);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.records += weight(&batch);
        if let Some(old) = g.batches.insert(key.clone(), batch) {
            g.records -= weight(&old);
        } else {
            g.order.push_back(key);
        }
        while g.records > MAX_RECORDS || g.batches.len() > MAX_BATCHES {
            let Some(k) = g.order.pop_front() else { break };
            if let Some(b) = g.batches.remove(&k) {
                g.records -= weight(&b);
            }
        }
        if g.order.len() > 2 * g.batches.len() + 64 {
            let Inner { batches, order, .. } = &mut *g;
            order.retain(|k| batches.contains_key(k));
        }
    }

    /// Takes the decoded batch of (`probe`, `epoch`, `seq`), if it is here.
    pub fn take(&self, probe: &str, epoch: u64, seq: u64) -> Option<Arc<Batch>> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let b = g.batches.remove(&(probe.to_string(), epoch, seq))?;
        g.records -= weight(&b);
        Some(b)
    }

    /// Forgets (`probe`, `epoch`, `seq`) (its bytes could not be spooled).
    pub fn forget(&self, probe: &str, epoch: u64, seq: u64) {
        let _ = self.take(probe, epoch, seq);
    }

    /// Batches held.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .batches
            .len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64, records: usize) -> Arc<Batch> {
        Arc::new(Batch {
            probe_id: "p".into(),
            epoch: 1,
            seq,
            created_ns: 0,
            records: vec![tidegate_wire::FlowRecord::default(); records],
            health: None,
        })
    }

    #[test]
    fn batches_without_records_are_bounded_too() {
        let c = DecodedCache::default();
        for seq in 0..(2 * MAX_BATCHES as u64) {
            c.put(batch(seq, 0));
        }
        assert_eq!(c.len(), MAX_BATCHES);
        assert!(c.take("p", 1, 2 * MAX_BATCHES as u64 - 1).is_some());
        assert!(c.take("p", 1, 0).is_none(), "the oldest go first");
    }

    #[test]
    fn a_batch_is_taken_once_and_the_oldest_go_first_when_full() {
        let c = DecodedCache::default();
        c.put(batch(1, 10));
        assert_eq!(c.take("p", 1, 1).map(|b| b.seq), Some(1));
        assert!(c.take("p", 1, 1).is_none());
        // Fill beyond the bound: the oldest are evicted, the newest kept.
        // Each weighs its records and one for itself: four fit.
        let per = MAX_RECORDS / 4 - 1;
        for seq in 10..16 {
            c.put(batch(seq, per));
        }
        assert!(c.take("p", 1, 10).is_none());
        assert!(c.take("p", 1, 11).is_none());
        assert!(c.take("p", 1, 15).is_some());
        c.forget("p", 1, 14);
        assert_eq!(c.len(), 2);
    }
}
