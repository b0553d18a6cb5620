//! Per-packet accounting: parse, then add to the current generation's flow map.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    maps::PerCpuHashMap,
};
use tidegate_common::{
    APP_SAMPLE_BYTES, AppSample, COUNTER_SLOTS, Counter, CounterBlock, Direction,
    FallbackRecord, FlowKey, FlowStats, PacketBytes, Parsed,
    maps::{CLOCK_COARSE, CLOCK_TICK, CTL_CLOCK, CTL_GENERATION},
    parse_ethernet,
};

use crate::{
    enforce::{Verdict, judge_packet},
    maps::{APP_SAMPLES, CONTROL, COUNTERS, FALLBACK, FLOWS_GEN0, FLOWS_GEN1, TICK},
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
/// `load(offset, to, len)` copies packet bytes (the program type's load-bytes helper; 0
/// on success), for payload samples.
#[inline(always)]
pub fn account(
    pkt: Packet,
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
    // The clock userspace chose: the tick it publishes (an inlined array read), or a
    // helper call per packet (the precise one also reads the clocksource).
    let clock = CONTROL.get(CTL_CLOCK).copied();
    let now = if clock == Some(CLOCK_TICK) {
        TICK.get(0).copied().unwrap_or(0)
    } else if clock == Some(CLOCK_COARSE) {
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
    if let Ok(seen) = res {
        count(Counter::Accounted, 1);
        // Only a flow's first packets (per sweep interval) can carry its name: a busy
        // resolver's long-lived 5-tuple is not copied packet by packet.
        if seen <= SAMPLE_FIRST_PACKETS {
            sample_app(&pkt, &parsed, &key, &count, load);
        }
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
fn bump(v: *mut FlowStats, packets: u64, bytes: u64, now: u64, flags: u16, icmp: u16, vd: Verdict) -> u64 {
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
        (*v).packets
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
) -> Result<u64, i32> {
    if let Some(v) = map.get_ptr_mut(key) {
        return Ok(bump(v, packets, bytes, now, flags, icmp, vd));
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
        Ok(()) => Ok(packets),
        // Another CPU created the entry between our lookup and insert.
        Err(e) if e == -EEXIST => match map.get_ptr_mut(key) {
            Some(v) => Ok(bump(v, packets, bytes, now, flags, icmp, vd)),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Packets of a flow (per CPU and sweep interval) whose payload start may be sampled.
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
    let Some(mut entry) = APP_SAMPLES.reserve::<AppSample>(0) else {
        count(Counter::AppSampleLost, 1);
        return;
    };
    let s = entry.as_mut_ptr();
    // SAFETY: `s` points at the reserved, exclusively owned sample; every write below
    // stays inside its `data` array (offsets masked to the array's size).
    unsafe {
        (*s).key = *key;
        (*s)._pad = [0; 6];
        let data = core::ptr::addr_of_mut!((*s).data) as *mut u8;
        // One helper call copies the payload start (from fragments too); a copy loop
        // would multiply the verifier's work by every parser path.
        // `want` is 1..=APP_SAMPLE_BYTES; written so that the verifier sees that range.
        let len = (((want - 1) & (APP_SAMPLE_BYTES - 1)) + 1) as u32;
        if load(off as u32, data, len) != 0 {
            entry.discard(0);
            return;
        }
        (*s).len = len as u16;
    }
    entry.submit(0);
}
