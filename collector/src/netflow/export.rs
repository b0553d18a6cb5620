//! IPFIX export: every batch the pipeline reads from the spool is offered here and sent
//! over UDP to each `[[netflow.export]]` target (templates first, then again every
//! `template_refresh`). Export is best effort and never slows storage: when the queue is
//! full the batch is skipped for export and counted. A collector restart replays the
//! spool entries not yet stored, so a target can receive such records twice.

use std::{sync::Arc, time::Instant};

use tidegate_wire::{Batch, FlowRecord, FlowSource};
use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    ExportTarget,
    ipfix::Encoder,
    metrics::{NetflowMetrics, TargetLabel},
};

/// Batches waiting for export.
const QUEUE: usize = 256;

/// Where the pipeline offers batches for export.
#[derive(Clone)]
pub struct ExportFeed {
    tx: mpsc::Sender<Arc<Batch>>,
    targets: Arc<Vec<ExportTarget>>,
    metrics: NetflowMetrics,
}

impl ExportFeed {
    /// Queues `batch` for export; counts it as dropped when the queue is full.
    pub fn offer(&self, batch: &Arc<Batch>) {
        if self.tx.try_send(batch.clone()).is_err() {
            for t in self.targets.iter() {
                let n = batch
                    .records
                    .iter()
                    .filter(|r| t.include_ingested || r.source == FlowSource::Probe)
                    .count();
                self.metrics
                    .export_dropped
                    .get_or_create(&TargetLabel {
                        target: t.to.to_string(),
                    })
                    .inc_by(n as u64);
            }
        }
    }
}

struct Target {
    cfg: ExportTarget,
    socket: UdpSocket,
    encoder: Encoder,
    templates_sent: Option<Instant>,
    label: TargetLabel,
}

/// Opens a socket per target and starts the export task.
pub async fn spawn(
    targets: Vec<ExportTarget>,
    metrics: NetflowMetrics,
) -> anyhow::Result<ExportFeed> {
    let mut open = Vec::new();
    for t in &targets {
        let bind: std::net::SocketAddr = if t.to.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let socket = UdpSocket::bind(bind).await?;
        socket
            .connect(t.to)
            .await
            .map_err(|e| anyhow::anyhow!("IPFIX export to {}: {e}", t.to))?;
        tracing::info!(to = %t.to, domain = t.observation_domain, "exporting flows as IPFIX");
        open.push(Target {
            cfg: t.clone(),
            socket,
            encoder: Encoder::new(t.observation_domain),
            templates_sent: None,
            label: TargetLabel {
                target: t.to.to_string(),
            },
        });
    }
    let (tx, mut rx) = mpsc::channel::<Arc<Batch>>(QUEUE);
    let m = metrics.clone();
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            for t in &mut open {
                send(t, &batch, &m).await;
            }
        }
    });
    Ok(ExportFeed {
        tx,
        targets: Arc::new(targets),
        metrics,
    })
}

async fn send(t: &mut Target, batch: &Batch, m: &NetflowMetrics) {
    let records: Vec<&FlowRecord> = batch
        .records
        .iter()
        .filter(|r| t.cfg.include_ingested || r.source == FlowSource::Probe)
        .collect();
    let due = t
        .templates_sent
        .is_none_or(|at| at.elapsed() >= t.cfg.template_refresh);
    if records.is_empty() && !due {
        return;
    }
    let now = u32::try_from(tidegate_base::clock::wall_secs()).unwrap_or(u32::MAX);
    let msgs = t.encoder.messages(&records, now, due);
    if due {
        t.templates_sent = Some(Instant::now());
    }
    let mut failed = false;
    for msg in &msgs {
        if failed {
            break;
        }
        match t.socket.send(msg).await {
            Ok(_) => {
                m.export_messages.get_or_create(&t.label).inc();
            }
            Err(e) => {
                // A refused port (ICMP unreachable) or no route: this batch is lost to
                // this target, the next one tries again with templates.
                tracing::debug!(to = %t.cfg.to, error = %e, "IPFIX send failed");
                t.templates_sent = None;
                failed = true;
            }
        }
    }
    if failed {
        m.export_dropped
            .get_or_create(&t.label)
            .inc_by(records.len() as u64);
    } else {
        m.export_records
            .get_or_create(&t.label)
            .inc_by(records.len() as u64);
    }
}
