//! eBPF per-packet cost: tidegate's XDP flow-accounting program against an XDP program
//! that only returns.
//!
//! * Real packets (BPF_PROG_TEST_RUN with repeat on each of a corpus sample: every run
//!   hits the frame's own, hot flow), with the flow table empty and pre-filled to 1 M
//!   flows; with each packet clock (precise, coarse, the probe's tick) and both program
//!   variants (multi-buffer, linear).
//! * Many flows in one test run: the benchmark programs rewrite the source address to
//!   the next flow of a scattered sequence on every run (hot: 1 000 flows that stay in
//!   the CPU caches; the same on a CPU that did not claim them, which adds atomically;
//!   cold: 1 M flows, each run a different one, DRAM misses).
//! * Every test run on one pinned CPU, as receive-side scaling keeps a flow on one CPU.
//!
//! `cargo run --release -p tidegate-bench --bin xdp_cost -- [--smoke] [--out FILE]`

use std::{fmt::Write as _, path::PathBuf, time::Instant};

use anyhow::Context;
use aya::{
    maps::{Array, MapData},
    programs::Xdp,
};
use clap::Parser;
use tidegate_bench::xdp::{
    ManyFlows, corpus_frames, frames_of, load_for_test_runs, many_flows_frame, pin_to_cpu, run_ns,
    this_and_other_cpu,
};
use tidegate_common::maps::{
    CLOCK, CLOCK_COARSE, CLOCK_PRECISE, CLOCK_TICK, ClockWord, PROG_XDP, PROG_XDP_BASELINE,
    PROG_XDP_BENCH_FLOWS, PROG_XDP_BENCH_FLOWS_BASELINE, PROG_XDP_LINEAR,
};

#[derive(Parser)]
struct Args {
    /// Corpus pcap directory (default: `$TIDEGATE_CORPUS/pcap`, else
    /// `../shared/corpus/pcap` beside the repository).
    #[arg(long, default_value_os_t = tidegate_bench::aggregate::default_corpus())]
    corpus: PathBuf,
    /// Packets sampled from the corpus.
    #[arg(long, default_value_t = 2_000)]
    packets: usize,
    /// BPF_PROG_TEST_RUN repeat count per packet.
    #[arg(long, default_value_t = 2_000)]
    repeat: u32,
    /// Flows pre-filled into the map for the "full map" measurement.
    #[arg(long, default_value_t = 1_000_000)]
    prefill: u32,
    /// Seconds-long run for CI: few packets, small prefill; asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/xdp_cost.md")]
    out: PathBuf,
}

/// Makes the programs stamp packets with `which` clock (for the tick: now, as the probe
/// would publish it; its value does not change the cost).
fn set_clock(clock: &mut Array<MapData, ClockWord>, which: u32) -> anyhow::Result<()> {
    let w = ClockWord {
        tick_ns: tidegate_probe::clock::monotonic_ns(),
        clock: which,
        pad: 0,
    };
    clock.set(0, w, 0)?;
    Ok(())
}

/// Mean ns per packet over all frames of: baseline; the multi-buffer program with the
/// precise, the coarse and the tick clock; the linear program with the coarse clock
/// (what the probe attaches by default on a line with an MTU up to 3000). All run back to back
/// on each frame, so load changes on a shared machine hit them alike. A warm-up pass
/// first creates the sample's flows.
fn measure(
    ebpf: &aya::Ebpf,
    clock: &mut Array<MapData, ClockWord>,
    frames: &[Vec<u8>],
    repeat: u32,
) -> anyhow::Result<[f64; 5]> {
    let prog =
        |name| -> anyhow::Result<&Xdp> { Ok(ebpf.program(name).context("program")?.try_into()?) };
    let (base, tg, linear) = (
        prog(PROG_XDP_BASELINE)?,
        prog(PROG_XDP)?,
        prog(PROG_XDP_LINEAR)?,
    );
    let mut out = vec![0u8; 2048];
    set_clock(clock, CLOCK_PRECISE)?;
    for f in frames {
        run_ns(tg, f, 1, &mut out)?;
    }
    let mut total = [0f64; 5];
    for f in frames {
        total[0] += run_ns(base, f, repeat, &mut out)?;
        set_clock(clock, CLOCK_PRECISE)?;
        total[1] += run_ns(tg, f, repeat, &mut out)?;
        set_clock(clock, CLOCK_COARSE)?;
        total[2] += run_ns(tg, f, repeat, &mut out)?;
        set_clock(clock, CLOCK_TICK)?;
        total[3] += run_ns(tg, f, repeat, &mut out)?;
        set_clock(clock, CLOCK_COARSE)?;
        total[4] += run_ns(linear, f, repeat, &mut out)?;
    }
    // The probe's default for what follows (the many-flows runs).
    set_clock(clock, CLOCK_COARSE)?;
    Ok(total.map(|t| t / frames.len() as f64))
}

/// Mean ns per run of the benchmark baseline and of tidegate over `flows` flows in one
/// test run each (`runs` runs; the flows exist already), median of 5 alternating pairs.
fn many(ebpf: &aya::Ebpf, mf: &mut ManyFlows, flows: u64, runs: u32) -> anyhow::Result<(f64, f64)> {
    let prog =
        |name| -> anyhow::Result<&Xdp> { Ok(ebpf.program(name).context("program")?.try_into()?) };
    let (base, tg) = (
        prog(PROG_XDP_BENCH_FLOWS_BASELINE)?,
        prog(PROG_XDP_BENCH_FLOWS)?,
    );
    let frame = many_flows_frame();
    let mut out = vec![0u8; 2048];
    let (mut b, mut t) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        b.push(mf.run(base, &frame, flows, runs, &mut out)?);
        t.push(mf.run(tg, &frame, flows, runs, &mut out)?);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((med(&mut b), med(&mut t)))
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.packets = a.packets.min(100);
        a.repeat = a.repeat.min(20);
        a.prefill = a.prefill.min(20_000);
    }
    // One CPU for every test run, as receive-side scaling keeps a flow on one CPU: the
    // CPU that claimed a flow adds to it with plain stores, any other with atomic adds
    // (measured apart below). Unpinned, the runs would land on either CPU at random.
    let (cpu, other_cpu) = this_and_other_cpu()?;
    let _pinned = pin_to_cpu(cpu)?;
    let frames = corpus_frames(&a.corpus, a.packets)?;
    let entries = a.prefill + frames.len() as u32 + 1024;
    let mut ebpf = load_for_test_runs(entries)?;
    let mut clock: Array<MapData, ClockWord> =
        Array::try_from(ebpf.take_map(CLOCK).context("clock map")?)?;
    let empty = measure(&ebpf, &mut clock, &frames, a.repeat)?;
    let mut mf = ManyFlows::take(&mut ebpf)?;
    let tg_many: &Xdp = ebpf
        .program(PROG_XDP_BENCH_FLOWS)
        .context("program")?
        .try_into()?;
    let mut out = vec![0u8; 2048];
    // Hot: a few flows, created by one pass, then run many times each.
    let hot_flows = 1_000u64;
    mf.run(
        tg_many,
        &many_flows_frame(),
        hot_flows,
        hot_flows as u32,
        &mut out,
    )?;
    let hot_runs = if a.smoke { 20_000 } else { 1_000_000 };
    let hot = many(&ebpf, &mut mf, hot_flows, hot_runs)?;
    // The same flows counted by a CPU that did not claim them (atomic adds).
    let hot_foreign = match other_cpu {
        Some(other) => {
            let _there = pin_to_cpu(other)?;
            Some(many(&ebpf, &mut mf, hot_flows, hot_runs)?)
        }
        None => None,
    };
    // Cold: `prefill` flows created by one pass, then every run a different one.
    let t0 = Instant::now();
    mf.run(
        tg_many,
        &many_flows_frame(),
        a.prefill as u64,
        a.prefill,
        &mut out,
    )?;
    let fill_s = t0.elapsed().as_secs_f64();
    let cold = many(&ebpf, &mut mf, a.prefill as u64, a.prefill)?;
    let full = measure(&ebpf, &mut clock, &frames, a.repeat)?;

    let mut s = tidegate_bench::report::heading("eBPF per-packet cost");
    writeln!(
        s,
        "Method: BPF_PROG_TEST_RUN, {} real Ethernet frames sampled across the corpus, each run {} times \
         (kernel-measured mean per run, every run on one pinned CPU), after a warm-up pass that \
         creates the sample's flows; \
         on each frame the baseline and tidegate with either clock run back to back. \
         \"Full table\" = {} extra flows created first (one test run, took {:.2} s).\n",
        frames.len(),
        a.repeat,
        a.prefill,
        fill_s
    )?;
    writeln!(
        s,
        "Clocks: \"precise\" `bpf_ktime_get_ns` (`[ebpf] timestamps = \"precise\"`), \"coarse\" \
         `bpf_ktime_get_coarse_ns` (one timer tick; the default), \"tick\" CLOCK_MONOTONIC the \
         probe publishes every millisecond in an array the program reads (no helper call here, \
         but a probe thread waking 1 000 times a second, which this benchmark does not see). \
         Programs: *multi-buffer* (`xdp.frags`, one `bpf_xdp_get_buff_len` call per packet) for \
         lines with an MTU above 3000; *linear* (frame length from the packet pointers) for the \
         rest — the default on ordinary lines is linear + coarse.\n"
    )?;
    writeln!(
        s,
        "| flow table | baseline XDP (return only) ns/pkt | multi-buffer, precise | ratio | multi-buffer, coarse | ratio | multi-buffer, tick | ratio | **linear, coarse (default)** | **ratio** |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for (what, m) in [
        ("empty".to_string(), empty),
        (format!("{} flows", a.prefill), full),
    ] {
        let b = m[0];
        writeln!(
            s,
            "| {what} | {b:.1} | {:.1} | {:.2}× | {:.1} | {:.2}× | {:.1} | {:.2}× | **{:.1}** | **{:.2}×** |",
            m[1],
            m[1] / b,
            m[2],
            m[2] / b,
            m[3],
            m[3] / b,
            m[4],
            m[4] / b
        )?;
    }
    writeln!(
        s,
        "\nBoth rows run the sample's own flows, which stay in the CPU caches.\n"
    )?;
    writeln!(s, "### Many flows in one test run\n")?;
    writeln!(
        s,
        "One BPF_PROG_TEST_RUN per measurement: the benchmark programs (never attached) rewrite \
         the 60-byte IPv4/UDP frame's source address to the next flow of a scattered sequence \
         (flow `i × 1 000 003 mod N`) and then account it with the default program (linear, \
         coarse clock) — or, for the baseline, return. The rewrite is in both, so the ratio is \
         the flow table's and the parser's cost. Median of 5 alternating pairs. Every test run \
         of this benchmark runs on one CPU (the process is pinned), as receive-side scaling \
         keeps each flow's packets on one CPU; *non-owner CPU* runs the hot flows on a CPU \
         that did not claim them, which adds with atomic instructions.\n"
    )?;
    writeln!(
        s,
        "| flows | runs | baseline (rewrite + return) ns/run | tidegate ns/run | ratio | tidegate Mpps (1 core) |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|")?;
    let rows = [
        Some(("hot", hot_flows, hot_runs, hot)),
        hot_foreign.map(|m| ("hot (non-owner CPU)", hot_flows, hot_runs, m)),
        Some(("scattered", a.prefill as u64, a.prefill, cold)),
    ];
    for (what, flows, runs, (b, t)) in rows.into_iter().flatten() {
        writeln!(
            s,
            "| {} {what} | {runs} | {b:.1} | {t:.1} | **{:.2}×** | {:.2} |",
            tidegate_bench::numbers::thousands(&flows.to_string()),
            t / b,
            1e3 / t
        )?;
    }
    writeln!(
        s,
        "\nThe flow table is one shared array of 128-byte slots (bounded open addressing, \
         plain adds on the CPU that claimed a flow and atomic ones on any other, the CPU \
         number from the one helper the verifier inlines); with {} flows every run misses the CPU \
         caches for the slot (one DRAM access costs 180-310 ns on this machine).\n",
        tidegate_bench::numbers::thousands(&a.prefill.to_string())
    )?;
    tunnels(&mut s, &a, &ebpf)?;
    tidegate_bench::report::publish(s, a.smoke, Some(&a.out))?;
    Ok(())
}

/// The cost of keying tunnelled packets by their inner header: the default (linear,
/// coarse clock) program (`tunnels = "outer"`) and its `tunnels = "inner"` twin, on every frame
/// of the tunnel captures, over the baseline.
fn tunnels(s: &mut String, a: &Args, ebpf: &aya::Ebpf) -> anyhow::Result<()> {
    use tidegate_common::{Tunnels, maps::Programs};
    use tidegate_testkit::paths::TUNNEL_CAPTURES;
    let frames = frames_of(&a.corpus, &TUNNEL_CAPTURES)?;
    let prog = |name: &str| -> anyhow::Result<&Xdp> {
        Ok(ebpf.program(name).context("program")?.try_into()?)
    };
    let base = prog(PROG_XDP_BASELINE)?;
    let out_tg = prog(Programs::for_tunnels(Tunnels::Outer).xdp_linear)?;
    let in_tg = prog(Programs::for_tunnels(Tunnels::Inner).xdp_linear)?;
    let mut buf = vec![0u8; 2048];
    for f in &frames {
        run_ns(out_tg, f, 1, &mut buf)?;
        run_ns(in_tg, f, 1, &mut buf)?;
    }
    let repeat = a.repeat;
    let mut t = [0f64; 3];
    for f in &frames {
        t[0] += run_ns(base, f, repeat, &mut buf)?;
        t[1] += run_ns(out_tg, f, repeat, &mut buf)?;
        t[2] += run_ns(in_tg, f, repeat, &mut buf)?;
    }
    let [b, o, i] = t.map(|x| x / frames.len() as f64);
    writeln!(s, "### Tunnels: keyed by the inner header\n")?;
    writeln!(
        s,
        "All {} Ethernet frames of the corpus's tunnel captures ({}), each run {} times, the \
         default program (linear, coarse clock; `tunnels = \"outer\"`, no inner-parse code) and its \
         `tunnels = \"inner\"` twin (a second parse inside the tunnel, and the outer header \
         sent to the probe on a flow's first packet per interval).\n",
        frames.len(),
        TUNNEL_CAPTURES.join(", "),
        repeat
    )?;
    writeln!(
        s,
        "| baseline ns/pkt | tunnels outer ns/pkt | ratio | tunnels inner ns/pkt | ratio | inner − outer ns |"
    )?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|")?;
    writeln!(
        s,
        "| {b:.1} | {o:.1} | {:.2}× | {i:.1} | {:.2}× | {:.1} |",
        o / b,
        i / b,
        i - o
    )?;
    Ok(())
}
