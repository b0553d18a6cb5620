//! Support for the benchmark-only programs: one test run over many flows.

use aya_ebpf::programs::XdpContext;
use tidegate_common::maps::{BENCH_FLOWS, BENCH_RUN, BENCH_STRIDE};

use crate::maps::BENCH;

/// Offset of the IPv4 source address in an untagged Ethernet frame.
const SRC_OFF: usize = 14 + 12;

/// Rewrites the frame's IPv4 source address to this run's flow (`10.x.y.z`); false if
/// the frame is too short or the benchmark is not configured.
#[inline(always)]
pub fn next_flow(ctx: &XdpContext) -> bool {
    let (Some(run), Some(flows), Some(stride)) = (
        BENCH.get_ptr_mut(BENCH_RUN),
        BENCH.get(BENCH_FLOWS).copied(),
        BENCH.get(BENCH_STRIDE).copied(),
    ) else {
        return false;
    };
    let p = ctx.data();
    if flows == 0 || p + SRC_OFF + 4 > ctx.data_end() {
        return false;
    }
    // SAFETY: entry of a live array map; the test run executes on one CPU.
    let i = unsafe {
        let i = *run;
        *run = i + 1;
        i
    };
    let f = i.wrapping_mul(stride) % flows;
    let src = (10u32 << 24) | (f as u32 & 0x00ff_ffff);
    // SAFETY: bounds checked above against data_end.
    unsafe { core::ptr::write_unaligned((p + SRC_OFF) as *mut [u8; 4], src.to_be_bytes()) };
    true
}
