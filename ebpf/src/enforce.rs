//! Enforcement: judge an ingress packet against the current policy generation.

use aya_ebpf::maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key};
use tidegate_common::{
    Counter, FlowKey,
    enforce::{
        EnforceConfig, Judgement, LineRule, PrefixClass, RULE_SLOTS, RuleCount, TABLE_DST,
        TABLE_HOST4, TABLE_HOST6, TABLE_LINES, TABLE_LPM4, TABLE_LPM6, TABLE_SRC, VERDICT_DROPPED,
        judge, port_key, protected,
    },
    maps::CTL_ENFORCE,
};

use crate::maps::{
    CONTROL, ENF_CFG_0, ENF_CFG_1, ENF_COUNTS_0, ENF_COUNTS_1, ENF_HOST4_0, ENF_HOST4_1,
    ENF_HOST6_0, ENF_HOST6_1, ENF_LINES_0, ENF_LINES_1, ENF_LPM4_0, ENF_LPM4_1, ENF_LPM6_0,
    ENF_LPM6_1, ENF_PORTS_0, ENF_PORTS_1,
};

/// One generation's maps.
struct Set {
    lpm4: &'static LpmTrie<[u8; 4], PrefixClass>,
    lpm6: &'static LpmTrie<[u8; 16], PrefixClass>,
    host4: &'static HashMap<[u8; 4], PrefixClass>,
    host6: &'static HashMap<[u8; 16], PrefixClass>,
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
fn class(set: &Set, cfg: &EnforceConfig, family: u8, addr: &[u8; 16]) -> PrefixClass {
    // SAFETY (all lookups): map values are read by copy while the program runs
    // (RCU-protected).
    // Empty tables are not looked up (`tables`).
    let t = cfg.tables;
    let found = if family == 4 {
        let a = [addr[12], addr[13], addr[14], addr[15]];
        let host = if t & TABLE_HOST4 != 0 {
            unsafe { set.host4.get(&a) }
        } else {
            None
        };
        match host {
            Some(c) => Some(c),
            None if t & TABLE_LPM4 != 0 => set.lpm4.get(Key::new(32, a)),
            None => None,
        }
    } else {
        let host = if t & TABLE_HOST6 != 0 {
            unsafe { set.host6.get(addr) }
        } else {
            None
        };
        match host {
            Some(c) => Some(c),
            None if t & TABLE_LPM6 != 0 => set.lpm6.get(Key::new(128, *addr)),
            None => None,
        }
    };
    match found {
        Some(c) => *c,
        None => default_class(cfg),
    }
}

/// The class of an address no prefix covers.
#[inline(always)]
fn default_class(cfg: &EnforceConfig) -> PrefixClass {
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
    let src = if cfg.tables & TABLE_SRC != 0 {
        class(set, cfg, key.family, &key.src)
    } else {
        default_class(cfg)
    };
    let dst = if cfg.tables & TABLE_DST != 0 {
        class(set, cfg, key.family, &key.dst)
    } else {
        default_class(cfg)
    };
    let line = if cfg.tables & TABLE_LINES != 0 {
        // SAFETY: as above.
        unsafe { set.lines.get(&key.ifindex) }.copied()
    } else {
        None
    };
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
    let Some(Judgement { verdict, rule }) = judge(cfg, &src, &dst, mode, port_violations) else {
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
                lpm4: &ENF_LPM4_0,
                lpm6: &ENF_LPM6_0,
                host4: &ENF_HOST4_0,
                host6: &ENF_HOST6_0,
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
                lpm4: &ENF_LPM4_1,
                lpm6: &ENF_LPM6_1,
                host4: &ENF_HOST4_1,
                host6: &ENF_HOST6_1,
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
