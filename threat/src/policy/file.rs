//! The TOML policy file: parsing with spans and validation. Every error names
//! `file:line` of the offending value.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use tidegate_base::ConfigFile;
use toml::Spanned;

use super::Policy;
use super::enforce::{EnforceSettings, Protected};
use super::error::PolicyError;
use super::rule::{Action, DestMatcher, PortSpec, Rule, RuleBody, ZoneSet};
use super::zone::{UNZONED, Zone, ZoneId, Zones};
use crate::Severity;
use tidegate_base::Cidr;
use tidegate_wire::enforce::Mode;

type List<T> = Option<Spanned<Vec<Spanned<T>>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    zone: Vec<Spanned<RawZone>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    enforce: Option<Spanned<RawEnforce>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnforce {
    mode: Option<Spanned<String>>,
    lines: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    protected: List<String>,
    block_alerts: Option<Spanned<RawBlockAlerts>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlockAlerts {
    kinds: Spanned<Vec<Spanned<String>>>,
    min_severity: Option<Spanned<String>>,
    block_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    name: Spanned<String>,
    cidrs: List<String>,
    countries: List<String>,
    asns: List<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    severity: Option<Spanned<String>>,
    from: List<String>,
    to: List<String>,
    zone: Option<Spanned<String>>,
    peers: List<String>,
    cidrs: List<String>,
    countries: List<String>,
    asns: List<u32>,
    domains: List<String>,
    lines: List<String>,
    allow: List<String>,
    max_bytes: Option<Spanned<u64>>,
    window_secs: Option<Spanned<u64>>,
    action: Option<Spanned<String>>,
}

fn line_of(src: &str, offset: usize) -> usize {
    tidegate_base::config::line_of(src, offset)
}

/// The text of the table whose header starts at `head`: up to the next table header,
/// without trailing blank and comment lines.
fn table_text(src: &str, head: usize) -> String {
    let rest = &src[head.min(src.len())..];
    let mut lines: Vec<&str> = Vec::new();
    for (i, line) in rest.lines().enumerate() {
        if i > 0 && line.trim_start().starts_with('[') {
            break;
        }
        lines.push(line.trim_end());
    }
    while lines
        .last()
        .is_some_and(|l| l.is_empty() || l.trim_start().starts_with('#'))
    {
        lines.pop();
    }
    lines.join("\n")
}

/// Parses and validates policy text; `path` names it in errors and rule locations.
pub fn parse(src: &str, path: &Path) -> Result<Policy, PolicyError> {
    let cx = &ConfigFile::new(path, src);
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        cx.at(
            e.span().map(|s| s.start).unwrap_or(0),
            e.message().trim_end().to_string(),
        )
    })?;
    let zones = zones(cx, raw.zone)?;
    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut isolated: HashMap<ZoneId, (String, String)> = HashMap::new();
    for r in raw.rule {
        // toml spans an array-of-tables entry by its `[[rule]]` header.
        let head = r.span().start;
        let r = r.into_inner();
        let id = r.id.get_ref().trim().to_string();
        if id.is_empty() {
            return Err(cx.at(r.id.span().start, "rule id must not be empty"));
        }
        if let Some(first) = ids.insert(id.clone(), r.id.span().start) {
            return Err(cx.at(
                r.id.span().start,
                format!(
                    "duplicate rule id {id:?} (first defined at line {})",
                    line_of(src, first)
                ),
            ));
        }
        let rule = rule(cx, &zones, head, r)?;
        if let RuleBody::Isolate { zone, .. } = &rule.body {
            if let Some((other, at)) = isolated.get(zone) {
                return Err(cx.at(
                    head,
                    format!(
                        "zone {:?} is already isolated by rule {other:?} at {at}; merge the peers into one rule",
                        zones.name(*zone)
                    ),
                ));
            }
            isolated.insert(*zone, (rule.id.clone(), rule.location.clone()));
        }
        rules.push(rule);
    }
    let enforce = match raw.enforce {
        None => EnforceSettings::default(),
        Some(e) => enforce_settings(cx, e)?,
    };
    Ok(Policy {
        path: path.to_path_buf(),
        zones,
        rules,
        enforce,
    })
}

fn mode(cx: &ConfigFile, m: &Spanned<String>) -> Result<Mode, PolicyError> {
    match m.get_ref().as_str() {
        "monitor" => Ok(Mode::Monitor),
        "enforce" => Ok(Mode::Enforce),
        other => Err(cx.at(
            m.span().start,
            format!("unknown mode {other:?} (monitor or enforce)"),
        )),
    }
}

fn enforce_settings(
    cx: &ConfigFile,
    e: Spanned<RawEnforce>,
) -> Result<EnforceSettings, PolicyError> {
    let head = e.span().start;
    let e = e.into_inner();
    let mut out = EnforceSettings {
        line: cx.line_of(head),
        ..Default::default()
    };
    if let Some(m) = &e.mode {
        out.default_mode = mode(cx, m)?;
    }
    if let Some(lines) = &e.lines {
        for (name, m) in lines.get_ref() {
            if name.trim().is_empty() {
                return Err(cx.at(lines.span().start, "a line name must not be empty"));
            }
            out.lines.push((name.clone(), mode(cx, m)?));
        }
    }
    if let Some(b) = &e.block_alerts {
        let b = b.get_ref();
        let mut kinds = Vec::new();
        for k in b.kinds.get_ref() {
            kinds.push(crate::detect::AlertKind::parse(k.get_ref()).ok_or_else(|| {
                let all: Vec<&str> = crate::detect::AlertKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect();
                cx.at(
                    k.span().start,
                    format!("unknown alert kind {:?} ({})", k.get_ref(), all.join(", ")),
                )
            })?);
        }
        if kinds.is_empty() {
            return Err(cx.at(b.kinds.span().start, "`kinds` must not be empty"));
        }
        let min_severity = match &b.min_severity {
            None => Severity::High,
            Some(s) => Severity::parse(s.get_ref()).ok_or_else(|| {
                cx.at(
                    s.span().start,
                    format!(
                        "unknown severity {:?} (info, low, medium, high or critical)",
                        s.get_ref()
                    ),
                )
            })?,
        };
        let block_secs = match &b.block_secs {
            None => 3600,
            Some(v) => cx.in_range(v, "enforce.block_alerts.block_secs", 1..=2_592_000)?,
        };
        out.block_alerts = Some(super::enforce::BlockAlerts {
            kinds,
            min_severity,
            block_secs,
        });
    }
    for c in items(&e.protected) {
        let cidr = Cidr::parse(c.get_ref()).map_err(|m| cx.at(c.span().start, m.to_string()))?;
        out.protected.push(Protected {
            cidr,
            line: cx.line_of(c.span().start),
        });
    }
    Ok(out)
}

fn zones(cx: &ConfigFile, raw: Vec<Spanned<RawZone>>) -> Result<Zones, PolicyError> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut blocks: HashMap<Cidr, String> = HashMap::new();
    let mut asn_owner: HashMap<u32, String> = HashMap::new();
    let mut cc_owner: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for z in raw {
        let head = z.span().start;
        let z = z.into_inner();
        let name = z.name.get_ref().trim().to_string();
        let at = z.name.span().start;
        if name.is_empty() {
            return Err(cx.at(at, "zone name must not be empty"));
        }
        if name == UNZONED {
            return Err(cx.at(
                at,
                format!("zone name {UNZONED:?} is reserved for addresses in no zone"),
            ));
        }
        if let Some(first) = names.insert(name.clone(), at) {
            return Err(cx.at(
                at,
                format!(
                    "duplicate zone name {name:?} (first defined at line {})",
                    line_of(cx.text(), first)
                ),
            ));
        }
        let mut zone = Zone {
            name: name.clone(),
            cidrs: Vec::new(),
            countries: Vec::new(),
            asns: Vec::new(),
        };
        for c in items(&z.cidrs) {
            let cidr =
                Cidr::parse(c.get_ref()).map_err(|m| cx.at(c.span().start, m.to_string()))?;
            if let Some(other) = blocks.insert(cidr, name.clone()) {
                return Err(cx.at(
                    c.span().start,
                    format!("CIDR {cidr} is already in zone {other:?}"),
                ));
            }
            zone.cidrs.push(cidr);
        }
        for c in items(&z.countries) {
            let cc = country(cx, c)?;
            if let Some(other) = cc_owner.insert(cc.clone(), name.clone()) {
                return Err(cx.at(
                    c.span().start,
                    format!("country {cc} is already in zone {other:?}"),
                ));
            }
            zone.countries.push(cc);
        }
        for a in items(&z.asns) {
            let asn = *a.get_ref();
            if let Some(other) = asn_owner.insert(asn, name.clone()) {
                return Err(cx.at(
                    a.span().start,
                    format!("ASN {asn} is already in zone {other:?}"),
                ));
            }
            zone.asns.push(asn);
        }
        if zone.cidrs.is_empty() && zone.countries.is_empty() && zone.asns.is_empty() {
            return Err(cx.at(
                head,
                format!("zone {name:?} has no cidrs, countries or asns"),
            ));
        }
        out.push(zone);
    }
    Ok(Zones::new(out))
}

fn items<T>(l: &List<T>) -> &[Spanned<T>] {
    l.as_ref().map(|v| v.get_ref().as_slice()).unwrap_or(&[])
}

fn country(cx: &ConfigFile, c: &Spanned<String>) -> Result<String, PolicyError> {
    let s = c.get_ref();
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        if !super::country::is_assigned(s) {
            return Err(cx.at(
                c.span().start,
                format!("unknown country {s:?}: not an assigned ISO 3166-1 alpha-2 code"),
            ));
        }
        Ok(s.clone())
    } else {
        Err(cx.at(
            c.span().start,
            format!("invalid country code {s:?}: expected ISO 3166-1 alpha-2 such as \"HK\""),
        ))
    }
}

/// Resolves a list of zone names; `None` when absent (any zone); empty lists are refused.
fn zone_set(
    cx: &ConfigFile,
    zones: &Zones,
    key: &str,
    l: &List<String>,
) -> Result<ZoneSet, PolicyError> {
    let Some(list) = l else { return Ok(None) };
    if list.get_ref().is_empty() {
        return Err(cx.at(list.span().start, format!("`{key}` must not be empty")));
    }
    list.get_ref()
        .iter()
        .map(|n| zone_ref(cx, zones, n))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn zone_ref(cx: &ConfigFile, zones: &Zones, n: &Spanned<String>) -> Result<ZoneId, PolicyError> {
    zones
        .id(n.get_ref())
        .ok_or_else(|| cx.at(n.span().start, format!("unknown zone {:?}", n.get_ref())))
}

fn rule(cx: &ConfigFile, zones: &Zones, head: usize, r: RawRule) -> Result<Rule, PolicyError> {
    let kind = r.kind.get_ref().as_str();
    let kind_at = r.kind.span().start;
    // Which optional keys each type uses; any other key present is an error.
    let used: &[&str] = match kind {
        "allow" | "deny" => &["from", "to"],
        "isolate" => &["zone", "peers"],
        "deny_list" | "allow_list" => &["from", "cidrs", "countries", "asns", "domains"],
        "ports" => &["lines", "allow"],
        "byte_cap" => &["from", "to", "max_bytes", "window_secs"],
        other => {
            return Err(cx.at(
                kind_at,
                format!(
                    "unknown rule type {other:?} (allow, deny, isolate, deny_list, allow_list, ports or byte_cap)"
                ),
            ));
        }
    };
    let present: [(&str, Option<usize>); 11] = [
        ("from", r.from.as_ref().map(|s| s.span().start)),
        ("to", r.to.as_ref().map(|s| s.span().start)),
        ("zone", r.zone.as_ref().map(|s| s.span().start)),
        ("peers", r.peers.as_ref().map(|s| s.span().start)),
        ("cidrs", r.cidrs.as_ref().map(|s| s.span().start)),
        ("countries", r.countries.as_ref().map(|s| s.span().start)),
        ("asns", r.asns.as_ref().map(|s| s.span().start)),
        ("domains", r.domains.as_ref().map(|s| s.span().start)),
        ("lines", r.lines.as_ref().map(|s| s.span().start)),
        ("allow", r.allow.as_ref().map(|s| s.span().start)),
        ("max_bytes", r.max_bytes.as_ref().map(|s| s.span().start)),
    ];
    let window_at = r.window_secs.as_ref().map(|s| s.span().start);
    for (key, at) in present.into_iter().chain([("window_secs", window_at)]) {
        if let Some(at) = at
            && !used.contains(&key)
        {
            return Err(cx.at(
                at,
                format!(
                    "`{key}` is not used by rule type {kind:?} (it takes: {})",
                    used.join(", ")
                ),
            ));
        }
    }
    let missing = |key: &str| cx.at(head, format!("rule type {kind:?} needs `{key}`"));
    let (action, action_line) = match &r.action {
        None => (Action::Alert, cx.line_of(head)),
        Some(a) => {
            let at = a.span().start;
            let action = match a.get_ref().as_str() {
                "alert" => Action::Alert,
                "drop" => Action::Drop,
                other => {
                    return Err(cx.at(at, format!("unknown action {other:?} (alert or drop)")));
                }
            };
            if action == Action::Drop && matches!(kind, "allow" | "byte_cap") {
                return Err(cx.at(
                    at,
                    format!(
                        "rule type {kind:?} cannot drop: {}",
                        if kind == "allow" {
                            "it lets traffic through"
                        } else {
                            "a byte cap counts bytes over a window, which the line cannot judge packet by packet"
                        }
                    ),
                ));
            }
            (action, cx.line_of(at))
        }
    };
    let severity = match &r.severity {
        None => None,
        Some(s) => Some(Severity::parse(s.get_ref()).ok_or_else(|| {
            cx.at(
                s.span().start,
                format!(
                    "unknown severity {:?} (low, medium, high or critical)",
                    s.get_ref()
                ),
            )
        })?),
    };
    let (body, default_severity) = match kind {
        "allow" | "deny" => {
            let from = zone_set(cx, zones, "from", &r.from)?;
            let to = zone_set(cx, zones, "to", &r.to)?;
            if kind == "allow" {
                (RuleBody::Allow { from, to }, Severity::Low)
            } else {
                (RuleBody::Deny { from, to }, Severity::High)
            }
        }
        "isolate" => {
            let zone = zone_ref(cx, zones, r.zone.as_ref().ok_or_else(|| missing("zone"))?)?;
            if zone == ZoneId::UNZONED {
                return Err(cx.at(
                    r.zone.as_ref().map(|s| s.span().start).unwrap_or(head),
                    format!("zone {UNZONED:?} cannot be isolated"),
                ));
            }
            let peers = match &r.peers {
                None => return Err(missing("peers")),
                Some(l) => l
                    .get_ref()
                    .iter()
                    .map(|n| zone_ref(cx, zones, n))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            (RuleBody::Isolate { zone, peers }, Severity::Critical)
        }
        "deny_list" | "allow_list" => {
            let from = zone_set(cx, zones, "from", &r.from)?;
            let mut dest = DestMatcher::default();
            for c in items(&r.cidrs) {
                dest.cidrs.push(
                    Cidr::parse(c.get_ref()).map_err(|m| cx.at(c.span().start, m.to_string()))?,
                );
            }
            for c in items(&r.countries) {
                dest.countries.push(country(cx, c)?);
            }
            dest.asns = items(&r.asns).iter().map(|a| *a.get_ref()).collect();
            for d in items(&r.domains) {
                dest.domains
                    .push(super::rule::domain(d.get_ref()).map_err(|m| cx.at(d.span().start, m))?);
            }
            if dest.cidrs.is_empty()
                && dest.countries.is_empty()
                && dest.asns.is_empty()
                && dest.domains.is_empty()
            {
                return Err(cx.at(
                    head,
                    format!(
                        "rule type {kind:?} needs at least one of `cidrs`, `countries`, `asns`, `domains`"
                    ),
                ));
            }
            if action == Action::Drop
                && let Some(d) = &r.domains
            {
                return Err(cx.at(
                    d.span().start,
                    "`domains` cannot be enforced at the line (the XDP program sees addresses, \
                     not names): use action = \"alert\" for a domain list, or put the addresses \
                     in `cidrs`",
                ));
            }
            if kind == "deny_list" {
                (RuleBody::DenyList { from, dest }, Severity::High)
            } else {
                (RuleBody::AllowList { from, dest }, Severity::Medium)
            }
        }
        "ports" => {
            let lines = r.lines.as_ref().ok_or_else(|| missing("lines"))?;
            if lines.get_ref().is_empty() {
                return Err(cx.at(lines.span().start, "`lines` must not be empty"));
            }
            let allow = r.allow.as_ref().ok_or_else(|| missing("allow"))?;
            let allow = allow
                .get_ref()
                .iter()
                .map(|p| PortSpec::parse(p.get_ref()).map_err(|m| cx.at(p.span().start, m)))
                .collect::<Result<Vec<_>, _>>()?;
            let lines = lines
                .get_ref()
                .iter()
                .map(|l| l.get_ref().clone())
                .collect();
            (RuleBody::Ports { lines, allow }, Severity::Medium)
        }
        _ => {
            let from = zone_set(cx, zones, "from", &r.from)?;
            let to = zone_set(cx, zones, "to", &r.to)?;
            let max = r.max_bytes.as_ref().ok_or_else(|| missing("max_bytes"))?;
            if *max.get_ref() == 0 {
                return Err(cx.at(max.span().start, "`max_bytes` must be at least 1"));
            }
            let win = r
                .window_secs
                .as_ref()
                .ok_or_else(|| missing("window_secs"))?;
            let window_ns = win
                .get_ref()
                .checked_mul(1_000_000_000)
                .filter(|w| *w > 0)
                .ok_or_else(|| {
                    cx.at(
                        win.span().start,
                        "`window_secs` must be between 1 and 18446744073",
                    )
                })?;
            let body = RuleBody::ByteCap {
                from,
                to,
                max_bytes: *max.get_ref(),
                window_ns,
            };
            (body, Severity::High)
        }
    };
    Ok(Rule {
        id: r.id.get_ref().trim().to_string(),
        name: r.name.into_inner(),
        location: cx.location(head),
        text: table_text(cx.text(), head),
        severity: severity.unwrap_or(default_severity),
        body,
        action,
        action_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\n[[zone]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n\n[[rule]]\nid = \"d\"\nname = \"deny a\"\ntype = \"deny\"\nfrom = [\"a\"]\n\n[[rule]]\nid = \"i\"\nname = \"isolate a\"\ntype = \"isolate\"\nzone = \"a\"\npeers = [\"unzoned\"]\nseverity = \"low\"\n";

    #[test]
    fn rules_are_located_at_their_headers_with_default_severities() {
        let p = parse(TEXT, Path::new("p.toml")).unwrap();
        let spaced = parse(&TEXT.replace("[[rule]]", "[[ rule ]]"), Path::new("p.toml")).unwrap();
        assert_eq!(spaced.rules[1].location, "p.toml:12");
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].location, "p.toml:6");
        assert_eq!(
            p.rules[0].text,
            "[[rule]]\nid = \"d\"\nname = \"deny a\"\ntype = \"deny\"\nfrom = [\"a\"]"
        );
        assert_eq!(p.rules[0].severity, Severity::High);
        assert!(
            matches!(&p.rules[0].body, RuleBody::Deny { from: Some(f), to: None } if f == &[ZoneId(1)])
        );
        assert_eq!(p.rules[1].location, "p.toml:12");
        assert_eq!(p.rules[1].severity, Severity::Low);
        assert!(
            matches!(&p.rules[1].body, RuleBody::Isolate { zone: ZoneId(1), peers } if peers == &[ZoneId::UNZONED])
        );
    }

    #[test]
    fn an_empty_policy_is_valid_and_checks_nothing() {
        let p = parse("", Path::new("empty.toml")).unwrap();
        assert!(p.rules.is_empty());
        assert_eq!(p.zones.len(), 1);
    }

    #[test]
    fn line_numbers_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
