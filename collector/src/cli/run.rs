//! `tidegate-collector run --config FILE`.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tidegate_base::Cidr;
use tidegate_collector::{
    aggregate::{AggregateMetrics, Aggregator},
    analysis::{Analysis, AnalysisMetrics},
    config::CollectorConfig,
    enforce::{BlockStore, EnforceHub, EnforceMetrics},
    ingest::{Ingest, IngestMetrics},
    pipeline::{self, PipelineMetrics},
    reload::spawn_sighup_reload,
    sinks::clickhouse::{ClickHouseSink, SinkMetrics},
    spool::Spool,
    transport::{self, TransportMetrics},
};
use tidegate_threat::enrich::Contextualizer;
use tokio::sync::watch;

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML; every section documented in dashboards/examples/collector.toml).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs `run`.
pub fn main(a: Args) -> anyhow::Result<()> {
    let cfg = CollectorConfig::load(&a.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("collector")
        .build()?;
    rt.block_on(run(cfg))
}

/// File descriptors kept for everything but probe connections (spool segments, the
/// evidence log, ClickHouse and webhook connections, the API, metrics).
const FD_RESERVE: u64 = 256;

/// Raises the open-file limit and keeps `max_connections` (and the handshake caps)
/// within what the process may open, so a connection flood meets the transport's
/// limit, never EMFILE in the spool or the storage pipeline.
fn fit_connections_to_fd_limit(cfg: &mut CollectorConfig) {
    let t = &mut cfg.transport;
    match tidegate_base::limits::raise_open_files() {
        Ok((soft, _)) => {
            let room =
                usize::try_from(soft.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
            if t.max_connections > room {
                tracing::warn!(
                    open_files = soft,
                    configured = t.max_connections,
                    max_connections = room,
                    "transport.max_connections lowered to fit the open-file limit (raise it with LimitNOFILE= or ulimit -n)"
                );
                t.max_connections = room;
                t.max_handshakes = t.max_handshakes.min(room);
                t.max_handshakes_per_address = t.max_handshakes_per_address.min(t.max_handshakes);
            } else {
                tracing::info!(
                    open_files = soft,
                    max_connections = t.max_connections,
                    "open-file limit"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
}

/// A stage that ended while the collector was running: what ended and how.
type Failure = watch::Sender<Option<String>>;

/// Runs a long-lived stage as its own task and reports — at once, in the log and to the
/// supervisor — any end before `stop` is set: an error, a panic, or returning early.
/// Resolves to the stage's result.
fn supervised(
    name: &'static str,
    task: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    stop: watch::Receiver<bool>,
    failure: Failure,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let inner = tokio::spawn(task);
    tokio::spawn(async move {
        let r = match inner.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(anyhow::anyhow!("{name} panicked: {e}")),
            Err(e) => Err(anyhow::anyhow!("{name} was cancelled: {e}")),
        };
        if !*stop.borrow() {
            let why = match &r {
                Ok(()) => format!("{name} ended unexpectedly"),
                Err(e) => format!("{name} failed: {e:#}"),
            };
            tracing::error!(
                stage = name,
                "{why}; the collector stops (exit status 1) so nothing is acknowledged that this stage would not handle"
            );
            failure.send_if_modified(|f| {
                let first = f.is_none();
                if first {
                    *f = Some(why.clone());
                }
                first
            });
        }
        r
    })
}

async fn run(mut cfg: CollectorConfig) -> anyhow::Result<()> {
    fit_connections_to_fd_limit(&mut cfg);
    let (failure, mut failed) = watch::channel::<Option<String>>(None);
    let mut registry = Registry::with_prefix("tidegate_collector");
    let ingest_metrics = IngestMetrics::default();
    ingest_metrics.register(&mut registry);
    let pipeline_metrics = PipelineMetrics::default();
    pipeline_metrics.register(&mut registry);
    let sink_metrics = SinkMetrics::default();
    sink_metrics.register(&mut registry);
    let agg_metrics = AggregateMetrics::default();
    agg_metrics.register(&mut registry);
    let transport_metrics = TransportMetrics::default();
    transport_metrics.register(&mut registry);
    let analysis_metrics = AnalysisMetrics::default();
    analysis_metrics.register(&mut registry);

    let (spool, reader) = Spool::open(cfg.spool.clone()).context("opening the spool")?;
    // The evidence log first: everything after this is recorded in it.
    let evidence = match &cfg.evidence {
        Some(e) => {
            let log = e.open().context("opening the evidence log")?;
            tidegate_collector::evidence::record(
                &log,
                tidegate_collector::evidence::CONFIG,
                tidegate_collector::evidence::start_entry(
                    &cfg.path,
                    cfg.analysis.policy.as_deref(),
                ),
            );
            Some(log)
        }
        None => None,
    };
    let sink = Arc::new(ClickHouseSink::connect(cfg.clickhouse.clone(), sink_metrics).await?);
    let aggregator = Arc::new(Aggregator::start(cfg.aggregate.clone(), agg_metrics)?);
    // Detection: enrichment sources, the policy (reloaded on SIGHUP) and the detectors.
    let sources = cfg.analysis.load().map_err(anyhow::Error::msg)?;
    // Enforcement: the policy compiled for the probes' XDP programs, pushed to every
    // probe that enforces; the collector's own addresses are never dropped.
    let enforce = match &sources.policy {
        Some(handle) => {
            let enforce_metrics = EnforceMetrics::default();
            enforce_metrics.register(&mut registry);
            let own: Vec<Cidr> = [
                Some(cfg.transport.listen.ip()),
                cfg.api.as_ref().map(|a| a.listen.ip()),
            ]
            .into_iter()
            .flatten()
            .filter(|ip| !ip.is_unspecified())
            .map(Cidr::host)
            .collect();
            let blocks = BlockStore::open(&cfg.spool.dir.join("enforce-blocks.json"))
                .map_err(anyhow::Error::msg)?;
            let hub = EnforceHub::start(
                handle.clone(),
                sources.enricher.clone(),
                own,
                blocks,
                evidence.clone(),
                enforce_metrics,
            )
            .context("compiling the enforcement policy")?;
            hub.spawn_expiry();
            Some(hub)
        }
        None => None,
    };
    let decoded = tidegate_collector::decoded::DecodedCache::default();
    let ingest = Arc::new(
        Ingest::new(spool.clone(), ingest_metrics)
            .with_evidence(evidence.clone())
            .with_enforce(enforce.clone())
            .with_decoded(decoded.clone()),
    );
    if let (Some(handle), Some(path)) = (&sources.policy, &cfg.analysis.policy) {
        spawn_sighup_reload(
            handle.clone(),
            path.clone(),
            evidence.clone(),
            enforce.clone(),
        )
        .context("installing the SIGHUP handler")?;
        tracing::info!(policy = %path.display(), rules = handle.current().rules.len(), "policy loaded; SIGHUP reloads it");
    }
    let policy_handle = sources.policy.clone();
    let context = Contextualizer::new(sources.enricher.clone(), sources.policy.clone());
    let (analysis, feed) = Analysis::start(
        &cfg.analysis,
        sources,
        Some(sink.clone()),
        evidence.clone(),
        enforce.clone(),
        analysis_metrics,
    )?;
    let netflow_metrics = tidegate_collector::netflow::NetflowMetrics::default();
    netflow_metrics.register(&mut registry);
    let export = match &cfg.netflow {
        Some(n) if !n.export.is_empty() => Some(
            tidegate_collector::netflow::export::spawn(n.export.clone(), netflow_metrics.clone())
                .await
                .context("starting IPFIX export")?,
        ),
        _ => None,
    };
    let stages = pipeline::Stages {
        aggregator: aggregator.clone(),
        context,
        analysis: Some(feed),
        evidence: evidence.clone(),
        export,
        decoded: Some(decoded),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (netflow_stop_tx, netflow_stop_rx) = watch::channel(false);
    let (ckpt_stop_tx, ckpt_stop_rx) = watch::channel(false);
    let checkpoints = match (&evidence, &cfg.evidence) {
        (Some(log), Some(e)) => Some(tidegate_collector::evidence::spawn_checkpoints(
            log.clone(),
            e.checkpoint_every,
            e.tsa.clone(),
            ckpt_stop_rx,
        )),
        _ => None,
    };

    // One registry for the /metrics endpoint and the console's collector health page.
    let registry = Arc::new(Mutex::new(registry));
    if let Some(addr) = cfg.metrics_listen {
        tidegate_base::metrics::serve_registry(addr, registry.clone())
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
    }

    // Web UI and JSON API (`[api]`), reading ClickHouse.
    if let Some(api) = cfg.api.clone() {
        let addr = api.listen;
        let policy_home = policy_handle
            .as_ref()
            .and_then(|h| h.current().home_country().map(str::to_string));
        tidegate_collector::api::serve(
            api,
            cfg.clickhouse.clone(),
            evidence.clone(),
            enforce.clone(),
            policy_home,
            Some(registry.clone()),
            Some(&aggregator),
        )
        .await
        .with_context(|| format!("cannot serve the web UI on {addr}"))?;
    }

    // The spool gauges follow the spool whatever the storage side is doing (an operator
    // watches them most while ClickHouse is down and the pipeline is stuck retrying).
    {
        let (spool, m) = (spool.clone(), pipeline_metrics.clone());
        tokio::spawn(async move {
            loop {
                m.spool_bytes.set(spool.bytes() as i64);
                m.spool_pending.set(spool.pending() as i64);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    // Storage side: migrate (retrying while ClickHouse is down — probes keep being
    // acknowledged into the spool meanwhile), then drain the spool into ClickHouse.
    let dead_letters = cfg.spool.dir.join("dead-letter");
    let pipe = {
        let (sink, spool, stop_rx, watch_stop) = (
            sink.clone(),
            spool.clone(),
            stop_rx.clone(),
            stop_rx.clone(),
        );
        let metrics = pipeline_metrics.clone();
        let stage = async move {
            let mut wait = Duration::from_millis(200);
            loop {
                match sink.migrate().await {
                    Ok(r) => {
                        tracing::info!(report = ?r, "ClickHouse schema ready");
                        break;
                    }
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(error = %e, retry_in = ?wait, "ClickHouse unreachable; spooling until it returns");
                        if *stop_rx.borrow() {
                            return Ok(());
                        }
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        return Err(anyhow::anyhow!("ClickHouse schema migration failed: {e}"));
                    }
                }
            }
            pipeline::run(reader, spool, sink, stages, metrics, dead_letters, stop_rx)
                .await
                .map_err(anyhow::Error::from)
        };
        supervised("storage pipeline", stage, watch_stop, failure.clone())
    };
    // The detection thread ends only after the pipeline (its input) has: an earlier end
    // is a failure.
    {
        let (mut ended, stop_rx, failure) = (analysis.ended(), stop_rx.clone(), failure.clone());
        tokio::spawn(async move {
            let Ok(how) = ended.wait_for(|e| e.is_some()).await.map(|e| e.clone()) else {
                return;
            };
            if !*stop_rx.borrow() {
                let why = format!("detection stage {}", how.unwrap_or_default());
                tracing::error!("{why}; the collector stops (exit status 1)");
                failure.send_if_modified(|f| {
                    let first = f.is_none();
                    if first {
                        *f = Some(why.clone());
                    }
                    first
                });
            }
        });
    }

    // NetFlow/IPFIX listeners: exporters' records join the probes' in the spool.
    let netflow = match &cfg.netflow {
        Some(n) if !n.listen.is_empty() => {
            let sockets = tidegate_collector::netflow::listener::bind(n)?;
            let (n, ingest, metrics, stop) = (
                Arc::new(n.clone()),
                Arc::new(tidegate_collector::ingest::Exporters(ingest.clone())),
                netflow_metrics.clone(),
                netflow_stop_rx.clone(),
            );
            let stage = async move {
                tidegate_collector::netflow::listener::serve(n, sockets, ingest, metrics, stop)
                    .await
            };
            Some(supervised(
                "NetFlow listeners",
                stage,
                netflow_stop_rx.clone(),
                failure.clone(),
            ))
        }
        _ => None,
    };

    // Stops on SIGTERM/SIGINT, or when a stage fails.
    let stopping = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = failed.wait_for(|f| f.is_some()) => {}
        }
    };
    // Bound before saying so: "accepting probes" means a probe can connect now.
    let server = transport::Server::bind(&cfg.transport, transport_metrics).await?;
    tracing::info!(listen = %server.local_addr(), "collector accepting probes");
    let served = server.run(ingest, stopping).await;
    let _ = netflow_stop_tx.send(true);
    if let Some(task) = netflow {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %format!("{e:#}"), "NetFlow listeners failed")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "NetFlow listeners supervisor failed"),
            Err(_) => tracing::warn!("NetFlow listeners did not stop in 10 s"),
        }
    }
    tracing::info!("stopping: no new batches accepted; draining the spool into ClickHouse");
    let _ = stop_tx.send(true);
    let abort_pipe = pipe.abort_handle();
    let drained = tokio::time::timeout(Duration::from_secs(30), pipe).await;
    match drained {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %format!("{e:#}"), "storage pipeline failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "storage pipeline supervisor failed"),
        Err(_) => tracing::warn!(
            pending = spool.pending(),
            "drain timed out; the spool keeps the rest for the next start"
        ),
    }
    // A pipeline stuck past the drain deadline is stopped so detection can finish.
    abort_pipe.abort();
    if tokio::time::timeout(Duration::from_secs(30), analysis.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("detection stage did not finish in 30 s; stopping without it");
    }
    if let Ok(agg) = Arc::try_unwrap(aggregator) {
        agg.shutdown();
    }
    // The last checkpoint covers everything detection logged.
    let _ = ckpt_stop_tx.send(true);
    if let Some(c) = checkpoints {
        let _ = c.await;
    }
    served.map_err(anyhow::Error::from)?;
    if let Some(why) = failure.borrow().clone() {
        tracing::error!(
            pending = spool.pending(),
            "collector stopped because a stage failed: {why}"
        );
        anyhow::bail!("a stage failed: {why}");
    }
    tracing::info!(pending = spool.pending(), "collector stopped");
    Ok(())
}
