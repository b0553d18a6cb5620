//! Collector end to end: rows/s from a probe exporter through mutually-authenticated TLS,
//! the collector's write-ahead spool and pipeline, into ClickHouse — compared in the same
//! run with a plain insert of the same rows through the same `clickhouse` crate (the
//! storage's own limit on this machine).
//!
//! `cargo build --release -p tidegate-collector -p tidegate-bench &&
//!  target/release/collector_e2e [--rows N] [--smoke]`

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Parser;
use tidegate_bench::{aggregate::workload, procfs};
use tidegate_collector::sinks::clickhouse::{
    ClickHouseConfig, ClickHouseSink, Compression, FlowRow, SinkMetrics,
};
use tidegate_probe::export::{
    Exporter,
    collector::{CollectorExporter, ExportMetrics},
};
use tidegate_testkit::{TestClickHouse, collector::start_deployed_with, probe::probe_options};
use tidegate_wire::record::FlowRecord;

#[derive(Parser)]
struct Args {
    /// Rows (flow records) per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Records per probe batch.
    #[arg(long, default_value_t = 10_000)]
    batch_records: usize,
    /// Seconds-long run for CI (20 000 rows); asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Run the collector with live detection off (`[detect] enabled = false`), to see
    /// what the detection stage costs; by default it runs as deployed, detection on.
    #[arg(long)]
    no_detect: bool,
    /// How the collector's INSERT bodies travel to ClickHouse (`[clickhouse]
    /// compression`): `auto` (the default, as deployed: none to this host's ClickHouse),
    /// `lz4` or `none`.
    #[arg(long, default_value = "auto")]
    compression: String,
    /// Measurements, each with a fresh ClickHouse and collector; the run with the median
    /// CPU ratio is reported (CPU time per record varies from run to run on a shared
    /// machine). `--smoke` makes one.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/collector_e2e.md")]
    out: PathBuf,
}

/// One measurement.
struct Measured {
    plain: Duration,
    acked: Duration,
    stored: Duration,
    ch_cpu_plain: Duration,
    ch_cpu_e2e: Duration,
    collector_cpu: Duration,
    /// How the INSERT bodies went (`[clickhouse] compression` resolved for the server).
    sent: &'static str,
}

impl Measured {
    /// Collector CPU over ClickHouse CPU, end to end.
    fn ratio(&self) -> f64 {
        self.collector_cpu.as_secs_f64() / self.ch_cpu_e2e.as_secs_f64().max(1e-9)
    }
}

async fn measure(a: &Args, records: &[FlowRecord]) -> anyhow::Result<Measured> {
    let ch = TestClickHouse::try_start_in(None)?;
    let dir = tempfile::tempdir()?;
    let compression = match a.compression.as_str() {
        "auto" => Compression::Auto,
        "lz4" => Compression::Lz4,
        "none" => Compression::None,
        c => anyhow::bail!("--compression {c:?}: expected auto, lz4 or none"),
    };
    let sent = match compression.for_url(&ch.url()) {
        Compression::None => "uncompressed",
        _ => "LZ4-compressed",
    };
    // The collector as deployed: live detection on (its defaults).
    let (collector, certs) = start_deployed_with(dir.path(), None, &ch.url(), "edge-bench", |c| {
        if a.no_detect {
            c.extra = "[detect]\nenabled = false\n".into();
        }
        c.clickhouse_extra = format!("compression = \"{}\"\n", a.compression);
    })?;
    let client = clickhouse::Client::default().with_url(ch.url());
    let count = async |table: &str| -> u64 {
        client
            .query(&format!("SELECT count() FROM {table}"))
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    };

    // Plain insert of the same rows into the same schema (`flows` with its rollup views),
    // migrated into a database of its own.
    let plain_db = ClickHouseSink::connect(
        ClickHouseConfig {
            url: ch.url(),
            database: "tidegate_plain".into(),
            retention_days: 0,
            ..Default::default()
        },
        SinkMetrics::default(),
    )
    .await?;
    plain_db.migrate().await?;
    let plain_client = client.clone().with_database("tidegate_plain");
    let ch_pid = ch
        .pid()
        .ok_or_else(|| anyhow::anyhow!("ClickHouse's pid file"))?;
    let collector_pid = collector
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the collector's pid"))?;
    let cpu = |pid: u32| procfs::process_cpu_time(pid).unwrap_or_default();
    let ch_cpu0 = cpu(ch_pid);
    let t = Instant::now();
    for (i, chunk) in records.chunks(100_000).enumerate() {
        let mut ins = plain_client.insert::<FlowRow>("flows").await?;
        for r in chunk {
            // The same rows the sink writes, without its batching, tokens or retries.
            ins.write(
                &FlowRow::new("edge-bench", 0, i as u64, r, None).map_err(anyhow::Error::msg)?,
            )
            .await?;
        }
        ins.end().await?;
    }
    let plain = t.elapsed();
    let ch_cpu_plain = cpu(ch_pid) - ch_cpu0;
    anyhow::ensure!(
        count("tidegate_plain.flows").await == a.rows as u64,
        "plain insert lost rows"
    );

    // End to end: probe exporter -> TLS -> collector -> ClickHouse.
    let mut o = probe_options(
        &certs,
        "edge-bench",
        collector.addr,
        &dir.path().join("probe-spool"),
    );
    o.batch_records = a.batch_records;
    let (ch_cpu1, collector_cpu1) = (cpu(ch_pid), cpu(collector_pid));
    let t = Instant::now();
    let recs = records.to_vec();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut ex = CollectorExporter::start(o, ExportMetrics::new())?;
        for r in &recs {
            ex.export(r)?;
        }
        Ok(ex.finish(Duration::from_secs(600))?)
    })
    .await??;
    anyhow::ensure!(report.left_batches == 0, "batches left unacknowledged");
    let acked = t.elapsed();
    // Rows must keep arriving: fail after 120 s without progress (not 15 min of waiting).
    let (mut seen, mut progress_at) = (0u64, Instant::now());
    loop {
        let n = count("tidegate.flows").await;
        if n >= a.rows as u64 {
            break;
        }
        if n > seen {
            (seen, progress_at) = (n, Instant::now());
        }
        anyhow::ensure!(
            progress_at.elapsed() < Duration::from_secs(120)
                && t.elapsed() < Duration::from_secs(900),
            "rows did not arrive: {n} of {} in ClickHouse, no progress for {:.0} s",
            a.rows,
            progress_at.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = t.elapsed();
    let (ch_cpu_e2e, collector_cpu) = (cpu(ch_pid) - ch_cpu1, cpu(collector_pid) - collector_cpu1);
    anyhow::ensure!(
        count("tidegate.flows").await == a.rows as u64,
        "row count differs after arrival"
    );
    drop(collector);
    Ok(Measured {
        plain,
        acked,
        stored,
        ch_cpu_plain,
        ch_cpu_e2e,
        collector_cpu,
        sent,
    })
}

async fn run(a: &Args) -> anyhow::Result<String> {
    let records = workload::synthetic(a.rows, a.rows, 3600);
    let mut runs = Vec::new();
    for i in 0..a.repeats.max(1) {
        let m = measure(a, &records).await?;
        eprintln!("collector_e2e run {}: CPU ratio {:.2}", i + 1, m.ratio());
        runs.push(m);
    }
    runs.sort_by(|x, y| x.ratio().total_cmp(&y.ratio()));
    let ratios: Vec<String> = runs.iter().map(|m| format!("{:.2}", m.ratio())).collect();
    let Measured {
        plain,
        acked,
        stored,
        ch_cpu_plain,
        ch_cpu_e2e,
        collector_cpu,
        sent,
    } = runs.swap_remove(runs.len() / 2);

    let rate = |d: Duration| a.rows as f64 / d.as_secs_f64();
    let mut s =
        tidegate_bench::report::heading("Collector end to end vs a plain ClickHouse insert");
    writeln!(
        s,
        "{} synthetic flow records ({} distinct keys over one hour), one probe, batches of {} records; local ClickHouse 26.9 (chdb-core) on the same machine; the collector's INSERT bodies: {sent} (`[clickhouse] compression = \"{}\"`).\n",
        a.rows, a.rows, a.batch_records, a.compression
    )?;
    writeln!(
        s,
        "{} run(s), each with a fresh ClickHouse and collector; every figure below is from the run with the median collector / ClickHouse CPU ratio (the ratios, sorted: {}).\n",
        ratios.len(),
        ratios.join(", ")
    )?;
    writeln!(s, "| path | seconds | rows/s | ratio to plain |")?;
    writeln!(s, "|---|---:|---:|---:|")?;
    writeln!(
        s,
        "| plain `clickhouse` crate insert into `flows` with its rollup views (100 000 rows per INSERT) | {:.2} | {:.0} | 1.00 |",
        plain.as_secs_f64(),
        rate(plain)
    )?;
    writeln!(
        s,
        "| probe → TLS → collector spool (all acknowledged) | {:.2} | {:.0} | {:.2} |",
        acked.as_secs_f64(),
        rate(acked),
        rate(acked) / rate(plain)
    )?;
    writeln!(
        s,
        "| probe → TLS → collector → ClickHouse `flows` (all rows stored; live detection {}) | {:.2} | {:.0} | {:.2} (target ≥ 0.9) |",
        if a.no_detect { "off" } else { "on" },
        stored.as_secs_f64(),
        rate(stored),
        rate(stored) / rate(plain)
    )?;
    let per = |d: Duration| d.as_secs_f64() * 1e9 / a.rows as f64;
    writeln!(
        s,
        "\nCPU time per record (user + system, from `/proc/<pid>/stat`; the meaningful ratio on any machine):\n"
    )?;
    writeln!(s, "| process | CPU ns per record | ratio to ClickHouse's |")?;
    writeln!(s, "|---|---:|---:|")?;
    writeln!(
        s,
        "| ClickHouse, plain insert of the rows | {:.0} | |",
        per(ch_cpu_plain)
    )?;
    writeln!(
        s,
        "| ClickHouse, end to end (the collector's inserts) | {:.0} | 1.00 |",
        per(ch_cpu_e2e)
    )?;
    writeln!(
        s,
        "| collector (TLS, spool, aggregation, pipeline{}) | {:.0} | {:.2} (target ≤ {}) |",
        if a.no_detect { "" } else { ", detection" },
        per(collector_cpu),
        per(collector_cpu) / per(ch_cpu_e2e).max(1.0),
        if a.no_detect { "0.25" } else { "0.5" }
    )?;
    Ok(s)
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.rows = a.rows.min(20_000);
        a.repeats = 1;
    }
    tidegate_bench::report::run_and_publish(a.smoke, &a.out, run(&a))?;
    Ok(())
}
