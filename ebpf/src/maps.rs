//! The kernel objects shared with userspace (names in `tidegate_common::maps`).

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use tidegate_common::{
    CounterBlock, FlowSlot,
    slot::{HashKey, KEY_WORDS},
    enforce::{EnforceConfig, LineRule, PrefixClass, RULE_COUNTER_ENTRIES, RuleCount},
    maps::{
        CTL_COUNT, ClockWord, DEFAULT_APP_SAMPLE_BYTES, DEFAULT_ENF_PREFIXES,
        DEFAULT_FALLBACK_BYTES, DEFAULT_FLOW_SLOTS, ENF_LINE_ENTRIES, ENF_PORT_ENTRIES,
    },
};

/// The flow table (`tidegate_common::slot`), shared by all CPUs and mapped into the
/// probe. Sized at load time by the probe (`FLOW_SLOTS` slots).
#[map]
pub static FLOWS: Array<FlowSlot> = Array::with_max_entries(DEFAULT_FLOW_SLOTS, BPF_F_MMAPABLE);

/// One bit per slot of `FLOWS`, set when a program claims the slot
/// (`tidegate_common::maps::FLOWS_TAKEN`). Sized at load time.
#[map]
pub static FLOWS_TAKEN: Array<u64> =
    Array::with_max_entries(DEFAULT_FLOW_SLOTS / 64, BPF_F_MMAPABLE);

/// Slots of `FLOWS`; set by the loader before the programs are verified (read-only
/// data: the verifier sees the constant).
#[unsafe(no_mangle)]
pub static FLOW_SLOTS: u32 = DEFAULT_FLOW_SLOTS;

/// The flow table's hash secret (`tidegate_common::slot::flow_hash`); drawn at random
/// and set by the loader before the programs are verified.
#[unsafe(no_mangle)]
pub static FLOW_HASH_KEY: HashKey = [1; KEY_WORDS];

/// Control words written by userspace.
#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(CTL_COUNT, 0);

/// The packet clock: which one, and the probe's tick (`tidegate_common::maps::CLOCK`).
#[map]
pub static CLOCK: Array<ClockWord> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Per-CPU counter block (one entry): looked up once per packet.
#[map]
pub static COUNTERS: PerCpuArray<CounterBlock> = PerCpuArray::with_max_entries(1, 0);

/// One-packet records for flows that did not fit the flow map.
#[map]
pub static FALLBACK: RingBuf = RingBuf::with_byte_size(DEFAULT_FALLBACK_BYTES, 0);

/// Payload starts of DNS messages and TLS handshakes, for the probe's name parser.
#[map]
pub static APP_SAMPLES: RingBuf = RingBuf::with_byte_size(DEFAULT_APP_SAMPLE_BYTES, 0);

macro_rules! enforcement_set {
    ($lpm4:ident, $lpm6:ident, $host4:ident, $host6:ident, $cfg:ident, $lines:ident, $ports:ident, $counts:ident) => {
        /// Enforcement: IPv4 prefix classes.
        #[map]
        pub static $lpm4: LpmTrie<[u8; 4], PrefixClass> =
            LpmTrie::with_max_entries(DEFAULT_ENF_PREFIXES, 0);
        /// Enforcement: IPv6 prefix classes.
        #[map]
        pub static $lpm6: LpmTrie<[u8; 16], PrefixClass> =
            LpmTrie::with_max_entries(DEFAULT_ENF_PREFIXES, 0);
        /// Enforcement: IPv4 host prefixes, exact match (looked up before the trie).
        #[map]
        pub static $host4: HashMap<[u8; 4], PrefixClass> =
            HashMap::with_max_entries(DEFAULT_ENF_PREFIXES, BPF_F_NO_PREALLOC);
        /// Enforcement: IPv6 host prefixes, exact match.
        #[map]
        pub static $host6: HashMap<[u8; 16], PrefixClass> =
            HashMap::with_max_entries(DEFAULT_ENF_PREFIXES, BPF_F_NO_PREALLOC);
        /// Enforcement: policy-wide words.
        #[map]
        pub static $cfg: Array<EnforceConfig> = Array::with_max_entries(1, 0);
        /// Enforcement: per-line mode and port rules.
        #[map]
        pub static $lines: HashMap<u32, LineRule> = HashMap::with_max_entries(ENF_LINE_ENTRIES, 0);
        /// Enforcement: port rules allowing a protocol/port.
        #[map]
        pub static $ports: HashMap<u32, u64> =
            HashMap::with_max_entries(ENF_PORT_ENTRIES, BPF_F_NO_PREALLOC);
        /// Enforcement: per-rule packet/byte counters.
        #[map]
        pub static $counts: PerCpuArray<RuleCount> =
            PerCpuArray::with_max_entries(RULE_COUNTER_ENTRIES, 0);
    };
}

enforcement_set!(
    ENF_LPM4_0,
    ENF_LPM6_0,
    ENF_HOST4_0,
    ENF_HOST6_0,
    ENF_CFG_0,
    ENF_LINES_0,
    ENF_PORTS_0,
    ENF_COUNTS_0
);
enforcement_set!(
    ENF_LPM4_1,
    ENF_LPM6_1,
    ENF_HOST4_1,
    ENF_HOST6_1,
    ENF_CFG_1,
    ENF_LINES_1,
    ENF_PORTS_1,
    ENF_COUNTS_1
);

/// Benchmark programs' run counter, flow count and stride (`tidegate_common::maps::BENCH`).
#[map]
pub static BENCH: Array<u64> = Array::with_max_entries(3, 0);
