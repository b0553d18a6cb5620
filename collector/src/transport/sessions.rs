//! One live session per probe sequence `(probe id, epoch)`: a reconnecting probe
//! supersedes its previous connection and waits for it to let go, so one sequence's
//! batches are never persisted by two connections at once (which could reorder them).
//! Sequences of one probe with different epochs (its own spools, e.g. forensic replays
//! run side by side) are independent.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedMutexGuard, watch};

use tokio::sync::Semaphore;

/// Per probe id: its connections, and its share of the memory budget.
type ProbeEntry = (usize, Arc<Semaphore>);

/// Idle slots are dropped once this many exist.
const PRUNE_AT: usize = 4096;

/// Connections one probe may hold at once, over all its sequences: a probe's certificate
/// cannot take every connection slot (one epoch per connection) from the others.
pub(crate) const MAX_PER_PROBE: usize = 16;

#[derive(Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    generation: Option<watch::Sender<u64>>,
}

/// The session registry.
pub(crate) struct Sessions {
    slots: Mutex<HashMap<(String, u64), Slot>>,
    /// Connections admitted per probe id, and the probe's share of the memory budget.
    per_probe: Arc<Mutex<HashMap<String, ProbeEntry>>>,
    /// The share (KiB): what one probe's batches in flight may hold of the budget.
    share_kib: u32,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_share(u32::MAX >> 3)
    }
}

/// One of a probe's [`MAX_PER_PROBE`] connections; given back when dropped.
pub(crate) struct ProbeSlot {
    per_probe: Arc<Mutex<HashMap<String, ProbeEntry>>>,
    probe: String,
    /// The probe's share of the memory budget (shared by its connections).
    pub(crate) memory: Arc<Semaphore>,
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        let mut m = self
            .per_probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((n, _)) = m.get_mut(&self.probe) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.probe);
            }
        }
    }
}

/// Held by the connection that owns a probe's session.
pub(crate) struct SessionGuard {
    _lock: OwnedMutexGuard<()>,
    /// Changes when a newer connection of the same probe wants the session.
    pub(crate) superseded: watch::Receiver<u64>,
    /// The epoch of the session's sequence.
    pub(crate) epoch: u64,
    pub(crate) probe: ProbeSlot,
}

impl Sessions {
    /// A registry whose probes may each hold `share_kib` of the memory budget.
    pub(crate) fn with_share(share_kib: u32) -> Self {
        Sessions {
            slots: Mutex::default(),
            per_probe: Arc::default(),
            share_kib,
        }
    }

    /// Takes one of `probe_id`'s connection slots; `None` when it holds
    /// [`MAX_PER_PROBE`] already.
    pub(crate) fn admit(&self, probe_id: &str) -> Option<ProbeSlot> {
        let mut m = self
            .per_probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (n, memory) = m
            .entry(probe_id.to_owned())
            .or_insert_with(|| (0, Arc::new(Semaphore::new(self.share_kib as usize))));
        if *n >= MAX_PER_PROBE {
            return None;
        }
        *n += 1;
        Some(ProbeSlot {
            per_probe: self.per_probe.clone(),
            probe: probe_id.to_owned(),
            memory: memory.clone(),
        })
    }

    /// Asks the current holder of `probe_id`'s session (if any) to stop, then waits for
    /// the session. Cancel-safe: dropping the future gives nothing up.
    pub(crate) async fn acquire(&self, slot: ProbeSlot, epoch: u64) -> SessionGuard {
        let probe_id = slot.probe.as_str();
        let (lock, superseded) = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if slots.len() >= PRUNE_AT {
                // Sequences come and go (one per probe spool): forget the idle ones.
                slots.retain(|_, s| Arc::strong_count(&s.lock) > 1);
            }
            let slot = slots.entry((probe_id.to_owned(), epoch)).or_default();
            let tx = slot.generation.get_or_insert_with(|| watch::channel(0).0);
            // Tell the holder; our own receiver starts after the bump so it does not
            // see it.
            tx.send_modify(|g| *g += 1);
            (slot.lock.clone(), tx.subscribe())
        };
        SessionGuard {
            _lock: lock.lock_owned().await,
            superseded,
            epoch,
            probe: slot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_newer_connection_supersedes_and_waits() {
        let s = Arc::new(Sessions::default());
        let mut first = s.acquire(s.admit("p").unwrap(), 1).await;
        let other = s.acquire(s.admit("q").unwrap(), 1).await; // other probes are independent
        let replay = s.acquire(s.admit("p").unwrap(), 2).await; // and so are the probe's other sequences
        let s2 = s.clone();
        let second = tokio::spawn(async move { s2.acquire(s2.admit("p").unwrap(), 1).await });
        // The first holder is told, and the second waits until it lets go.
        tokio::time::timeout(Duration::from_secs(5), first.superseded.changed())
            .await
            .expect("holder notified")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished());
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("second acquires once the first is dropped")
            .unwrap();
        assert!(!second.superseded.has_changed().unwrap());
        drop((other, replay));
    }

    #[tokio::test]
    async fn one_probe_cannot_take_every_connection_slot() {
        let s = Sessions::default();
        let mut held = Vec::new();
        for epoch in 0..MAX_PER_PROBE as u64 {
            held.push(s.acquire(s.admit("p").unwrap(), epoch).await);
        }
        assert!(s.admit("p").is_none(), "one more connection of p");
        // Others are not affected, and a slot comes back when a connection ends.
        assert!(s.admit("q").is_some());
        held.pop();
        assert!(s.admit("p").is_some());
        drop(held);
        assert!(s.per_probe.lock().unwrap().is_empty(), "counts forgotten");
    }
}
