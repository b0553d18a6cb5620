//! Export to the collector: records are gathered into batches, each sealed batch is
//! made durable in an on-disk spool ([`Spool`]) before `export`/`flush` return, and a
//! sender thread delivers spooled batches over mutually-authenticated TLS
//! ([`tidegate_wire`]), deleting each when the collector acknowledges it.
//!
//! Guarantees: a record handed to [`CollectorExporter`] is either acknowledged by the
//! collector (which acknowledges only durable batches) or still in the spool, across
//! collector restarts, network loss and probe restarts; the collector drops resent
//! duplicates by (probe, sequence). A full spool blocks `export`/`flush` until the
//! collector catches up (backpressure, never loss). Every few seconds a batch carries a
//! [`ProbeHealth`] snapshot.

mod backoff;
mod error;
mod metrics;
mod sender;
mod spool;
mod tls;

use std::{
    io, mem,
    path::PathBuf,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tidegate_wire::{Batch, DEFAULT_MAX_FRAME, ProbeHealth, encode_batch};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

pub(crate) use error::SendError;
pub use error::{CollectorError, SpoolError};
pub use metrics::ExportMetrics;
pub use spool::{Reconciled, Spool};
pub use tls::split_host_port;

use crate::{clock::realtime_ns, config::CollectorConfig, export::Exporter, record::FlowRecord};

/// Extra counters for the health snapshot (the probe's capture counters). Called from
/// `export`/`flush`, possibly while the caller holds its own locks: it must not block.
pub type HealthCounters = Arc<dyn Fn() -> Vec<(String, u64)> + Send + Sync>;

/// Settings of the collector exporter.
#[derive(Clone, Debug)]
pub struct CollectorOptions {
    /// Collector address, `HOST:PORT`: the first choice.
    pub addr: String,
    /// Further collectors, `HOST:PORT`, in order of preference. Any failure (refused,
    /// unreachable, a broken connection, an acknowledgement overdue) moves the probe to
    /// the next one in the list with its spool as it stands: unacknowledged batches go to
    /// the next collector, and a batch the last one stored but could not acknowledge is
    /// kept once by the collectors' batch tokens in ClickHouse. Only after a whole round
    /// of the list fails does the probe back off.
    pub failover: Vec<String>,
    /// Connected to a collector other than the first for this long, the probe goes back
    /// to the first (once what it has in flight is acknowledged); if the first still
    /// fails, it moves down the list again.
    pub failback: Duration,
    /// Name to verify in the collector's certificate (default: the host of `addr`).
    pub server_name: Option<String>,
    /// PEM file with the CA that issued the collector's certificate.
    pub ca_cert: PathBuf,
    /// PEM file with this probe's certificate (CN = probe id).
    pub cert: PathBuf,
    /// PEM file with this probe's private key.
    pub key: PathBuf,
    /// This probe's id (must match its certificate).
    pub probe_id: String,
    /// Spool directory (one per probe).
    pub spool_dir: PathBuf,
    /// Spool capacity; sealing waits while it is full.
    pub spool_max_bytes: u64,
    /// A batch is sealed when it holds this many records (and on every flush).
    pub batch_records: usize,
    /// Batches sent ahead of their acknowledgements.
    pub window: usize,
    /// A health snapshot is attached to a batch at least this often (an otherwise empty
    /// batch is sealed on flush when one is due).
    pub health_interval: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Limit for TCP connect + TLS handshake + Hello/HelloAck.
    pub connect_timeout: Duration,
    /// A connection whose oldest batch stays unacknowledged this long is dropped and
    /// re-established.
    pub ack_timeout: Duration,
    /// How long dropping the exporter waits for delivery (see [`CollectorExporter::finish`]).
    pub finish_timeout: Duration,
    /// Largest frame accepted from the collector.
    pub max_frame: usize,
    /// Line names, reported in health snapshots.
    pub lines: Vec<String>,
    /// The kernel's enforcement tables: the probe announces it enforces policies, keeps
    /// its connection up (heartbeats) and installs each plan the collector pushes.
    pub enforcer: Option<crate::capture::ebpf::SharedEnforcer>,
    /// Heartbeat interval while enforcing (below the collector's idle timeout).
    pub heartbeat: Duration,
    /// Clear the enforcement policy (fail-open) after the collector has been unreachable
    /// this long; `None` keeps enforcing the last policy (the default).
    pub enforce_max_offline: Option<Duration>,
}

/// Default spool directory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/tidegate/probe-spool";
/// Default spool capacity (1 GiB).
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
/// Default records per batch.
pub const DEFAULT_BATCH_RECORDS: usize = 5000;
/// Most records per batch (what the collector accepts): 84 bytes each before
/// compression keeps even an incompressible batch well under the collector's default
/// 16 MiB frame limit.
pub const MAX_BATCH_RECORDS: usize = tidegate_wire::MAX_BATCH_RECORDS;

impl CollectorOptions {
    /// Options with defaults: 1 GiB spool, 5000 records per batch, window 8, health
    /// every 10 s, backoff 100 ms → 10 s, 10 s connect, 60 s ack and 30 s finish timeouts.
    pub fn new(
        addr: impl Into<String>,
        probe_id: impl Into<String>,
        ca_cert: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        spool_dir: PathBuf,
    ) -> Self {
        CollectorOptions {
            addr: addr.into(),
            failover: Vec::new(),
            failback: Duration::from_secs(300),
            server_name: None,
            ca_cert,
            cert,
            key,
            probe_id: probe_id.into(),
            spool_dir,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            batch_records: DEFAULT_BATCH_RECORDS,
            window: 8,
            health_interval: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(60),
            finish_timeout: Duration::from_secs(30),
            max_frame: DEFAULT_MAX_FRAME,
            lines: Vec::new(),
            enforcer: None,
            heartbeat: Duration::from_secs(15),
            enforce_max_offline: None,
        }
    }

    /// Options from a `[collector]` configuration section.
    pub fn from_config(c: &CollectorConfig, probe_id: &str) -> Self {
        let mut o = Self::new(
            c.addr.clone(),
            probe_id,
            c.tls_ca.clone(),
            c.tls_cert.clone(),
            c.tls_key.clone(),
            c.spool_dir.clone(),
        );
        o.failover = c.failover.clone();
        o.failback = c.failback;
        o.server_name = c.server_name.clone();
        o.spool_max_bytes = c.spool_max_bytes;
        o.batch_records = c.batch_records;
        o
    }

    /// Everything [`CollectorExporter::start`] checks before it opens the spool: the
    /// options, the TLS files (loaded, and the key matching the certificate) and the
    /// collector's name. `tidegate-probe check-config` runs it too.
    pub fn validate(&self) -> Result<(), CollectorError> {
        self.check()?;
        tls::client_config(&self.ca_cert, &self.cert, &self.key)?;
        for a in self.addrs() {
            tls::server_name(a, self.server_name.as_deref())?;
        }
        Ok(())
    }

    /// Every collector address, the first choice first.
    pub fn addrs(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.addr).chain(&self.failover)
    }

    fn check(&self) -> Result<(), CollectorError> {
        let bad = |what, reason: &str| {
            Err(CollectorError::Option {
                what,
                reason: reason.into(),
            })
        };
        if self.probe_id.is_empty() {
            return bad("probe id", "must not be empty");
        }
        if !(1..=MAX_BATCH_RECORDS).contains(&self.batch_records) {
            return bad(
                "batch records",
                &format!("must be between 1 and {MAX_BATCH_RECORDS}"),
            );
        }
        if self.window == 0 {
            return bad("window", "must be at least 1");
        }
        if self.spool_max_bytes == 0 {
            return bad("spool max bytes", "must be more than 0");
        }
        for (i, a) in self.addrs().enumerate() {
            tls::split_host_port(a).map_err(|reason| CollectorError::Option {
                what: "collector address",
                reason,
            })?;
            if self.addrs().take(i).any(|b| b == a) {
                return bad("collector address", &format!("{a} is listed twice"));
            }
        }
        if self.failback.is_zero() {
            return bad("failback", "must be longer than zero");
        }
        Ok(())
    }
}

/// What [`CollectorExporter::finish`] achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishReport {
    /// Batches still in the spool (sent on the next start).
    pub left_batches: u64,
    /// Their bytes.
    pub left_bytes: u64,
    /// The spool directory.
    pub spool_dir: PathBuf,
}

impl FinishReport {
    /// Everything was acknowledged.
    pub fn delivered(&self) -> bool {
        self.left_batches == 0
    }
}

/// The collector exporter (see the module documentation).
pub struct CollectorExporter {
    opts: CollectorOptions,
    spool: Arc<Spool>,
    metrics: ExportMetrics,
    current: Vec<FlowRecord>,
    /// Body bytes `current` encodes to, at most.
    current_bytes: usize,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    last_health: Option<Instant>,
    health_counters: Option<HealthCounters>,
}

impl std::fmt::Debug for CollectorExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorExporter")
            .field("addr", &self.opts.addr)
            .field("probe_id", &self.opts.probe_id)
            .field("spool", &self.opts.spool_dir)
            .field("pending_records", &self.current.len())
            .finish_non_exhaustive()
    }
}

impl CollectorExporter {
    /// Loads the TLS material, opens the spool (batches left by a previous run are sent
    /// first) and starts the sender thread.
    pub fn start(opts: CollectorOptions, metrics: ExportMetrics) -> Result<Self, CollectorError> {
        opts.check()?;
        let tls = tls::client_config(&opts.ca_cert, &opts.cert, &opts.key)?;
        let targets = opts
            .addrs()
            .map(|a| Ok((a.clone(), tls::server_name(a, opts.server_name.as_deref())?)))
            .collect::<Result<Vec<_>, CollectorError>>()?;
        let spool = Arc::new(Spool::open(
            &opts.spool_dir,
            &opts.probe_id,
            opts.spool_max_bytes,
            metrics.clone(),
        )?);
        let (bytes, batches) = spool.stats();
        info!(collector = %opts.addr, failover = ?opts.failover, probe = %opts.probe_id, spool = %opts.spool_dir.display(),
            spooled_batches = batches, spooled_bytes = bytes, next_seq = spool.next_seq(),
            "exporting to the collector");
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let thread = sender::spawn(sender::SenderCtx {
            targets,
            failback: opts.failback,
            connector: TlsConnector::from(tls),
            probe_id: opts.probe_id.clone(),
            spool: spool.clone(),
            window: opts.window,
            connect_timeout: opts.connect_timeout,
            ack_timeout: opts.ack_timeout,
            backoff_min: opts.backoff_min,
            backoff_max: opts.backoff_max,
            max_frame: opts.max_frame,
            metrics: metrics.clone(),
            wake: wake.clone(),
            stop: stop_rx,
            enforcer: opts.enforcer.clone(),
            heartbeat: opts.heartbeat,
            enforce_max_offline: opts.enforce_max_offline,
        })
        .map_err(CollectorError::Thread)?;
        Ok(CollectorExporter {
            current: Vec::with_capacity(opts.batch_records.min(1 << 16)),
            current_bytes: 0,
            opts,
            spool,
            metrics,
            wake,
            stop,
            thread: Some(thread),
            last_health: None,
            health_counters: None,
        })
    }

    /// Adds the caller's counters to health snapshots.
    pub fn with_health_counters(mut self, f: HealthCounters) -> Self {
        self.health_counters = Some(f);
        self
    }

    /// The spool (inspection, tests).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The exporter's metrics.
    pub fn metrics(&self) -> &ExportMetrics {
        &self.metrics
    }

    fn health_due(&self) -> bool {
        self.last_health
            .is_none_or(|t| t.elapsed() >= self.opts.health_interval)
    }

    fn health(&self) -> ProbeHealth {
        let (spool_bytes, spool_batches) = self.spool.stats();
        let mut counters = self.metrics.snapshot();
        if let Some(f) = &self.health_counters {
            counters.extend(f());
        }
        ProbeHealth {
            ts_ns: realtime_ns(),
            counters,
            spool_bytes,
            spool_batches,
            lines: self.opts.lines.clone(),
        }
    }

    /// Seals the current records (and a health snapshot when due) into a spooled batch.
    fn seal(&mut self, force_health: bool) -> Result<(), SpoolError> {
        let with_health = force_health || self.health_due();
        let batch = Batch {
            probe_id: self.opts.probe_id.clone(),
            epoch: 0, // epoch and sequence number are assigned by the spool
            seq: 0,
            created_ns: realtime_ns(),
            records: {
                self.current_bytes = 0;
                mem::take(&mut self.current)
            },
            health: with_health.then(|| self.health()),
        };
        let n = batch.records.len() as u64;
        match self.spool.append(encode_batch(&batch)) {
            Ok(_) => {
                self.metrics.batches_sealed.inc();
                self.metrics.records.inc_by(n);
                if with_health {
                    self.last_health = Some(Instant::now());
                }
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                // Keep the records: nothing was spooled.
                self.current = batch.records;
                Err(e)
            }
        }
    }

    /// Seals what is pending (with a final health snapshot), waits up to `timeout` for
    /// the collector to acknowledge everything, and stops the sender. Whatever is not
    /// acknowledged stays in the spool for the next start.
    pub fn finish(mut self, timeout: Duration) -> Result<FinishReport, CollectorError> {
        self.shutdown(timeout)
    }

    fn shutdown(&mut self, timeout: Duration) -> Result<FinishReport, CollectorError> {
        let sealed = self.seal(true);
        let delivered = self.spool.wait_empty(Instant::now() + timeout);
        let _ = self.stop.send(true);
        self.wake.notify_one();
        let joined = self.thread.take().map(JoinHandle::join);
        sealed?;
        if let Some(Err(_)) = joined {
            return Err(CollectorError::SenderPanicked);
        }
        let (left_bytes, left_batches) = self.spool.stats();
        let report = FinishReport {
            left_batches,
            left_bytes,
            spool_dir: self.opts.spool_dir.clone(),
        };
        if delivered {
            info!(collector = %self.opts.addr, "every batch acknowledged by the collector");
        } else {
            warn!(collector = %self.opts.addr, left_batches, left_bytes,
                spool = %self.opts.spool_dir.display(),
                "collector did not acknowledge everything in time; the rest is sent on the next start");
        }
        Ok(report)
    }
}

impl Exporter for CollectorExporter {
    fn export(&mut self, rec: &FlowRecord) -> io::Result<()> {
        self.current.push(rec.clone());
        self.current_bytes += tidegate_wire::record_body_bytes(rec);
        // By count, or before DNS/TLS names take the body past what collectors accept.
        if self.current.len() >= self.opts.batch_records
            || self.current_bytes >= tidegate_wire::BATCH_BODY_TARGET
        {
            self.seal(false).map_err(io::Error::other)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.current.is_empty() || self.health_due() {
            self.seal(false).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

impl Drop for CollectorExporter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let t = self.opts.finish_timeout;
            if let Err(e) = self.shutdown(t) {
                warn!(error = %e, "stopping the collector exporter");
            }
        }
    }
}
