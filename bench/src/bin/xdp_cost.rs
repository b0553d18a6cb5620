//! eBPF per-packet cost: tidegate's XDP flow-accounting program against an XDP program
//! that only returns, on the same real packets (BPF_PROG_TEST_RUN with repeat), with the
//! flow map empty and pre-filled to 1 M flows; with the precise (default) and the coarse
//! packet clock.
//!
//! `cargo run --release -p tidegate-bench --bin xdp_cost -- [--smoke] [--out FILE]`

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context;
use aya::{
    EbpfLoader,
    maps::{Array, PerCpuHashMap, PerCpuValues},
    programs::{TestRun, TestRunOptions, Xdp},
};
use clap::Parser;
use tidegate_bench::machine::Machine;
use tidegate_common::{
    FlowKey, FlowStats,
    maps::{
        CLOCK_COARSE, CLOCK_PRECISE, CONTROL, CTL_CLOCK, FALLBACK, FLOWS_GEN0, FLOWS_GEN1,
        PROG_XDP, PROG_XDP_BASELINE,
    },
};
use tidegate_probe::capture::{ebpf::OBJECT, pcap::CaptureReader};

#[derive(Parser)]
struct Args {
    /// Corpus pcap directory.
    #[arg(long, default_value = "../shared/corpus/pcap")]
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

/// Ethernet frames from every corpus capture, round-robin until `n`.
fn corpus_frames(dir: &Path, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("corpus {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(mut rd) = CaptureReader::open(&f) else {
            continue;
        };
        while let Ok(Some(fr)) = rd.next_frame() {
            // Ethernet only, complete frames of a size a veth/NIC would carry.
            if fr.linktype == 1
                && fr.data.len() as u32 == fr.orig_len
                && (14..=1514).contains(&fr.data.len())
            {
                out.push(fr.data.to_vec());
            }
        }
    }
    anyhow::ensure!(!out.is_empty(), "no Ethernet frames in {}", dir.display());
    // Spread the sample over the whole corpus.
    let step = (out.len() / n).max(1);
    Ok(out.into_iter().step_by(step).take(n).collect())
}

/// Mean ns per run over all frames.
fn mean_ns(prog: &Xdp, frames: &[Vec<u8>], repeat: u32) -> anyhow::Result<f64> {
    let mut total = 0f64;
    let mut out = vec![0u8; 2048];
    for f in frames {
        let r = prog.test_run(TestRunOptions {
            data_in: Some(f),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        })?;
        total += r.duration.as_nanos() as f64;
    }
    Ok(total / frames.len() as f64)
}

fn prefill(
    map: &mut PerCpuHashMap<&mut aya::maps::MapData, FlowKey, FlowStats>,
    n: u32,
) -> anyhow::Result<()> {
    let cpus = aya::util::nr_cpus().map_err(|(f, e)| anyhow::anyhow!("{f}: {e}"))?;
    for i in 0..n {
        let mut k = FlowKey::ZERO;
        k.family = 6;
        k.src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        k.src[12..].copy_from_slice(&i.to_be_bytes());
        k.dst[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb9]);
        k.proto = 17;
        k.sport = (i % 60000) as u16;
        k.dport = 443;
        let mut v = vec![FlowStats::default(); cpus];
        v[0].packets = 1;
        map.insert(k, PerCpuValues::try_from(v)?, 0)?;
    }
    Ok(())
}

/// Selects the clock the programs stamp packets with.
fn set_clock(ebpf: &mut aya::Ebpf, clock: u32) -> anyhow::Result<()> {
    let mut c: Array<_, u32> = Array::try_from(ebpf.map_mut(CONTROL).context("control map")?)?;
    c.set(CTL_CLOCK, clock, 0)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.packets = a.packets.min(100);
        a.repeat = a.repeat.min(20);
        a.prefill = a.prefill.min(20_000);
    }
    let frames = corpus_frames(&a.corpus, a.packets)?;
    let entries = (a.prefill + frames.len() as u32 + 1024).next_power_of_two();
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(FLOWS_GEN0, entries)
        .map_max_entries(FLOWS_GEN1, 1024)
        .map_max_entries(FALLBACK, 1 << 20)
        .load(OBJECT)
        .context("loading the eBPF object (run as root)")?;
    for name in [PROG_XDP, PROG_XDP_BASELINE] {
        let p: &mut Xdp = ebpf.program_mut(name).context("program")?.try_into()?;
        p.load()?;
    }
    let run = |ebpf: &aya::Ebpf, name: &str| -> anyhow::Result<f64> {
        let p: &Xdp = ebpf.program(name).context("program")?.try_into()?;
        // Warm-up pass creates the flows of the sample, then the measured pass.
        mean_ns(p, &frames, 1)?;
        mean_ns(p, &frames, a.repeat)
    };
    let base_empty = run(&ebpf, PROG_XDP_BASELINE)?;
    let tg_empty = run(&ebpf, PROG_XDP)?;
    set_clock(&mut ebpf, CLOCK_COARSE)?;
    let tg_empty_coarse = run(&ebpf, PROG_XDP)?;
    set_clock(&mut ebpf, CLOCK_PRECISE)?;
    let t0 = Instant::now();
    {
        let map = ebpf.map_mut(FLOWS_GEN0).context("flow map")?;
        let mut m: PerCpuHashMap<_, FlowKey, FlowStats> = PerCpuHashMap::try_from(map)?;
        prefill(&mut m, a.prefill)?;
    }
    let fill_s = t0.elapsed().as_secs_f64();
    let base_full = run(&ebpf, PROG_XDP_BASELINE)?;
    let tg_full = run(&ebpf, PROG_XDP)?;
    set_clock(&mut ebpf, CLOCK_COARSE)?;
    let tg_full_coarse = run(&ebpf, PROG_XDP)?;
    set_clock(&mut ebpf, CLOCK_PRECISE)?;

    let m = Machine::describe();
    let mut s = String::new();
    writeln!(s, "# eBPF per-packet cost (generated)\n")?;
    writeln!(s, "{}", m.markdown())?;
    writeln!(
        s,
        "Command: `{}`\n",
        std::env::args().collect::<Vec<_>>().join(" ")
    )?;
    writeln!(
        s,
        "Method: BPF_PROG_TEST_RUN, {} real Ethernet frames sampled across the corpus, each run {} times \
         (kernel-measured mean per run), after a warm-up pass that creates the sample's flows. \
         \"Full map\" = {} extra flows inserted first (took {:.1} s).\n",
        frames.len(),
        a.repeat,
        a.prefill,
        fill_s
    )?;
    writeln!(
        s,
        "\"Precise\" is the default packet clock (`bpf_ktime_get_ns`); \"coarse\" is \
         `[ebpf] timestamps = \"coarse\"` (`bpf_ktime_get_coarse_ns`, one timer tick).\n"
    )?;
    writeln!(
        s,
        "| flow map | baseline XDP (return only) ns/pkt | tidegate XDP, precise clock ns/pkt | ratio | tidegate XDP, coarse clock ns/pkt | ratio | target |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---|")?;
    writeln!(
        s,
        "| empty | {base_empty:.1} | {tg_empty:.1} | {:.2}× | {tg_empty_coarse:.1} | {:.2}× | ≤ 2× and ≤ 60 ns |",
        tg_empty / base_empty,
        tg_empty_coarse / base_empty
    )?;
    writeln!(
        s,
        "| {} flows | {base_full:.1} | {tg_full:.1} | {:.2}× | {tg_full_coarse:.1} | {:.2}× | ≤ 2× and ≤ 60 ns |",
        a.prefill,
        tg_full / base_full,
        tg_full_coarse / base_full
    )?;
    if a.smoke {
        writeln!(s, "\n(smoke run: figures are not meaningful)")?;
    }
    print!("{s}");
    if let Some(d) = a.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&a.out, s)?;
    Ok(())
}
