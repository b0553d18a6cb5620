//! Per-packet accounting: parse, then add to the current generation's flow map.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    maps::PerCpuHashMap,
};
use tidegate_common::{
    COUNTER_SLOTS, Counter, CounterBlock, Direction, FallbackRecord, FlowKey, FlowStats,
    maps::{CLOCK_COARSE, CTL_CLOCK, CTL_GENERATION},
    parse_ethernet,
};

use crate::{
    enforce::{Verdict, judge_packet},
    maps::{CONTROL, COUNTERS, FALLBACK, FLOWS_GEN0, FLOWS_GEN1},
    packet::Packet,
};

const EEXIST: i32 = 17;

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
#[inline(always)]
pub fn account(
    pkt: Packet,
    frame_len: u64,
    ifindex: u32,
    dir: Direction,
    segs: u32,
    vlan: Option<u16>,
    enforce: bool,
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
    let parsed = match parse_ethernet(&pkt) {
        Ok(p) => p,
        Err(e) => {
            count(e.counter(), 1);
            return Verdict::PASS;
        }
    };
    if let Some(w) = parsed.warn {
        count(w, 1);
    }
    let mut key = parsed.key;
    key.ifindex = ifindex;
    key.direction = dir as u8;
    if let Some(v) = vlan {
        key.vlan = v;
    }

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
    // The clock userspace chose (the precise one costs a clocksource read per packet).
    let now = if CONTROL.get(CTL_CLOCK).copied() == Some(CLOCK_COARSE) {
        // SAFETY: helper with no arguments.
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        // SAFETY: helper with no arguments.
        unsafe { bpf_ktime_get_ns() }
    };
    let gen_word = CONTROL.get(CTL_GENERATION).copied().unwrap_or(0);
    let res = if gen_word & 1 == 0 {
        add(
            &FLOWS_GEN0,
            &key,
            packets,
            bytes,
            now,
            parsed.tcp_flags,
            parsed.icmp,
            v,
        )
    } else {
        add(
            &FLOWS_GEN1,
            &key,
            packets,
            bytes,
            now,
            parsed.tcp_flags,
            parsed.icmp,
            v,
        )
    };
    if res.is_ok() {
        count(Counter::Accounted, 1);
        return v;
    }
    // Map full (or out of memory): keep the packet through the ring buffer.
    let rec = FallbackRecord {
        key,
        ts_ns: now,
        packets: packets as u32,
        bytes: bytes as u32,
        tcp_flags: parsed.tcp_flags,
        icmp: parsed.icmp,
        verdict: v.verdict,
        rule: v.rule,
        policy: v.policy,
    };
    if FALLBACK.output::<FallbackRecord>(&rec, 0).is_ok() {
        count(Counter::MapFull, 1);
        count(Counter::Accounted, 1);
    } else {
        count(Counter::FallbackDropped, 1);
    }
    v
}

#[inline(always)]
fn bump(v: *mut FlowStats, packets: u64, bytes: u64, now: u64, flags: u16, icmp: u16, vd: Verdict) {
    // SAFETY: `v` points at this CPU's value of a live map entry.
    unsafe {
        if (*v).packets == 0 {
            (*v).first_ns = now;
        }
        (*v).packets += packets;
        (*v).bytes += bytes;
        (*v).last_ns = now;
        (*v).tcp_flags |= flags;
        (*v).icmp = icmp;
        if vd.verdict > (*v).verdict {
            (*v).verdict = vd.verdict;
            (*v).rule = vd.rule;
            (*v).policy = vd.policy;
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn add(
    map: &PerCpuHashMap<FlowKey, FlowStats>,
    key: &FlowKey,
    packets: u64,
    bytes: u64,
    now: u64,
    flags: u16,
    icmp: u16,
    vd: Verdict,
) -> Result<(), i32> {
    if let Some(v) = map.get_ptr_mut(key) {
        bump(v, packets, bytes, now, flags, icmp, vd);
        return Ok(());
    }
    let fresh = FlowStats {
        packets,
        bytes,
        first_ns: now,
        last_ns: now,
        tcp_flags: flags,
        icmp,
        verdict: vd.verdict,
        rule: vd.rule,
        policy: vd.policy,
    };
    match map.insert(key, &fresh, BPF_NOEXIST as u64) {
        Ok(()) => Ok(()),
        // Another CPU created the entry between our lookup and insert.
        Err(e) if e == -EEXIST => match map.get_ptr_mut(key) {
            Some(v) => {
                bump(v, packets, bytes, now, flags, icmp, vd);
                Ok(())
            }
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}
