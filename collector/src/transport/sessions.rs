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

/// Idle slots are dropped once this many exist.
const PRUNE_AT: usize = 4096;

#[derive(Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    generation: Option<watch::Sender<u64>>,
}

/// The session registry.
#[derive(Default)]
pub(crate) struct Sessions {
    slots: Mutex<HashMap<(String, u64), Slot>>,
}

/// Held by the connection that owns a probe's session.
pub(crate) struct SessionGuard {
    _lock: OwnedMutexGuard<()>,
    /// Changes when a newer connection of the same probe wants the session.
    pub(crate) superseded: watch::Receiver<u64>,
    /// The epoch of the session's sequence.
    pub(crate) epoch: u64,
}

impl Sessions {
    /// Asks the current holder of `probe_id`'s session (if any) to stop, then waits for
    /// the session. Cancel-safe: dropping the future gives nothing up.
    pub(crate) async fn acquire(&self, probe_id: &str, epoch: u64) -> SessionGuard {
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
        let mut first = s.acquire("p", 1).await;
        let other = s.acquire("q", 1).await; // other probes are independent
        let replay = s.acquire("p", 2).await; // and so are the probe's other sequences
        let s2 = s.clone();
        let second = tokio::spawn(async move { s2.acquire("p", 1).await });
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
}
