//! Detection throughput: records/s through the collector's anomaly detectors
//! (`tidegate_threat::detect::Detector`, event time, default thresholds), all rules
//! together and each rule alone, on two workloads:
//! - `synthetic`: N distinct flows over an hour (the collector end-to-end workload — every
//!   record opens new per-key windows, the detectors' worst case for state);
//! - `corpus`: the real capture corpus replayed like a probe exports it, repeated until N
//!   records (attacks included, so alerts are raised and evidence kept).
//!
//! `cargo run --release -p tidegate-bench --bin detect_throughput [-- --rows N] [--smoke]`

use std::{fmt::Write as _, path::PathBuf, time::Instant};

use anyhow::Context;
use clap::Parser;
use tidegate_bench::{
    aggregate::{default_corpus, workload},
    machine::Machine,
};
use tidegate_threat::detect::{DetectConfig, Detector};
use tidegate_wire::record::FlowRecord;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "detect_throughput", version, about)]
struct Args {
    /// Records per workload.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Records per `Detector::observe_batch` call, as the collector feeds a probe's batch
    /// (the probe's default `batch_records`).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Folder of the capture corpus (`*.pcap`).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Seconds-long run for CI (20 000 rows, one run); asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Only this rule, or `all` for every rule together (for profiling; the results
    /// file is not written).
    #[arg(long)]
    only: Option<String>,
    /// Only this workload (`synthetic` or `corpus`; for profiling).
    #[arg(long)]
    workload: Option<String>,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/detect_throughput.md")]
    out: PathBuf,
}

/// The rule sets measured: every rule (as deployed), then each alone.
const RULES: [&str; 12] = [
    "port_scan",
    "host_sweep",
    "syn_flood",
    "volumetric",
    "amplification",
    "dns_tunnel",
    "icmp_tunnel",
    "exfiltration",
    "beaconing",
    "surge",
    "upload",
    "dns_names",
];

/// The default thresholds with only `only` enabled (`None`: all of them; `"before"`:
/// all but the rules that learn per-entity baselines or read DNS names — every rule as
/// deployed before them, for the cost they add).
fn config(only: Option<&str>) -> DetectConfig {
    let mut c = DetectConfig::default();
    if only == Some("before") {
        c.surge.enabled = false;
        c.upload.enabled = false;
        c.dns_names.enabled = false;
        return c;
    }
    if let Some(only) = only {
        c.port_scan.enabled = only == "port_scan";
        c.host_sweep.enabled = only == "host_sweep";
        c.syn_flood.enabled = only == "syn_flood";
        c.volumetric.enabled = only == "volumetric";
        c.amplification.enabled = only == "amplification";
        c.dns_tunnel.enabled = only == "dns_tunnel";
        c.icmp_tunnel.enabled = only == "icmp_tunnel";
        c.exfiltration.enabled = only == "exfiltration";
        c.beaconing.enabled = only == "beaconing";
        c.surge.enabled = only == "surge";
        c.upload.enabled = only == "upload";
        c.dns_names.enabled = only == "dns_names";
    }
    c
}

struct Measure {
    secs: f64,
    updates: usize,
    alerts: usize,
}

/// Feeds every record (`batch` at a time, or one by one through `observe` when `batch` is
/// 1), then closes every window; the median of `runs` timings.
fn measure(
    cfg: &DetectConfig,
    records: &[FlowRecord],
    batch: usize,
    runs: usize,
) -> anyhow::Result<Measure> {
    let mut times = Vec::new();
    let (mut updates, mut alerts) = (0, 0);
    for _ in 0..runs.max(1) {
        let mut d = Detector::new(cfg.clone()).context("detector settings")?;
        let t = Instant::now();
        updates = 0;
        if batch <= 1 {
            for r in records {
                updates += d.observe(r).len();
            }
        } else {
            for chunk in records.chunks(batch) {
                updates += d.observe_batch(chunk).len();
            }
        }
        alerts = d.finish().len();
        times.push(t.elapsed().as_secs_f64());
        drop(d);
    }
    times.sort_by(f64::total_cmp);
    Ok(Measure {
        secs: times[times.len() / 2],
        updates,
        alerts,
    })
}

fn main() -> anyhow::Result<()> {
    // As the collector runs its detection (and for the same reason).
    tidegate_base::memory::no_transparent_huge_pages();
    let mut a = Args::parse();
    if a.smoke {
        a.rows = 20_000;
        a.runs = 1;
    }
    let machine = Machine::describe();
    let corpus_dir = a.corpus.clone().unwrap_or_else(default_corpus);
    let base = workload::corpus(&corpus_dir)
        .with_context(|| format!("reading the corpus in {}", corpus_dir.display()))?;
    let workloads = [
        (
            "synthetic",
            format!("{} distinct flows over 1 h", a.rows),
            workload::synthetic(a.rows, a.rows, 3600),
        ),
        (
            "corpus",
            format!(
                "{} corpus records repeated hourly to {}",
                base.len(),
                a.rows
            ),
            workload::repeat(&base, a.rows, 3600),
        ),
    ];
    let mut md = String::new();
    let _ = writeln!(md, "# Detection throughput\n");
    let _ = writeln!(
        md,
        "Records/s through `Detector::observe_batch` ({} records per call, as the collector \
         feeds a probe's batch; one row feeds `observe` record by record) and `finish` \
         (every window closed), default thresholds, one thread; median of {} runs.\n",
        a.batch, a.runs
    );
    let _ = writeln!(
        md,
        "Command: `{}`\n",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    md.push_str(&machine.markdown());
    for (name, what, records) in &workloads {
        if a.workload.as_deref().is_some_and(|w| w != *name) {
            continue;
        }
        let _ = writeln!(md, "\n## {name}: {what}\n");
        let _ = writeln!(md, "| rules | records/s | ns/record | updates | alerts |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        // (rules, records per call): every rule in batches and record by record, then
        // as before baselines and names, then each rule alone.
        let sets = [(None, a.batch), (None, 1), (Some("before"), a.batch)]
            .into_iter()
            .chain(RULES.iter().map(|r| (Some(*r), a.batch)));
        for (only, batch) in sets {
            // `--only all`: every rule together, alone.
            let want = a.only.as_deref().map(|o| (o != "all").then_some(o));
            if want.is_some_and(|w| w != only) {
                continue;
            }
            // (`--only`, or `--batch 1`: the record-by-record row would repeat another.)
            if (a.only.is_some() || a.batch <= 1) && batch != a.batch {
                continue;
            }
            let m = measure(&config(only), records, batch, a.runs)?;
            let rps = records.len() as f64 / m.secs;
            let line = format!(
                "| {} | {:.0} | {:.0} | {} | {} |",
                match only {
                    None if batch <= 1 => "**all**, record by record (`observe`)",
                    None => "**all**",
                    Some("before") =>
                        "**all but surge, upload, dns_names** (as before baselines and names)",
                    Some(r) => r,
                },
                rps,
                m.secs * 1e9 / records.len() as f64,
                m.updates,
                m.alerts
            );
            eprintln!("{name}: {line}");
            let _ = writeln!(md, "{line}");
        }
    }
    if a.smoke || a.only.is_some() || a.workload.is_some() {
        print!("{md}");
    } else {
        if let Some(dir) = a.out.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(&a.out, &md).with_context(|| format!("writing {}", a.out.display()))?;
        eprintln!("wrote {}", a.out.display());
    }
    Ok(())
}
