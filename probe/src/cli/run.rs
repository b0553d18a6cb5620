//! `tidegate-probe run --config FILE | --iface NAME...`: live capture.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use tidegate_probe::{
    capture::ebpf::{EbpfCapture, XdpModeChoice},
    config::{Backend, Line, ProbeConfig},
    export::JsonLines,
    live::{LoopOptions, run_loop},
    metrics::{ProbeMetrics, serve},
};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML; see probe/src/config.rs or README).
    #[arg(long, short = 'c', required_unless_present = "iface")]
    pub config: Option<PathBuf>,
    /// Interface to capture on (quick start; repeatable). Line name = interface name.
    #[arg(long, conflicts_with = "config")]
    pub iface: Vec<String>,
    /// Print flow records as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Capture backend (overrides the config file).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// XDP attach mode (overrides the config file).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeChoice>,
    /// Flow map entries per generation (overrides the config file).
    #[arg(long)]
    pub flow_entries: Option<u32>,
    /// Active timeout, seconds.
    #[arg(long)]
    pub active_timeout: Option<u64>,
    /// Idle timeout, seconds.
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    /// Kernel map sweep interval, milliseconds.
    #[arg(long)]
    pub sweep_interval_ms: Option<u64>,
    /// Don't attach the egress (TC) program.
    #[arg(long)]
    pub no_egress: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Stop by itself after this many seconds (flushing everything, as on SIGINT).
    #[arg(long)]
    pub duration: Option<f64>,
}

fn config(args: &Args) -> anyhow::Result<ProbeConfig> {
    let mut c = match &args.config {
        Some(p) => ProbeConfig::load(p)?,
        None => ProbeConfig {
            lines: args
                .iface
                .iter()
                .map(|i| Line {
                    name: i.clone(),
                    iface: i.clone(),
                })
                .collect(),
            ..ProbeConfig::default()
        },
    };
    if let Some(b) = args.backend {
        c.backend = b;
    }
    if let Some(m) = args.xdp_mode {
        c.ebpf.xdp_mode = m;
    }
    if let Some(n) = args.flow_entries {
        anyhow::ensure!(n >= 64, "--flow-entries must be at least 64");
        c.ebpf.flow_entries = n;
    }
    if let Some(s) = args.active_timeout {
        anyhow::ensure!(s >= 1, "--active-timeout must be at least 1 second");
        c.timeouts.active = Duration::from_secs(s);
    }
    if let Some(s) = args.idle_timeout {
        anyhow::ensure!(s >= 1, "--idle-timeout must be at least 1 second");
        c.timeouts.idle = Duration::from_secs(s);
    }
    if let Some(ms) = args.sweep_interval_ms {
        anyhow::ensure!(
            (10..=60_000).contains(&ms),
            "--sweep-interval-ms must be between 10 and 60000"
        );
        c.sweep_interval = Duration::from_millis(ms);
    }
    if args.no_egress {
        c.ebpf.egress = false;
    }
    if let Some(a) = args.metrics_listen {
        c.metrics_listen = Some(a);
    }
    Ok(c)
}

/// Runs `run`.
pub fn main(args: Args) -> anyhow::Result<()> {
    let cfg = config(&args)?;
    if let Some(d) = args.duration {
        anyhow::ensure!(
            d > 0.0 && d.is_finite(),
            "--duration must be a positive number of seconds"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let metrics = Arc::new(Mutex::new(ProbeMetrics::new()));
    if let Some(addr) = cfg.metrics_listen {
        serve(addr, metrics.clone()).with_context(|| format!("cannot serve metrics on {addr}"))?;
    }
    // Fail fast on a typo before loading anything into the kernel.
    for l in &cfg.lines {
        tidegate_probe::capture::ebpf::ifindex(&l.iface)?;
    }
    let mut lines = HashMap::new();
    let mut src: Box<dyn tidegate_probe::live::LiveSource> = match cfg.backend {
        Backend::Ebpf => {
            let mut cap = EbpfCapture::load(cfg.ebpf)?;
            for l in &cfg.lines {
                let r = cap.attach(&l.iface)?;
                lines.insert(r.ifindex, l.name.clone());
            }
            Box::new(cap)
        }
        Backend::Afpacket => {
            let cap = tidegate_probe::capture::afpacket::AfPacketCapture::open(&cfg.lines)?;
            for (ifindex, name) in cap.lines() {
                lines.insert(ifindex, name);
            }
            Box::new(cap)
        }
    };
    tracing::info!(probe = %cfg.id, lines = cfg.lines.len(), backend = ?cfg.backend, "capturing");
    let opts = LoopOptions {
        timeouts: cfg.timeouts,
        sweep_interval: cfg.sweep_interval,
        duration: args.duration.map(Duration::from_secs_f64),
        lines,
    };
    let mut exporter = JsonLines::new(std::io::stdout().lock());
    if !args.json {
        tracing::info!("no collector transport yet: flow records go to stdout as JSON lines");
    }
    run_loop(src.as_mut(), &mut exporter, &metrics, &stop, &opts)?;
    Ok(())
}
