//! Flow-table scaling: cost and memory as concurrent flows grow.
//!
//! * Probe (eBPF): tidegate's XDP program on a flow table holding 1K, 10K, 100K, 1M flows
//!   (sized to the next power of two, as `flow_entries` would be), via
//!   BPF_PROG_TEST_RUN: every flow is created by one test run over all of them, then
//!   (a) a sample of the flows' frames, in scattered order, is run once each, one
//!   syscall per packet (the method of earlier reports), and (b) one test run goes over
//!   every flow in scattered order; the return-only XDP program (for (b) with the same
//!   address rewrite) is the baseline. Memory = the flow table's `memlock` from
//!   `/proc/self/fdinfo`.
//! * Collector (aggregation shards): 1K … 10M distinct flows, each point in a fresh
//!   child process (so freed memory of one point never hides the growth of the next):
//!   RSS growth per held flow and records/s of inserting one record per flow, then
//!   records/s of max(2M, K) records over the K flows (merges).
//!
//! `target/release/scaling [--smoke] [--out FILE]`

use std::{fmt::Write as _, net::Ipv4Addr, path::PathBuf, process::Command, time::Instant};

use anyhow::Context;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use clap::{Parser, Subcommand};
use tidegate_bench::{
    aggregate::{median_throughput, memory, si, workload},
    machine::Machine,
    numbers::thousands,
    procfs::{cpu_time, release_free_memory},
    xdp::{ManyFlows, load_for_test_runs, many_flows_frame},
};
use tidegate_common::maps::{
    PROG_XDP, PROG_XDP_BASELINE, PROG_XDP_BENCH_FLOWS, PROG_XDP_BENCH_FLOWS_BASELINE,
};

#[derive(Parser)]
#[command(name = "scaling", about = "Cost and memory as concurrent flows grow")]
struct Args {
    #[command(subcommand)]
    point: Option<Point>,
    /// Small sizes (probe 1K–10K flows, collector 1K–100K); prints the report, writes a
    /// file only with --out.
    #[arg(long)]
    smoke: bool,
    /// Frames measured per probe point (a sample of the point's flows).
    #[arg(long, default_value_t = 200_000)]
    sample: usize,
    /// Aggregation shards on the collector side [default: logical CPUs].
    #[arg(long)]
    shards: Option<usize>,
    /// Measure the probe points only (prints the report; writes a file only with --out).
    #[arg(long)]
    probe_only: bool,
    /// Markdown results file [full run default: bench/results/scaling.md].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Point {
    /// (internal) One collector point in this fresh process; prints one JSON line.
    CollectorPoint {
        #[arg(long)]
        keys: usize,
        #[arg(long)]
        shards: usize,
    },
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProbePoint {
    flows: u64,
    map_entries: u32,
    memlock: u64,
    base_ns: f64,
    tg_ns: f64,
    sampled: usize,
    fill_s: f64,
    /// One test run over every flow: baseline (rewrite + return) and tidegate, ns/run.
    many_base_ns: f64,
    many_tg_ns: f64,
    /// Flows of the fill that found no slot in their window (ring-buffer fallback).
    fallback: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CollectorPoint {
    keys: usize,
    shards: usize,
    flows_held: u64,
    rss_before: u64,
    rss_after: u64,
    insert_s: f64,
    insert_cpu_s: f64,
    merge_records: u64,
    merge_s: f64,
    merge_cpu_s: f64,
    merge_processed: u64,
}

/// IPv4/UDP frame of flow `i` < 2^24: [`many_flows_frame`] with source address
/// `10.x.y.z` = i (the flow the benchmark program makes of run `j` with `i = j × stride
/// mod N`), 60 bytes.
fn frame(i: u32) -> Vec<u8> {
    let mut f = many_flows_frame();
    f[26..30].copy_from_slice(&Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff)).octets());
    f
}

fn memlock_of(map_type: u32, max_entries: u32) -> Option<u64> {
    for e in std::fs::read_dir("/proc/self/fdinfo").ok()?.flatten() {
        let Ok(t) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if field("map_type:") == Some(map_type as u64)
            && field("max_entries:") == Some(max_entries as u64)
        {
            return field("memlock:");
        }
    }
    None
}

fn run_once(p: &Xdp, f: &[u8], out: &mut [u8]) -> anyhow::Result<u64> {
    let r = p.test_run(TestRunOptions {
        data_in: Some(f),
        data_out: Some(out),
        repeat: 1,
        ..TestRunOptions::new()
    })?;
    Ok(r.duration.as_nanos() as u64)
}

fn probe_point(n: u32, sample: usize) -> anyhow::Result<ProbePoint> {
    let mut ebpf = load_for_test_runs(n)?;
    let entries = tidegate_common::slot::slots_for_flows(n);
    // BPF_MAP_TYPE_ARRAY = 2.
    let memlock = memlock_of(2, entries).unwrap_or(0);
    let mut mf = ManyFlows::take(&mut ebpf)?;
    let mut out = vec![0u8; 2048];
    let prog =
        |name| -> anyhow::Result<&Xdp> { Ok(ebpf.program(name).context("program")?.try_into()?) };
    let (tg, base) = (prog(PROG_XDP)?, prog(PROG_XDP_BASELINE)?);
    let (many_tg, many_base) = (
        prog(PROG_XDP_BENCH_FLOWS)?,
        prog(PROG_XDP_BENCH_FLOWS_BASELINE)?,
    );
    let t0 = Instant::now();
    mf.run(many_tg, &many_flows_frame(), n as u64, n, &mut out)?;
    let fill_s = t0.elapsed().as_secs_f64();
    // Flows that found no slot in their probe window (accounted through the ring buffer).
    let counters: aya::maps::PerCpuArray<_, tidegate_common::CounterBlock> =
        aya::maps::PerCpuArray::try_from(
            ebpf.map(tidegate_common::maps::COUNTERS)
                .context("counters")?,
        )?;
    let fallback: u64 = counters
        .get(&0, 0)?
        .iter()
        .map(|b| b.counters[tidegate_common::Counter::MapFull as usize])
        .sum();
    // (a) One syscall per packet. Scattered order: a stride coprime with the powers of
    // ten used.
    const STRIDE: u64 = 1_000_003;
    let m = sample.min(n as usize).max(1);
    let idx: Vec<u32> = (0..m as u64)
        .map(|j| ((j * (n as u64 / m as u64).max(1) * STRIDE) % n as u64) as u32)
        .collect();
    let frames: Vec<Vec<u8>> = idx.iter().map(|&i| frame(i)).collect();
    let (mut tg_ns, mut base_ns) = (0u64, 0u64);
    // Interleave the two programs so drifting machine load hits both alike.
    for f in &frames {
        base_ns += run_once(base, f, &mut out)?;
        tg_ns += run_once(tg, f, &mut out)?;
    }
    // (b) One test run over every flow (at least 200 000 runs), median of 3 pairs.
    let runs = n.max(200_000);
    let (mut mb, mut mt) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        mb.push(mf.run(many_base, &many_flows_frame(), n as u64, runs, &mut out)?);
        mt.push(mf.run(many_tg, &many_flows_frame(), n as u64, runs, &mut out)?);
    }
    mb.sort_by(f64::total_cmp);
    mt.sort_by(f64::total_cmp);
    Ok(ProbePoint {
        flows: n as u64,
        map_entries: entries,
        memlock,
        base_ns: base_ns as f64 / m as f64,
        tg_ns: tg_ns as f64 / m as f64,
        sampled: m,
        fill_s,
        many_base_ns: mb[1],
        many_tg_ns: mt[1],
        fallback,
    })
}

fn collector_point(keys: usize, shards: usize) -> anyhow::Result<CollectorPoint> {
    let recs = workload::synthetic(keys, keys, 120);
    release_free_memory();
    let (t0, c0) = (Instant::now(), cpu_time());
    let mem = memory(&recs, shards, 1000)?;
    let (insert_s, insert_cpu_s) = (
        t0.elapsed().as_secs_f64(),
        cpu_time().saturating_sub(c0).as_secs_f64(),
    );
    drop(recs);
    let total = keys.max(2_000_000);
    let merge = if total == keys {
        None
    } else {
        let recs = workload::synthetic(keys, total, 120);
        Some(median_throughput(
            "scaling",
            keys,
            &recs,
            shards,
            1000,
            if keys >= 1_000_000 { 1 } else { 3 },
        )?)
    };
    Ok(CollectorPoint {
        keys,
        shards,
        flows_held: mem.flows,
        rss_before: mem.rss_before,
        rss_after: mem.rss_after,
        insert_s,
        insert_cpu_s,
        merge_records: merge.as_ref().map_or(keys as u64, |t| t.records),
        merge_s: merge.as_ref().map_or(insert_s, |t| t.wall.as_secs_f64()),
        merge_cpu_s: merge.as_ref().map_or(insert_cpu_s, |t| t.cpu.as_secs_f64()),
        merge_processed: merge.as_ref().map_or(mem.flows, |t| t.processed),
    })
}

fn fmt_n(n: f64) -> String {
    thousands(&format!("{:.0}", n))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(Point::CollectorPoint { keys, shards }) = a.point {
        let p = collector_point(keys, shards)?;
        println!("{}", serde_json::to_string(&p)?);
        return Ok(());
    }
    let shards = a.shards.unwrap_or(cores).max(1);
    let (probe_sizes, coll_sizes): (Vec<u32>, Vec<usize>) = if a.smoke {
        (vec![1_000, 10_000], vec![1_000, 10_000, 100_000])
    } else {
        (
            vec![1_000, 10_000, 100_000, 1_000_000],
            vec![1_000, 10_000, 100_000, 1_000_000, 10_000_000],
        )
    };
    let coll_sizes = if a.probe_only { Vec::new() } else { coll_sizes };
    let sample = if a.smoke { 2_000 } else { a.sample };
    let machine = Machine::describe();
    let t_start = Instant::now();
    let mut probe = Vec::new();
    // The probe's test runs on one CPU, as receive-side scaling keeps a flow on one CPU
    // (see xdp_cost); the collector points after them use every CPU.
    let pinned = tidegate_bench::xdp::pin_to_cpu(tidegate_bench::xdp::this_and_other_cpu()?.0)?;
    for &n in &probe_sizes {
        let p = probe_point(n, sample)?;
        eprintln!(
            "probe {}: {:.1} ns/pkt (baseline {:.1}); one run: {:.1} (baseline {:.1}); table memlock {} B",
            si(n as usize),
            p.tg_ns,
            p.base_ns,
            p.many_tg_ns,
            p.many_base_ns,
            p.memlock
        );
        probe.push(p);
    }
    drop(pinned);
    let exe = std::env::current_exe()?;
    let mut coll = Vec::new();
    for &k in &coll_sizes {
        let out = Command::new(&exe)
            .args(["collector-point", "--keys", &k.to_string()])
            .args(["--shards", &shards.to_string()])
            .output()
            .context("collector point")?;
        anyhow::ensure!(
            out.status.success(),
            "collector point {k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p: CollectorPoint = serde_json::from_slice(&out.stdout)?;
        eprintln!(
            "collector {}: {:.0} B/flow, insert {:.0} records/s, merge {:.0} records/s",
            si(k),
            (p.rss_after.saturating_sub(p.rss_before)) as f64 / p.flows_held.max(1) as f64,
            p.keys as f64 / p.insert_s.max(1e-9),
            p.merge_records as f64 / p.merge_s.max(1e-9)
        );
        coll.push(p);
    }
    let elapsed = t_start.elapsed();

    let mut s = String::new();
    writeln!(s, "# Flow-table scaling (generated)\n")?;
    writeln!(s, "{}", machine.markdown())?;
    writeln!(
        s,
        "Command: `{}` ({:.0} s)\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        elapsed.as_secs_f64()
    )?;
    writeln!(
        s,
        "## Probe: XDP program vs concurrent flows in the table\n"
    )?;
    writeln!(
        s,
        "BPF_PROG_TEST_RUN on 60-byte IPv4/UDP frames, one flow per source address, every test run on \
         one CPU (pinned, as receive-side scaling keeps a flow on one CPU). The flow table \
         (one shared array of 128-byte slots, see ARCHITECTURE.md) is sized for the flow count as \
         `flow_entries` sizes it (a quarter more slots than flows); every flow is first created by one test run over \
         all of them. *One run*: one test run over every flow in scattered order (flow `i × 1 000 003 \
         mod N`; at least 200 000 runs; median of 3), the benchmark programs rewriting the source \
         address before accounting or, for the baseline, returning. *Per syscall* (the method of \
         earlier reports): up to {sample} of the flows' frames, in scattered order, each run once \
         through the return-only baseline and through tidegate's program, interleaved; each such \
         run also pays the test-run set-up, which is in the baseline too. Every packet hits a \
         different flow, so cache misses grow with the table as on a busy line. *Cost growth* is \
         tidegate's one-run ns/pkt relative to the smallest table, next to the growth in flows. \
         Memory = the table's `memlock` (`/proc/self/fdinfo`): one array whatever the number of \
         CPUs, so the figure per flow is the same at 64 CPUs. (The per-CPU hash of earlier \
         versions cost 120 + 40 × CPUs bytes per entry and held two generations: 2 × 2 680 B per \
         flow at 64 CPUs.)\n"
    )?;
    writeln!(
        s,
        "| flows | table slots | one run: baseline ns/pkt | one run: tidegate ns/pkt | one run: ratio | per syscall: baseline | per syscall: tidegate | per syscall: ratio | tidegate Mpps (1 core, one run) | cost growth | flow growth | flows beyond their window (fallback) | table memory | bytes per slot (any CPU count) |"
    )?;
    writeln!(
        s,
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    )?;
    let p0 = probe.first().map_or(1.0, |p| p.many_tg_ns.max(1e-9));
    let f0 = probe.first().map_or(1, |p| p.flows.max(1));
    for p in &probe {
        writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | **{:.2}×** | {:.1} | {:.1} | **{:.2}×** | {:.2} | {:.2}× | {}× | {} ({:.3} %) | {:.1} MiB | {:.0} |",
            fmt_n(p.flows as f64),
            fmt_n(p.map_entries as f64),
            p.many_base_ns,
            p.many_tg_ns,
            p.many_tg_ns / p.many_base_ns.max(1e-9),
            p.base_ns,
            p.tg_ns,
            p.tg_ns / p.base_ns.max(1e-9),
            1e3 / p.many_tg_ns.max(1e-9),
            p.many_tg_ns / p0,
            fmt_n((p.flows / f0) as f64),
            p.fallback,
            100.0 * p.fallback as f64 / p.flows.max(1) as f64,
            p.memlock as f64 / (1u64 << 20) as f64,
            p.memlock as f64 / p.map_entries.max(1) as f64,
        )?;
    }
    writeln!(s, "\n## Collector: aggregation shards vs distinct flows\n")?;
    writeln!(
        s,
        "Each row runs in a fresh process. *Insert*: one synthetic record per flow ({shards} shard(s), \
         batches of 1000), timed from the first submit to the end of the flush; RSS growth \
         (`VmRSS`) divided by the flows held is the memory per active flow. *Merge*: max(2M, K) \
         records over the same K flows (several reports per flow; median of 3 runs below 1M flows, \
         1 run from 1M), the steady-state path; at 10M flows it is the insert run. Records per \
         CPU-second divide by the CPU time of the whole process (submitter + shards): the cost per \
         core.\n"
    )?;
    writeln!(
        s,
        "| flows | flows held | RSS growth | bytes per flow | insert records/s | insert records per CPU-s | merge records | merge records/s | merge records per CPU-s | cost growth (CPU-s per record vs 1K) | flow growth |"
    )?;
    writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    let c0 = coll
        .first()
        .map_or(1.0, |c| c.merge_cpu_s / c.merge_records.max(1) as f64);
    let k0 = coll.first().map_or(1, |c| c.keys.max(1));
    for c in &coll {
        let grow = c.rss_after.saturating_sub(c.rss_before);
        writeln!(
            s,
            "| {} | {} | {:.1} MiB | {:.0} | {} | {} | {} | {} | {} | {:.2}× | {}× |",
            fmt_n(c.keys as f64),
            fmt_n(c.flows_held as f64),
            grow as f64 / (1u64 << 20) as f64,
            grow as f64 / c.flows_held.max(1) as f64,
            fmt_n(c.keys as f64 / c.insert_s.max(1e-9)),
            fmt_n(c.keys as f64 / c.insert_cpu_s.max(1e-9)),
            fmt_n(c.merge_records as f64),
            fmt_n(c.merge_records as f64 / c.merge_s.max(1e-9)),
            fmt_n(c.merge_records as f64 / c.merge_cpu_s.max(1e-9)),
            (c.merge_cpu_s / c.merge_records.max(1) as f64) / c0.max(1e-15),
            fmt_n((c.keys / k0) as f64),
        )?;
    }
    writeln!(
        s,
        "\nSmall tables (1K flows) have few, tiny RSS pages to grow: their bytes per flow is dominated \
         by fixed per-shard structures. The merge column at 1K–100K flows times a workload that is \
         several records per flow; cost growth compares CPU time per record."
    )?;
    let out = a.out.clone().or_else(|| {
        (!a.smoke && !a.probe_only)
            .then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/scaling.md"))
    });
    tidegate_bench::report::publish(s, a.smoke, out.as_deref())?;
    Ok(())
}
