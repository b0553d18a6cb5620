//! Enforcement (XDP drop rules): the layouts the probe writes and the XDP program reads.
//!
//! A compiled policy is a set of **rule bits** (at most 64 address rules and 64 port
//! rules). Every address the policy names resolves to a [`PrefixClass`]: the rule bits
//! the address matches as a source and as a destination. A packet matches address rule
//! `b` when bit `b` is in `(src_class.src_mask | any_src) & (dst_class.dst_mask | any_dst)`.
//! The policy's `allow`/`deny` rules are *ordered* (first match in file order decides):
//! the lowest matching bit of `ordered` wins, and it drops only if it is in
//! `drop_ordered`. Other drop rules (isolation, deny lists, allow lists, manual blocks)
//! are in `drop_unordered`. Port rules are per line: a line's `port_mask` names the port
//! rules on it, and a packet violates every one of them that allows neither its source
//! nor its destination port.
//!
//! IPv4 and IPv6 addresses have their own LPM tries (4- and 16-byte keys) and their own
//! exact-match hash maps for host prefixes (/32, /128), looked up first. Tables a policy
//! leaves empty are not looked up at all ([`EnforceConfig::tables`]).

/// Bit of [`PrefixClass::flags`]: the address is protected; no packet from or to it is
/// ever dropped.
pub const CLASS_PROTECTED: u32 = 1;

/// [`EnforceConfig::tables`]: the IPv4 host map has entries.
pub const TABLE_HOST4: u32 = 1;
/// The IPv6 host map has entries.
pub const TABLE_HOST6: u32 = 2;
/// The IPv4 LPM trie has entries.
pub const TABLE_LPM4: u32 = 4;
/// The IPv6 LPM trie has entries.
pub const TABLE_LPM6: u32 = 8;
/// The line map has entries.
pub const TABLE_LINES: u32 = 16;
/// Some prefix classifies a source differently from the default (or is protected):
/// without it the source address is not looked up (its class is the default).
pub const TABLE_SRC: u32 = 32;
/// Some prefix matters as a packet's destination.
pub const TABLE_DST: u32 = 64;

/// How a line treats a packet a drop rule matches.
pub const MODE_MONITOR: u32 = 0;
/// The packet is dropped.
pub const MODE_ENFORCE: u32 = 1;

/// [`crate::FlowStats::verdict`]: no drop rule matched.
pub const VERDICT_PASS: u8 = 0;
/// A drop rule matched on a line in monitor mode: counted, passed.
pub const VERDICT_WOULD_DROP: u8 = 1;
/// A drop rule matched on a line in enforce mode: the packet was dropped.
pub const VERDICT_DROPPED: u8 = 2;

/// Rule indices 0..64 are address rules (bit `i`), 64..128 port rules (bit `i - 64`).
pub const PORT_RULE_BASE: u8 = 64;
/// Entries of the per-rule counter array: index `rule + RULE_SLOTS * dropped`.
pub const RULE_SLOTS: u32 = 128;
/// Entries of the per-rule counter array.
pub const RULE_COUNTER_ENTRIES: u32 = 2 * RULE_SLOTS;

/// The rule bits an address (prefix) matches on each side, and its flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixClass {
    /// Address rules this address matches as the packet's source.
    pub src_mask: u64,
    /// Address rules this address matches as the packet's destination.
    pub dst_mask: u64,
    /// [`CLASS_PROTECTED`].
    pub flags: u32,
    /// Always zero.
    pub pad: u32,
}

/// One generation's policy-wide words (`ENF_CFG_*[0]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceConfig {
    /// Rules that match any source address.
    pub any_src: u64,
    /// Rules that match any destination address.
    pub any_dst: u64,
    /// Class of a source address no prefix covers.
    pub default_src: u64,
    /// Class of a destination address no prefix covers.
    pub default_dst: u64,
    /// The ordered (allow/deny) rules: the lowest matching bit decides.
    pub ordered: u64,
    /// Ordered rules that drop.
    pub drop_ordered: u64,
    /// Unordered rules that drop.
    pub drop_unordered: u64,
    /// Mode of a line without its own entry ([`MODE_MONITOR`] / [`MODE_ENFORCE`]).
    pub default_mode: u32,
    /// Low 32 bits of the policy version (stamped into flows as `policy`).
    pub version: u32,
    /// `TABLE_*` bits: which tables hold entries (the others are skipped).
    pub tables: u32,
    /// Always zero.
    pub pad: u32,
}

/// A line's entry (`ENF_LINES_*`, keyed by ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineRule {
    /// Port rules that apply on this line.
    pub port_mask: u64,
    /// [`MODE_MONITOR`] or [`MODE_ENFORCE`].
    pub mode: u32,
    /// Always zero.
    pub pad: u32,
}

/// Packets and bytes a rule matched (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCount {
    /// Packets.
    pub packets: u64,
    /// IP-layer bytes.
    pub bytes: u64,
}

/// Key of `ENF_PORTS_*`: protocol and port, or protocol with any port.
#[inline(always)]
pub const fn port_key(proto: u8, port: Option<u16>) -> u32 {
    match port {
        Some(p) => ((proto as u32) << 17) | p as u32,
        None => ((proto as u32) << 17) | (1 << 16),
    }
}

/// Index (0..64) of the lowest set bit of a non-zero mask, without a branch, loop or
/// table: the population count of the bits below it (SWAR). Branch-free keeps the
/// verifier's path count flat (every branch here would multiply the parser's paths).
#[inline(always)]
pub fn lowest_bit(m: u64) -> u8 {
    let mut v = (m & m.wrapping_neg()).wrapping_sub(1);
    v = v - ((v >> 1) & 0x5555_5555_5555_5555);
    v = (v & 0x3333_3333_3333_3333) + ((v >> 2) & 0x3333_3333_3333_3333);
    v = (v + (v >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    (v.wrapping_mul(0x0101_0101_0101_0101) >> 56) as u8
}

/// What a judged packet gets: the verdict and the rule index (see [`PORT_RULE_BASE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// A `VERDICT_*`.
    pub verdict: u8,
    /// The rule that decided it.
    pub rule: u8,
}

/// Whether either address is protected (then nothing is dropped, whatever matched).
#[inline(always)]
pub fn protected(src: &PrefixClass, dst: &PrefixClass) -> bool {
    (src.flags | dst.flags) & CLASS_PROTECTED != 0
}

/// The decision for one packet, given its classes (the kernel and userspace tests run
/// this same function). `None` when no drop rule matches. Protection is checked by the
/// caller ([`protected`]), which counts what it saved.
#[inline(always)]
pub fn judge(
    cfg: &EnforceConfig,
    src: &PrefixClass,
    dst: &PrefixClass,
    mode: u32,
    port_violations: u64,
) -> Option<Judgement> {
    let verdict = if mode == MODE_ENFORCE {
        VERDICT_DROPPED
    } else {
        VERDICT_WOULD_DROP
    };
    let m = (src.src_mask | cfg.any_src) & (dst.dst_mask | cfg.any_dst);
    let ordered = m & cfg.ordered;
    if ordered != 0 {
        let first = ordered & ordered.wrapping_neg();
        if first & cfg.drop_ordered != 0 {
            return Some(Judgement {
                verdict,
                rule: lowest_bit(first),
            });
        }
    }
    let other = m & cfg.drop_unordered;
    if other != 0 {
        return Some(Judgement {
            verdict,
            rule: lowest_bit(other),
        });
    }
    if port_violations != 0 {
        return Some(Judgement {
            verdict,
            rule: PORT_RULE_BASE + lowest_bit(port_violations),
        });
    }
    None
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain repr(C) structs of integers with explicit padding fields.
    unsafe impl aya::Pod for super::PrefixClass {}
    unsafe impl aya::Pod for super::EnforceConfig {}
    unsafe impl aya::Pod for super::LineRule {}
    unsafe impl aya::Pod for super::RuleCount {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_bit_matches_trailing_zeros() {
        for i in 0..64 {
            assert_eq!(lowest_bit(1u64 << i), i as u8);
            assert_eq!(lowest_bit(u64::MAX << i), i as u8);
        }
    }

    #[test]
    fn first_ordered_rule_decides_and_protected_never_drops() {
        // bit 0: allow A->B, bit 1: deny any->B (drop), bit 2: deny list (drop).
        let cfg = EnforceConfig {
            any_src: 0b110,
            ordered: 0b011,
            drop_ordered: 0b010,
            drop_unordered: 0b100,
            ..Default::default()
        };
        let a = PrefixClass {
            src_mask: 0b001,
            ..Default::default()
        };
        let b = PrefixClass {
            dst_mask: 0b011,
            ..Default::default()
        };
        let listed = PrefixClass {
            dst_mask: 0b100,
            ..Default::default()
        };
        let other = PrefixClass::default();
        assert_eq!(judge(&cfg, &a, &b, MODE_ENFORCE, 0), None, "allow wins");
        assert_eq!(
            judge(&cfg, &other, &b, MODE_ENFORCE, 0),
            Some(Judgement {
                verdict: VERDICT_DROPPED,
                rule: 1
            })
        );
        assert_eq!(
            judge(&cfg, &other, &listed, MODE_MONITOR, 0),
            Some(Judgement {
                verdict: VERDICT_WOULD_DROP,
                rule: 2
            })
        );
        let prot = PrefixClass {
            flags: CLASS_PROTECTED,
            ..other
        };
        assert!(protected(&prot, &b) && !protected(&other, &b));
        assert_eq!(
            judge(&cfg, &other, &other, MODE_ENFORCE, 0b100),
            Some(Judgement {
                verdict: VERDICT_DROPPED,
                rule: 66
            })
        );
    }
}
