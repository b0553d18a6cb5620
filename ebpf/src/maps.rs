//! The kernel objects shared with userspace (names in `tidegate_common::maps`).

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap, RingBuf},
};
use tidegate_common::{
    CounterBlock, FlowKey, FlowStats,
    maps::{CTL_COUNT, DEFAULT_FALLBACK_BYTES, DEFAULT_FLOW_ENTRIES},
};

/// Flow map, generation 0. Sized at load time by the probe (`--flow-entries`).
#[map]
pub static FLOWS_GEN0: PerCpuHashMap<FlowKey, FlowStats> =
    PerCpuHashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

/// Flow map, generation 1.
#[map]
pub static FLOWS_GEN1: PerCpuHashMap<FlowKey, FlowStats> =
    PerCpuHashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

/// Control words written by userspace.
#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(CTL_COUNT, 0);

/// Per-CPU counter block (one entry): looked up once per packet.
#[map]
pub static COUNTERS: PerCpuArray<CounterBlock> = PerCpuArray::with_max_entries(1, 0);

/// One-packet records for flows that did not fit the flow map.
#[map]
pub static FALLBACK: RingBuf = RingBuf::with_byte_size(DEFAULT_FALLBACK_BYTES, 0);
