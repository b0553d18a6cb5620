//! How far detection has got, so the spool is never committed past a batch whose
//! alerts and violations are not yet stored.
//!
//! The reading stage numbers every batch it hands to detection (a ticket); the stage
//! passes the ticket to the alert store after the batch's states, and the store marks
//! it reached once everything queued before it is in ClickHouse. The storing stage waits
//! for a group's highest ticket before committing the spool past the group: a collector
//! killed with batches still queued for detection (or states still queued for
//! ClickHouse) replays them at its next start instead of losing their alerts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Detection's progress through the tickets of its [`Feed`](super::Feed).
#[derive(Debug, Default)]
pub struct Progress {
    reached: AtomicU64,
    ended: AtomicBool,
    changed: Notify,
}

impl Progress {
    /// Every ticket up to `ticket` is processed and its states are stored.
    pub fn reach(&self, ticket: u64) {
        self.reached.fetch_max(ticket, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// The stage (or its store) has stopped: no further ticket will be reached.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// The highest ticket reached.
    pub fn reached(&self) -> u64 {
        self.reached.load(Ordering::Acquire)
    }

    /// Waits until `ticket` is reached (`true`) or the stage has stopped before reaching
    /// it (`false`).
    pub async fn wait(&self, ticket: u64) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.reached() >= ticket {
                return true;
            }
            if self.ended.load(Ordering::Acquire) {
                return false;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiter_wakes_when_its_ticket_is_reached_not_before() {
        let p = Arc::new(Progress::default());
        assert!(p.wait(0).await, "ticket 0 is reached from the start");
        let w = tokio::spawn({
            let p = p.clone();
            async move { p.wait(3).await }
        });
        p.reach(2);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!w.is_finished(), "woke at ticket 2 waiting for 3");
        p.reach(5);
        assert!(w.await.unwrap());
        p.reach(4);
        assert_eq!(p.reached(), 5, "progress never goes back");
    }

    #[tokio::test]
    async fn a_stopped_stage_releases_its_waiters_with_false() {
        let p = Arc::new(Progress::default());
        let w = tokio::spawn({
            let p = p.clone();
            async move { p.wait(1).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        p.end();
        assert!(!w.await.unwrap());
    }
}
