//! Per-packet accounting: parse, then add to the shared flow table.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use tidegate_common::{
    APP_SAMPLE_BYTES, AppSample, COUNTER_SLOTS, Counter, CounterBlock, Direction, FallbackRecord,
    FlowKey, FlowSlot, OUTER_IP_SAMPLE_BYTES, PacketBytes, Parsed, SAMPLE_OUTER_IP, SAMPLE_PAYLOAD,
    Tunnels,
    maps::{CLOCK_COARSE, CLOCK_TICK},
    parse_ethernet,
    slot::{PROBE_WINDOW, SLOT_BUSY, SLOT_EMPTY, flow_hash, home_slot, key_words, live_tag},
};

use crate::{
    atomic,
    enforce::{Verdict, judge_packet},
    maps::{
        APP_SAMPLES, CLOCK, COUNTERS, FALLBACK, FLOW_HASH_KEY, FLOW_SLOTS, FLOWS, FLOWS_TAKEN,
    },
    packet::Packet,
};

/// This CPU's counter block, looked up once per packet.
struct Counters(*mut CounterBlock);

impl Counters {
    #[inline(always)]
    fn add(&self, c: Counter, n: u64) {
        let i = c as usize;
        if i < COUNTER_SLOTS {
            // SAFETY: this CPU's value of a live per-CPU array; programs do not nest.
            unsafe { (*self.0).counters[i] += n };
        }
    }
}

/// Accounts one frame. `segs` is the number of wire packets the frame stands for
/// (GSO super-packets on egress); 0 or 1 means one. `vlan` is an out-of-band outer VLAN
/// id (TC: hardware-accelerated tag), which takes precedence over in-frame tags.
/// With `enforce`, the packet is judged by the current policy first; the verdict is
/// recorded with the flow and returned (the caller drops the packet if told to).
/// `load(offset, to, len)` copies packet bytes (the program type's load-bytes helper; 0
/// on success), for payload samples. `tunnels` is a constant of each program (one
/// program per mode, chosen by the loader): the default programs carry no inner-parse
/// code, whose registers and branches cost every packet ~12 ns when it is compiled in.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn account(
    pkt: Packet,
    tunnels: Tunnels,
    frame_len: u64,
    ifindex: u32,
    dir: Direction,
    segs: u32,
    vlan: Option<u16>,
    enforce: bool,
    load: &impl Fn(u32, *mut u8, u32) -> i64,
) -> Verdict {
    let Some(blk) = COUNTERS.get_ptr_mut(0) else {
        return Verdict::PASS;
    };
    let counters = Counters(blk);
    // SAFETY: field of the block just looked up.
    let pkt = pkt.with_scratch(unsafe { core::ptr::addr_of_mut!((*blk).scratch) });
    let count = |c: Counter, n: u64| counters.add(c, n);
    count(Counter::Packets, 1);
    count(Counter::FrameBytes, frame_len);
    let parsed = match parse_ethernet(&pkt, tunnels) {
        Ok(p) => p,
        Err(e) => {
            count(e.counter(), 1);
            return Verdict::PASS;
        }
    };
    if let Some(w) = parsed.warn {
        count(w, 1);
    }
    if tunnels == Tunnels::Inner && parsed.key.tunnel != 0 {
        count(Counter::Decapsulated, 1);
    }
    let mut key = parsed.key;
    key.set_capture(ifindex, dir, vlan);

    // A GSO super-packet leaves as `segs` packets, each with its own headers.
    let (packets, bytes) = if segs > 1 && parsed.hdr_len > 0 {
        (
            segs as u64,
            parsed.ip_bytes as u64 + (segs as u64 - 1) * parsed.hdr_len as u64,
        )
    } else {
        (1, parsed.ip_bytes as u64)
    };
    let v = if enforce {
        judge_packet(&key, packets, bytes, &count)
    } else {
        Verdict::PASS
    };
    // The clock userspace chose (one inlined array read): the tick it publishes, or a
    // helper call per packet (the precise one also reads the clocksource).
    let clock = CLOCK.get(0).copied().unwrap_or_default();
    let now = if clock.clock == CLOCK_TICK {
        clock.tick_ns
    } else if clock.clock == CLOCK_COARSE {
        // SAFETY: helper with no arguments.
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        // SAFETY: helper with no arguments.
        unsafe { bpf_ktime_get_ns() }
    };
    let meta = parsed.tcp_flags as u64
        | (parsed.icmp as u64) << 16
        | (v.verdict as u64) << 32
        | (v.rule as u64) << 40
        | (v.policy as u64) << 48;
    // This CPU's owner value goes with the packet count (a helper call inside the global
    // function would spill its arguments past the verifier's stack limit).
    // SAFETY: helper with no arguments (inlined by the verifier on x86-64).
    let own = FlowSlot::owner_of(unsafe { bpf_get_smp_processor_id() });
    let seen = tidegate_flow_add(&key, pack_count(packets, own), bytes, now, meta);
    let res: Result<u64, ()> = if seen >= 0 { Ok(seen as u64) } else { Err(()) };
    if let Ok(seen) = res {
        count(Counter::Accounted, 1);
        // Only a flow's first packets since the probe last took its counters (per
        // record) can carry its name: a busy resolver's long-lived 5-tuple is not
        // copied packet by packet.
        if seen <= SAMPLE_FIRST_PACKETS {
            sample_app(&pkt, &parsed, &key, &count, load);
        }
        // A tunnel's endpoints, once per flow per record.
        if tunnels == Tunnels::Inner && parsed.key.tunnel != 0 && seen <= packets {
            sample_outer(&parsed, &key, &count, load);
        }
        return v;
    }
    // Map full (or out of memory): keep the packet through the ring buffer, written in
    // place (no record on the stack).
    let Some(mut entry) = FALLBACK.reserve::<FallbackRecord>(0) else {
        count(Counter::FallbackDropped, 1);
        return v;
    };
    // SAFETY: the reserved record is ours until submitted; every field is written.
    unsafe {
        entry.as_mut_ptr().write(FallbackRecord {
            key,
            ts_ns: now,
            packets: packets as u32,
            bytes: bytes as u32,
            tcp_flags: parsed.tcp_flags,
            icmp: parsed.icmp,
            verdict: v.verdict,
            rule: v.rule,
            policy: v.policy,
        });
    }
    entry.submit(0);
    count(Counter::MapFull, 1);
    count(Counter::Accounted, 1);
    v
}

/// Adds a packet to a live slot. `interval_first_ns` first, then the counters (bytes,
/// then packets): when the probe sees the packet count grew, the interval's first stamp
/// and the packet's bytes are already there. The CPU that claimed the slot (`own`, its
/// [`FlowSlot::owner_of`]) adds with plain stores, any other CPU atomically to the
/// shared pair: each counter word has one kind of writer (see `tidegate_common::slot`).
/// Returns the packets since the probe's last export of the slot (for sampling).
#[inline(always)]
fn bump(s: *mut FlowSlot, count: u64, bytes: u64, now: u64, meta: u64) -> u64 {
    let (own, packets) = unpack_count(count);
    // SAFETY: `s` points at a slot of the live FLOWS array (8-aligned fields); other
    // CPUs and the probe touch the same slot only through atomics, benign word stores,
    // or words this CPU does not write.
    unsafe {
        if read_volatile(addr_of!((*s).interval_first_ns)) == 0 {
            write_volatile(addr_of_mut!((*s).interval_first_ns), now);
        }
        if own != 0 && read_volatile(addr_of!((*s).owner)) == own {
            // Only this CPU writes these words, and its program runs do not nest:
            // bytes, then packets, each one aligned store the probe reads whole.
            let b = read_volatile(addr_of!((*s).bytes));
            write_volatile(addr_of_mut!((*s).bytes), b.wrapping_add(bytes));
            let p = read_volatile(addr_of!((*s).packets));
            write_volatile(addr_of_mut!((*s).packets), p.wrapping_add(packets));
        } else {
            // Bytes before packets, the packet add ordered after it: a probe that sees a
            // packet counted sees its bytes.
            atomic::add(addr_of_mut!((*s).shared_bytes), bytes);
            atomic::add_ordered(addr_of_mut!((*s).shared_packets), packets);
        }
        write_volatile(addr_of_mut!((*s).last_ns), now);
        // Only a flag the interval has not seen yet costs an atomic (most packets of a
        // TCP flow repeat the same flags).
        let flags = meta as u16 as u32;
        if flags & !read_volatile(addr_of!((*s).tcp_flags)) != 0 {
            atomic::or(addr_of_mut!((*s).tcp_flags), flags);
        }
        let icmp = (meta >> 16) as u16;
        if icmp != 0 {
            write_volatile(addr_of_mut!((*s).icmp), icmp);
        }
        let vd = verdict_of(meta);
        if vd.verdict > read_volatile(addr_of!((*s).verdict)) {
            write_volatile(addr_of_mut!((*s).verdict), vd.verdict);
            write_volatile(addr_of_mut!((*s).rule), vd.rule);
            write_volatile(addr_of_mut!((*s).policy), vd.policy);
        }
        let n = read_volatile(addr_of!((*s).interval_packets)).saturating_add(packets as u32);
        write_volatile(addr_of_mut!((*s).interval_packets), n);
        n as u64
    }
}

/// The `count` argument of [`tidegate_flow_add`]: the packets (bits 0-31, a frame's
/// segment count) and this CPU's [`FlowSlot::owner_of`] (bits 32-47).
#[inline(always)]
fn pack_count(packets: u64, own: u16) -> u64 {
    packets & 0xffff_ffff | (own as u64) << 32
}

/// (owner, packets) from [`pack_count`]'s word.
#[inline(always)]
fn unpack_count(count: u64) -> (u16, u64) {
    ((count >> 32) as u16, count & 0xffff_ffff)
}

/// The verdict packed in `meta` (see [`tidegate_flow_add`]).
#[inline(always)]
fn verdict_of(meta: u64) -> Verdict {
    Verdict {
        verdict: (meta >> 32) as u8,
        rule: (meta >> 40) as u8,
        policy: (meta >> 48) as u16,
    }
}

/// Whether two keys are equal (seven word compares).
#[inline(always)]
fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    let (x, y) = (key_words(a), key_words(b));
    x[0] == y[0]
        && x[1] == y[1]
        && x[2] == y[2]
        && x[3] == y[3]
        && x[4] == y[4]
        && x[5] == y[5]
        && x[6] == y[6]
}

/// Accounts a packet in the flow table: [`add`] as a global BPF function, which the
/// verifier checks once on its own instead of once per parser path (the probe loop would
/// otherwise multiply every path's states). `meta` packs the TCP flags (bits 0-15), the
/// ICMP type/code (16-31), the verdict (32-39), its rule (40-47) and policy (48-63).
/// `count` is the packets and this CPU's owner value ([`pack_count`]).
/// Returns the packets since the probe's last export of the slot, or -1 when the flow
/// has no slot (the caller falls back).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tidegate_flow_add(
    key: *const FlowKey,
    count: u64,
    bytes: u64,
    now: u64,
    meta: u64,
) -> i64 {
    // The verifier passes global functions' pointer arguments as possibly null.
    if key.is_null() {
        return -1;
    }
    // SAFETY: non-null, and the verifier checked the caller passes a FlowKey's worth of
    // readable memory.
    match add(unsafe { &*key }, count, bytes, now, meta) {
        Ok(n) => n as i64,
        Err(()) => -1,
    }
}

/// Accounts a packet in the flow table (see `tidegate_common::slot`): the key's slot in
/// its probe window, else a free slot of the window claimed with a compare-and-swap.
/// `Err` when every slot of the window holds another flow (the caller falls back).
/// `count` and `meta` as [`tidegate_flow_add`] takes them: unpacked where they are used,
/// so fewer values stay live across the probe loops (the verifier's 512-byte stack limit
/// covers this function and the largest caller together).
#[inline(always)]
fn add(key: &FlowKey, count: u64, bytes: u64, now: u64, meta: u64) -> Result<u64, ()> {
    // SAFETY: a read-only global the loader sets before verification.
    let slots = unsafe { read_volatile(&FLOW_SLOTS) };
    // SAFETY: word `i` (< 7) of a read-only global the loader sets before verification.
    let h = flow_hash(key, |i| unsafe {
        read_volatile(addr_of!(FLOW_HASH_KEY).cast::<u64>().add(i))
    });
    let tag = live_tag(h);
    let base = home_slot(h, slots);
    // The window's i-th slot, wrapping at the end of the table.
    let at = |i: u32| {
        let j = base + i;
        if j >= slots { j - slots } else { j }
    };
    for i in 0..PROBE_WINDOW {
        let Some(s) = FLOWS.get_ptr_mut(at(i)) else {
            return Err(());
        };
        // SAFETY: slot of the live array; the state word is read once.
        let st = unsafe { read_volatile(addr_of!((*s).state)) };
        // SAFETY: as above; a key is written before its tag is published.
        if st == tag && same_key(unsafe { &*addr_of!((*s).key) }, key) {
            return Ok(bump(s, count, bytes, now, meta));
        }
    }
    // Not there: claim the window's first free slot.
    for i in 0..PROBE_WINDOW {
        let idx = at(i);
        let Some(s) = FLOWS.get_ptr_mut(idx) else {
            return Err(());
        };
        // SAFETY: slot of the live array; claiming it is one compare-and-swap.
        let state = unsafe { addr_of_mut!((*s).state) };
        // SAFETY: as above.
        if unsafe {
            read_volatile(state) != SLOT_EMPTY || !atomic::cas(state, SLOT_EMPTY, SLOT_BUSY)
        } {
            continue;
        }
        // Mark it taken for the probe's sweep (which clears the bit before freeing).
        if let Some(w) = FLOWS_TAKEN.get_ptr_mut(idx / 64) {
            // SAFETY: a word of the live bitmap array.
            unsafe { atomic::or64(w, 1 << (idx % 64)) };
        }
        let (own, packets) = unpack_count(count);
        let vd = verdict_of(meta);
        // SAFETY: the slot is ours until the tag is published (the probe cleared it
        // before it stored SLOT_EMPTY).
        unsafe {
            write_volatile(addr_of_mut!((*s).key), *key);
            write_volatile(addr_of_mut!((*s).last_ns), now);
            write_volatile(addr_of_mut!((*s).interval_first_ns), now);
            write_volatile(addr_of_mut!((*s).tcp_flags), meta as u16 as u32);
            write_volatile(addr_of_mut!((*s).icmp), (meta >> 16) as u16);
            write_volatile(addr_of_mut!((*s).verdict), vd.verdict);
            write_volatile(addr_of_mut!((*s).rule), vd.rule);
            write_volatile(addr_of_mut!((*s).policy), vd.policy);
            write_volatile(addr_of_mut!((*s).interval_packets), packets as u32);
            write_volatile(addr_of_mut!((*s).owner), own);
            write_volatile(addr_of_mut!((*s).bytes), bytes);
            write_volatile(addr_of_mut!((*s).packets), packets);
        }
        // Publishing with an atomic exchange orders the writes above before the tag.
        // SAFETY: as above.
        unsafe { atomic::publish(state, tag) };
        return Ok(packets);
    }
    Err(())
}

/// Packets of a flow since the probe last took its counters (per record) whose payload
/// start may be sampled.
const SAMPLE_FIRST_PACKETS: u64 = 4;

/// Whether a port is DNS's (DNS, mDNS, LLMNR).
#[inline(always)]
fn dns_port(p: u16) -> bool {
    p == 53 || p == 5353 || p == 5355
}

/// Sends the start of the L4 payload of a DNS message (UDP or TCP on a DNS port) or of a
/// TCP segment that starts a TLS handshake record to userspace, which reads the flow's
/// name from it. Everything else costs two comparisons.
#[inline(always)]
fn sample_app(
    pkt: &Packet,
    p: &Parsed,
    key: &FlowKey,
    count: &impl Fn(Counter, u64),
    load: &impl Fn(u32, *mut u8, u32) -> i64,
) {
    if p.hdr_len == 0 || (key.proto != 6 && key.proto != 17) {
        return;
    }
    let off = p.l3_off as usize + p.hdr_len as usize;
    let end = p.l3_off as usize + p.ip_bytes as usize;
    if end <= off {
        return;
    }
    let dns = dns_port(key.sport) || dns_port(key.dport);
    if !dns {
        if key.proto != 6 {
            return;
        }
        // A TLS handshake record: content type 22, version 3.x.
        if pkt.bytes::<2>(off).map(u16::from_be_bytes) != Some(0x1603) {
            return;
        }
    }
    let want = if end - off > APP_SAMPLE_BYTES {
        APP_SAMPLE_BYTES
    } else {
        end - off
    };
    // `want` is 1..=APP_SAMPLE_BYTES; written so that the verifier sees that range.
    let len = ((want - 1) & (APP_SAMPLE_BYTES - 1)) + 1;
    send_sample(key, SAMPLE_PAYLOAD, off as u32, len as u32, count, load);
}

/// Sends the outer IP header of a decapsulated tunnel packet to userspace, which reads
/// the tunnel's endpoints from it. (An IPv4 outer header with its tunnel header is
/// always longer than the 40 bytes sent.)
#[inline(always)]
fn sample_outer(
    p: &Parsed,
    key: &FlowKey,
    count: &impl Fn(Counter, u64),
    load: &impl Fn(u32, *mut u8, u32) -> i64,
) {
    send_sample(
        key,
        SAMPLE_OUTER_IP,
        p.outer_l3_off as u32,
        OUTER_IP_SAMPLE_BYTES as u32,
        count,
        load,
    );
}

/// Sends `len` packet bytes from `off` (1..=APP_SAMPLE_BYTES) to userspace as an
/// [`AppSample`] of `kind` for `key`: one ring reservation filled in place, one
/// load-bytes call (which reads fragments too; a copy loop would multiply the
/// verifier's work by every parser path). Counted as lost when the ring is full.
#[inline(always)]
fn send_sample(
    key: &FlowKey,
    kind: u8,
    off: u32,
    len: u32,
    count: &impl Fn(Counter, u64),
    load: &impl Fn(u32, *mut u8, u32) -> i64,
) {
    let Some(mut entry) = APP_SAMPLES.reserve::<AppSample>(0) else {
        count(Counter::AppSampleLost, 1);
        return;
    };
    let s = entry.as_mut_ptr();
    // SAFETY: `s` points at the reserved, exclusively owned sample; the copy stays
    // inside its `data` array (`len` is at most its size).
    unsafe {
        (*s).key = *key;
        (*s).kind = kind;
        (*s)._pad = [0; 5];
        let data = core::ptr::addr_of_mut!((*s).data) as *mut u8;
        if load(off, data, len) != 0 {
            entry.discard(0);
            return;
        }
        (*s).len = len as u16;
    }
    entry.submit(0);
}
