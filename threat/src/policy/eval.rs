//! Stateless evaluation of one flow record against a policy.

use tidegate_wire::record::FlowRecord;

use super::Policy;
use super::rule::{Rule, RuleBody, client_name, in_set};
use super::violation::{Violation, ViolationKind};

/// Enrichment of one endpoint (from the GeoIP/ASN databases); both fields optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
}

/// Enrichment of both ends of a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// Source endpoint.
    pub src: EndpointInfo,
    /// Destination endpoint.
    pub dst: EndpointInfo,
}

/// A violation of `rule` with `r` as its single evidence flow.
pub(super) fn violation(
    rule: &Rule,
    kind: ViolationKind,
    r: &FlowRecord,
    description: String,
) -> Violation {
    Violation {
        rule_id: rule.id.clone(),
        rule_name: rule.name.clone(),
        rule_location: rule.location.clone(),
        rule_text: rule.text.clone(),
        kind,
        severity: rule.severity,
        line: r.line.to_string(),
        src: r.src,
        dst: r.dst,
        first_ns: r.first,
        last_ns: r.last,
        evidence: vec![r.clone()],
        description,
        action: action_taken(rule, r),
    }
}

/// The line's action on `r` under `rule`: its verdict when the line judged it by this
/// rule's drop.
pub(super) fn action_taken(rule: &Rule, r: &FlowRecord) -> Option<tidegate_wire::Verdict> {
    (!r.verdict.is_pass() && r.enforce_rule.as_deref() == Some(rule.id.as_str()))
        .then_some(r.verdict)
}

impl Policy {
    /// Every stateless violation of `r` (deny, isolation, deny/allow lists, ports), in rule
    /// order. Byte caps need state across records: see [`super::PolicyEngine`].
    pub fn evaluate(&self, r: &FlowRecord, ctx: &Endpoints) -> Vec<Violation> {
        let zs = self.zones.classify(r.src, &ctx.src);
        let zd = self.zones.classify(r.dst, &ctx.dst);
        let (sname, dname) = (self.zones.name(zs), self.zones.name(zd));
        let mut out = Vec::new();
        let mut decided = false;
        for rule in &self.rules {
            match &rule.body {
                RuleBody::Allow { from, to } => {
                    if !decided && in_set(from, zs) && in_set(to, zd) {
                        decided = true;
                    }
                }
                RuleBody::Deny { from, to } => {
                    if !decided && in_set(from, zs) && in_set(to, zd) {
                        decided = true;
                        out.push(violation(
                            rule,
                            ViolationKind::Deny,
                            r,
                            format!("traffic from zone {sname} to zone {dname} is denied"),
                        ));
                    }
                }
                RuleBody::Isolate { zone, peers } => {
                    let ok = |z| z == *zone || peers.contains(&z);
                    let outside = if zs == *zone && !ok(zd) {
                        Some(dname)
                    } else if zd == *zone && !ok(zs) {
                        Some(sname)
                    } else {
                        None
                    };
                    if let Some(other) = outside {
                        out.push(violation(
                            rule,
                            ViolationKind::Isolation,
                            r,
                            format!(
                                "isolated zone {} exchanged traffic with zone {other}",
                                self.zones.name(*zone)
                            ),
                        ));
                    }
                }
                RuleBody::DenyList { from, dest } => {
                    if !in_set(from, zs) {
                        continue;
                    }
                    let name = client_name(r);
                    if dest.matches(r.dst, &ctx.dst) {
                        out.push(violation(
                            rule,
                            ViolationKind::DenyList,
                            r,
                            format!("destination {} is deny-listed", r.dst),
                        ));
                    } else if let Some((n, d)) = name.and_then(|n| Some((n, dest.domain_of(n)?))) {
                        out.push(violation(
                            rule,
                            ViolationKind::DenyList,
                            r,
                            format!("{n} (asked of {}) is deny-listed under {d}", r.dst),
                        ));
                    }
                }
                RuleBody::AllowList { from, dest } => {
                    if !in_set(from, zs) {
                        continue;
                    }
                    // A named flow passes by its name or its address; a flow without a
                    // name is judged by the address entries (none: it passes).
                    let name = client_name(r);
                    let by_name = name.is_some_and(|n| dest.domain_of(n).is_some());
                    let by_addr = dest.matches(r.dst, &ctx.dst);
                    let judged =
                        name.is_some() && !dest.domains.is_empty() || dest.has_address_entries();
                    if judged && !by_name && !by_addr {
                        out.push(violation(
                            rule,
                            ViolationKind::NotAllowListed,
                            r,
                            match name {
                                Some(n) if !dest.domains.is_empty() => format!(
                                    "{n} (at {}, zone {dname}) is not on the allow-list",
                                    r.dst
                                ),
                                _ => format!(
                                    "destination {} (zone {dname}) is not on the allow-list",
                                    r.dst
                                ),
                            },
                        ));
                    }
                }
                RuleBody::Ports { lines, allow } => {
                    if lines.iter().any(|l| r.line == *l)
                        && !allow.iter().any(|p| p.allows(r.proto, r.sport, r.dport))
                    {
                        out.push(violation(
                            rule,
                            ViolationKind::ForbiddenPort,
                            r,
                            format!(
                                "protocol {} ports {}->{} not allowed on line {}",
                                r.proto, r.sport, r.dport, r.line
                            ),
                        ));
                    }
                }
                RuleBody::ByteCap { .. } => {}
            }
        }
        out
    }
}
