//! The collector's transport in-process, for the transport tests of both ends: an
//! in-memory `BatchSink` (a real implementation of the trait that keeps batches in
//! memory, deduplicating by (probe, epoch, seq)), a server running in its own runtime so a test
//! can kill it, a raw TLS client, and synthetic batches.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use tidegate_collector::{
    certs::CertPaths,
    enforce::PolicyFrame,
    transport::{BatchSink, PersistError, Persisted, Server, TransportConfig, TransportMetrics},
};
use tidegate_wire::{
    Batch, DEFAULT_MAX_FRAME, EnforceStatus, Hello, Message, PROTOCOL_VERSION, WireError,
    read_message_async, record::FlowRecord, write_message_async,
};
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::watch};
use tokio_rustls::{TlsConnector, client::TlsStream};

// ---------------------------------------------------------------------------------------
// In-memory sink

#[derive(Default)]
struct SinkState {
    /// (probe, epoch) → seq → batch.
    stored: HashMap<(String, u64), BTreeMap<u64, Batch>>,
    duplicates: u64,
    persist_calls: u64,
    fail_next: Option<String>,
    /// After storing this (probe, seq), never return (a collector dying between making
    /// a batch durable and acknowledging it).
    stall_after: Option<(String, u64)>,
}

/// Keeps batches in memory; `Duplicate` for a (probe, epoch, seq) at or below the
/// highest stored one of that sequence, after checking a resent batch carries the same records as the stored one.
pub struct MemSink {
    state: Mutex<SinkState>,
    delay: Mutex<Duration>,
    gate: watch::Sender<bool>,
    stalled: Mutex<Option<mpsc::Sender<u64>>>,
    hide_last_seq: std::sync::atomic::AtomicBool,
    policy: watch::Sender<Option<Arc<PolicyFrame>>>,
    statuses: Mutex<Vec<(String, EnforceStatus)>>,
}

impl Default for MemSink {
    fn default() -> Self {
        MemSink {
            state: Mutex::default(),
            delay: Mutex::new(Duration::ZERO),
            gate: watch::channel(true).0,
            stalled: Mutex::new(None),
            hide_last_seq: Default::default(),
            policy: watch::channel(None).0,
            statuses: Mutex::new(Vec::new()),
        }
    }
}

impl MemSink {
    /// A fresh sink.
    pub fn new() -> Arc<MemSink> {
        Arc::new(MemSink::default())
    }

    /// Publishes an enforcement plan to every connected probe that enforces.
    pub fn publish(&self, plan: &tidegate_wire::EnforcePlan) {
        self.policy.send_replace(Some(Arc::new(PolicyFrame {
            version: plan.version,
            bytes: plan.encode(),
            published: Instant::now(),
        })));
    }

    /// The enforcement reports received, oldest first.
    pub fn statuses(&self) -> Vec<(String, EnforceStatus)> {
        self.statuses.lock().unwrap().clone()
    }

    /// Waits until `probe` reports enforcing `version`; how long it took.
    pub fn wait_enforcing(&self, probe: &str, version: u64, within: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self
                .statuses()
                .iter()
                .any(|(p, s)| p == probe && s.version == version)
            {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
    /// Each persist takes this long.
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }
    /// While closed, persist waits.
    pub fn set_gate(&self, open: bool) {
        self.gate.send_replace(open);
    }
    /// `last_seq` answers `None` (a sink that cannot tell at handshake time), so a
    /// probe resends batches the sink already has and gets `Duplicate` acks.
    pub fn hide_last_seq(&self) {
        self.hide_last_seq
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    /// The next persist fails with `reason`.
    pub fn fail_next(&self, reason: &str) {
        self.state.lock().unwrap().fail_next = Some(reason.into());
    }
    /// After storing `(probe, seq)` the persist call never returns; the receiver gets
    /// the seq. One-shot.
    pub fn stall_after(&self, probe: &str, seq: u64) -> mpsc::Receiver<u64> {
        let (tx, rx) = mpsc::channel();
        self.state.lock().unwrap().stall_after = Some((probe.into(), seq));
        *self.stalled.lock().unwrap() = Some(tx);
        rx
    }
    /// Stored batches of a probe, by seq. The probe must have sent one sequence (one
    /// spool) only; see [`sequences`](Self::sequences) otherwise.
    pub fn batches(&self, probe: &str) -> BTreeMap<u64, Batch> {
        let mut seqs = self.sequences(probe);
        assert!(
            seqs.len() <= 1,
            "probe {probe} sent {} sequences (epochs); use sequences()",
            seqs.len()
        );
        seqs.pop().map(|(_, b)| b).unwrap_or_default()
    }
    /// Stored batches of a probe per sequence: (epoch, seq → batch), by epoch.
    pub fn sequences(&self, probe: &str) -> Vec<(u64, BTreeMap<u64, Batch>)> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<(u64, BTreeMap<u64, Batch>)> = st
            .stored
            .iter()
            .filter(|((p, _), _)| p == probe)
            .map(|((_, e), b)| (*e, b.clone()))
            .collect();
        v.sort_by_key(|(e, _)| *e);
        v
    }
    /// Stored records of a probe, every sequence, each in seq order.
    pub fn records(&self, probe: &str) -> Vec<FlowRecord> {
        self.sequences(probe)
            .into_iter()
            .flat_map(|(_, b)| b.into_values())
            .flat_map(|b| b.records)
            .collect()
    }
    /// Persist calls answered `Duplicate`.
    pub fn duplicates(&self) -> u64 {
        self.state.lock().unwrap().duplicates
    }
    /// Persist calls.
    pub fn persist_calls(&self) -> u64 {
        self.state.lock().unwrap().persist_calls
    }
    /// Waits until `probe` has `n` batches stored.
    pub fn wait_batches(&self, probe: &str, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.batches(probe).len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl BatchSink for MemSink {
    async fn persist(&self, batch: Batch, encoded: Vec<u8>) -> Result<Persisted, PersistError> {
        // What a spool would keep must be what was decoded.
        assert_eq!(
            tidegate_wire::decode_batch(&encoded).ok().as_ref(),
            Some(&batch),
            "the encoded bytes handed to persist do not decode to the batch"
        );
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        let stall = {
            let mut st = self.state.lock().unwrap();
            st.persist_calls += 1;
            if let Some(reason) = st.fail_next.take() {
                return Err(PersistError::Unavailable(reason));
            }
            let probe = st
                .stored
                .entry((batch.probe_id.clone(), batch.epoch))
                .or_default();
            if let Some((&last, _)) = probe.last_key_value()
                && batch.seq <= last
            {
                if let Some(prev) = probe.get(&batch.seq) {
                    assert_eq!(
                        prev.records, batch.records,
                        "seq {} resent with different records",
                        batch.seq
                    );
                }
                st.duplicates += 1;
                return Ok(Persisted::Duplicate);
            }
            let key = (batch.probe_id.clone(), batch.seq);
            probe.insert(batch.seq, batch);
            if st.stall_after.as_ref() == Some(&key) {
                st.stall_after = None;
                true
            } else {
                false
            }
        };
        if stall {
            if let Some(tx) = self.stalled.lock().unwrap().take() {
                let _ = tx.send(0);
            }
            std::future::pending::<()>().await;
        }
        Ok(Persisted::Stored)
    }

    fn last_seq(&self, probe_id: &str, epoch: u64) -> Option<u64> {
        if self
            .hide_last_seq
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        self.state
            .lock()
            .unwrap()
            .stored
            .get(&(probe_id.to_owned(), epoch))
            .and_then(|m| m.keys().next_back().copied())
    }

    fn policy_feed(&self) -> Option<watch::Receiver<Option<Arc<PolicyFrame>>>> {
        Some(self.policy.subscribe())
    }

    fn enforce_status(&self, probe_id: &str, status: &EnforceStatus) {
        self.statuses
            .lock()
            .unwrap()
            .push((probe_id.to_string(), status.clone()));
    }
}

// ---------------------------------------------------------------------------------------
// Server in its own runtime

/// A collector transport serving in a runtime of its own.
pub struct TestServer {
    /// Bound address.
    pub addr: SocketAddr,
    /// Its metrics.
    pub metrics: TransportMetrics,
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Binds `cfg` (retrying for a few seconds while the port is still held by a
    /// server being torn down) and serves `sink`.
    pub fn start(cfg: &TransportConfig, sink: Arc<MemSink>) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let metrics = TransportMetrics::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = loop {
            match rt.block_on(Server::bind(cfg, metrics.clone())) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("bind: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("bind {}: {e}", cfg.listen),
            }
        };
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = rt.spawn(async move {
            server
                .run(sink, async {
                    let _ = rx.await;
                })
                .await
                .expect("server run");
        });
        TestServer {
            addr,
            metrics,
            rt: Some(rt),
            stop: Some(tx),
            run: Some(run),
        }
    }

    /// Kills the server: every task is dropped at its next await, sockets close, no
    /// goodbye frames. Returns once the port is free.
    pub fn kill(mut self) {
        self.stop.take();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }

    /// Graceful stop: stop accepting, let connections finish, wait for `run` to return.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let (Some(rt), Some(run)) = (self.rt.take(), self.run.take()) {
            rt.block_on(run).expect("server run task");
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw TLS client

/// A client TLS stream.
pub type Client = TlsStream<TcpStream>;

/// Connects to `addr` trusting `ca`, presenting `cert` when given.
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
    cert: Option<&CertPaths>,
) -> std::io::Result<Client> {
    use rustls_pki_types::ServerName;
    let cfg = match cert {
        None => Arc::new(tidegate_base::tls::trusting_client_config(Some(ca), true).unwrap()),
        Some(c) => tidegate_base::tls::MtlsFiles {
            ca: ca.to_path_buf(),
            cert: c.cert.clone(),
            key: c.key.clone(),
            crls: Vec::new(),
        }
        .client_config("probe")
        .unwrap(),
    };
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The sequence epoch of the test kit's raw clients and [`batch`]es.
pub const EPOCH: u64 = 7;

/// Sends `Hello` for `probe_id` (sequence epoch [`EPOCH`]) and returns the collector's
/// answer.
pub async fn say_hello(c: &mut Client, probe_id: &str) -> Result<Message, WireError> {
    send(
        c,
        &Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            probe_id: probe_id.into(),
            epoch: EPOCH,
            software: "transport test".into(),
            capabilities: 0,
        }),
    )
    .await?;
    recv(c).await
}

/// Writes and flushes one message.
pub async fn send(c: &mut Client, m: &Message) -> Result<(), WireError> {
    write_message_async(c, m).await?;
    c.flush().await?;
    Ok(())
}

/// Reads one message (10 s limit).
pub async fn recv(c: &mut Client) -> Result<Message, WireError> {
    tokio::time::timeout(
        Duration::from_secs(10),
        read_message_async(c, DEFAULT_MAX_FRAME),
    )
    .await
    .unwrap_or_else(|_| {
        Err(WireError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no message within 10 s",
        )))
    })
}

/// A batch of `n` synthetic records (sequence epoch [`EPOCH`]).
pub fn batch(probe: &str, seq: u64, n: u64) -> Batch {
    Batch {
        probe_id: probe.into(),
        epoch: EPOCH,
        seq,
        created_ns: 1_700_000_000_000_000_000 + seq % 1_000_000_000,
        records: (0..n)
            .map(|i| FlowRecord {
                src: format!("10.0.{}.{}", seq % 250, i % 250).parse().unwrap(),
                dst: "192.0.2.1".parse().unwrap(),
                sport: 1000 + i as u16,
                dport: 443,
                proto: 6,
                packets: i + 1,
                bytes: 100 * (i + 1),
                first: 1_700_000_000_000_000_000 + i,
                last: 1_700_000_000_000_000_100 + i,
                tcp_flags: 0x18,
                line: "line-a".into(),
                ifindex: 1,
                ..Default::default()
            })
            .collect(),
        health: None,
    }
}

/// Compares two record collections as multisets (replay emits a sweep's records in hash
/// order, so only the contents are comparable) and panics with a short summary.
pub fn assert_same_records(got: &[FlowRecord], want: &[FlowRecord], what: &str) {
    let key = |v: &[FlowRecord]| {
        let mut k: Vec<String> = v.iter().map(|r| format!("{r:?}")).collect();
        k.sort();
        k
    };
    let (g, w) = (key(got), key(want));
    if g == w {
        return;
    }
    let missing = w.iter().filter(|r| !g.contains(r)).count();
    let extra = g.iter().filter(|r| !w.contains(r)).count();
    panic!(
        "{what}: got {} records, want {}; {missing} missing, {extra} unexpected (or repeated: {})",
        g.len(),
        w.len(),
        g.windows(2).filter(|p| p[0] == p[1]).count()
    );
}
