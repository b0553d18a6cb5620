//! Rules of a policy and the small matchers they are built from.

use std::net::IpAddr;

use super::eval::EndpointInfo;
use super::zone::ZoneId;
use crate::Severity;
use tidegate_base::Cidr;

/// A validated rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// `file:line` of the `[[rule]]` header.
    pub location: String,
    /// The rule as written in the file (its `[[rule]]` table), kept as evidence.
    pub text: String,
    /// Severity of its violations.
    pub severity: Severity,
    /// What it checks.
    pub body: RuleBody,
    /// What the line does with a matching packet (`action = "drop"`).
    pub action: Action,
    /// Line of the `action` key (of the header when left out), for compile errors.
    pub action_line: usize,
}

/// What happens to traffic a rule matches, beyond the violation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// Report it (the default).
    #[default]
    Alert,
    /// Also drop it at the line (XDP) where the line is in enforce mode; count it as
    /// "would drop" where the line is in monitor mode.
    Drop,
}

/// A set of zones; `None` stands for any zone.
pub type ZoneSet = Option<Vec<ZoneId>>;

/// Whether `z` is in the set (`None` = any).
pub fn in_set(set: &ZoneSet, z: ZoneId) -> bool {
    set.as_ref().is_none_or(|s| s.contains(&z))
}

/// What a rule checks.
#[derive(Clone, Debug)]
pub enum RuleBody {
    /// `type = "allow"`: the first allow/deny rule (file order) matching a flow decides; an
    /// allow lets it through the deny rules.
    Allow {
        /// Source zones.
        from: ZoneSet,
        /// Destination zones.
        to: ZoneSet,
    },
    /// `type = "deny"`: a flow whose first matching allow/deny rule is this one violates it.
    Deny {
        /// Source zones.
        from: ZoneSet,
        /// Destination zones.
        to: ZoneSet,
    },
    /// `type = "isolate"`: `zone` may exchange traffic (either direction) only with itself
    /// and `peers`. Not overridden by allow rules.
    Isolate {
        /// The isolated zone.
        zone: ZoneId,
        /// Zones it may talk to.
        peers: Vec<ZoneId>,
    },
    /// `type = "deny_list"`: flows from `from` to a listed destination violate it.
    DenyList {
        /// Source zones.
        from: ZoneSet,
        /// Listed destinations.
        dest: DestMatcher,
    },
    /// `type = "allow_list"`: flows from `from` to any destination not listed violate it.
    AllowList {
        /// Source zones.
        from: ZoneSet,
        /// Listed destinations.
        dest: DestMatcher,
    },
    /// `type = "ports"`: on the named lines only the listed protocols/ports may be used. A
    /// flow passes when its destination **or** source port is allowed, so the reply half of
    /// an allowed conversation (server port as source) passes too.
    Ports {
        /// Lines (interface names) the rule applies to.
        lines: Vec<String>,
        /// Allowed protocol/port ranges.
        allow: Vec<PortSpec>,
    },
    /// `type = "byte_cap"`: at most `max_bytes` from `from` to one destination address in
    /// each tumbling event-time window of `window_ns` (windows aligned to the Unix epoch; a
    /// flow counts in the window of its `first` timestamp).
    ByteCap {
        /// Source zones.
        from: ZoneSet,
        /// Destination zones.
        to: ZoneSet,
        /// Cap per destination per window.
        max_bytes: u64,
        /// Window length in ns.
        window_ns: u64,
    },
}

/// Destinations named by CIDR, country, ASN or domain (any one matching is a match).
#[derive(Clone, Debug, Default)]
pub struct DestMatcher {
    /// Blocks.
    pub cidrs: Vec<Cidr>,
    /// Countries (upper case ISO 3166-1 alpha-2).
    pub countries: Vec<String>,
    /// ASNs.
    pub asns: Vec<u32>,
    /// Domains (lower case, no trailing dot): the name or any name under it.
    pub domains: Vec<String>,
}

/// A domain as policies list it: lower-cased, without a trailing dot, labels of letters,
/// digits, `-` and `_` (and `*.` in front is the same as the bare domain).
pub fn domain(s: &str) -> Result<String, String> {
    let d = s
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(d)
    } else {
        Err(format!(
            "{s:?} is not a domain name (labels of letters, digits, '-' and '_', at most 253 characters)"
        ))
    }
}

/// The name a flow's client asked for: the question of a DNS query (not of an answer,
/// whose flow runs the other way) or the TLS server name of a ClientHello.
pub fn client_name(r: &tidegate_wire::record::FlowRecord) -> Option<&str> {
    r.sni.as_deref().or_else(|| {
        r.dns
            .as_ref()
            .filter(|d| d.rcode.is_none())
            .map(|d| d.qname.as_str())
    })
}

impl DestMatcher {
    /// The listed domain `name` is or is under, if any.
    pub fn domain_of(&self, name: &str) -> Option<&str> {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        self.domains
            .iter()
            .find(|d| {
                n == **d
                    || (n.len() > d.len()
                        && n.ends_with(d.as_str())
                        && n.as_bytes()[n.len() - d.len() - 1] == b'.')
            })
            .map(String::as_str)
    }

    /// Whether the destination's address matches a CIDR, country or ASN entry.
    pub fn has_address_entries(&self) -> bool {
        !self.cidrs.is_empty() || !self.countries.is_empty() || !self.asns.is_empty()
    }

    /// Whether the destination matches an entry.
    pub fn matches(&self, ip: IpAddr, info: &EndpointInfo) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
            || info.asn.is_some_and(|a| self.asns.contains(&a))
            || info
                .country
                .as_ref()
                .is_some_and(|cc| self.countries.iter().any(|c| c.eq_ignore_ascii_case(cc)))
    }
}

/// An allowed protocol with an optional port range: `tcp/443`, `udp/5000-5100`, `icmp`,
/// `tcp` (any port), `47` (protocol number), `132/9899`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// IP protocol number.
    pub proto: u8,
    /// Inclusive port range; `None` = any port.
    pub ports: Option<(u16, u16)>,
}

impl PortSpec {
    /// Parses the textual form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (p, ports) = match s.split_once('/') {
            Some((p, r)) => (p, Some(r)),
            None => (s, None),
        };
        let proto = match p.to_ascii_lowercase().as_str() {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "icmpv6" => 58,
            "sctp" => 132,
            "gre" => 47,
            "esp" => 50,
            n => n.parse::<u8>().map_err(|_| {
                format!(
                    "invalid port spec {s:?}: unknown protocol {p:?} (tcp, udp, icmp, icmpv6, sctp, gre, esp or a number)"
                )
            })?,
        };
        let ports = match ports {
            None => None,
            Some(r) => {
                if !matches!(proto, 6 | 17 | 132) {
                    return Err(format!(
                        "invalid port spec {s:?}: protocol {p} has no ports"
                    ));
                }
                let port = |x: &str| {
                    x.trim()
                        .parse::<u16>()
                        .map_err(|_| format!("invalid port spec {s:?}: {x:?} is not a port"))
                };
                let (lo, hi) = match r.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => (port(r)?, port(r)?),
                };
                if lo > hi {
                    return Err(format!("invalid port spec {s:?}: empty range {lo}-{hi}"));
                }
                Some((lo, hi))
            }
        };
        Ok(PortSpec { proto, ports })
    }

    /// Whether a flow with this protocol and ports is allowed by the spec.
    pub fn allows(&self, proto: u8, sport: u16, dport: u16) -> bool {
        proto == self.proto
            && self
                .ports
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&dport) || (lo..=hi).contains(&sport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_and_match() {
        let https = PortSpec::parse("tcp/443").unwrap();
        assert!(https.allows(6, 50000, 443));
        assert!(https.allows(6, 443, 50000));
        assert!(!https.allows(17, 50000, 443));
        assert!(!https.allows(6, 50000, 80));
        let range = PortSpec::parse("udp/5000-5100").unwrap();
        assert!(range.allows(17, 1, 5100) && !range.allows(17, 1, 5101));
        assert_eq!(
            PortSpec::parse("icmp").unwrap(),
            PortSpec {
                proto: 1,
                ports: None
            }
        );
        assert_eq!(PortSpec::parse("47").unwrap().proto, 47);
        assert!(
            PortSpec::parse("icmp/8")
                .unwrap_err()
                .contains("has no ports")
        );
        assert!(
            PortSpec::parse("tcp/99999")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(
            PortSpec::parse("tcp/9-1")
                .unwrap_err()
                .contains("empty range")
        );
        assert!(
            PortSpec::parse("quic/443")
                .unwrap_err()
                .contains("unknown protocol")
        );
    }
}
