//! A user loads a policy and feeds flows through it: isolation, allow/deny, destination
//! lists and per-line ports produce exactly the violations the policy describes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::support::policy::{rule, tables, zone};
use crate::support::records::{T0, tcp};
use tidegate_threat::Severity;
use tidegate_threat::policy::{EndpointInfo, Endpoints, Policy, Violation, ViolationKind};
use tidegate_wire::record::FlowRecord;

fn flow(src: &str, dst: &str, proto: u8, sport: u16, dport: u16, line: &str) -> FlowRecord {
    FlowRecord {
        sport,
        dport,
        proto,
        packets: 3,
        bytes: 1500,
        last: T0 + 2_000_000_000,
        tcp_flags: 0x1b,
        line: line.into(),
        ..tcp(src, dst)
    }
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/policy/example.toml")
}

fn example() -> Policy {
    Policy::load(&example_path()).unwrap_or_else(|e| panic!("{e}"))
}

fn kinds(v: &[Violation]) -> Vec<(&str, ViolationKind)> {
    v.iter().map(|v| (v.rule_id.as_str(), v.kind)).collect()
}

fn none() -> Endpoints {
    Endpoints::default()
}

/// Line of `[[rule]]` for the rule with `id` in the example file, found by reading the text.
fn example_rule_line(id: &str) -> usize {
    let text = std::fs::read_to_string(example_path()).unwrap();
    // The header is the line before the id: its 1-based number is the id's 0-based index.
    text.lines()
        .position(|l| l == format!("id = \"{id}\""))
        .unwrap()
}

#[test]
fn isolated_zone_to_domestic_is_a_violation_and_to_partners_abroad_is_not() {
    let p = example();
    // special-zone (10.77/16 beats domestic's 10/8) -> domestic.
    let r = flow("10.77.1.5", "10.1.1.1", 6, 40000, 443, "sg-intl-2");
    let v = p.evaluate(&r, &none());
    assert_eq!(
        kinds(&v),
        [
            ("special-isolation", ViolationKind::Isolation),
            ("special-destinations", ViolationKind::NotAllowListed),
        ]
    );
    let iso = &v[0];
    assert_eq!(iso.severity, Severity::Critical);
    assert_eq!(
        iso.rule_location,
        format!(
            "{}:{}",
            example_path().display(),
            example_rule_line("special-isolation")
        )
    );
    assert_eq!(iso.evidence, vec![r.clone()]);
    assert_eq!(
        (iso.src, iso.dst, iso.line.as_str()),
        (r.src, r.dst, "sg-intl-2")
    );
    assert_eq!((iso.first_ns, iso.last_ns), (r.first, r.last));
    assert!(iso.description.contains("special-zone") && iso.description.contains("domestic"));

    // The reverse direction (domestic -> special) breaks isolation too.
    let back = flow("10.1.1.1", "10.77.1.5", 6, 443, 40000, "sg-intl-2");
    assert_eq!(
        kinds(&p.evaluate(&back, &none())),
        [("special-isolation", ViolationKind::Isolation)]
    );

    // To a partner range abroad: allowed by isolation and on the allow-list.
    let ok = flow("10.77.1.5", "203.0.113.9", 6, 40000, 443, "sg-intl-2");
    assert!(p.evaluate(&ok, &none()).is_empty());

    // Partner by country (enrichment): isolation passes; the CIDR-only allow-list does not.
    let sg = Endpoints {
        src: EndpointInfo::default(),
        dst: EndpointInfo {
            country: Some("SG".into()),
            asn: None,
        },
    };
    let by_country = flow("10.77.1.5", "8.8.4.4", 6, 40000, 443, "sg-intl-2");
    assert_eq!(
        kinds(&p.evaluate(&by_country, &sg)),
        [("special-destinations", ViolationKind::NotAllowListed)]
    );
    // Without enrichment the same address is unzoned, so isolation is broken as well.
    assert_eq!(
        kinds(&p.evaluate(&by_country, &none())),
        [
            ("special-isolation", ViolationKind::Isolation),
            ("special-destinations", ViolationKind::NotAllowListed),
        ]
    );
    // IPv6 partner block counts as partners-abroad.
    let v6 = flow("10.77.1.5", "2001:db8:abcd::7", 6, 1, 443, "x");
    assert!(
        !kinds(&p.evaluate(&v6, &none()))
            .contains(&("special-isolation", ViolationKind::Isolation))
    );
}

#[test]
fn first_matching_allow_or_deny_rule_decides() {
    let p = example();
    // domestic -> partners: allowed (rule partners-https comes before the deny).
    assert!(
        p.evaluate(&flow("10.1.1.1", "203.0.113.1", 6, 5, 443, "x"), &none())
            .is_empty()
    );
    // domestic -> unzoned: denied, with the rule's severity override.
    let v = p.evaluate(&flow("10.1.1.1", "192.0.2.1", 6, 5, 443, "x"), &none());
    assert_eq!(kinds(&v), [("domestic-no-unknown", ViolationKind::Deny)]);
    assert_eq!(v[0].severity, Severity::Medium);
    // domestic by ASN/country enrichment: a CN address outside 10/8 is domestic.
    let cn = Endpoints {
        src: EndpointInfo {
            country: Some("CN".into()),
            asn: Some(4134),
        },
        dst: EndpointInfo::default(),
    };
    let v = p.evaluate(&flow("198.18.0.1", "192.0.2.1", 17, 5, 53, "x"), &cn);
    assert_eq!(kinds(&v), [("domestic-no-unknown", ViolationKind::Deny)]);
    // unzoned -> unzoned: no allow/deny rule matches, nothing to report.
    assert!(
        p.evaluate(&flow("192.0.2.7", "192.0.2.1", 6, 5, 443, "x"), &none())
            .is_empty()
    );
}

/// Lists of destinations for sources in `hub`, after a blank first line: the rules are at
/// lines 6 and 15.
fn lists() -> String {
    let blocked = "from = [\"hub\"]\ncidrs = [\"198.51.100.0/24\", \"2001:db8:bad::/48\"]\n\
                   countries = [\"KP\"]\nasns = [64666]\n";
    let approved = "from = [\"hub\"]\ncidrs = [\"203.0.113.0/24\"]\nasns = [64501]\n";
    let tables = tables(&[
        zone("hub", &["172.16.0.0/12"]),
        rule("blocked", "blocked destinations", "deny_list", blocked),
        rule("approved", "approved destinations", "allow_list", approved),
    ]);
    format!("\n{tables}")
}

#[test]
fn allow_listed_destination_is_not_a_violation_and_deny_listed_is() {
    let p = Policy::parse(&lists(), Path::new("lists.toml")).unwrap();
    let dst = |country: Option<&str>, asn: Option<u32>| Endpoints {
        src: EndpointInfo::default(),
        dst: EndpointInfo {
            country: country.map(str::to_string),
            asn,
        },
    };
    let f = |d: &str| flow("172.16.0.9", d, 6, 40000, 443, "x");
    // On the allow-list by CIDR and by ASN.
    assert!(p.evaluate(&f("203.0.113.77"), &none()).is_empty());
    assert!(
        p.evaluate(&f("192.0.2.1"), &dst(None, Some(64501)))
            .is_empty()
    );
    // Deny-listed by CIDR (v4 and v6), country and ASN; those are not allow-listed either.
    for (d, ctx) in [
        ("198.51.100.1", none()),
        ("2001:db8:bad::1", none()),
        ("192.0.2.1", dst(Some("KP"), None)),
        ("192.0.2.1", dst(None, Some(64666))),
    ] {
        let v = p.evaluate(&f(d), &ctx);
        assert_eq!(
            kinds(&v),
            [
                ("blocked", ViolationKind::DenyList),
                ("approved", ViolationKind::NotAllowListed)
            ],
            "{d} {ctx:?}"
        );
        assert_eq!(v[0].rule_location, "lists.toml:6");
        assert_eq!(v[1].rule_location, "lists.toml:15");
    }
    // Neither listed: only the allow-list complains.
    assert_eq!(
        kinds(&p.evaluate(&f("192.0.2.1"), &dst(Some("JP"), Some(1)))),
        [("approved", ViolationKind::NotAllowListed)]
    );
    // Rules with `from = ["hub"]` ignore other sources.
    assert!(
        p.evaluate(&flow("10.0.0.1", "198.51.100.1", 6, 1, 2, "x"), &none())
            .is_empty()
    );
}

#[test]
fn ports_are_checked_per_line() {
    let p = example();
    // Addresses that no zone rule cares about: only the ports rule can fire.
    let on = |line: &str, proto: u8, sport: u16, dport: u16| {
        kinds(&p.evaluate(
            &flow("192.0.2.1", "192.0.2.2", proto, sport, dport, line),
            &none(),
        ))
        .into_iter()
        .map(|(id, k)| (id.to_string(), k))
        .collect::<Vec<_>>()
    };
    let forbidden = vec![("hk-line-ports".to_string(), ViolationKind::ForbiddenPort)];
    assert!(on("hk-intl-1", 6, 50000, 443).is_empty());
    assert!(
        on("hk-intl-1", 6, 443, 50000).is_empty(),
        "reply half of HTTPS"
    );
    assert!(on("hk-intl-1", 17, 50000, 53).is_empty());
    assert!(on("hk-intl-1", 1, 0, 0).is_empty());
    assert!(on("hk-intl-1", 58, 0, 0).is_empty());
    assert_eq!(on("hk-intl-1", 6, 50000, 22), forbidden);
    assert_eq!(
        on("hk-intl-1", 17, 50000, 443),
        forbidden,
        "udp/443 is not tcp/443"
    );
    assert_eq!(on("hk-intl-1", 47, 0, 0), forbidden);
    // Another line is not covered by the rule.
    assert!(on("sg-intl-2", 6, 50000, 22).is_empty());
}

#[test]
fn a_violation_serializes_with_rfc3339_times() {
    let p = example();
    let v = p.evaluate(
        &flow("10.77.1.5", "10.1.1.1", 6, 40000, 443, "hk-intl-1"),
        &none(),
    );
    let j = serde_json::to_value(&v[0]).unwrap();
    assert_eq!(j["rule_id"], "special-isolation");
    assert_eq!(j["kind"], "isolation");
    assert_eq!(j["severity"], "critical");
    assert_eq!(j["line"], "hk-intl-1");
    assert_eq!(j["src"], "10.77.1.5");
    assert_eq!(j["first"], "2023-11-14T22:13:20.000000000Z");
    assert_eq!(j["last"], "2023-11-14T22:13:22.000000000Z");
    assert_eq!(j["evidence"][0]["dport"], 443);
    let _: IpAddr = j["dst"].as_str().unwrap().parse().unwrap();
}

/// A regulator's negative list names services: a deny-list of domains catches the DNS
/// question and the TLS server name of the flows that ask for them (not the answers,
/// whose flow runs the other way); an allow-list of domains judges named flows by name.
#[test]
fn domain_lists_judge_dns_questions_and_tls_server_names() {
    use tidegate_wire::record::DnsMeta;
    let src = format!(
        "\n{}",
        tables(&[
            zone("hub", &["172.16.0.0/12"]),
            rule(
                "banned-services",
                "banned services",
                "deny_list",
                "domains = [\"banned.example\", \"*.tracker.example.net\"]\n"
            ),
            rule(
                "approved-saas",
                "approved SaaS only",
                "allow_list",
                "from = [\"hub\"]\ndomains = [\"office365.com\", \"example.org\"]\n"
            ),
        ])
    );
    let p = Policy::parse(&src, Path::new("domains.toml")).unwrap();
    let named = |dns: Option<(&str, Option<u8>)>, sni: Option<&str>| {
        let mut r = flow("172.16.0.9", "192.0.2.53", 17, 40000, 53, "x");
        r.dns = dns.map(|(q, rcode)| {
            Box::new(DnsMeta {
                qname: q.into(),
                qtype: 1,
                rcode,
            })
        });
        r.sni = sni.map(Into::into);
        r
    };
    // Denied by name, under the listed domain, case-insensitive; not allow-listed either.
    for r in [
        named(Some(("Files.BANNED.example", None)), None),
        named(None, Some("a.b.tracker.example.net")),
        named(Some(("banned.example.", None)), None),
    ] {
        let v = p.evaluate(&r, &none());
        assert_eq!(
            kinds(&v),
            [
                ("banned-services", ViolationKind::DenyList),
                ("approved-saas", ViolationKind::NotAllowListed)
            ],
            "{r:?}"
        );
        assert!(
            v[0].description.contains("deny-listed under"),
            "{}",
            v[0].description
        );
        assert_eq!(v[0].rule_location, "domains.toml:6");
    }
    // Not under it: notbanned.example, example.net.
    assert_eq!(
        kinds(&p.evaluate(&named(Some(("notbanned.example", None)), None), &none())),
        [("approved-saas", ViolationKind::NotAllowListed)]
    );
    // Allowed by name; an answer (the resolver's flow back) names nothing; a flow without
    // a name passes an allow-list of domains only.
    assert!(
        p.evaluate(&named(None, Some("outlook.office365.com")), &none())
            .is_empty()
    );
    assert!(
        p.evaluate(&named(Some(("banned.example", Some(0))), None), &none())
            .is_empty()
    );
    assert!(p.evaluate(&named(None, None), &none()).is_empty());
}

#[test]
fn domain_lists_refuse_bad_names_and_drop_actions_with_file_and_line() {
    for (rest, want) in [
        ("domains = [\"bad name.example\"]\n", "domains.toml:6:"),
        ("domains = [\"\"]\n", "domains.toml:6:"),
        (
            "domains = [\"x.example\"]\naction = \"drop\"\n",
            "cannot be enforced at the line",
        ),
    ] {
        let src = format!("\n{}", tables(&[rule("d", "d", "deny_list", rest)]));
        let e = Policy::parse(&src, Path::new("domains.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{rest}: {e}");
    }
}
