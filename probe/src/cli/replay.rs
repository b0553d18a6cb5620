//! `tidegate-probe replay FILE... [--json | --collector HOST:PORT ...]`: capture files
//! through the flow pipeline.
//!
//! Records go to stdout as JSON lines, or with `--collector` to the collector (through
//! the spool; the command fails if the collector has not acknowledged everything within
//! `--drain-timeout`, leaving the rest spooled). A per-file counter summary goes to the
//! log (stderr). Files that cannot be read completely are reported after every record
//! has been written, one `error:` line per file, and make the command exit non-zero.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tidegate_probe::capture::pcap::{FileReport, Replay};
use tidegate_probe::config::ProbeConfig;
use tidegate_probe::export::{
    Exporter, JsonLines,
    collector::{CollectorExporter, ExportMetrics},
};
use tidegate_probe::table::Timeouts;

use super::run::CollectorArgs;

/// Arguments of `replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// pcap or pcapng files (the format is detected from the content, not the name).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print flow records as JSON lines on stdout (also the default without
    /// --collector).
    #[arg(long, conflicts_with = "collector")]
    pub json: bool,
    /// Probe id sent to the collector; must match --tls-cert [default: the host name].
    #[arg(long, value_name = "ID")]
    pub probe_id: Option<String>,
    #[command(flatten)]
    pub collector: CollectorArgs,
    /// Export a flow that has been open this long (seconds, event time).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub active_timeout: Duration,
    /// Export a flow that saw no packet for this long (seconds, event time).
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = parse_secs)]
    pub idle_timeout: Duration,
    /// Line name carried by the records (default: each file's name without extension).
    /// Files with the same line name share one flow table.
    #[arg(long, value_name = "NAME")]
    pub line: Option<String>,
    /// Key tunnelled packets (GRE, VXLAN, GTP-U, IP-in-IP) by their outermost IP header
    /// or by the one inside the tunnel.
    #[arg(long, value_enum, default_value = "outer")]
    pub tunnels: tidegate_probe::capture::TunnelMode,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("{s:?}: must be more than 0 seconds"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("{s:?}: {e}"))
}

fn default_line(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "replay".to_string())
}

fn progress_bar(path: &Path) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(path.display().to_string());
    pb
}

fn log_report(r: &FileReport) {
    // A file that could not even be opened gets only its error line.
    let Some(format) = r.format else { return };
    tracing::info!(
        file = %r.path.display(),
        line = %r.line,
        %format,
        bytes = r.bytes_read,
        complete = r.error.is_none(),
        "replayed: {}",
        r.stats
    );
}

/// Where the records go.
enum Out {
    Json(JsonLines<io::StdoutLock<'static>>),
    Collector(Box<CollectorExporter>),
}

impl Out {
    fn exporter(&mut self) -> &mut dyn Exporter {
        match self {
            Out::Json(j) => j,
            Out::Collector(c) => c.as_mut(),
        }
    }
}

/// Runs `replay`.
pub fn main(args: Args) -> anyhow::Result<()> {
    let timeouts = Timeouts {
        active: args.active_timeout,
        idle: args.idle_timeout,
    };
    let mut out = match args.collector.resolve(None)? {
        None => Out::Json(JsonLines::new(io::stdout().lock())),
        Some(c) => {
            let probe_id = args
                .probe_id
                .clone()
                .unwrap_or_else(|| ProbeConfig::default().id);
            let mut lines: Vec<String> = args
                .files
                .iter()
                .map(|p| args.line.clone().unwrap_or_else(|| default_line(p)))
                .collect();
            lines.dedup();
            Out::Collector(Box::new(CollectorArgs::start(
                &c,
                &probe_id,
                lines,
                ExportMetrics::new(),
                None,
                None,
            )?))
        }
    };
    let result = replay_all(&args, timeouts, &mut out);
    if let Out::Collector(c) = out {
        // Deliver (or keep spooled) whatever was exported, even after a failure.
        let report = c.finish(args.collector.drain_timeout)?;
        result?;
        anyhow::ensure!(
            report.delivered(),
            "the collector did not acknowledge {} batches ({} bytes) within {:?}; they stay in {} and are sent by the next run using that spool",
            report.left_batches,
            report.left_bytes,
            args.collector.drain_timeout,
            report.spool_dir.display()
        );
        return Ok(());
    }
    result
}

fn replay_all(args: &Args, timeouts: Timeouts, out: &mut Out) -> anyhow::Result<()> {
    let out = out.exporter();
    let mut replay = Replay::new(timeouts);
    replay.set_tunnels(args.tunnels.parser());
    let mut failures = Vec::new();
    for path in &args.files {
        let line = args.line.clone().unwrap_or_else(|| default_line(path));
        let pb = progress_bar(path);
        let bar = pb.clone();
        replay.on_progress(move |p| {
            if p.total != 0 {
                bar.set_length(p.total);
            }
            bar.set_position(p.bytes);
        });
        let report = replay
            .replay_file(path, &line, out)
            .context("writing flow records")?;
        pb.finish_and_clear();
        log_report(&report);
        if let Some(e) = report.error {
            failures.push(e);
        }
    }
    let total = replay.finish(out).context("writing flow records")?;
    out.flush().context("writing flow records")?;
    if args.files.len() > 1 {
        tracing::info!(
            files = args.files.len(),
            records = total.records,
            "total: {total}"
        );
    } else if failures.is_empty() {
        tracing::info!(records = total.records, "done");
    }
    // One line per file that could not be read completely, after every record is out.
    let last = failures.pop();
    for e in &failures {
        eprintln!("tidegate-probe: error: {e}");
    }
    match last {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}
