//! The probe's eBPF object loaded for `BPF_PROG_TEST_RUN` measurements (not attached).

use std::path::Path;

use anyhow::Context;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData},
    programs::{TestRun, TestRunOptions, Xdp},
};
use tidegate_common::maps::{
    BENCH, BENCH_FLOWS, BENCH_RUN, BENCH_STRIDE, CLOCK, CLOCK_COARSE, ClockWord, ENF_HOST4,
    ENF_HOST6, ENF_LPM4, ENF_LPM6, FALLBACK, FLOW_SLOTS, FLOWS, FLOWS_TAKEN, PROG_XDP,
    PROG_XDP_BASELINE, PROG_XDP_BENCH_FLOWS, PROG_XDP_BENCH_FLOWS_BASELINE, PROG_XDP_LINEAR,
    Programs,
};
use tidegate_probe::capture::{ebpf::OBJECT, pcap::CaptureReader};

/// Loads the object with a flow table sized for `flow_entries` flows (as the probe
/// sizes it) and the coarse clock (the probe's default), and
/// loads the flow-accounting XDP programs (multi-buffer and linear, both tunnel modes:
/// [`Programs::for_tunnels`]) and the return-only baseline (needs root).
pub fn load_for_test_runs(flow_entries: u32) -> anyhow::Result<Ebpf> {
    load_with_prefixes(flow_entries, 1024)
}

/// [`load_for_test_runs`] with room for `prefixes` enforcement prefixes per generation.
pub fn load_with_prefixes(flow_entries: u32, prefixes: u32) -> anyhow::Result<Ebpf> {
    let slots = tidegate_common::slot::slots_for_flows(flow_entries);
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(FLOWS, slots)
        .map_max_entries(FLOWS_TAKEN, slots.div_ceil(64))
        .override_global(FLOW_SLOTS, &slots, true)
        .map_max_entries(FALLBACK, 1 << 20)
        .map_max_entries(ENF_LPM4[0], prefixes)
        .map_max_entries(ENF_LPM4[1], prefixes)
        .map_max_entries(ENF_LPM6[0], prefixes)
        .map_max_entries(ENF_LPM6[1], prefixes)
        .map_max_entries(ENF_HOST4[0], prefixes)
        .map_max_entries(ENF_HOST4[1], prefixes)
        .map_max_entries(ENF_HOST6[0], prefixes)
        .map_max_entries(ENF_HOST6[1], prefixes)
        .load(OBJECT)
        .context("loading the eBPF object (run as root)")?;
    // Packets stamped as by the probe's default clock (the kernel's coarse clock).
    let mut clock: Array<&mut MapData, ClockWord> =
        Array::try_from(ebpf.map_mut(CLOCK).context("clock map")?)?;
    let coarse = ClockWord {
        tick_ns: tidegate_probe::clock::monotonic_ns(),
        clock: CLOCK_COARSE,
        pad: 0,
    };
    clock.set(0, coarse, 0)?;
    let inner = Programs::for_tunnels(tidegate_common::Tunnels::Inner);
    for name in [
        PROG_XDP,
        PROG_XDP_LINEAR,
        inner.xdp,
        inner.xdp_linear,
        PROG_XDP_BASELINE,
        PROG_XDP_BENCH_FLOWS,
        PROG_XDP_BENCH_FLOWS_BASELINE,
    ] {
        let p: &mut Xdp = ebpf.program_mut(name).context("program")?.try_into()?;
        p.load()?;
    }
    Ok(ebpf)
}

/// The complete Ethernet frames (14 to 1514 bytes, as a veth or NIC carries them) of
/// the capture at `path`.
fn ethernet_frames(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut rd =
        CaptureReader::open(path).map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
    let mut out = Vec::new();
    while let Ok(Some(fr)) = rd.next_frame() {
        if fr.linktype == 1
            && fr.data.len() as u32 == fr.orig_len
            && (14..=1514).contains(&fr.data.len())
        {
            out.push(fr.data.to_vec());
        }
    }
    Ok(out)
}

/// Every complete Ethernet frame of the corpus captures `names` (in `dir`).
pub fn frames_of(dir: &Path, names: &[&str]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for n in names {
        out.extend(ethernet_frames(&dir.join(n))?);
    }
    anyhow::ensure!(!out.is_empty(), "no Ethernet frames in {names:?}");
    Ok(out)
}

/// Ethernet frames from every corpus capture, round-robin until `n`.
pub fn corpus_frames(dir: &Path, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("corpus {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    // Captures that are not readable (or not captures) are skipped.
    let out: Vec<Vec<u8>> = files
        .iter()
        .flat_map(|f| ethernet_frames(f).unwrap_or_default())
        .collect();
    anyhow::ensure!(!out.is_empty(), "no Ethernet frames in {}", dir.display());
    // Spread the sample over the whole corpus.
    let step = (out.len() / n).max(1);
    Ok(out.into_iter().step_by(step).take(n).collect())
}

/// Pins the calling thread to `cpu` until the guard is dropped (test runs then run
/// there: a flow claimed on one CPU stays on it, as receive-side scaling keeps a flow's
/// packets on one queue and CPU). Threads and processes started meanwhile inherit it.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<Pinned> {
    anyhow::ensure!(cpu < libc::CPU_SETSIZE as usize, "CPU {cpu} out of range");
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays inside it (cpu is
    // below CPU_SETSIZE); sched_getaffinity writes the set, sched_setaffinity reads it.
    unsafe {
        let mut before: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut before) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size, &set) != 0 {
            return Err(std::io::Error::last_os_error()).context(format!("pin to CPU {cpu}"));
        }
        Ok(Pinned(before, std::marker::PhantomData))
    }
}

/// The CPUs a thread was allowed before [`pin_to_cpu`]; restored on drop, by the same
/// thread (not `Send`: the affinity call acts on the calling thread).
pub struct Pinned(libc::cpu_set_t, std::marker::PhantomData<*const ()>);

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: a set sched_getaffinity filled; read only.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

/// The CPU the calling thread runs on, and another one it may run on (None on one CPU).
pub fn this_and_other_cpu() -> anyhow::Result<(usize, Option<usize>)> {
    // SAFETY: no arguments; returns -1 on error.
    let this = unsafe { libc::sched_getcpu() };
    anyhow::ensure!(
        this >= 0,
        "sched_getcpu: {}",
        std::io::Error::last_os_error()
    );
    let this = this as usize;
    // SAFETY: as in `pin_to_cpu`; sched_getaffinity writes the set only.
    let other = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
        }
        (0..libc::CPU_SETSIZE as usize).find(|&c| c != this && libc::CPU_ISSET(c, &set))
    };
    Ok((this, other))
}

/// Kernel-measured mean ns per run of `prog` on `frame`.
pub fn run_ns(prog: &Xdp, frame: &[u8], repeat: u32, out: &mut [u8]) -> anyhow::Result<f64> {
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(out),
        repeat,
        ..TestRunOptions::new()
    })?;
    Ok(r.duration.as_nanos() as f64)
}

/// Step between consecutive runs' flows in [`ManyFlows`]: a prime, so coprime with any
/// flow count below it (every flow once per `flows` runs, neighbours far apart).
pub const SCATTER_STRIDE: u64 = 1_000_003;

/// One `BPF_PROG_TEST_RUN` over many flows: the benchmark programs
/// ([`PROG_XDP_BENCH_FLOWS`] and its baseline) rewrite the frame's source address to
/// the next flow of a scattered sequence before accounting (or returning).
pub struct ManyFlows {
    bench: Array<MapData, u64>,
}

impl ManyFlows {
    /// Takes the benchmark map out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        Ok(ManyFlows {
            bench: Array::try_from(ebpf.take_map(BENCH).context("benchmark map")?)?,
        })
    }

    /// Runs `prog` `runs` times in one syscall on `frame` (an untagged IPv4 frame), each
    /// run on the next of `flows` flows starting from the first; the kernel-measured
    /// mean ns per run.
    pub fn run(
        &mut self,
        prog: &Xdp,
        frame: &[u8],
        flows: u64,
        runs: u32,
        out: &mut [u8],
    ) -> anyhow::Result<f64> {
        anyhow::ensure!(flows > 0 && flows < SCATTER_STRIDE, "flow count {flows}");
        self.bench.set(BENCH_RUN, 0, 0)?;
        self.bench.set(BENCH_FLOWS, flows, 0)?;
        self.bench.set(BENCH_STRIDE, SCATTER_STRIDE, 0)?;
        let r = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(out),
            repeat: runs,
            ..TestRunOptions::new()
        })?;
        anyhow::ensure!(
            self.bench.get(&BENCH_RUN, 0)? == runs as u64,
            "the benchmark program did not run {runs} times"
        );
        Ok(r.duration.as_nanos() as f64)
    }
}

/// A 60-byte IPv4/UDP frame for [`ManyFlows`] (its source address is rewritten per run).
pub fn many_flows_frame() -> Vec<u8> {
    tidegate_testkit::net::frames::ipv4(
        [0x02, 0, 0, 0, 0, 0x02],
        None,
        17,
        std::net::Ipv4Addr::new(10, 0, 0, 0),
        std::net::Ipv4Addr::new(192, 0, 2, 1),
        10_000,
        5_001,
        46,
        0,
    )
}
