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

async fn run(cfg: CollectorConfig) -> anyhow::Result<()> {
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
    let ingest = Arc::new(
        Ingest::new(spool.clone(), ingest_metrics)
            .with_evidence(evidence.clone())
            .with_enforce(enforce.clone()),
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

    if let Some(addr) = cfg.metrics_listen {
        tidegate_base::metrics::serve_registry(addr, Arc::new(Mutex::new(registry)))
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
    }

    // Web UI and JSON API (`[api]`), reading ClickHouse.
    if let Some(api) = cfg.api.clone() {
        let addr = api.listen;
        tidegate_collector::api::serve(
            api,
            cfg.clickhouse.clone(),
            evidence.clone(),
            enforce.clone(),
        )
        .await
        .with_context(|| format!("cannot serve the web UI on {addr}"))?;
    }

    // Storage side: migrate (retrying while ClickHouse is down — probes keep being
    // acknowledged into the spool meanwhile), then drain the spool into ClickHouse.
    let dead_letters = cfg.spool.dir.join("dead-letter");
    let pipe = {
        let (sink, spool, stop_rx) = (sink.clone(), spool.clone(), stop_rx.clone());
        let metrics = pipeline_metrics.clone();
        tokio::spawn(async move {
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
        })
    };

    // NetFlow/IPFIX listeners: exporters' records join the probes' in the spool.
    let netflow = match &cfg.netflow {
        Some(n) if !n.listen.is_empty() => {
            let sockets = tidegate_collector::netflow::listener::bind(n)?;
            let (n, ingest, metrics, stop) = (
                Arc::new(n.clone()),
                ingest.clone(),
                netflow_metrics.clone(),
                netflow_stop_rx.clone(),
            );
            Some(tokio::spawn(async move {
                tidegate_collector::netflow::listener::serve(n, sockets, ingest, metrics, stop)
                    .await
            }))
        }
        _ => None,
    };

    tracing::info!(listen = %cfg.transport.listen, "collector accepting probes");
    let serve = transport::serve(&cfg.transport, ingest, transport_metrics, shutdown_signal());
    let served = serve.await;
    let _ = netflow_stop_tx.send(true);
    if let Some(task) = netflow {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "NetFlow listeners failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "NetFlow listeners panicked"),
            Err(_) => tracing::warn!("NetFlow listeners did not stop in 10 s"),
        }
    }
    tracing::info!("stopping: no new batches accepted; draining the spool into ClickHouse");
    let _ = stop_tx.send(true);
    let abort_pipe = pipe.abort_handle();
    let drained = tokio::time::timeout(Duration::from_secs(30), pipe).await;
    match drained {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "storage pipeline failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "storage pipeline panicked"),
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
    tracing::info!(pending = spool.pending(), "collector stopped");
    Ok(())
}
