//! `tidegate-probe run --config FILE | --iface NAME...`: live capture.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use tidegate_common::Counter;
use tidegate_probe::{
    capture::ebpf::{EbpfCapture, SharedEnforcer, XdpModeChoice},
    config::{Backend, CollectorConfig, Line, ProbeConfig},
    export::{
        JsonLines,
        collector::{
            CollectorExporter, CollectorOptions, DEFAULT_SPOOL_DIR, ExportMetrics, HealthCounters,
            MAX_BATCH_RECORDS,
        },
    },
    ledger::{Ledger, PreviousLoss},
    live::{LoopOptions, run_loop},
    metrics::{ProbeMetrics, serve},
};

/// Collector options shared by `run` and `replay`.
#[derive(Clone, Debug, clap::Args)]
pub struct CollectorArgs {
    /// Send records to this collector (HOST:PORT) over mutually-authenticated TLS
    /// instead of printing them; several, comma-separated, first choice first, are
    /// tried in turn when one fails (with `run --config`, this overrides the file's
    /// `[collector] addr`).
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]")]
    pub collector: Option<String>,
    /// CA certificate (PEM) that issued the collector's certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This probe's certificate (PEM; its CN must be the probe id).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This probe's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Name to verify in the collector's certificate (default: the host of --collector).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Spool directory for batches not yet acknowledged [default:
    /// /var/lib/tidegate/probe-spool].
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Spool capacity in bytes; export waits while the spool is full [default: 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Records per batch [default: 5000].
    #[arg(long, value_name = "N")]
    pub batch_records: Option<usize>,
    /// On exit, wait this long for the collector to acknowledge everything; the rest
    /// stays in the spool for the next start.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_drain)]
    pub drain_timeout: Duration,
}

fn parse_drain(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_nan() || v < 0.0 {
        return Err(format!("{s:?}: must be 0 or more seconds"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("{s:?}: {e}"))
}

impl CollectorArgs {
    /// The collector settings: the config file's `[collector]` section overridden by the
    /// flags; `None` when neither names a collector.
    pub fn resolve(
        &self,
        file: Option<&CollectorConfig>,
    ) -> anyhow::Result<Option<CollectorConfig>> {
        let Some(mut c) = file.cloned().or_else(|| {
            self.collector.as_ref().map(|_| CollectorConfig {
                addr: String::new(),
                failover: Vec::new(),
                failback: Duration::from_secs(300),
                server_name: None,
                tls_ca: PathBuf::new(),
                tls_cert: PathBuf::new(),
                tls_key: PathBuf::new(),
                spool_dir: PathBuf::from(DEFAULT_SPOOL_DIR),
                spool_max_bytes: tidegate_probe::export::collector::DEFAULT_SPOOL_MAX_BYTES,
                batch_records: tidegate_probe::export::collector::DEFAULT_BATCH_RECORDS,
            })
        }) else {
            let stray = [
                ("--tls-ca", self.tls_ca.is_some()),
                ("--tls-cert", self.tls_cert.is_some()),
                ("--tls-key", self.tls_key.is_some()),
                ("--tls-server-name", self.tls_server_name.is_some()),
                ("--spool-dir", self.spool_dir.is_some()),
                ("--spool-max-bytes", self.spool_max_bytes.is_some()),
                ("--batch-records", self.batch_records.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                anyhow::bail!("{flag} needs --collector HOST:PORT (or a [collector] section)");
            }
            return Ok(None);
        };
        if let Some(list) = &self.collector {
            let addrs: Vec<String> = list.split(',').map(|a| a.trim().to_string()).collect();
            for (i, a) in addrs.iter().enumerate() {
                tidegate_probe::export::collector::split_host_port(a)
                    .map_err(|e| anyhow::anyhow!("--collector {e}"))?;
                anyhow::ensure!(!addrs[..i].contains(a), "--collector lists {a} twice");
            }
            c.addr = addrs[0].clone();
            c.failover = addrs[1..].to_vec();
        }
        for (v, dst) in [
            (&self.tls_ca, &mut c.tls_ca),
            (&self.tls_cert, &mut c.tls_cert),
            (&self.tls_key, &mut c.tls_key),
            (&self.spool_dir, &mut c.spool_dir),
        ] {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        if let Some(n) = &self.tls_server_name {
            c.server_name = Some(n.clone());
        }
        if let Some(b) = self.spool_max_bytes {
            anyhow::ensure!(
                b >= 1 << 20,
                "--spool-max-bytes must be at least 1048576 (1 MiB)"
            );
            c.spool_max_bytes = b;
        }
        if let Some(n) = self.batch_records {
            anyhow::ensure!(
                (1..=MAX_BATCH_RECORDS).contains(&n),
                "--batch-records must be between 1 and {MAX_BATCH_RECORDS}"
            );
            c.batch_records = n;
        }
        let missing: Vec<&str> = [
            ("--tls-ca", &c.tls_ca),
            ("--tls-cert", &c.tls_cert),
            ("--tls-key", &c.tls_key),
        ]
        .into_iter()
        .filter(|(_, p)| p.as_os_str().is_empty())
        .map(|(f, _)| f)
        .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "--collector needs {} (mutual TLS)",
            missing.join(", ")
        );
        Ok(Some(c))
    }

    /// Starts the exporter for `probe_id`.
    pub fn start(
        c: &CollectorConfig,
        probe_id: &str,
        lines: Vec<String>,
        metrics: ExportMetrics,
        enforcer: Option<SharedEnforcer>,
        enforce_max_offline: Option<Duration>,
    ) -> anyhow::Result<CollectorExporter> {
        let mut opts = CollectorOptions::from_config(c, probe_id);
        opts.lines = lines;
        opts.enforcer = enforcer;
        opts.enforce_max_offline = enforce_max_offline;
        CollectorExporter::start(opts, metrics)
            .with_context(|| format!("cannot export to the collector at {}", c.addr))
    }
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML; every field is documented in
    /// dashboards/examples/probe.toml).
    #[arg(long, short = 'c', required_unless_present = "iface")]
    pub config: Option<PathBuf>,
    /// Interface to capture on (quick start; repeatable). Line name = interface name.
    #[arg(long, conflicts_with = "config")]
    pub iface: Vec<String>,
    /// Print flow records as JSON lines on stdout (also the default without a collector).
    #[arg(long, conflicts_with = "collector")]
    pub json: bool,
    /// Probe id (overrides the config file; default: the host name). Must match the
    /// certificate when sending to a collector.
    #[arg(long, value_name = "ID")]
    pub probe_id: Option<String>,
    #[command(flatten)]
    pub collector: CollectorArgs,
    /// Capture backend (overrides the config file).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// XDP attach mode (overrides the config file).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeChoice>,
    /// Key tunnelled packets (GRE, VXLAN, GTP-U, IP-in-IP) by their outermost IP header
    /// or by the one inside the tunnel (overrides the config file).
    #[arg(long, value_enum)]
    pub tunnels: Option<tidegate_probe::capture::TunnelMode>,
    /// The clock that stamps packets in the kernel (overrides the config file).
    #[arg(long, value_enum)]
    pub timestamps: Option<tidegate_probe::capture::ebpf::Timestamps>,
    /// Concurrent flows to size the kernel flow table for (overrides the config file).
    #[arg(long, conflicts_with = "flow_memory_mib")]
    pub flow_entries: Option<u32>,
    /// Kernel flow table budget in MiB (128 bytes per slot, 1.5 slots per flow;
    /// overrides the config file).
    #[arg(long)]
    pub flow_memory_mib: Option<u32>,
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
    /// Install the enforcement policies the collector pushes (like `[ebpf] enforce =
    /// true`): XDP drops what a drop rule matches on lines in enforce mode.
    #[arg(long)]
    pub enforce: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Stop by itself after this many seconds (flushing everything, as on SIGINT).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Become this user once capture is set up (overrides probe.user): no uid 0, no
    /// capability left while it runs.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
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
    if let Some(t) = args.tunnels {
        c.ebpf.tunnels = t;
    }
    if let Some(t) = args.timestamps {
        c.ebpf.timestamps = t;
    }
    if let Some(n) = args.flow_entries {
        anyhow::ensure!(n >= 64, "--flow-entries must be at least 64");
        c.ebpf.flow_entries = n;
    }
    if let Some(m) = args.flow_memory_mib {
        anyhow::ensure!(
            (1..=65_536).contains(&m),
            "--flow-memory-mib must be 1..=65536"
        );
        c.ebpf.flow_entries = tidegate_probe::config::flows_for_budget(m);
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
    if args.enforce {
        c.ebpf.enforce = true;
    }
    if args.no_egress {
        c.ebpf.egress = false;
    }
    if let Some(a) = args.metrics_listen {
        c.metrics_listen = Some(a);
    }
    if let Some(u) = &args.user {
        tidegate_probe::privileges::lookup(u).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
        c.user = Some(u.clone());
    }
    if let Some(id) = &args.probe_id {
        if let Some(problem) = tidegate_wire::probe_id_problem(id) {
            anyhow::bail!("--probe-id: {problem}");
        }
        c.id = id.clone();
    }
    c.collector = if args.json {
        if c.collector.is_some() {
            tracing::info!("--json: records go to stdout; the [collector] section is not used");
        }
        None
    } else {
        args.collector.resolve(c.collector.as_ref())?
    };
    Ok(c)
}

/// Capture counters for health snapshots (and, after a run that did not stop cleanly,
/// `previous_run_unexported_packets`). `run_loop` may hold the metrics lock while it
/// exports, so this never waits for it: when busy, the last values are reported.
fn health_counters(metrics: &Arc<Mutex<ProbeMetrics>>, lost: Option<u64>) -> HealthCounters {
    let metrics = metrics.clone();
    let last = Mutex::new(Vec::new());
    Arc::new(move || {
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(m) = metrics.try_lock() {
            let t = m.totals();
            *last = Counter::ALL
                .iter()
                .map(|c| (c.name().to_string(), t[*c as usize]))
                .chain(lost.map(|n| ("previous_run_unexported_packets".to_string(), n)))
                .collect();
        }
        last.clone()
    })
}

/// Says what the previous run lost by not stopping cleanly.
fn report_previous_loss(l: &PreviousLoss, metrics: &Arc<Mutex<ProbeMetrics>>) {
    metrics
        .lock()
        .expect("metrics lock")
        .previous_run_unexported
        .set(i64::try_from(l.packets).unwrap_or(i64::MAX));
    let at = tidegate_wire::record::rfc3339_ns::format(l.at_ns);
    tracing::warn!(
        packets = l.packets,
        checkpoint = %at,
        "the previous run did not stop cleanly (SIGKILL, crash or power loss): it had counted \
         packets it never exported, as of its last checkpoint (packets after it are not \
         known); reported in previous_run_unexported_packets (metrics and health reports)"
    );
}

/// Runs `run`.
/// Drops every privilege once capture is set up (see [`tidegate_probe::privileges`]);
/// without a user, says that the probe keeps running as root.
fn become_user(user: Option<&str>, writable: &[&std::path::Path]) -> anyhow::Result<()> {
    match user {
        Some(u) => {
            let (uid, gid) = tidegate_probe::privileges::drop_to(u, writable)
                .context("dropping privileges after attaching")?;
            tracing::info!(
                user = u,
                uid,
                gid,
                "privileges dropped: running without uid 0 or any capability"
            );
        }
        // SAFETY: getuid cannot fail.
        None if unsafe { libc::getuid() } == 0 => tracing::warn!(
            "running as root for as long as the probe runs: set probe.user (or --user) to \
             drop every privilege once capture is set up"
        ),
        None => {}
    }
    Ok(())
}

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
    let mut enforcer = None;
    let mut src: Box<dyn tidegate_probe::live::LiveSource> = match cfg.backend {
        Backend::Ebpf => {
            let mut cap = EbpfCapture::load(cfg.ebpf)?;
            for l in &cfg.lines {
                let r = cap.attach(&l.iface)?;
                lines.insert(r.ifindex, l.name.clone());
            }
            if cfg.ebpf.enforce {
                anyhow::ensure!(
                    cfg.collector.is_some(),
                    "[ebpf] enforce = true needs a [collector]: policies come from it"
                );
                let mut e = cap.take_enforcer().expect("taken once");
                let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
                for (ix, name) in &lines {
                    by_name.entry(name.clone()).or_default().push(*ix);
                }
                e.set_lines(by_name);
                enforcer = Some(SharedEnforcer::new(e));
                tracing::info!(
                    "enforcement enabled: policies pushed by the collector are installed in XDP (fail-open: stopping the probe lets every packet pass)"
                );
            }
            Box::new(cap)
        }
        Backend::Afpacket => {
            let cap = tidegate_probe::capture::afpacket::AfPacketCapture::open(
                &cfg.lines,
                cfg.ebpf.tunnels.parser(),
            )?;
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
        enforcer: enforcer.clone(),
        records_max: tidegate_probe::table::RECORDS_MAX,
    };
    match &cfg.collector {
        Some(c) => {
            let names = cfg.lines.iter().map(|l| l.name.clone()).collect();
            let export_metrics = ExportMetrics::new();
            export_metrics.register(metrics.lock().expect("metrics lock").registry_mut());
            let offline = cfg.ebpf.enforce_max_offline_secs.map(Duration::from_secs);
            let exporter =
                CollectorArgs::start(c, &cfg.id, names, export_metrics, enforcer, offline)?;
            // The spool is ours (locked) from here: read what a killed run left behind.
            let (ledger, lost) = Ledger::open(&c.spool_dir)
                .with_context(|| format!("export ledger in {}", c.spool_dir.display()))?;
            if let Some(l) = lost {
                report_previous_loss(&l, &metrics);
            }
            let mut exporter =
                exporter.with_health_counters(health_counters(&metrics, lost.map(|l| l.packets)));
            become_user(cfg.user.as_deref(), &[c.spool_dir.as_path()])?;
            let ran = run_loop(
                src.as_mut(),
                &mut exporter,
                &metrics,
                &stop,
                &opts,
                Some(ledger),
            );
            // Deliver what is left (or keep it spooled) even when the loop failed.
            let report = exporter.finish(args.collector.drain_timeout)?;
            ran?;
            if !report.delivered() {
                tracing::warn!(
                    batches = report.left_batches,
                    spool = %report.spool_dir.display(),
                    "unacknowledged batches stay spooled for the next start"
                );
            }
        }
        None => {
            let mut exporter = JsonLines::new(std::io::stdout().lock());
            if !args.json {
                tracing::info!("no collector configured: flow records go to stdout as JSON lines");
            }
            become_user(cfg.user.as_deref(), &[])?;
            run_loop(src.as_mut(), &mut exporter, &metrics, &stop, &opts, None)?;
        }
    }
    Ok(())
}
