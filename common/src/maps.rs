//! Names and layout of the kernel objects shared by `tidegate-ebpf` and the probe's loader.

/// Flow map of generation 0 (per-CPU hash `FlowKey -> FlowStats`).
pub const FLOWS_GEN0: &str = "FLOWS_GEN0";
/// Flow map of generation 1.
pub const FLOWS_GEN1: &str = "FLOWS_GEN1";
/// `Array<u32>` of control words; see the `CTL_*` indices.
pub const CONTROL: &str = "CONTROL";
/// `PerCpuArray<CounterBlock>` with one entry: the [`crate::Counter`]s and a scratch word.
pub const COUNTERS: &str = "COUNTERS";
/// Ring buffer of [`crate::FallbackRecord`]s for packets whose flow did not fit the map.
pub const FALLBACK: &str = "FALLBACK";

/// XDP program (ingress).
pub const PROG_XDP: &str = "tidegate_xdp";
/// XDP program that only returns XDP_PASS (benchmark baseline; never attached).
pub const PROG_XDP_BASELINE: &str = "tidegate_xdp_baseline";
/// TC classifier (egress, attached with TCX).
pub const PROG_TC_EGRESS: &str = "tidegate_tc_egress";

/// `CONTROL[CTL_GENERATION] & 1` is the flow map generation the programs write to.
pub const CTL_GENERATION: u32 = 0;
/// `CONTROL[CTL_CLOCK]` is the clock the programs stamp packets with: [`CLOCK_PRECISE`]
/// or [`CLOCK_COARSE`].
pub const CTL_CLOCK: u32 = 1;
/// Number of control words.
pub const CTL_COUNT: u32 = 2;

/// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC to the nanosecond (the default).
pub const CLOCK_PRECISE: u32 = 0;
/// `bpf_ktime_get_coarse_ns()`: CLOCK_MONOTONIC_COARSE, as of the last timer tick (one
/// jiffy: 4 ms at HZ=250), at about half the per-packet cost of the precise clock.
pub const CLOCK_COARSE: u32 = 1;

/// Default per-generation flow map size (concurrent flows).
pub const DEFAULT_FLOW_ENTRIES: u32 = 1 << 20;
/// Default fallback ring buffer size in bytes (power of two, page multiple).
pub const DEFAULT_FALLBACK_BYTES: u32 = 1 << 24;
