//! One live session per probe: a reconnecting probe supersedes its previous connection
//! and waits for it to let go, so one probe's batches are never persisted by two
//! connections at once (which could reorder them).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedMutexGuard, watch};

#[derive(Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    generation: Option<watch::Sender<u64>>,
}

/// The session registry.
#[derive(Default)]
pub(crate) struct Sessions {
    slots: Mutex<HashMap<String, Slot>>,
}

/// Held by the connection that owns a probe's session.
pub(crate) struct SessionGuard {
    _lock: OwnedMutexGuard<()>,
    /// Changes when a newer connection of the same probe wants the session.
    pub(crate) superseded: watch::Receiver<u64>,
}

impl Sessions {
    /// Asks the current holder of `probe_id`'s session (if any) to stop, then waits for
    /// the session. Cancel-safe: dropping the future gives nothing up.
    pub(crate) async fn acquire(&self, probe_id: &str) -> SessionGuard {
        let (lock, superseded) = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = slots.entry(probe_id.to_owned()).or_default();
            let tx = slot.generation.get_or_insert_with(|| watch::channel(0).0);
            // Tell the holder; our own receiver starts after the bump so it does not
            // see it.
            tx.send_modify(|g| *g += 1);
            (slot.lock.clone(), tx.subscribe())
        };
        SessionGuard {
            _lock: lock.lock_owned().await,
            superseded,
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
        let mut first = s.acquire("p").await;
        let other = s.acquire("q").await; // other probes are independent
        let s2 = s.clone();
        let second = tokio::spawn(async move { s2.acquire("p").await });
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
        drop(other);
    }
}
