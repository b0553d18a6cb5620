//! The probe's eBPF object loaded for `BPF_PROG_TEST_RUN` measurements (not attached).

use anyhow::Context;
use aya::{Ebpf, EbpfLoader, programs::Xdp};
use tidegate_common::maps::{FALLBACK, FLOWS_GEN0, FLOWS_GEN1, PROG_XDP, PROG_XDP_BASELINE};
use tidegate_probe::capture::ebpf::OBJECT;

/// Loads the object with room for `flow_entries` flows in the active generation, and
/// loads both the flow-accounting XDP program and the return-only baseline (needs root).
pub fn load_for_test_runs(flow_entries: u32) -> anyhow::Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(FLOWS_GEN0, flow_entries)
        .map_max_entries(FLOWS_GEN1, 1024)
        .map_max_entries(FALLBACK, 1 << 20)
        .load(OBJECT)
        .context("loading the eBPF object (run as root)")?;
    for name in [PROG_XDP, PROG_XDP_BASELINE] {
        let p: &mut Xdp = ebpf.program_mut(name).context("program")?.try_into()?;
        p.load()?;
    }
    Ok(ebpf)
}
