//! Scale-out on a ClickHouse cluster, in one run: total rows/s through the collector's
//! sink into 1, 2 and 3 shards (a `Distributed` table over `MergeTree` shards on loopback,
//! the schema `[clickhouse.cluster]` builds), and collector records/s from probes through
//! one collector and through two, into the 3-shard cluster. CPU time per row of every
//! process is reported beside the rates: on a machine with fewer cores than servers the
//! rates show the overhead of sharding, the CPU columns what each part costs.
//!
//! `cargo build --release -p tidegate-collector -p tidegate-bench &&
//!  target/release/cluster_scaleout [--rows N] [--smoke]`

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Parser;
use tidegate_bench::{aggregate::workload, procfs};
use tidegate_collector::sinks::clickhouse::{
    ClickHouseConfig, ClickHouseSink, GroupPart, SinkMetrics,
};
use tidegate_probe::export::{
    Exporter,
    collector::{CollectorExporter, ExportMetrics},
};
use tidegate_testkit::{
    Certs, CollectorProcess,
    clickhouse::TestCluster,
    collector::{CollectorConfig, launch_ready},
    free_port,
    probe::probe_options,
};
use tidegate_wire::record::FlowRecord;

#[derive(Parser)]
struct Args {
    /// Rows (flow records) per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Records per probe batch (and per INSERT of the sink measurement).
    #[arg(long, default_value_t = 10_000)]
    batch_records: usize,
    /// Seconds-long run for CI (20 000 rows); asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/cluster_scaleout.md")]
    out: PathBuf,
}

fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter()
        .map(|p| procfs::process_cpu_time(*p).unwrap_or_default())
        .sum()
}

fn node_pids(cl: &TestCluster) -> anyhow::Result<Vec<u32>> {
    cl.nodes
        .iter()
        .map(|n| {
            n.pid()
                .ok_or_else(|| anyhow::anyhow!("a ClickHouse node's pid file"))
        })
        .collect()
}

async fn count(cl: &TestCluster) -> u64 {
    cl.nodes[0]
        .client()
        .query("SELECT count() FROM tidegate.flows")
        .fetch_one::<u64>()
        .await
        .unwrap_or(0)
}

/// Waits until the cluster holds `rows` flows; fails after 120 s without progress.
async fn arrived(cl: &TestCluster, rows: u64, started: Instant) -> anyhow::Result<Duration> {
    let (mut seen, mut progress_at) = (0u64, Instant::now());
    loop {
        let n = count(cl).await;
        if n >= rows {
            anyhow::ensure!(n == rows, "{n} rows stored, {rows} sent");
            return Ok(started.elapsed());
        }
        if n > seen {
            (seen, progress_at) = (n, Instant::now());
        }
        anyhow::ensure!(
            progress_at.elapsed() < Duration::from_secs(120),
            "rows did not arrive: {n} of {rows}, no progress for 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct ShardRun {
    shards: usize,
    batch: usize,
    secs: f64,
    ch_cpu: Duration,
    spread: Vec<u64>,
}

/// The sink (as the collector's pipeline drives it, `dedup = "batch"`) inserting
/// `records` through node 1 into a cluster of `shards`.
async fn into_shards(
    shards: usize,
    records: &[FlowRecord],
    batch: usize,
) -> anyhow::Result<ShardRun> {
    let cl = TestCluster::start(&format!("bench{shards}"), shards);
    let cfg = ClickHouseConfig {
        insert_timeout: Duration::from_secs(120),
        ..cl.sink_config(0, "tidegate")
    };
    let sink = ClickHouseSink::connect(cfg, SinkMetrics::default()).await?;
    sink.migrate().await?;
    let pids = node_pids(&cl)?;
    let cpu0 = cpu_of(&pids);
    let t = Instant::now();
    let batches: Vec<&[FlowRecord]> = records.chunks(batch).collect();
    // Groups of up to 10 batches, as the pipeline forms them from what is ready.
    for (g, group) in batches.chunks(10).enumerate() {
        let parts: Vec<GroupPart<'_>> = group
            .iter()
            .enumerate()
            .map(|(i, r)| ("edge-bench", 1, (g * 10 + i) as u64, *r, &[][..]))
            .collect();
        sink.insert_group("bench", 0, g as u64, &parts).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    let ch_cpu = cpu_of(&pids) - cpu0;
    anyhow::ensure!(count(&cl).await == records.len() as u64, "rows lost");
    let spread = cl.shard_rows("tidegate").await;
    Ok(ShardRun {
        shards,
        batch,
        secs,
        ch_cpu,
        spread,
    })
}

struct CollectorRun {
    collectors: usize,
    secs: f64,
    collector_cpu: Duration,
    ch_cpu: Duration,
}

/// Two probes sending half of `records` each, through `collectors` collectors (1: both to
/// the same one; 2: one each), into a 3-shard cluster; time until every row is stored.
async fn through_collectors(
    collectors: usize,
    records: &[FlowRecord],
    batch: usize,
) -> anyhow::Result<CollectorRun> {
    let cl = TestCluster::start(&format!("coll{collectors}"), 3);
    let dir = tempfile::tempdir()?;
    let probes = ["edge-a", "edge-b"];
    let certs = Certs::generate(&dir.path().join("certs"), &probes);
    let cluster = cl.collector_toml();
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..collectors {
        let d = dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(&d)?;
        // As deployed (default spool and aggregation), each through its own node.
        let mut cfg = CollectorConfig::new(&d, &certs, free_port(), &cl.urls()[i]);
        cfg.small = false;
        cfg.clickhouse_extra = cluster.clone();
        procs.push(launch_ready(&cfg, &d, None)?);
        addrs.push(cfg.addr());
    }
    let collector_pids: Vec<u32> = procs.iter().filter_map(CollectorProcess::pid).collect();
    let ch_pids = node_pids(&cl)?;
    let (cc0, ch0) = (cpu_of(&collector_pids), cpu_of(&ch_pids));
    let t = Instant::now();
    let halves: Vec<Vec<FlowRecord>> = records
        .chunks(records.len().div_ceil(2))
        .map(<[FlowRecord]>::to_vec)
        .collect();
    let mut senders = Vec::new();
    for (i, half) in halves.into_iter().enumerate() {
        let mut o = probe_options(
            &certs,
            probes[i],
            addrs[i % collectors],
            &dir.path().join(format!("spool-{i}")),
        );
        o.batch_records = batch;
        senders.push(tokio::task::spawn_blocking(
            move || -> anyhow::Result<()> {
                let mut ex = CollectorExporter::start(o, ExportMetrics::new())?;
                for r in &half {
                    ex.export(r)?;
                }
                let report = ex.finish(Duration::from_secs(600))?;
                anyhow::ensure!(report.delivered(), "batches left unacknowledged");
                Ok(())
            },
        ));
    }
    for s in senders {
        s.await??;
    }
    let secs = arrived(&cl, records.len() as u64, t).await?.as_secs_f64();
    let (collector_cpu, ch_cpu) = (cpu_of(&collector_pids) - cc0, cpu_of(&ch_pids) - ch0);
    for mut p in procs {
        p.stop_within(Duration::from_secs(60));
    }
    Ok(CollectorRun {
        collectors,
        secs,
        collector_cpu,
        ch_cpu,
    })
}

async fn run(a: &Args) -> anyhow::Result<String> {
    let records = workload::synthetic(a.rows, a.rows, 3600);
    // Each batch is one INSERT and becomes one part on every shard it reaches: the batch
    // size is measured too (the probe's `batch_records`).
    let mut shard_runs = Vec::new();
    for batch in [a.batch_records, a.batch_records * 5] {
        for shards in 1..=3 {
            eprintln!("cluster_scaleout: sink into {shards} shard(s), batches of {batch}");
            shard_runs.push(into_shards(shards, &records, batch).await?);
        }
    }
    let mut collector_runs = Vec::new();
    for collectors in 1..=2 {
        eprintln!("cluster_scaleout: {collectors} collector(s) into 3 shards");
        collector_runs.push(through_collectors(collectors, &records, a.batch_records).await?);
    }

    let rows = a.rows as f64;
    let per = |d: Duration| d.as_secs_f64() * 1e9 / rows;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut s = tidegate_bench::report::heading("Scale-out: shards and collectors");
    writeln!(
        s,
        "{} synthetic flow records ({} distinct keys over one hour), batches of {} records. \
         Every ClickHouse node is a local ClickHouse 26.9 (chdb-core) on this machine, a shard of \
         one replica (this build has no Keeper: no replication), `Distributed` tables over native \
         TCP on loopback, inserts synchronous to every shard (`distributed_foreground_insert`), \
         one INSERT per probe batch with its batch token (`dedup = \"batch\"`, 4 in flight).\n",
        a.rows, a.rows, a.batch_records
    )?;
    writeln!(
        s,
        "**This machine's limit:** {cores} logical CPUs shared by every ClickHouse node, every \
         collector and the probes. More shards or collectors here add processes, not cores, so \
         the rates cannot grow with them; they show what sharding and a second collector cost, \
         and the CPU per row shows where the work goes. On real hardware each node and \
         collector has its own cores and the CPU columns divide by the servers.\n"
    )?;
    writeln!(s, "#### The collector's sink into 1, 2 and 3 shards\n")?;
    writeln!(
        s,
        "| records per batch (= per INSERT) | shards | seconds | rows/s | ratio to 1 shard | ClickHouse CPU ns per row (all nodes) | rows per shard |"
    )?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|---|")?;
    let mut base = 0.0;
    for r in &shard_runs {
        if r.shards == 1 {
            base = rows / r.secs;
        }
        writeln!(
            s,
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {} |",
            r.batch,
            r.shards,
            r.secs,
            rows / r.secs,
            rows / r.secs / base,
            per(r.ch_cpu),
            r.spread
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" / ")
        )?;
    }
    writeln!(
        s,
        "\nEvery INSERT makes one part per shard it reaches (≈ 40 columns, plus one part in each \
         of the two rollups), so the servers' CPU per row grows with the shards when batches are \
         small and less when they are large: probes feeding a cluster should seal large batches \
         (`[collector] batch_records`).\n"
    )?;
    writeln!(
        s,
        "#### Probes → collectors → 3 shards (two probes; with 2 collectors one probe each)\n"
    )?;
    writeln!(
        s,
        "| collectors | seconds to all stored | records/s | ratio to 1 collector | collector CPU ns per record (all) | ClickHouse CPU ns per row (all nodes) |"
    )?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|")?;
    let base = rows / collector_runs[0].secs;
    for r in &collector_runs {
        writeln!(
            s,
            "| {} | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} |",
            r.collectors,
            r.secs,
            rows / r.secs,
            rows / r.secs / base,
            per(r.collector_cpu),
            per(r.ch_cpu)
        )?;
    }
    Ok(s)
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.rows = a.rows.min(20_000);
        a.batch_records = a.batch_records.min(2_000);
    }
    tidegate_bench::report::run_and_publish(a.smoke, &a.out, run(&a))?;
    Ok(())
}
