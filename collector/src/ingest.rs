//! Accepting batches from the transport: deduplicate by (probe, epoch, sequence), then make
//! them durable in the spool. The transport acknowledges a batch only after
//! [`Ingest::persist`] returns, so an acknowledged batch is on disk.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tidegate_wire::Batch;

use crate::{
    decoded::DecodedCache,
    spool::{Holder, Spool},
    transport::{BatchSink, PersistError, Persisted},
};

/// Label: probe id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    /// Probe id.
    pub probe: String,
}

/// Ingest metrics.
#[derive(Clone, Default)]
pub struct IngestMetrics {
    /// Batches made durable, per probe.
    pub batches_stored: Family<ProbeLabel, Counter>,
    /// Batches recognised as duplicates (already stored), per probe.
    pub batches_duplicate: Family<ProbeLabel, Counter>,
    /// Records made durable, per probe.
    pub records_stored: Family<ProbeLabel, Counter>,
}

impl IngestMetrics {
    /// Registers under the given registry.
    pub fn register(&self, r: &mut Registry) {
        tidegate_base::register_metrics!(r, self {
            batches_stored as "ingest_batches_stored": "Batches made durable in the spool, per probe",
            batches_duplicate as "ingest_batches_duplicate": "Batches dropped as duplicates of stored ones, per probe",
            records_stored as "ingest_records_stored": "Flow records made durable in the spool, per probe",
        });
    }
}

/// Serialises the persists of one probe sequence `(probe, epoch)`.
type SequenceLock = Arc<tokio::sync::Mutex<()>>;

/// Idle per-sequence locks are dropped once this many exist.
const PRUNE_LOCKS_AT: usize = 4096;

/// The transport's [`BatchSink`]: deduplication plus the write-ahead spool.
pub struct Ingest {
    spool: Spool,
    metrics: IngestMetrics,
    /// Where probe connections are recorded, if anywhere.
    evidence: Option<Arc<tidegate_evidence::EvidenceLog>>,
    /// One lock per probe sequence so that two connections of it (a reconnect racing an
    /// old connection) cannot both store the same sequence number.
    probes: Mutex<HashMap<(String, u64), SequenceLock>>,
    /// Enforcement control, when the policy can drop.
    enforce: Option<Arc<crate::enforce::EnforceHub>>,
    /// Where the storage pipeline finds each batch already decoded.
    decoded: Option<DecodedCache>,
    /// Per probe: how many of its connection events go to the evidence log (each
    /// durable append is a sync; a reconnect loop would flood it).
    conn_events: Mutex<HashMap<String, tidegate_base::limits::Allowance>>,
}

/// Connection events of one probe recorded per [`CONN_EVENT_PERIOD`] at most (ordinary
/// reconnects all go in; the events of a loop past it are counted in the next one
/// recorded, as `withheld`).
const CONN_EVENTS: u32 = 20;
const CONN_EVENT_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

impl Ingest {
    /// Pushes enforcement plans to probes that enforce, and takes their reports.
    pub fn with_enforce(mut self, hub: Option<Arc<crate::enforce::EnforceHub>>) -> Self {
        self.enforce = hub;
        self
    }

    /// Hands each spooled batch, decoded, to the storage pipeline (which then need not
    /// decode the spooled bytes again).
    pub fn with_decoded(mut self, cache: DecodedCache) -> Self {
        self.decoded = Some(cache);
        self
    }

    /// Also records probe connections and disconnections in the evidence log.
    pub fn with_evidence(mut self, log: Option<Arc<tidegate_evidence::EvidenceLog>>) -> Self {
        self.evidence = log;
        self
    }

    /// Whether a connection event of `probe` goes to the evidence log now; `Some(n)`:
    /// it does, `n` events of the probe having been withheld since the last that did.
    fn conn_event_due(&self, probe: &str) -> Option<u64> {
        let mut m = self.conn_events.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= PRUNE_LOCKS_AT {
            // Probe ids are authenticated; forgetting only lets a few more through.
            m.clear();
        }
        m.entry(probe.to_string())
            .or_insert_with(|| {
                tidegate_base::limits::Allowance::new(CONN_EVENTS, CONN_EVENT_PERIOD)
            })
            .take()
    }

    /// Ingest into `spool`.
    pub fn new(spool: Spool, metrics: IngestMetrics) -> Self {
        Ingest {
            spool,
            metrics,
            evidence: None,
            enforce: None,
            decoded: None,
            conn_events: Mutex::default(),
            probes: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, probe: &str, epoch: u64) -> SequenceLock {
        let mut locks = self.probes.lock().expect("probe locks");
        if locks.len() >= PRUNE_LOCKS_AT {
            // Sequences come and go (one per probe spool): forget idle ones.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry((probe.to_string(), epoch)).or_default().clone()
    }
}

/// The ingest as NetFlow/IPFIX listeners use it: exporters' batches wait only while the
/// spool is full, never at a probe's share (see `spool::shares`).
pub struct Exporters(pub Arc<Ingest>);

impl BatchSink for Exporters {
    async fn persist(&self, batch: Batch, encoded: Vec<u8>) -> Result<Persisted, PersistError> {
        self.0.store(Holder::Exporter, batch, encoded).await
    }

    fn last_seq(&self, probe_id: &str, epoch: u64) -> Option<u64> {
        self.0.last_seq(probe_id, epoch)
    }
}

impl Ingest {
    /// Deduplicates and spools `batch` (`encoded` as received) for `holder`.
    async fn store(
        &self,
        holder: Holder,
        batch: Batch,
        encoded: Vec<u8>,
    ) -> Result<Persisted, PersistError> {
        let lock = self.lock_for(&batch.probe_id, batch.epoch);
        let guard = lock.lock_owned().await;
        let label = ProbeLabel {
            probe: batch.probe_id.clone(),
        };
        if self
            .spool
            .last_seq(&batch.probe_id, batch.epoch)
            .is_some_and(|last| batch.seq <= last)
        {
            self.metrics.batches_duplicate.get_or_create(&label).inc();
            return Ok(Persisted::Duplicate);
        }
        let (epoch, seq, records) = (batch.epoch, batch.seq, batch.records.len() as u64);
        // The bytes as received, never re-encoded; the decoded batch goes to the pipeline
        // beside them (before they are spooled, so the pipeline finds it).
        if let Some(c) = &self.decoded {
            c.put(Arc::new(batch));
        }
        // The append runs to its end, holding the sequence's lock, even if this call is
        // dropped (its connection superseded by the probe's newer one): that one's resend
        // of the same batch then waits, and finds it spooled, instead of spooling it twice.
        let (spool, probe) = (self.spool.clone(), label.probe.clone());
        let appended = tokio::spawn(async move {
            let _guard = guard;
            spool.append_as(holder, &probe, epoch, seq, &encoded).await
        })
        .await
        .unwrap_or_else(|e| {
            Err(crate::spool::SpoolError::Io {
                path: std::path::PathBuf::new(),
                op: "append task",
                source: std::io::Error::other(e.to_string()),
            })
        });
        if let Err(e) = appended {
            if let Some(c) = &self.decoded {
                c.forget(&label.probe, epoch, seq);
            }
            return Err(PersistError::Unavailable(e.to_string()));
        }
        self.metrics.batches_stored.get_or_create(&label).inc();
        self.metrics
            .records_stored
            .get_or_create(&label)
            .inc_by(records);
        Ok(Persisted::Stored)
    }
}

impl BatchSink for Ingest {
    async fn persist(&self, batch: Batch, encoded: Vec<u8>) -> Result<Persisted, PersistError> {
        self.store(Holder::Probe, batch, encoded).await
    }

    fn last_seq(&self, probe_id: &str, epoch: u64) -> Option<u64> {
        self.spool.last_seq(probe_id, epoch)
    }

    fn connected(&self, probe_id: &str, epoch: u64, peer: std::net::SocketAddr) {
        if let Some(log) = &self.evidence
            && let Some(n) = self.conn_event_due(probe_id)
        {
            let data = serde_json::json!({
                "probe": probe_id, "epoch": epoch, "peer": peer.to_string(),
                "last_seq": self.spool.last_seq(probe_id, epoch),
                "withheld": n,
            });
            crate::evidence::record(log, crate::evidence::PROBE_CONNECT, data);
        }
    }

    fn policy_feed(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<Option<Arc<crate::enforce::PolicyFrame>>>> {
        self.enforce.as_ref().map(|h| h.subscribe())
    }

    fn enforce_status(&self, probe_id: &str, status: &tidegate_wire::EnforceStatus) {
        if let Some(h) = &self.enforce {
            h.report(probe_id, status);
        }
    }

    fn disconnected(&self, probe_id: &str, epoch: u64, peer: std::net::SocketAddr, how: &str) {
        if let Some(h) = &self.enforce {
            h.disconnected(probe_id);
        }
        if let Some(log) = &self.evidence
            && let Some(n) = self.conn_event_due(probe_id)
        {
            let data = serde_json::json!({
                "probe": probe_id, "epoch": epoch, "peer": peer.to_string(), "how": how,
                "last_seq": self.spool.last_seq(probe_id, epoch),
                "withheld": n,
            });
            crate::evidence::record(log, crate::evidence::PROBE_DISCONNECT, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_evidence::EvidenceLog;

    #[test]
    fn a_reconnect_loop_records_a_bounded_number_of_connection_events() {
        let d = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        let (spool, _reader) = Spool::open(crate::spool::SpoolConfig {
            dir: d.path().join("spool"),
            ..Default::default()
        })
        .unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let log = Arc::new(EvidenceLog::open(&d.path().join("ev"), "t/1", key).unwrap());
        let ingest = Ingest::new(spool, IngestMetrics::default()).with_evidence(Some(log.clone()));
        let peer = "192.0.2.7:4000".parse().unwrap();
        // A few reconnects: every event goes in, in order.
        for _ in 0..3 {
            ingest.connected("p1", 1, peer);
            ingest.disconnected("p1", 1, peer, "eof");
        }
        ingest.connected("p1", 1, peer);
        assert_eq!(log.len(), 7);
        // A loop: cut to the allowance.
        for _ in 0..200 {
            ingest.disconnected("p1", 1, peer, "eof");
            ingest.connected("p1", 1, peer);
        }
        assert_eq!(log.len(), u64::from(CONN_EVENTS));
        // Another probe is recorded on its own.
        ingest.connected("p2", 1, peer);
        assert_eq!(log.len(), u64::from(CONN_EVENTS) + 1);
    }
}
