//! The evidence log: appending 1 M entries (entries/s, in detection-sized steps of one
//! fsync per step and one fsync per entry), signing a checkpoint, proving an entry,
//! reopening and verifying the whole log (goal: verify 1 M entries in under 1 s), and
//! the collector end to end with the log off and on, in one run.
//!
//! `cargo build --release -p tidegate-collector -p tidegate-bench &&
//!  target/release/evidence [--entries N] [--rows N] [--smoke]`

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use clap::Parser;
use serde_json::json;
use tidegate_bench::aggregate::workload;
use tidegate_evidence::{EvidenceLog, SigningKeyFile, bundle::Bundle, verify_dir};
use tidegate_probe::export::{
    Exporter,
    collector::{CollectorExporter, ExportMetrics},
};
use tidegate_testkit::{TestClickHouse, collector::start_deployed, probe::probe_options};

#[derive(Parser)]
struct Args {
    /// Entries appended and verified.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Entries per fsync in the stepped append (a detection step's states).
    #[arg(long, default_value_t = 1_000)]
    step: u64,
    /// Flow records through the collector, log off then on.
    #[arg(long, default_value_t = 500_000)]
    rows: usize,
    /// Seconds-long run for CI (20 000 entries and rows); asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/evidence.md")]
    out: PathBuf,
}

/// An alert state as the detectors log it: ~700 bytes of canonical JSON.
fn alert(i: u64) -> serde_json::Value {
    json!({
        "id": format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "kind": "port_scan", "severity": "high", "version": i % 7,
        "src": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "dst": "192.0.2.10", "line": "hk-intl-1",
        "first_ns": 1_700_000_000_000_000_000u64 + i, "last_ns": 1_700_000_060_000_000_000u64 + i,
        "measured": 1890.4000055037366 + i as f64, "threshold": 6.0,
        "description": "one source probed 120 ports of one target within 60 s",
        "evidence": [
            {"src": "10.0.0.1", "dst": "192.0.2.10", "sport": 40000, "dport": 22, "proto": 6, "packets": 1, "bytes": 60},
            {"src": "10.0.0.1", "dst": "192.0.2.10", "sport": 40001, "dport": 23, "proto": 6, "packets": 1, "bytes": 60}
        ]
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

struct Log {
    appended: Duration,
    per_entry_fsync: (u64, Duration),
    checkpoint: Duration,
    proofs: (u64, Duration),
    bundle: Duration,
    reopen: Duration,
    verify: Duration,
    bytes: u64,
}

fn measure_log(a: &Args, dir: &Path) -> anyhow::Result<Log> {
    let key = SigningKeyFile::generate(&dir.join("evidence.key"))?.key;
    let log_dir = dir.join("log");
    let log = EvidenceLog::open(&log_dir, "bench/hub", key.clone())?;
    let t = Instant::now();
    for i in 0..a.entries {
        log.append("alert", alert(i))?;
        if (i + 1) % a.step == 0 {
            log.sync()?;
        }
    }
    log.sync()?;
    let appended = t.elapsed();
    let n_fsync = (a.entries / 100).clamp(100, 10_000);
    let t = Instant::now();
    for i in 0..n_fsync {
        log.append_durable("alert", alert(a.entries + i))?;
    }
    let per_entry_fsync = (n_fsync, t.elapsed());
    let t = Instant::now();
    log.checkpoint()?;
    let checkpoint = t.elapsed();
    let size = log.len();
    let n_proofs = 10_000;
    let t = Instant::now();
    for i in 0..n_proofs {
        let p = log.inclusion_proof((i * 7919) % size, size).expect("proof");
        std::hint::black_box(p);
    }
    let proofs = (n_proofs, t.elapsed());
    let id = alert(size / 2)["id"].as_str().expect("id").to_string();
    let t = Instant::now();
    let b = Bundle::build(&log, &id, None)?;
    let bundle = t.elapsed();
    b.verify(Some(&key.verifying_key()))
        .map_err(anyhow::Error::msg)?;
    drop(log);
    let bytes = std::fs::metadata(log_dir.join(tidegate_evidence::log::ENTRIES))?.len();
    let t = Instant::now();
    let log = EvidenceLog::open(&log_dir, "bench/hub", key.clone())?;
    let reopen = t.elapsed();
    anyhow::ensure!(log.len() == size, "reopen lost entries");
    drop(log);
    let t = Instant::now();
    let r = verify_dir(&log_dir, &key.verifying_key())?;
    let verify = t.elapsed();
    anyhow::ensure!(
        r.ok() && r.entries == size,
        "verify failed: {:?}",
        r.problems.first()
    );
    Ok(Log {
        appended,
        per_entry_fsync,
        checkpoint,
        proofs,
        bundle,
        reopen,
        verify,
        bytes,
    })
}

/// Rows/s from a probe exporter through the collector into ClickHouse (all stored),
/// with `extra` configuration; the database may already hold `base` rows.
async fn e2e(
    ch: &TestClickHouse,
    records: &[tidegate_wire::record::FlowRecord],
    dir: &Path,
    extra: &str,
) -> anyhow::Result<Duration> {
    let client = clickhouse::Client::default().with_url(ch.url());
    let count = async || -> u64 {
        client
            .query("SELECT count() FROM tidegate.flows")
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    };
    let base = count().await;
    std::fs::create_dir_all(dir)?;
    let (mut collector, certs) = start_deployed(dir, None, &ch.url(), "edge-bench", extra)?;
    let o = probe_options(
        &certs,
        "edge-bench",
        collector.addr,
        &dir.join("probe-spool"),
    );
    let recs = records.to_vec();
    let t = Instant::now();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut ex = CollectorExporter::start(o, ExportMetrics::new())?;
        for r in &recs {
            ex.export(r)?;
        }
        Ok(ex.finish(Duration::from_secs(600))?)
    })
    .await??;
    anyhow::ensure!(report.left_batches == 0, "batches left unacknowledged");
    let want = base + records.len() as u64;
    while count().await < want {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(900),
            "rows did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = t.elapsed();
    collector.stop();
    Ok(stored)
}

async fn run(a: &Args) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let l = measure_log(a, dir.path())?;

    let records = workload::synthetic(a.rows, a.rows, 3600);
    let ch = TestClickHouse::try_start_in(None)?;
    let off = e2e(&ch, &records, &dir.path().join("off"), "").await?;
    let key = dir.path().join("collector-evidence.key");
    SigningKeyFile::generate(&key)?;
    let on_extra = format!(
        "[evidence]\ndir = \"evidence\"\nkey = \"{}\"\ncheckpoint_secs = 1\n",
        key.display()
    );
    let on = e2e(&ch, &records, &dir.path().join("on"), &on_extra).await?;
    let digests = std::fs::read_to_string(dir.path().join("on/evidence/entries.jsonl"))?
        .lines()
        .filter(|l| l.contains("\"type\":\"flows_digest\""))
        .count();

    let n = a.entries as f64;
    let mut s = tidegate_bench::report::heading("Evidence log");
    writeln!(
        s,
        "{} alert-like entries ({:.0} bytes each on disk), appended in steps of {} with one fsync per step (as the detection stage does), then {} more with one fsync each.\n",
        a.entries,
        l.bytes as f64 / (a.entries + l.per_entry_fsync.0) as f64,
        a.step,
        l.per_entry_fsync.0
    )?;
    writeln!(s, "| operation | seconds | rate |")?;
    writeln!(s, "|---|---:|---:|")?;
    writeln!(
        s,
        "| append {} entries, fsync per {} | {:.2} | {:.0} entries/s |",
        a.entries,
        a.step,
        secs(l.appended),
        n / secs(l.appended)
    )?;
    writeln!(
        s,
        "| append {} entries, fsync each | {:.2} | {:.0} entries/s |",
        l.per_entry_fsync.0,
        secs(l.per_entry_fsync.1),
        l.per_entry_fsync.0 as f64 / secs(l.per_entry_fsync.1)
    )?;
    writeln!(
        s,
        "| sign a checkpoint of the whole log | {:.4} | |",
        secs(l.checkpoint)
    )?;
    writeln!(
        s,
        "| inclusion proofs ({}) | {:.3} | {:.0} proofs/s |",
        l.proofs.0,
        secs(l.proofs.1),
        l.proofs.0 as f64 / secs(l.proofs.1)
    )?;
    writeln!(
        s,
        "| bundle of one finding (scans the log for its states) | {:.3} | |",
        secs(l.bundle)
    )?;
    writeln!(
        s,
        "| reopen (re-hash and chain every entry) | {:.3} | {:.0} entries/s |",
        secs(l.reopen),
        n / secs(l.reopen)
    )?;
    writeln!(
        s,
        "| `verify` the whole log (goal < 1 s for 1 M) | {:.3} | {:.0} entries/s |",
        secs(l.verify),
        n / secs(l.verify)
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "Collector end to end, {} synthetic flow records, one probe, deployed settings (detection on), same ClickHouse, one run:\n",
        a.rows
    )?;
    writeln!(
        s,
        "| evidence log | seconds to all rows stored | rows/s | ratio |"
    )?;
    writeln!(s, "|---|---:|---:|---:|")?;
    let rate = |d: Duration| a.rows as f64 / secs(d);
    writeln!(s, "| off | {:.2} | {:.0} | 1.00 |", secs(off), rate(off))?;
    writeln!(
        s,
        "| on ({} flows digests logged) | {:.2} | {:.0} | {:.2} |",
        digests,
        secs(on),
        rate(on),
        rate(on) / rate(off)
    )?;
    Ok(s)
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.entries = a.entries.min(20_000);
        a.rows = a.rows.min(20_000);
    }
    tidegate_bench::report::run_and_publish(a.smoke, &a.out, run(&a))?;
    Ok(())
}
