//! The kernel flow table: one shared (not per-CPU) BPF array of 128-byte slots with
//! bounded open addressing, which the programs update with atomic instructions and the
//! probe reads through a memory mapping (`BPF_F_MMAPABLE`).
//!
//! A slot's `state` word says who owns it:
//! - [`SLOT_EMPTY`]: free; a program claims it with a compare-and-swap to [`SLOT_BUSY`],
//!   writes key and counters, then publishes the flow's tag ([`live_tag`]).
//! - a tag: a live flow. Packets whose key hashes to that tag and equals `key` add to the
//!   counters: plain adds on the CPU that claimed the slot, atomic adds to a second pair
//!   of counters on any other (a flow's packets may arrive on several CPUs).
//! - [`SLOT_RETIRING`]: the probe is removing the flow (idle). Programs no longer match
//!   it; after an RCU grace period no program run can still be adding to it, so its final
//!   counters are exact; the probe exports the last delta and stores `SLOT_EMPTY`.
//!
//! Flows stay in the table across sweeps: the probe takes the difference between the
//! counters and what it took before (kept in its own memory) when the flow's record is
//! due, so a long-lived flow costs no re-insert and no per-sweep copy.
//!
//! A key lives in one of [`PROBE_WINDOW`] consecutive slots starting at its hash. Two
//! CPUs creating the same new flow at the same instant may each claim a slot: the probe
//! adds up deltas by key, so counts stay exact (the second slot simply ages out). When
//! every slot of the window is taken the packet goes to the fallback ring buffer.

use crate::FlowKey;

/// Slot state: free.
pub const SLOT_EMPTY: u64 = 0;
/// Slot state: claimed by a program that is filling it in.
pub const SLOT_BUSY: u64 = 1;
/// Slot state: being removed by the probe.
pub const SLOT_RETIRING: u64 = 2;

/// Consecutive slots a key may occupy (from its hash, wrapping). Bounds the per-packet
/// work; beyond it a flow is accounted through the fallback ring buffer.
pub const PROBE_WINDOW: u32 = 16;

/// Bytes per slot (two cache lines): the kernel memory a flow costs, whatever the
/// number of CPUs.
pub const SLOT_BYTES: usize = 128;

/// One flow in the kernel table. The first cache line holds what every packet reads
/// (state, key); the second the counters and the rest.
///
/// Counters: the CPU that claimed the slot (`owner`) adds to `packets`/`bytes` with plain
/// stores — RSS keeps a flow on one CPU, and programs on one CPU do not nest — and any
/// other CPU adds to `shared_packets`/`shared_bytes` with atomic adds. Each word has one
/// kind of writer, so no add is lost, and the probe exports the sum. (Two locked adds per
/// packet cost ~15 ns of a ~60 ns program; see ARCHITECTURE.md.)
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSlot {
    /// [`SLOT_EMPTY`], [`SLOT_BUSY`], [`SLOT_RETIRING`] or the flow's [`live_tag`].
    pub state: u64,
    /// The flow.
    pub key: FlowKey,
    /// Packets the owner CPU counted since the slot was claimed (plain adds).
    pub packets: u64,
    /// IP-layer bytes the owner CPU counted (plain adds, written before `packets`).
    pub bytes: u64,
    /// Last packet (kernel CLOCK_MONOTONIC ns).
    pub last_ns: u64,
    /// First packet since the probe last took this slot's counters (0: none yet); the
    /// probe swaps it to 0 when it takes them.
    pub interval_first_ns: u64,
    /// Packets other CPUs counted (atomic add, ordered after `shared_bytes`).
    pub shared_packets: u64,
    /// Bytes other CPUs counted (atomic add).
    pub shared_bytes: u64,
    /// OR of the TCP flags since the probe last took the counters (atomic or, only when
    /// it adds a bit; swapped to 0).
    pub tcp_flags: u32,
    /// Packets since the probe last took the counters (reset to 0): which packets may be
    /// sampled. Not atomic — a count for sampling, not for accounting.
    pub interval_packets: u32,
    /// ICMP `type << 8 | code` of the last packet.
    pub icmp: u16,
    /// Strongest enforcement verdict since the probe last took the counters.
    pub verdict: u8,
    /// The rule that gave it.
    pub rule: u8,
    /// Low 16 bits of the policy version that judged it.
    pub policy: u16,
    /// The CPU that claimed the slot, plus one (0: none).
    pub owner: u16,
}

impl FlowSlot {
    /// An empty slot.
    pub const EMPTY: FlowSlot = FlowSlot {
        state: SLOT_EMPTY,
        key: FlowKey::ZERO,
        packets: 0,
        bytes: 0,
        last_ns: 0,
        interval_first_ns: 0,
        shared_packets: 0,
        shared_bytes: 0,
        tcp_flags: 0,
        interval_packets: 0,
        icmp: 0,
        verdict: 0,
        rule: 0,
        policy: 0,
        owner: 0,
    };

    /// `owner` for a CPU number; 0 (owned by none: every CPU adds atomically) for CPU
    /// numbers that do not fit, so no two CPUs ever share an owner value.
    #[inline(always)]
    pub const fn owner_of(cpu: u32) -> u16 {
        if cpu < u16::MAX as u32 {
            cpu as u16 + 1
        } else {
            0
        }
    }
}

/// Words in a flow key.
pub const KEY_WORDS: usize = core::mem::size_of::<FlowKey>() / 8;

/// The key's seven 64-bit words (the key is 8-aligned and 56 bytes).
#[inline(always)]
pub fn key_words(k: &FlowKey) -> [u64; KEY_WORDS] {
    let p = k as *const FlowKey as *const u64;
    // SAFETY: FlowKey is repr(C, align(8)), 56 bytes, every byte initialised (explicit
    // padding): seven aligned u64 reads stay inside it.
    unsafe {
        [
            p.read(),
            p.add(1).read(),
            p.add(2).read(),
            p.add(3).read(),
            p.add(4).read(),
            p.add(5).read(),
            p.add(6).read(),
        ]
    }
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == KEY_WORDS * 8);

/// The secret a flow table hashes under: one word per key word (two 32-bit halves).
/// Each probe draws it at random when it loads the programs (`FLOW_HASH_KEY`).
pub type HashKey = [u64; KEY_WORDS];

/// Hash of a flow key under a secret (`secret(i)`: word `i` of the [`HashKey`]).
///
/// Keys come from the traffic, and a hash an attacker can compute lets a few crafted
/// flows fill a key's whole probe window (an IPv6 source's low 64 bits alone solve a
/// public linear hash for any target), sending the flows that belong there to the
/// fallback ring. This is NH (the UMAC/VMAC inner hash): per key word, the two 32-bit
/// halves, each plus its half of the secret mod 2^32, multiplied, and the products
/// summed mod 2^64 — for two different keys and a random secret the sums collide with
/// probability at most 2^-32, so without the secret no one can aim flows at a window.
/// Seven independent multiplies (the CPU overlaps them), no helper call. A multiply and
/// a fold then carry every bit into the high half, which [`home_slot`] scales onto the
/// table; the whole word is the slot's tag.
#[inline(always)]
pub fn flow_hash(k: &FlowKey, secret: impl Fn(usize) -> u64) -> u64 {
    let w = key_words(k);
    let nh = |i: usize| {
        let s = secret(i);
        let lo = (w[i] as u32).wrapping_add(s as u32) as u64;
        let hi = ((w[i] >> 32) as u32).wrapping_add((s >> 32) as u32) as u64;
        lo * hi
    };
    let h = nh(0)
        .wrapping_add(nh(1))
        .wrapping_add(nh(2))
        .wrapping_add(nh(3))
        .wrapping_add(nh(4))
        .wrapping_add(nh(5))
        .wrapping_add(nh(6));
    (h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The state word of a live slot holding a key with hash `h`: never one of the reserved
/// states (top bit set), so a program compares one word before the key.
#[inline(always)]
pub const fn live_tag(h: u64) -> u64 {
    h | (1 << 63)
}

/// Whether a state word names a live flow.
#[inline(always)]
pub const fn is_live(state: u64) -> bool {
    state & (1 << 63) != 0
}

/// The first slot of a key's window: the hash's high half scaled onto `slots` (a
/// multiply and a shift instead of a division; any table size).
#[inline(always)]
pub const fn home_slot(h: u64, slots: u32) -> u32 {
    (((h >> 32) * slots as u64) >> 32) as u32
}

/// Largest table: slot indices stay far from `u32::MAX` (a window never overflows).
pub const MAX_SLOTS: u32 = 1 << 30;

/// Fill factor the table is sized for, as slots per flow (3/2: at most two thirds
/// taken, where linear probing keeps nearly every key within its window; see
/// bench/RESULTS.md for the share beyond it).
pub const fn slots_for_flows(flows: u32) -> u32 {
    let s = flows as u64 + flows as u64 / 2;
    clamp_slots(s)
}

/// Slots that fit a memory budget in bytes.
pub const fn slots_for_budget(bytes: u64) -> u32 {
    clamp_slots(bytes / SLOT_BYTES as u64)
}

/// Flows a table of `slots` is sized for (the inverse of [`slots_for_flows`]).
pub const fn flows_for_slots(slots: u32) -> u32 {
    (slots as u64 * 2 / 3) as u32
}

const fn clamp_slots(s: u64) -> u32 {
    if s < PROBE_WINDOW as u64 {
        PROBE_WINDOW
    } else if s > MAX_SLOTS as u64 {
        MAX_SLOTS
    } else {
        s as u32
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C) integers with explicit padding.
unsafe impl aya::Pod for FlowSlot {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_two_cache_lines_with_the_hot_fields_in_the_first() {
        assert_eq!(core::mem::size_of::<FlowSlot>(), SLOT_BYTES);
        assert_eq!(core::mem::align_of::<FlowSlot>(), 64);
        assert_eq!(core::mem::offset_of!(FlowSlot, key), 8);
        assert_eq!(core::mem::offset_of!(FlowSlot, packets), 64);
        assert_eq!(core::mem::offset_of!(FlowSlot, shared_packets), 96);
        assert_eq!(core::mem::offset_of!(FlowSlot, owner), 126);
    }

    #[test]
    fn tags_never_collide_with_reserved_states() {
        for h in [0, 1, 2, u64::MAX >> 1] {
            let t = live_tag(h);
            assert!(is_live(t));
            assert!(t != SLOT_EMPTY && t != SLOT_BUSY && t != SLOT_RETIRING);
        }
        assert!(!is_live(SLOT_EMPTY) && !is_live(SLOT_BUSY) && !is_live(SLOT_RETIRING));
    }

    #[test]
    fn hash_spreads_neighbouring_keys_over_the_slots() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..4096u32 {
            let mut k = FlowKey::ZERO;
            k.family = 4;
            k.src[12..].copy_from_slice(&i.to_be_bytes());
            k.sport = 40000;
            k.dport = 443;
            seen.insert(home_slot(flow_hash(&k, |i| SECRET[i]), 1 << 16));
        }
        // 4096 balls into 65536 bins: ~125 collisions expected for a random function.
        assert!(seen.len() > 3900, "{}", seen.len());
    }

    /// A secret as the loader draws one (fixed here).
    const SECRET: HashKey = [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
        0x4528_21e6_38d0_1377,
        0xbe54_66cf_34e9_0c6c,
        0xc0ac_29b7_c97c_50dd,
    ];

    /// The hash of earlier versions: each word times a public odd constant, summed.
    fn public_linear(k: &FlowKey) -> u64 {
        const C: [u64; KEY_WORDS] = [
            0x9e37_79b9_7f4a_7c15,
            0xc2b2_ae3d_27d4_eb4f,
            0x1656_67b1_9e37_79f9,
            0x85eb_ca77_c2b2_ae63,
            0x27d4_eb2f_1656_67c5,
            0xff51_afd7_ed55_8ccd,
            0xc4ce_b9fe_1a85_ec53,
        ];
        let w = key_words(k);
        (0..KEY_WORDS).fold(0u64, |h, i| h.wrapping_add(w[i].wrapping_mul(C[i])))
    }

    #[test]
    fn flows_aimed_at_one_window_of_a_public_hash_spread_under_the_secret() {
        // The attack on a public linear hash: per source port, solve the IPv6 source's
        // low 64 bits (free to anyone holding a /64) for one chosen hash value.
        let c1: u64 = 0xc2b2_ae3d_27d4_eb4f;
        let mut inv = c1; // c1⁻¹ mod 2^64 by Newton's iteration
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(c1.wrapping_mul(inv)));
        }
        assert_eq!(c1.wrapping_mul(inv), 1);
        let target = 0x0123_4567_89ab_cdefu64;
        let keys: Vec<FlowKey> = (0..512u16)
            .map(|port| {
                let mut k = FlowKey::ZERO;
                k.family = 6;
                k.proto = 17;
                k.src[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1]);
                k.sport = 1024 + port;
                k.dport = 53;
                let w1 = target.wrapping_sub(public_linear(&k)).wrapping_mul(inv);
                k.src[8..].copy_from_slice(&w1.to_ne_bytes());
                k
            })
            .collect();
        // Every one lands in the same window of the public hash...
        assert!(keys.iter().all(|k| public_linear(k) == target));
        // ...and in 512 near-distinct windows under a secret.
        let homes: std::collections::HashSet<u32> = (keys.iter())
            .map(|k| home_slot(flow_hash(k, |i| SECRET[i]), 1 << 20))
            .collect();
        assert!(homes.len() > 500, "{}", homes.len());
        // A different secret, different homes: the placement is the secret's.
        let other = (keys.iter())
            .filter(|k| {
                home_slot(flow_hash(k, |i| SECRET[i] ^ 1 << 40), 1 << 20)
                    == home_slot(flow_hash(k, |i| SECRET[i]), 1 << 20)
            })
            .count();
        assert!(other < 5, "{other}");
    }

    #[test]
    fn tables_are_sized_from_flows_or_a_budget() {
        assert_eq!(slots_for_budget(128 << 20), 1 << 20);
        assert_eq!(slots_for_budget((128 << 20) + 5), 1 << 20);
        assert_eq!(slots_for_budget(0), PROBE_WINDOW);
        assert_eq!(slots_for_flows(1_000_000), 1_500_000);
        assert_eq!(flows_for_slots(1_500_000), 1_000_000);
        assert_eq!(slots_for_flows(u32::MAX), MAX_SLOTS);
        for slots in [16, 1000, 1 << 20, MAX_SLOTS] {
            assert!(home_slot(u64::MAX, slots) < slots);
            assert_eq!(home_slot(0, slots), 0);
        }
    }
}
