//! Names and layout of the kernel objects shared by `tidegate-ebpf` and the probe's loader.

/// The flow table: a memory-mappable `Array<FlowSlot>` (see [`crate::slot`]) of
/// `FLOW_SLOTS` slots, set at load time.
pub const FLOWS: &str = "FLOWS";
/// `Array<u64>`, memory-mappable: one bit per slot of [`FLOWS`] (`ceil(slots / 64)`
/// words). The program that claims a slot sets its bit; the probe clears it before it
/// frees the slot. A sweep visits only the slots whose bit is set.
pub const FLOWS_TAKEN: &str = "FLOWS_TAKEN";
/// Global (read-only data) the loader sets to the flow table's number of slots.
pub const FLOW_SLOTS: &str = "FLOW_SLOTS";
/// Global (read-only data) the loader sets to a random [`crate::slot::HashKey`]: the
/// secret the flow table hashes keys under.
pub const FLOW_HASH_KEY: &str = "FLOW_HASH_KEY";
/// `Array<u32>` of control words; see the `CTL_*` indices.
pub const CONTROL: &str = "CONTROL";
/// `Array<ClockWord>` with one entry, memory-mappable: which clock stamps packets and,
/// for [`CLOCK_TICK`], CLOCK_MONOTONIC as of the probe's last tick. One lookup per
/// packet gives both.
pub const CLOCK: &str = "CLOCK";

/// The packet clock's word (the one entry of [`CLOCK`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockWord {
    /// CLOCK_MONOTONIC ns as of the probe's last tick ([`CLOCK_TICK`]).
    pub tick_ns: u64,
    /// [`CLOCK_PRECISE`], [`CLOCK_COARSE`] or [`CLOCK_TICK`].
    pub clock: u32,
    /// Zero.
    pub pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C) integers with explicit padding.
unsafe impl aya::Pod for ClockWord {}
/// `PerCpuArray<CounterBlock>` with one entry: the [`crate::Counter`]s and a scratch word.
pub const COUNTERS: &str = "COUNTERS";
/// Ring buffer of [`crate::FallbackRecord`]s for packets whose flow did not fit the map.
pub const FALLBACK: &str = "FALLBACK";
/// Ring buffer of [`crate::flow::AppSample`]s (payload starts for DNS/TLS metadata).
pub const APP_SAMPLES: &str = "APP_SAMPLES";
/// Default size of the sample ring buffer in bytes (power of two, page multiple).
pub const DEFAULT_APP_SAMPLE_BYTES: u32 = 1 << 22;

/// Enforcement maps, two generations each (suffix `_0` / `_1`; see [`crate::enforce`]):
/// LPM trie `Key<[u8; 4]> -> PrefixClass` (IPv4).
pub const ENF_LPM4: [&str; 2] = ["ENF_LPM4_0", "ENF_LPM4_1"];
/// LPM trie `Key<[u8; 16]> -> PrefixClass` (IPv6).
pub const ENF_LPM6: [&str; 2] = ["ENF_LPM6_0", "ENF_LPM6_1"];
/// Exact-match hash `[u8; 4] -> PrefixClass` for IPv4 host prefixes (/32).
pub const ENF_HOST4: [&str; 2] = ["ENF_HOST4_0", "ENF_HOST4_1"];
/// Exact-match hash `[u8; 16] -> PrefixClass` for IPv6 host prefixes (/128).
pub const ENF_HOST6: [&str; 2] = ["ENF_HOST6_0", "ENF_HOST6_1"];
/// `Array<EnforceConfig>` with one entry.
pub const ENF_CFG: [&str; 2] = ["ENF_CFG_0", "ENF_CFG_1"];
/// Hash `ifindex u32 -> LineRule`.
pub const ENF_LINES: [&str; 2] = ["ENF_LINES_0", "ENF_LINES_1"];
/// Hash `port_key -> u64` (port rules allowing that protocol/port).
pub const ENF_PORTS: [&str; 2] = ["ENF_PORTS_0", "ENF_PORTS_1"];
/// Per-CPU array of `RuleCount`, `RULE_COUNTER_ENTRIES` entries.
pub const ENF_COUNTS: [&str; 2] = ["ENF_COUNTS_0", "ENF_COUNTS_1"];
/// Default capacity of each prefix map (LPM and exact) per generation.
pub const DEFAULT_ENF_PREFIXES: u32 = 1 << 18;
/// Capacity of each port map per generation.
pub const ENF_PORT_ENTRIES: u32 = 1 << 17;
/// Capacity of each line map per generation.
pub const ENF_LINE_ENTRIES: u32 = 1024;

/// XDP program (ingress).
pub const PROG_XDP: &str = "tidegate_xdp";
/// XDP program for lines whose frames always fit one buffer (no `xdp.frags`): the frame
/// length is the packet's, no `bpf_xdp_get_buff_len` call.
pub const PROG_XDP_LINEAR: &str = "tidegate_xdp_linear";
/// XDP program that only returns XDP_PASS (benchmark baseline; never attached).
pub const PROG_XDP_BASELINE: &str = "tidegate_xdp_baseline";
/// TC classifier (egress, attached with TCX).
pub const PROG_TC_EGRESS: &str = "tidegate_tc_egress";

/// The accounting programs of one tunnel mode (one set per mode, so the default
/// programs carry no inner-parse code): the loader loads and attaches only these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Programs {
    /// Multi-buffer XDP (ingress).
    pub xdp: &'static str,
    /// XDP for frames that always fit one buffer.
    pub xdp_linear: &'static str,
    /// TC classifier (egress).
    pub tc_egress: &'static str,
}

impl Programs {
    /// The programs keying tunnelled packets as `tunnels` says.
    pub const fn for_tunnels(tunnels: crate::Tunnels) -> Programs {
        match tunnels {
            crate::Tunnels::Outer => Programs {
                xdp: PROG_XDP,
                xdp_linear: PROG_XDP_LINEAR,
                tc_egress: PROG_TC_EGRESS,
            },
            crate::Tunnels::Inner => Programs {
                xdp: "tidegate_xdp_inner",
                xdp_linear: "tidegate_xdp_linear_inner",
                tc_egress: "tidegate_tc_egress_inner",
            },
        }
    }
}

/// `CONTROL[CTL_ENFORCE]`: 0 = no policy (every packet passes, nothing judged);
/// 1 = the `_0` enforcement maps; 2 = the `_1` maps. Userspace fills the idle set,
/// flips this word, waits a grace period, then clears the old set: a packet reads the
/// word once, so it is judged by exactly one policy.
pub const CTL_ENFORCE: u32 = 0;
/// Number of control words.
pub const CTL_COUNT: u32 = 1;

/// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC to the nanosecond (`[ebpf] timestamps = "precise"`; also what
/// the programs use before the probe names a clock).
pub const CLOCK_PRECISE: u32 = 0;
/// `bpf_ktime_get_coarse_ns()`: CLOCK_MONOTONIC_COARSE, as of the last timer tick (one
/// jiffy: 4 ms at HZ=250), at about half the per-packet cost of the precise clock.
pub const CLOCK_COARSE: u32 = 1;
/// [`ClockWord::tick_ns`]: CLOCK_MONOTONIC as the probe last wrote it (every
/// millisecond, a store into the mapped array): no helper call per packet; a stamp is
/// at most one tick period (plus the ticker's scheduling delay) behind the packet.
pub const CLOCK_TICK: u32 = 2;

/// Default flow table size in slots (128 MiB: see [`crate::slot::SLOT_BYTES`]), for
/// 838 860 concurrent flows.
pub const DEFAULT_FLOW_SLOTS: u32 = 1 << 20;
/// Default fallback ring buffer size in bytes (power of two, page multiple).
pub const DEFAULT_FALLBACK_BYTES: u32 = 1 << 24;

/// Benchmark programs only: XDP programs that first rewrite the frame's IPv4 source
/// address to the next flow of a scattered sequence (see [`BENCH`]), so one
/// `BPF_PROG_TEST_RUN` with a repeat count runs over many flows. Never attached.
pub const PROG_XDP_BENCH_FLOWS: &str = "tidegate_xdp_bench_flows";
/// [`PROG_XDP_BENCH_FLOWS`]'s baseline: the same rewrite, then `XDP_PASS`.
pub const PROG_XDP_BENCH_FLOWS_BASELINE: &str = "tidegate_xdp_bench_flows_baseline";
/// `Array<u64>` for the benchmark programs: `[BENCH_RUN]` counts runs, `[BENCH_FLOWS]`
/// is the number of flows, `[BENCH_STRIDE]` the step between consecutive runs' flows
/// (coprime with the flow count: every flow once per `BENCH_FLOWS` runs). Run `i`
/// uses flow `i * stride % flows`, written into source address `10.x.y.z` (24 bits).
pub const BENCH: &str = "BENCH";
/// Index of the run counter in [`BENCH`].
pub const BENCH_RUN: u32 = 0;
/// Index of the flow count in [`BENCH`].
pub const BENCH_FLOWS: u32 = 1;
/// Index of the stride in [`BENCH`].
pub const BENCH_STRIDE: u32 = 2;
