//! The probe's eBPF object loaded for `BPF_PROG_TEST_RUN` measurements (not attached).

use std::path::Path;

use anyhow::Context;
use aya::{
    Ebpf, EbpfLoader,
    programs::{TestRun, TestRunOptions, Xdp},
};
use tidegate_common::maps::{
    ENF_HOST4, ENF_HOST6, ENF_LPM4, ENF_LPM6, FALLBACK, FLOWS_GEN0, FLOWS_GEN1, PROG_XDP,
    PROG_XDP_BASELINE, PROG_XDP_LINEAR,
};
use tidegate_probe::capture::{ebpf::OBJECT, pcap::CaptureReader};

/// Loads the object with room for `flow_entries` flows in the active generation, and
/// loads the flow-accounting XDP programs (multi-buffer and linear) and the return-only
/// baseline (needs root).
pub fn load_for_test_runs(flow_entries: u32) -> anyhow::Result<Ebpf> {
    load_with_prefixes(flow_entries, 1024)
}

/// [`load_for_test_runs`] with room for `prefixes` enforcement prefixes per generation.
pub fn load_with_prefixes(flow_entries: u32, prefixes: u32) -> anyhow::Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(FLOWS_GEN0, flow_entries)
        .map_max_entries(FLOWS_GEN1, 1024)
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
    for name in [PROG_XDP, PROG_XDP_LINEAR, PROG_XDP_BASELINE] {
        let p: &mut Xdp = ebpf.program_mut(name).context("program")?.try_into()?;
        p.load()?;
    }
    Ok(ebpf)
}

/// Ethernet frames from every corpus capture, round-robin until `n`.
pub fn corpus_frames(dir: &Path, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
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
