//! Where received batches go: the contract between the transport and durable storage.

use std::future::Future;

use tidegate_wire::Batch;

/// What the sink did with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persisted {
    /// The batch is now durable.
    Stored,
    /// The batch (same probe sequence, same number) was stored before; nothing changed.
    Duplicate,
}

/// Why a batch could not be made durable. The transport answers with an `Error` frame
/// and closes the connection; the probe keeps the batch and resends it later.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Storage cannot take the batch now (disk full, I/O error, ...); retrying may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The sink refuses this batch (it contradicts what is stored).
    #[error("batch refused: {0}")]
    Refused(String),
    /// The collector is shutting down.
    #[error("collector is shutting down")]
    ShuttingDown,
    /// An I/O error from storage.
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Durable storage for batches, deduplicating by (probe id, epoch, sequence number).
///
/// The transport calls `persist` for one probe sequence's batches strictly in sequence
/// order, one at a time (different sequences concurrently), and acknowledges a batch only
/// after `persist` returned `Ok`.
pub trait BatchSink: Send + Sync + 'static {
    /// Makes `batch` durable, or reports that it already is. `encoded` is the batch's
    /// wire encoding, as received (what a spool keeps: it decodes to `batch`).
    fn persist(
        &self,
        batch: Batch,
        encoded: Vec<u8>,
    ) -> impl Future<Output = Result<Persisted, PersistError>> + Send;

    /// The highest sequence number stored of the probe sequence `(probe_id, epoch)`, if
    /// any (sent to the probe in `HelloAck` so it can drop batches of that sequence that
    /// were stored but never acknowledged).
    fn last_seq(&self, probe_id: &str, epoch: u64) -> Option<u64>;

    /// A probe completed the handshake (for the evidence log); nothing by default.
    fn connected(&self, _probe_id: &str, _epoch: u64, _peer: std::net::SocketAddr) {}

    /// A probe's connection ended, and how; nothing by default.
    fn disconnected(&self, _probe_id: &str, _epoch: u64, _peer: std::net::SocketAddr, _how: &str) {}

    /// The enforcement plans to push to probes that enforce (none by default).
    fn policy_feed(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<Option<std::sync::Arc<crate::enforce::PolicyFrame>>>>
    {
        None
    }

    /// A probe reported the plan it enforces; nothing by default.
    fn enforce_status(&self, _probe_id: &str, _status: &tidegate_wire::EnforceStatus) {}
}
