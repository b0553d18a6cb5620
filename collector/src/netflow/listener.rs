//! The UDP listeners: receive datagrams, decode them, and hand each exporter's records to
//! the spool in batches (by size, and at least every `flush_interval`) under probe id
//! `exporter:<name>` and a sequence of its own — from there on they are records like a
//! probe's. UDP has no acknowledgement: a record is safe once its batch is spooled; a
//! datagram the kernel drops before we read it is lost (the receive buffer is enlarged;
//! `netstat -su` counts such drops).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tidegate_wire::{Batch, FlowRecord};
use tokio::{net::UdpSocket, sync::watch, task::JoinSet};

use super::{
    NetflowConfig,
    decode::{Decoded, Decoder, Problem},
    metrics::{DroppedLabel, ExporterLabel, NetflowMetrics},
};
use crate::transport::BatchSink;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Binds every `[netflow] listen` address (errors name the address).
pub fn bind(cfg: &NetflowConfig) -> anyhow::Result<Vec<UdpSocket>> {
    cfg.listen
        .iter()
        .map(|addr| {
            bind_one(*addr, cfg.recv_buffer_bytes)
                .map_err(|e| anyhow::anyhow!("cannot listen for NetFlow/IPFIX on udp {addr}: {e}"))
        })
        .collect()
}

fn bind_one(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<UdpSocket> {
    let std = std::net::UdpSocket::bind(addr)?;
    std.set_nonblocking(true)?;
    // A larger receive buffer rides out bursts while a batch is being spooled; the kernel
    // caps it at net.core.rmem_max (not an error).
    let size = recv_buffer.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt on a socket we own with a pointer to a live c_int of the size
    // passed.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            std.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    UdpSocket::from_std(std)
}

/// Records of one exporter waiting for their batch.
struct Pending {
    records: Vec<FlowRecord>,
    since: Instant,
    epoch: u64,
    next_seq: u64,
    /// Metric label.
    label: ExporterLabel,
}

fn now_ns() -> u64 {
    tidegate_base::clock::wall_ns()
}

fn random_epoch() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return now_ns();
    }
    u64::from_le_bytes(b)
}

/// One listener: its socket, decoder and per-exporter batches.
struct Listener<S> {
    cfg: Arc<NetflowConfig>,
    socket: UdpSocket,
    decoder: Decoder,
    sink: Arc<S>,
    metrics: NetflowMetrics,
    pending: HashMap<Arc<str>, Pending>,
}

impl<S: BatchSink> Listener<S> {
    fn label(&self, probe_id: Option<&str>) -> String {
        match probe_id {
            Some(id)
                if self
                    .cfg
                    .exporters
                    .values()
                    .any(|e| id.strip_prefix("exporter:") == Some(e.name.as_str())) =>
            {
                id.to_string()
            }
            _ => "unlisted".to_string(),
        }
    }

    fn take(&mut self, d: Decoded) -> Option<Arc<str>> {
        let label = self.label(d.probe_id.as_deref());
        self.metrics
            .datagrams
            .get_or_create(&ExporterLabel {
                exporter: label.clone(),
            })
            .inc();
        if d.held > 0 {
            self.metrics
                .sets_held
                .get_or_create(&ExporterLabel {
                    exporter: label.clone(),
                })
                .inc_by(d.held);
        }
        for (p, n) in &d.problems {
            self.metrics
                .dropped
                .get_or_create(&DroppedLabel {
                    exporter: label.clone(),
                    reason: p.reason().to_string(),
                })
                .inc_by(*n);
        }
        let id = d.probe_id?;
        if d.records.is_empty() {
            return None;
        }
        let limit = self.cfg.max_exporters.saturating_mul(2);
        // Listed exporters are always taken (they are few, and configured); the bound
        // is on the others, so spoofed sources cannot crowd them out.
        if label == "unlisted" && !self.pending.contains_key(&id) && self.pending.len() >= limit {
            // More exporters at once than configured: refuse rather than grow.
            self.metrics
                .dropped
                .get_or_create(&DroppedLabel {
                    exporter: label,
                    reason: Problem::UnknownExporter.reason().to_string(),
                })
                .inc_by(d.records.len() as u64);
            return None;
        }
        let p = self.pending.entry(id.clone()).or_insert_with(|| Pending {
            records: Vec::new(),
            since: Instant::now(),
            epoch: random_epoch(),
            next_seq: 1,
            label: ExporterLabel { exporter: label },
        });
        if p.records.is_empty() {
            p.since = Instant::now();
        }
        p.records.extend(d.records);
        (p.records.len() >= self.cfg.batch_records).then_some(id)
    }

    /// Spools the batch of `id`. A batch the spool refuses (disk full, I/O error) is
    /// lost — UDP cannot ask the exporter to resend — and counted, and logged.
    async fn flush(&mut self, id: &Arc<str>) {
        let Some(p) = self.pending.get_mut(id) else {
            return;
        };
        if p.records.is_empty() {
            return;
        }
        let records = std::mem::take(&mut p.records);
        let n = records.len() as u64;
        let batch = Batch {
            probe_id: id.to_string(),
            epoch: p.epoch,
            seq: p.next_seq,
            created_ns: now_ns(),
            records,
            health: None,
        };
        p.next_seq += 1;
        let label = p.label.clone();
        let encoded = tidegate_wire::encode_batch(&batch);
        match self.sink.persist(batch, encoded).await {
            Ok(_) => {
                self.metrics.records.get_or_create(&label).inc_by(n);
            }
            Err(e) => {
                tracing::error!(exporter = %id, records = n, error = %e, "cannot spool NetFlow records; they are lost");
                self.metrics.records_lost.get_or_create(&label).inc_by(n);
            }
        }
    }

    async fn flush_due(&mut self, all: bool) {
        let due: Vec<Arc<str>> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                !p.records.is_empty() && (all || p.since.elapsed() >= self.cfg.flush_interval)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            self.flush(&id).await;
        }
        // Exporters gone quiet keep no state here.
        if self.pending.len() > self.cfg.max_exporters {
            self.pending.retain(|_, p| !p.records.is_empty());
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut tick =
            tokio::time::interval((self.cfg.flush_interval / 2).max(Duration::from_millis(5)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = Instant::now();
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let d = self.decoder.decode(from, &buf[..n], now_ns());
                        if let Some(id) = self.take(d) {
                            self.flush(&id).await;
                        }
                    }
                    Err(e) => {
                        // ICMP errors and the like surface here; the socket stays usable.
                        tracing::debug!(error = %e, "NetFlow socket receive error");
                    }
                },
                _ = tick.tick() => {
                    self.flush_due(false).await;
                    if last_prune.elapsed() >= Duration::from_secs(60) {
                        self.decoder.prune(self.cfg.template_timeout);
                        last_prune = Instant::now();
                    }
                    self.metrics.template_scopes.set(self.decoder.scopes() as i64);
                }
                _ = stop.changed() => {
                    if *stop.borrow() {
                        break;
                    }
                }
            }
        }
        self.flush_due(true).await;
    }
}

/// Serves every socket until `stop` turns true, then spools what is pending.
pub async fn serve<S: BatchSink>(
    cfg: Arc<NetflowConfig>,
    sockets: Vec<UdpSocket>,
    sink: Arc<S>,
    metrics: NetflowMetrics,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for socket in sockets {
        let local = socket.local_addr()?;
        tracing::info!(listen = %local, "accepting NetFlow v5/v9 and IPFIX");
        let l = Listener {
            decoder: Decoder::new(cfg.clone()).map_err(anyhow::Error::msg)?,
            cfg: cfg.clone(),
            socket,
            sink: sink.clone(),
            metrics: metrics.clone(),
            pending: HashMap::new(),
        };
        set.spawn(l.run(stop.clone()));
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| anyhow::anyhow!("NetFlow listener failed: {e}"))?;
    }
    Ok(())
}
