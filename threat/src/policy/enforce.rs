//! Enforcement: the policy's `[enforce]` section, manual blocks, and the compiler that
//! turns a policy (with `action = "drop"` rules) into the [`EnforcePlan`] the probes load
//! into XDP.
//!
//! The compiler gives every drop rule (and every `allow`/`deny` rule ahead of the last
//! dropping `deny`, which can shadow it) a rule bit, collects every prefix that can
//! change a rule's answer — zone CIDRs, listed CIDRs, protected ranges, manual blocks,
//! operator ranges and the enrichment databases' networks of every country and ASN the
//! policy names — and classifies the addresses whose longest match is each prefix with
//! the collector's own zone and list logic (through a representative address of that
//! region). A packet is then judged in the kernel exactly as [`super::Policy::evaluate`]
//! judges its flow.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tidegate_base::Cidr;
use tidegate_common::enforce::{CLASS_PROTECTED, PORT_RULE_BASE, port_key};
use tidegate_common::maps::ENF_PORT_ENTRIES;
use tidegate_wire::enforce::{EnforcePlan, Mode, PlanLine, PlanPrefix, PlanRule, prefix_mask};

use super::rule::{Action, DestMatcher, RuleBody, in_set};
use super::zone::ZoneId;
use super::{EndpointInfo, Policy, PolicyError};
use crate::enrich::Enricher;

/// Rule id of manual blocks (flows they drop carry it).
pub const MANUAL_BLOCK: &str = "manual-block";

/// A range that is never dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protected {
    /// The range.
    pub cidr: Cidr,
    /// Line of the policy file that lists it (0: added by the collector).
    pub line: usize,
}

/// The `[enforce]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnforceSettings {
    /// Mode of lines not listed (`monitor` unless set).
    pub default_mode: Mode,
    /// Lines with their own mode.
    pub lines: Vec<(String, Mode)>,
    /// Ranges never dropped.
    pub protected: Vec<Protected>,
    /// Line of the section header (0: absent).
    pub line: usize,
    /// `[enforce.block_alerts]`: block the source of such alerts automatically.
    pub block_alerts: Option<BlockAlerts>,
}

/// Alerts whose source is blocked at the lines as they open (`[enforce.block_alerts]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockAlerts {
    /// Alert kinds (`port_scan`, `syn_flood`, ...).
    pub kinds: Vec<crate::detect::AlertKind>,
    /// Lowest severity that blocks.
    pub min_severity: crate::Severity,
    /// How long each block lasts.
    pub block_secs: u64,
}

/// A block made through the API for incident response: traffic from or to `cidr` is
/// dropped (subject to the line's mode) until `expires_ns`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManualBlock {
    /// Block id.
    pub id: String,
    /// Blocked range.
    pub cidr: Cidr,
    /// Unix ns when it lapses.
    pub expires_ns: u64,
    /// Why (free text from the operator).
    pub reason: String,
    /// Who made it (the API user).
    pub created_by: String,
    /// Unix ns of creation.
    pub created_ns: u64,
}

/// The most address rule bits a plan can hold.
const ADDRESS_BITS: usize = 64;

/// How a rule bit matches on each side.
#[derive(Clone, Copy, Debug)]
enum Side {
    /// Any address.
    Any,
    /// Addresses in these zones.
    Zones,
    /// Addresses in a zone other than these.
    NotZones,
    /// Listed destinations (a list rule's matcher).
    Listed,
    /// Destinations not listed.
    NotListed,
    /// Inside a manual block.
    Blocked,
}

struct Bit {
    rule: String,
    /// Index into `policy.rules` (None: manual blocks).
    rule_ix: Option<usize>,
    drops: bool,
    ordered: bool,
    src: (Side, Vec<ZoneId>),
    dst: (Side, Vec<ZoneId>),
    /// Sides named by the rule itself (checked against protected ranges).
    named: (bool, bool),
}

/// A prefix in the 128-bit space (IPv4 mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct P {
    start: u128,
    len: u8,
}

impl P {
    fn end(&self) -> u128 {
        self.start | !prefix_mask(self.len)
    }
    fn contains(&self, o: &P) -> bool {
        o.len >= self.len && (o.start & prefix_mask(self.len)) == self.start
    }
}

fn mapped(ip: IpAddr, len: u8) -> P {
    match ip {
        IpAddr::V4(v4) => {
            let a = u128::from(v4.to_ipv6_mapped());
            let len = 96 + len.min(32);
            P {
                start: a & prefix_mask(len),
                len,
            }
        }
        IpAddr::V6(v6) => {
            let len = len.min(128);
            P {
                start: u128::from(v6) & prefix_mask(len),
                len,
            }
        }
    }
}

fn of_cidr(c: &Cidr) -> P {
    mapped(c.addr(), c.prefix())
}

fn addr_of(x: u128) -> IpAddr {
    let v6 = Ipv6Addr::from(x);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Splits `[first, last]` of one family into CIDR blocks (in the 128-bit space).
fn range_to_prefixes(v4: bool, first: u128, last: u128, out: &mut Vec<P>) {
    let (base, bits) = if v4 {
        (u128::from(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()), 32u32)
    } else {
        (0, 128)
    };
    let mut cur = first;
    loop {
        // Largest block starting at `cur` that stays within `last`.
        let mut size_bits = if cur == 0 {
            bits
        } else {
            cur.trailing_zeros().min(bits)
        };
        while size_bits > 0 {
            let span = if size_bits >= 128 {
                u128::MAX
            } else {
                (1u128 << size_bits) - 1
            };
            if cur.checked_add(span).is_some_and(|e| e <= last) {
                break;
            }
            size_bits -= 1;
        }
        let len = (bits - size_bits) as u8;
        out.push(P {
            start: base | cur,
            len: if v4 { 96 + len } else { len },
        });
        let span = if size_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << size_bits) - 1
        };
        match cur.checked_add(span).and_then(|e| e.checked_add(1)) {
            Some(n) if n <= last => cur = n,
            _ => break,
        }
    }
}

fn err(policy: &Policy, line: usize, msg: String) -> PolicyError {
    PolicyError::At {
        path: policy.path.clone(),
        line,
        msg,
    }
}

/// The countries and ASNs whose networks the plan needs, with the rules that need them.
fn needed(policy: &Policy) -> (HashSet<String>, HashSet<u32>) {
    let mut cc = HashSet::new();
    let mut asn = HashSet::new();
    if !policy.rules.iter().any(|r| r.action == Action::Drop) {
        return (cc, asn);
    }
    for z in policy.zones.iter() {
        cc.extend(z.countries.iter().cloned());
        asn.extend(z.asns.iter().copied());
    }
    for r in &policy.rules {
        if r.action != Action::Drop {
            continue;
        }
        if let RuleBody::DenyList { dest, .. } | RuleBody::AllowList { dest, .. } = &r.body {
            cc.extend(dest.countries.iter().cloned());
            asn.extend(dest.asns.iter().copied());
        }
    }
    (cc, asn)
}

/// Compiles `policy` (and the live manual blocks) into a plan with `version`. Errors
/// name the rule's `file:line`: more drop rules than the kernel table holds, a drop rule
/// naming a protected range, a country or ASN no enrichment source knows, too many ports.
pub fn compile(
    policy: &Policy,
    enricher: &Enricher,
    blocks: &[ManualBlock],
    extra_protected: &[Cidr],
    version: u64,
) -> Result<EnforcePlan, PolicyError> {
    let zones_any = |s: &Option<Vec<ZoneId>>| match s {
        None => (Side::Any, vec![]),
        Some(z) => (Side::Zones, z.clone()),
    };
    // 1. Rule bits.
    let last_drop_deny = policy
        .rules
        .iter()
        .rposition(|r| r.action == Action::Drop && matches!(r.body, RuleBody::Deny { .. }));
    let mut bits: Vec<Bit> = Vec::new();
    let mut port_rules: Vec<usize> = Vec::new();
    for (i, r) in policy.rules.iter().enumerate() {
        let drops = r.action == Action::Drop;
        match &r.body {
            RuleBody::Allow { from, to } | RuleBody::Deny { from, to }
                if last_drop_deny.is_some_and(|l| i <= l) =>
            {
                bits.push(Bit {
                    rule: r.id.clone(),
                    rule_ix: Some(i),
                    drops: drops && matches!(r.body, RuleBody::Deny { .. }),
                    ordered: true,
                    src: zones_any(from),
                    dst: zones_any(to),
                    named: (from.is_some(), to.is_some()),
                });
            }
            RuleBody::Isolate { zone, peers } if drops => {
                let mut ok = peers.clone();
                ok.push(*zone);
                for (src, dst, named) in [
                    (
                        (Side::Zones, vec![*zone]),
                        (Side::NotZones, ok.clone()),
                        (true, false),
                    ),
                    (
                        (Side::NotZones, ok.clone()),
                        (Side::Zones, vec![*zone]),
                        (false, true),
                    ),
                ] {
                    bits.push(Bit {
                        rule: r.id.clone(),
                        rule_ix: Some(i),
                        drops: true,
                        ordered: false,
                        src,
                        dst,
                        named,
                    });
                }
            }
            RuleBody::DenyList { from, .. } if drops => bits.push(Bit {
                rule: r.id.clone(),
                rule_ix: Some(i),
                drops: true,
                ordered: false,
                src: zones_any(from),
                dst: (Side::Listed, vec![]),
                named: (from.is_some(), true),
            }),
            RuleBody::AllowList { from, .. } if drops => bits.push(Bit {
                rule: r.id.clone(),
                rule_ix: Some(i),
                drops: true,
                ordered: false,
                src: zones_any(from),
                dst: (Side::NotListed, vec![]),
                named: (from.is_some(), false),
            }),
            RuleBody::Ports { .. } if drops => port_rules.push(i),
            _ => {}
        }
    }
    if !blocks.is_empty() {
        for (src, dst, named) in [
            ((Side::Blocked, vec![]), (Side::Any, vec![]), (true, false)),
            ((Side::Any, vec![]), (Side::Blocked, vec![]), (false, true)),
        ] {
            bits.push(Bit {
                rule: MANUAL_BLOCK.into(),
                rule_ix: None,
                drops: true,
                ordered: false,
                src,
                dst,
                named,
            });
        }
    }
    if bits.len() > ADDRESS_BITS {
        let r = bits[ADDRESS_BITS]
            .rule_ix
            .map(|i| &policy.rules[i])
            .expect("manual blocks come last and take 2 bits");
        return Err(err(
            policy,
            r.action_line,
            format!(
                "rule {:?}: the line's enforcement table holds {ADDRESS_BITS} address rule bits \
                 (one per allow/deny rule up to the last dropping deny, two per isolation, one per list); \
                 this rule is past it",
                r.id
            ),
        ));
    }
    if port_rules.len() > 64 {
        let r = &policy.rules[port_rules[64]];
        return Err(err(
            policy,
            r.action_line,
            format!("rule {:?}: at most 64 dropping `ports` rules", r.id),
        ));
    }

    // 2. Every prefix that can change an answer.
    let mut set: Vec<P> = Vec::new();
    let protected: Vec<(Cidr, usize)> = policy
        .enforce
        .protected
        .iter()
        .map(|p| (p.cidr, p.line))
        .chain(extra_protected.iter().map(|c| (*c, 0)))
        .collect();
    let any_bits = !bits.is_empty();
    if any_bits {
        for z in policy.zones.iter() {
            set.extend(z.cidrs.iter().map(of_cidr));
        }
        for r in &policy.rules {
            if let (
                Action::Drop,
                RuleBody::DenyList { dest, .. } | RuleBody::AllowList { dest, .. },
            ) = (r.action, &r.body)
            {
                set.extend(dest.cidrs.iter().map(of_cidr));
            }
        }
        set.extend(protected.iter().map(|(c, _)| of_cidr(c)));
        set.extend(blocks.iter().map(|b| of_cidr(&b.cidr)));
        for (v4, first, last) in enricher.ranges().segments() {
            range_to_prefixes(v4, first, last, &mut set);
        }
        let (cc, asns) = needed(policy);
        let mut found_cc: HashSet<String> = HashSet::new();
        let mut found_asn: HashSet<u32> = HashSet::new();
        for db in enricher.databases() {
            let nets = db
                .networks_of(&cc, &asns)
                .map_err(|e| err(policy, policy.enforce.line.max(1), e.to_string()))?;
            for (ip, len) in nets {
                let info = enricher.lookup(ip);
                if let Some(c) = info.country {
                    found_cc.insert(c);
                }
                if let Some(a) = info.asn {
                    found_asn.insert(a);
                }
                set.push(mapped(ip, len));
            }
        }
        for (v4, first, _) in enricher.ranges().segments() {
            let ip = if v4 {
                IpAddr::V4(Ipv4Addr::from(first as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(first))
            };
            let info = enricher.lookup(ip);
            found_cc.extend(info.country);
            found_asn.extend(info.asn);
        }
        // A drop rule that depends on a country or ASN nobody knows would do nothing.
        for r in policy.rules.iter().filter(|r| r.action == Action::Drop) {
            let (mut ccs, mut ass): (Vec<&String>, Vec<u32>) = (vec![], vec![]);
            let mut zone_refs: Vec<ZoneId> = Vec::new();
            match &r.body {
                RuleBody::Deny { from, to } => {
                    zone_refs.extend(from.iter().flatten());
                    zone_refs.extend(to.iter().flatten());
                }
                RuleBody::Isolate { zone, peers } => {
                    zone_refs.push(*zone);
                    zone_refs.extend(peers);
                }
                RuleBody::DenyList { from, dest } | RuleBody::AllowList { from, dest } => {
                    zone_refs.extend(from.iter().flatten());
                    ccs.extend(dest.countries.iter());
                    ass.extend(dest.asns.iter());
                }
                _ => {}
            }
            for z in zone_refs {
                if let Some(zone) = policy.zones.get(z) {
                    ccs.extend(zone.countries.iter());
                    ass.extend(zone.asns.iter());
                }
            }
            if let Some(c) = ccs.iter().find(|c| !found_cc.contains(c.as_str())) {
                return Err(err(
                    policy,
                    r.action_line,
                    format!(
                        "rule {:?} drops by country and country {c} has no network in the \
                         enrichment sources ([enrich] mmdb/csv): the line could not enforce it",
                        r.id
                    ),
                ));
            }
            if let Some(a) = ass.iter().find(|a| !found_asn.contains(a)) {
                return Err(err(
                    policy,
                    r.action_line,
                    format!(
                        "rule {:?} drops by ASN and AS{a} has no network in the enrichment \
                         sources ([enrich] mmdb/csv): the line could not enforce it",
                        r.id
                    ),
                ));
            }
        }
    } else {
        set.extend(protected.iter().map(|(c, _)| of_cidr(c)));
    }
    set.sort();
    set.dedup();

    // 3. A representative address of each prefix's own region (the prefix minus its
    //    children); a prefix whose children cover it entirely has none and is dropped.
    //    IPv4 (mapped) and IPv6 prefixes are separate tables in the kernel: an IPv4
    //    address is never matched by an IPv6 prefix, so each family is its own tree.
    let (v4set, v6set): (Vec<P>, Vec<P>) = set.into_iter().partition(is_v4);
    let listed: Vec<Option<(Covers, &DestMatcher)>> = bits
        .iter()
        .map(|b| {
            b.rule_ix.and_then(|i| match &policy.rules[i].body {
                RuleBody::DenyList { dest, .. } | RuleBody::AllowList { dest, .. } => {
                    Some((Covers::new(dest.cidrs.iter().map(of_cidr)), dest))
                }
                _ => None,
            })
        })
        .collect();
    // `ip`: the representative address and its enrichment (None: the default region).
    let classify = |zone: ZoneId, ip: Option<(u128, &EndpointInfo)>, blocked: bool| {
        let is_listed = |j: usize| {
            let (Some((rep, info)), Some((covers, m))) = (ip, &listed[j]) else {
                return false;
            };
            covers.covers(rep)
                || info.asn.is_some_and(|a| m.asns.contains(&a))
                || info
                    .country
                    .as_ref()
                    .is_some_and(|cc| m.countries.iter().any(|c| c.eq_ignore_ascii_case(cc)))
        };
        let side_hit = |side: &(Side, Vec<ZoneId>), j: usize| match side.0 {
            Side::Any => false,
            Side::Zones => side.1.contains(&zone),
            Side::NotZones => !side.1.contains(&zone),
            Side::Listed => is_listed(j),
            Side::NotListed => !is_listed(j),
            Side::Blocked => blocked,
        };
        let mut s = 0u64;
        let mut d = 0u64;
        for (j, b) in bits.iter().enumerate() {
            if side_hit(&b.src, j) {
                s |= 1 << j;
            }
            if side_hit(&b.dst, j) {
                d |= 1 << j;
            }
        }
        (s, d)
    };
    let (default_src, default_dst) = classify(ZoneId::UNZONED, None, false);
    let now_blocks = Covers::new(blocks.iter().map(|b| of_cidr(&b.cidr)));
    let prot = Covers::new(protected.iter().map(|(c, _)| of_cidr(c)));
    let mut prefixes: Vec<PlanPrefix> = Vec::new();
    for family in [v4set, v6set] {
        let reps = representatives(&family);
        let mut classes: Vec<(P, u64, u64, u32)> = Vec::with_capacity(family.len());
        for (p, rep) in family.iter().zip(&reps) {
            let Some(rep) = *rep else { continue };
            let ip = addr_of(rep);
            let info = if any_bits {
                enricher.lookup(ip)
            } else {
                EndpointInfo::default()
            };
            let zone = policy.zones.classify(ip, &info);
            let (s, d) = classify(zone, Some((rep, &info)), now_blocks.covers(rep));
            let flags = if prot.covers(rep) { CLASS_PROTECTED } else { 0 };
            classes.push((*p, s, d, flags));
        }

        // 4. No drop rule may name a protected range.
        for (pc, line) in &protected {
            let pp = of_cidr(pc);
            for (p, s, d, _) in classes.iter().filter(|c| pp.contains(&c.0)) {
                for (j, b) in bits.iter().enumerate() {
                    if !b.drops {
                        continue;
                    }
                    let hit_src = b.named.0 && s & (1 << j) != 0;
                    let hit_dst = b.named.1 && d & (1 << j) != 0;
                    if !(hit_src || hit_dst) {
                        continue;
                    }
                    let at = match b.rule_ix {
                        Some(i) => policy.rules[i].action_line,
                        None => 0,
                    };
                    let listed = if *line > 0 {
                        format!("listed at line {line}")
                    } else {
                        "the collector's own address".into()
                    };
                    let addr = addr_of(p.start);
                    return Err(err(
                        policy,
                        at.max(1),
                        format!(
                            "rule {:?} (action = \"drop\") would drop traffic {} protected range {pc} \
                             ({listed}; {addr} is in it); narrow the rule or the protected list",
                            b.rule,
                            if hit_src { "from" } else { "to" }
                        ),
                    ));
                }
            }
        }

        // 5. Keep a prefix only if it differs from what would match without it.
        let mut stack: Vec<(P, (u64, u64, u32))> = Vec::new();
        for (p, s, d, f) in &classes {
            while stack.last().is_some_and(|(q, _)| !q.contains(p)) {
                stack.pop();
            }
            let parent = stack
                .last()
                .map(|x| x.1)
                .unwrap_or((default_src, default_dst, 0));
            let mine = (*s, *d, *f);
            if mine != parent {
                prefixes.push(PlanPrefix {
                    addr: p.start.to_be_bytes(),
                    len: p.len,
                    src_mask: *s,
                    dst_mask: *d,
                    flags: *f,
                });
            }
            stack.push((*p, mine));
        }
    }

    // 6. Policy words, ports, lines.
    let mut plan = EnforcePlan {
        version,
        default_mode: policy.enforce.default_mode,
        default_src,
        default_dst,
        prefixes,
        ..Default::default()
    };
    for (j, b) in bits.iter().enumerate() {
        let m = 1u64 << j;
        if matches!(b.src.0, Side::Any) {
            plan.any_src |= m;
        }
        if matches!(b.dst.0, Side::Any) {
            plan.any_dst |= m;
        }
        if b.ordered {
            plan.ordered |= m;
            if b.drops {
                plan.drop_ordered |= m;
            }
        } else if b.drops {
            plan.drop_unordered |= m;
        }
        plan.rules.push(PlanRule {
            index: j as u8,
            id: b.rule.clone(),
            drops: b.drops,
        });
    }
    let mut ports: BTreeMap<u32, u64> = BTreeMap::new();
    let mut line_masks: BTreeMap<String, u64> = BTreeMap::new();
    for (j, &i) in port_rules.iter().enumerate() {
        let r = &policy.rules[i];
        let RuleBody::Ports { lines, allow } = &r.body else {
            continue;
        };
        let m = 1u64 << j;
        for spec in allow {
            match spec.ports {
                None => *ports.entry(port_key(spec.proto, None)).or_default() |= m,
                Some((lo, hi)) => {
                    for p in lo..=hi {
                        *ports.entry(port_key(spec.proto, Some(p))).or_default() |= m;
                    }
                }
            }
            if ports.len() > ENF_PORT_ENTRIES as usize {
                return Err(err(
                    policy,
                    r.action_line,
                    format!(
                        "rule {:?}: the dropping `ports` rules allow more than {ENF_PORT_ENTRIES} \
                         protocol/port pairs in all; use fewer or narrower ranges",
                        r.id
                    ),
                ));
            }
        }
        for l in lines {
            *line_masks.entry(l.clone()).or_default() |= m;
        }
        plan.rules.push(PlanRule {
            index: PORT_RULE_BASE + j as u8,
            id: r.id.clone(),
            drops: true,
        });
    }
    plan.ports = ports.into_iter().collect();
    let modes: HashMap<&str, Mode> = policy
        .enforce
        .lines
        .iter()
        .map(|(n, m)| (n.as_str(), *m))
        .collect();
    let mut names: Vec<&str> = modes.keys().copied().collect();
    names.extend(line_masks.keys().map(String::as_str));
    names.sort();
    names.dedup();
    plan.lines = names
        .into_iter()
        .map(|n| PlanLine {
            name: n.to_string(),
            mode: modes.get(n).copied(),
            port_mask: line_masks.get(n).copied().unwrap_or(0),
        })
        .collect();
    Ok(plan)
}

/// Whether a prefix is in the IPv4-mapped range (the kernel's IPv4 tables).
fn is_v4(p: &P) -> bool {
    p.len >= 96 && (p.start >> 32) == 0xffff
}

/// A set of prefixes answering "is this address in one of them" with one hash lookup per
/// distinct prefix length.
struct Covers {
    set: HashSet<P>,
    lens: Vec<u8>,
}

impl Covers {
    fn new(ps: impl Iterator<Item = P>) -> Covers {
        let set: HashSet<P> = ps.collect();
        let mut lens: Vec<u8> = set.iter().map(|p| p.len).collect();
        lens.sort_unstable();
        lens.dedup();
        Covers { set, lens }
    }

    fn covers(&self, x: u128) -> bool {
        self.lens.iter().any(|&len| {
            self.set.contains(&P {
                start: x & prefix_mask(len),
                len,
            })
        })
    }
}

/// For each prefix of the sorted set, an address in it that none of its sub-prefixes
/// (in the set) contains; `None` when they cover it entirely.
fn representatives(set: &[P]) -> Vec<Option<u128>> {
    let mut reps: Vec<Option<u128>> = vec![None; set.len()];
    // Stack of (index, next address not yet covered by a child).
    let mut stack: Vec<(usize, Option<u128>)> = Vec::new();
    let close = |stack: &mut Vec<(usize, Option<u128>)>, reps: &mut Vec<Option<u128>>| {
        let (i, cursor) = stack.pop().expect("non-empty");
        if reps[i].is_none()
            && let Some(c) = cursor
            && c <= set[i].end()
        {
            reps[i] = Some(c);
        }
    };
    for (k, p) in set.iter().enumerate() {
        while stack.last().is_some_and(|(i, _)| !set[*i].contains(p)) {
            close(&mut stack, &mut reps);
        }
        if let Some((i, cursor)) = stack.last_mut() {
            // `p` is a direct child of set[i]: a gap before it is the parent's own.
            if reps[*i].is_none()
                && let Some(c) = *cursor
                && c < p.start
            {
                reps[*i] = Some(c);
            }
            *cursor = p.end().checked_add(1);
        }
        stack.push((k, Some(p.start)));
    }
    while !stack.is_empty() {
        close(&mut stack, &mut reps);
    }
    reps
}

/// Whether the plan can drop anything at all.
pub fn drops_anything(plan: &EnforcePlan) -> bool {
    plan.rules.iter().any(|r| r.drops)
}

/// Whether `ip` falls in a zone set (re-exported for the API's block checks).
pub fn zone_in(set: &Option<Vec<ZoneId>>, z: ZoneId) -> bool {
    in_set(set, z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tidegate_common::enforce::{MODE_ENFORCE, PrefixClass, VERDICT_DROPPED, judge, protected};

    /// Looks an address up in a plan the way the kernel does (exact, then longest prefix,
    /// then the default) and judges a packet.
    fn kernel_judge(plan: &EnforcePlan, src: &str, dst: &str) -> Option<String> {
        let class = |a: &str| {
            let ip: IpAddr = a.parse().unwrap();
            let x = mapped(ip, 128);
            plan.prefixes
                .iter()
                .filter(|p| {
                    let q = P {
                        start: u128::from_be_bytes(p.addr),
                        len: p.len,
                    };
                    q.contains(&x) && is_v4(&q) == ip.is_ipv4()
                })
                .max_by_key(|p| p.len)
                .map(|p| PrefixClass {
                    src_mask: p.src_mask,
                    dst_mask: p.dst_mask,
                    flags: p.flags,
                    pad: 0,
                })
                .unwrap_or(PrefixClass {
                    src_mask: plan.default_src,
                    dst_mask: plan.default_dst,
                    ..Default::default()
                })
        };
        // Every line in enforce mode (`judge` reads no table flags).
        let mut cfg = plan.kernel_config(0);
        cfg.default_mode = MODE_ENFORCE;
        let (s, d) = (class(src), class(dst));
        let j = judge(&cfg, &s, &d, MODE_ENFORCE, 0)?;
        if protected(&s, &d) {
            return None;
        }
        assert_eq!(j.verdict, VERDICT_DROPPED);
        plan.rule_id(j.rule).map(str::to_string)
    }

    const POLICY: &str = r#"
[[zone]]
name = "domestic"
cidrs = ["10.0.0.0/8"]

[[zone]]
name = "special"
cidrs = ["10.77.0.0/16"]

[[zone]]
name = "partners"
cidrs = ["203.0.113.0/24"]

[[rule]]
id = "iso"
name = "special talks to partners only"
type = "isolate"
zone = "special"
peers = ["partners"]
action = "drop"

[[rule]]
id = "ok"
name = "domestic to partners"
type = "allow"
from = ["domestic"]
to = ["partners"]

[[rule]]
id = "no-unknown"
name = "domestic never to unknown networks"
type = "deny"
from = ["domestic"]
to = ["unzoned"]
action = "drop"

[[rule]]
id = "sanctioned"
name = "sanctioned"
type = "deny_list"
cidrs = ["198.51.100.0/24", "2001:db8:bad::/48"]
action = "drop"

[enforce]
mode = "enforce"
lines = { "hk-1" = "monitor" }
protected = ["203.0.113.1/32"]
"#;

    fn policy(text: &str) -> Policy {
        Policy::parse(text, Path::new("p.toml")).unwrap()
    }

    #[test]
    fn the_plan_judges_packets_as_the_policy_judges_flows() {
        let p = policy(POLICY);
        let plan = compile(&p, &Enricher::default(), &[], &[], 5).unwrap();
        assert_eq!(plan.version, 5);
        assert_eq!(plan.default_mode, Mode::Enforce);
        let j = |s, d| kernel_judge(&plan, s, d);
        // Isolation both ways; a partner is fine.
        assert_eq!(j("10.77.1.1", "10.1.1.1").as_deref(), Some("iso"));
        assert_eq!(j("10.1.1.1", "10.77.1.1").as_deref(), Some("iso"));
        assert_eq!(j("10.77.1.1", "203.0.113.5"), None);
        // The allow rule comes first: domestic to partners passes.
        assert_eq!(j("10.1.1.1", "203.0.113.5"), None);
        // Domestic to unzoned is denied; unzoned to unzoned is not.
        assert_eq!(j("10.1.1.1", "8.8.8.8").as_deref(), Some("no-unknown"));
        assert_eq!(j("8.8.4.4", "8.8.8.8"), None);
        // The deny list holds from anywhere, v4 and v6.
        assert_eq!(j("8.8.4.4", "198.51.100.7").as_deref(), Some("sanctioned"));
        assert_eq!(
            j("2001:db8::1", "2001:db8:bad::1").as_deref(),
            Some("sanctioned")
        );
        assert_eq!(j("2001:db8::1", "2001:db8:bae::1"), None);
        // A protected address is never dropped, whatever else matches.
        assert_eq!(j("10.77.1.1", "203.0.113.1"), None);
        assert_eq!(j("203.0.113.1", "198.51.100.7"), None);
        // Cross-check against the evaluator for a grid of pairs.
        let addrs = [
            "10.1.1.1",
            "10.77.1.1",
            "203.0.113.5",
            "8.8.8.8",
            "198.51.100.7",
            "10.0.0.2",
        ];
        for s in addrs {
            for d in addrs {
                let r = tidegate_wire::FlowRecord {
                    src: s.parse().unwrap(),
                    dst: d.parse().unwrap(),
                    ..Default::default()
                };
                let v = p.evaluate(&r, &Default::default());
                let dropping: Vec<&str> = v
                    .iter()
                    .filter(|v| {
                        p.rules
                            .iter()
                            .any(|r| r.id == v.rule_id && r.action == Action::Drop)
                    })
                    .map(|v| v.rule_id.as_str())
                    .collect();
                let got = j(s, d);
                assert_eq!(
                    got.is_some(),
                    !dropping.is_empty(),
                    "{s} -> {d}: {got:?} vs {dropping:?}"
                );
                if let Some(g) = got {
                    assert!(
                        dropping.contains(&g.as_str()),
                        "{s} -> {d}: {g} not in {dropping:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_drop_rule_naming_a_protected_range_is_refused_at_its_line() {
        // Named as a destination by two rules: the first is reported, at its `action`.
        let text = POLICY.replace(
            r#"protected = ["203.0.113.1/32"]"#,
            r#"protected = ["198.51.100.128/25"]"#,
        );
        let p = policy(&text);
        let e = compile(&p, &Enricher::default(), &[], &[], 1)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:35:"), "{e}");
        assert!(
            e.contains("\"no-unknown\"") && e.contains("to protected range 198.51.100.128/25"),
            "{e}"
        );
        // In a zone a dropping rule names as its source.
        let text = POLICY.replace(
            r#"protected = ["203.0.113.1/32"]"#,
            r#"protected = ["10.0.0.0/24"]"#,
        );
        let e = compile(&policy(&text), &Enricher::default(), &[], &[], 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.toml:35:") && e.contains("from protected range 10.0.0.0/24"),
            "{e}"
        );
        // The collector's own address counts too.
        let p = policy(POLICY);
        let own: Cidr = "10.77.0.9/32".parse().unwrap();
        let e = compile(&p, &Enricher::default(), &[], &[own], 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"iso\"") && e.contains("collector's own address"),
            "{e}"
        );
    }

    #[test]
    fn unknown_countries_and_undroppable_types_are_refused_with_file_line() {
        let bad =
            "[[rule]]\nid = \"x\"\nname = \"x\"\ntype = \"deny_list\"\ncountries = [\"ZZ\"]\n";
        let e = Policy::parse(bad, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.toml:5:") && e.contains("unknown country"),
            "{e}"
        );
        let cap = "[[rule]]\nid = \"c\"\nname = \"c\"\ntype = \"byte_cap\"\nmax_bytes = 1\nwindow_secs = 1\naction = \"drop\"\n";
        let e = Policy::parse(cap, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.toml:7:") && e.contains("cannot drop"),
            "{e}"
        );
        let nodb = "[[rule]]\nid = \"x\"\nname = \"x\"\ntype = \"deny_list\"\ncountries = [\"KP\"]\naction = \"drop\"\n";
        let p = policy(nodb);
        let e = compile(&p, &Enricher::default(), &[], &[], 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.toml:6:") && e.contains("country KP has no network"),
            "{e}"
        );
        let mode = "[enforce]\nmode = \"block\"\n";
        let e = Policy::parse(mode, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.toml:2:") && e.contains("unknown mode"),
            "{e}"
        );
    }

    #[test]
    fn alert_blocks_parse_with_defaults_and_bad_kinds_are_located() {
        let p = policy("[enforce.block_alerts]\nkinds = [\"port_scan\"]\n");
        let b = p.enforce.block_alerts.unwrap();
        assert_eq!(b.kinds, [crate::detect::AlertKind::PortScan]);
        assert_eq!(
            (b.min_severity, b.block_secs),
            (crate::Severity::High, 3600)
        );
        let e = Policy::parse(
            "[enforce]\nmode = \"enforce\"\n[enforce.block_alerts]\nkinds = [\"portscan\"]\n",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("p.toml:4:") && e.contains("unknown alert kind \"portscan\""),
            "{e}"
        );
        let e = Policy::parse(
            "[enforce.block_alerts]\nkinds = [\"syn_flood\"]\nblock_secs = 0\n",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p.toml:3:"), "{e}");
    }

    #[test]
    fn manual_blocks_and_port_rules_compile() {
        let text = "[[rule]]\nid = \"hk-ports\"\nname = \"p\"\ntype = \"ports\"\nlines = [\"hk-1\"]\nallow = [\"tcp/443\", \"udp/5000-5003\", \"icmp\"]\naction = \"drop\"\n";
        let p = policy(text);
        let block = ManualBlock {
            id: "b1".into(),
            cidr: "192.0.2.0/24".parse().unwrap(),
            expires_ns: u64::MAX,
            reason: "incident".into(),
            created_by: "admin".into(),
            created_ns: 0,
        };
        let plan = compile(&p, &Enricher::default(), &[block], &[], 2).unwrap();
        assert_eq!(
            kernel_judge(&plan, "192.0.2.9", "8.8.8.8").as_deref(),
            Some(MANUAL_BLOCK)
        );
        assert_eq!(
            kernel_judge(&plan, "8.8.8.8", "192.0.2.9").as_deref(),
            Some(MANUAL_BLOCK)
        );
        assert_eq!(kernel_judge(&plan, "8.8.8.8", "8.8.4.4"), None);
        assert_eq!(plan.lines.len(), 1);
        assert_eq!(plan.lines[0].port_mask, 1);
        assert_eq!(plan.ports.len(), 1 + 4 + 1);
        assert_eq!(plan.rule_id(PORT_RULE_BASE), Some("hk-ports"));
    }

    #[test]
    fn ranges_split_into_cidrs() {
        let mut out = Vec::new();
        range_to_prefixes(true, 0x0a00_0001, 0x0a00_0006, &mut out);
        let lens: Vec<u8> = out.iter().map(|p| p.len - 96).collect();
        assert_eq!(lens, vec![32, 31, 31, 32]);
        out.clear();
        range_to_prefixes(false, 0, u128::MAX, &mut out);
        assert_eq!(out, vec![P { start: 0, len: 0 }]);
    }

    #[test]
    fn representatives_skip_covered_prefixes() {
        let set = vec![
            P { start: 0, len: 126 }, // 0..=3
            P { start: 0, len: 127 }, // 0..=1
            P { start: 2, len: 127 }, // 2..=3
            P { start: 8, len: 125 }, // 8..=15
            P { start: 8, len: 128 },
        ];
        let r = representatives(&set);
        assert_eq!(r, vec![None, Some(0), Some(2), Some(9), Some(8)]);
    }
}
