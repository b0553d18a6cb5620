//! Enforcement: judge an ingress packet against the current policy generation.

use aya_ebpf::maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key};
use tidegate_common::{
    Counter, FlowKey,
    enforce::{
        EnforceConfig, Judgement, LineRule, PrefixClass, RULE_SLOTS, RuleCount, VERDICT_DROPPED,
        judge, port_key, protected,
    },
    maps::CTL_ENFORCE,
};

use crate::maps::{
    CONTROL, ENF_CFG_0, ENF_CFG_1, ENF_COUNTS_0, ENF_COUNTS_1, ENF_HOST_0, ENF_HOST_1, ENF_LINES_0,
    ENF_LINES_1, ENF_LPM_0, ENF_LPM_1, ENF_PORTS_0, ENF_PORTS_1,
};

/// One generation's maps.
struct Set {
    lpm: &'static LpmTrie<[u8; 16], PrefixClass>,
    host: &'static HashMap<[u8; 16], PrefixClass>,
    cfg: &'static Array<EnforceConfig>,
    lines: &'static HashMap<u32, LineRule>,
    ports: &'static HashMap<u32, u64>,
    counts: &'static PerCpuArray<RuleCount>,
}

/// What the accounting code records with the packet.
#[derive(Clone, Copy)]
pub struct Verdict {
    /// `VERDICT_*`.
    pub verdict: u8,
    /// Rule index.
    pub rule: u8,
    /// Low 16 bits of the policy version.
    pub policy: u16,
}

impl Verdict {
    pub const PASS: Verdict = Verdict {
        verdict: 0,
        rule: 0,
        policy: 0,
    };
}

#[inline(always)]
fn class(set: &Set, cfg: &EnforceConfig, addr: &[u8; 16]) -> PrefixClass {
    // SAFETY: map values are read by copy while the program runs (RCU-protected).
    if let Some(c) = unsafe { set.host.get(addr) } {
        return *c;
    }
    if let Some(c) = set.lpm.get(Key::new(128, *addr)) {
        return *c;
    }
    PrefixClass {
        src_mask: cfg.default_src,
        dst_mask: cfg.default_dst,
        flags: 0,
        pad: 0,
    }
}

#[inline(always)]
fn allowed(set: &Set, key: u32) -> u64 {
    // SAFETY: as above.
    unsafe { set.ports.get(&key) }.copied().unwrap_or(0)
}

#[inline(always)]
fn run(
    set: &Set,
    key: &FlowKey,
    packets: u64,
    bytes: u64,
    count: &impl Fn(Counter, u64),
) -> Verdict {
    let Some(cfg) = set.cfg.get(0) else {
        return Verdict::PASS;
    };
    let cfg = *cfg;
    let src = class(set, &cfg, &key.src);
    let dst = class(set, &cfg, &key.dst);
    // SAFETY: as above.
    let line = unsafe { set.lines.get(&key.ifindex) }.copied();
    let (mode, port_mask) = match line {
        Some(l) => (l.mode, l.port_mask),
        None => (cfg.default_mode, 0),
    };
    let mut port_violations = 0;
    if port_mask != 0 {
        let ok = allowed(set, port_key(key.proto, Some(key.dport)))
            | allowed(set, port_key(key.proto, Some(key.sport)))
            | allowed(set, port_key(key.proto, None));
        port_violations = port_mask & !ok;
    }
    let Some(Judgement { verdict, rule }) = judge(&cfg, &src, &dst, mode, port_violations) else {
        return Verdict::PASS;
    };
    if protected(&src, &dst) {
        count(Counter::EnforceProtected, packets);
        return Verdict::PASS;
    }
    let dropped = verdict == VERDICT_DROPPED;
    count(
        if dropped {
            Counter::EnforceDropped
        } else {
            Counter::EnforceWouldDrop
        },
        packets,
    );
    let idx = rule as u32 + if dropped { RULE_SLOTS } else { 0 };
    if let Some(c) = set.counts.get_ptr_mut(idx) {
        // SAFETY: this CPU's slot of a live per-CPU array; programs do not nest.
        unsafe {
            (*c).packets += packets;
            (*c).bytes += bytes;
        }
    }
    Verdict {
        verdict,
        rule,
        policy: cfg.version as u16,
    }
}

/// Judges a packet with the policy generation userspace selected (none: it passes).
#[inline(always)]
pub fn judge_packet(
    key: &FlowKey,
    packets: u64,
    bytes: u64,
    count: &impl Fn(Counter, u64),
) -> Verdict {
    match CONTROL.get(CTL_ENFORCE).copied().unwrap_or(0) {
        1 => run(
            &Set {
                lpm: &ENF_LPM_0,
                host: &ENF_HOST_0,
                cfg: &ENF_CFG_0,
                lines: &ENF_LINES_0,
                ports: &ENF_PORTS_0,
                counts: &ENF_COUNTS_0,
            },
            key,
            packets,
            bytes,
            count,
        ),
        2 => run(
            &Set {
                lpm: &ENF_LPM_1,
                host: &ENF_HOST_1,
                cfg: &ENF_CFG_1,
                lines: &ENF_LINES_1,
                ports: &ENF_PORTS_1,
                counts: &ENF_COUNTS_1,
            },
            key,
            packets,
            bytes,
            count,
        ),
        _ => Verdict::PASS,
    }
}
