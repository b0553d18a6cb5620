//! An operator drops traffic to a country: the collector compiles the rule through the
//! real GeoLite2-City database into the prefixes the probes load. Every prefix the rule
//! marks is that country's by the database, the database's addresses of the country are
//! covered, and addresses of other countries are not; an operator range file overrides
//! the database both ways.

use std::net::IpAddr;
use std::path::Path;

use tidegate_threat::{
    enrich::{EnrichConfig, Enricher},
    policy::{Policy, enforce::compile},
};
use tidegate_wire::enforce::prefix_mask;

fn enricher(csv: Vec<std::path::PathBuf>) -> Enricher {
    Enricher::load(&EnrichConfig {
        mmdb: vec![tidegate_testkit::paths::geolite()],
        csv,
    })
    .expect("load GeoLite2-City")
}

const POLICY: &str = "[[rule]]\nid = \"no-kp\"\nname = \"no traffic to KP\"\ntype = \"deny_list\"\ncountries = [\"KP\"]\naction = \"drop\"\n";

/// Whether `ip` is marked as a destination of the rule by the plan (longest prefix of its
/// family, as the kernel looks it up).
fn marked(plan: &tidegate_wire::EnforcePlan, ip: IpAddr) -> bool {
    let (v4, x) = match ip {
        IpAddr::V4(a) => (true, u128::from(a.to_ipv6_mapped())),
        IpAddr::V6(a) => (false, u128::from(a)),
    };
    plan.prefixes
        .iter()
        .filter(|p| {
            let start = u128::from_be_bytes(p.addr);
            let is_v4 = p.len >= 96 && start >> 32 == 0xffff;
            is_v4 == v4 && x & prefix_mask(p.len) == start
        })
        .max_by_key(|p| p.len)
        .map_or(plan.default_dst, |p| p.dst_mask)
        & 1
        != 0
}

#[test]
fn a_country_rule_compiles_to_that_countrys_networks() {
    let e = enricher(vec![]);
    let p = Policy::parse(POLICY, Path::new("p.toml")).unwrap();
    let plan = compile(&p, &e, &[], &[], 1).unwrap();
    let marked_prefixes: Vec<_> = plan
        .prefixes
        .iter()
        .filter(|p| p.dst_mask & 1 != 0)
        .collect();
    assert!(!marked_prefixes.is_empty(), "KP has networks in GeoLite2");
    for pr in &marked_prefixes {
        let first = std::net::Ipv6Addr::from(pr.addr);
        let ip = first
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(first));
        assert_eq!(
            e.lookup(ip).country.as_deref(),
            Some("KP"),
            "{ip}/{}",
            pr.len
        );
    }
    // Addresses the database puts in KP are covered; others are not.
    let kp: IpAddr = "175.45.176.1".parse().unwrap();
    assert_eq!(e.lookup(kp).country.as_deref(), Some("KP"));
    assert!(marked(&plan, kp));
    for other in [
        "8.8.8.8",
        "1.1.1.1",
        "202.96.134.133",
        "2001:4860:4860::8888",
    ] {
        let ip: IpAddr = other.parse().unwrap();
        assert_ne!(e.lookup(ip).country.as_deref(), Some("KP"));
        assert!(!marked(&plan, ip), "{other} marked");
    }
}

#[test]
fn operator_ranges_override_the_database_in_the_compiled_plan() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ops.csv");
    // Take a slice of KP out of KP, and put a documentation range into it.
    std::fs::write(&csv, "175.45.176.0/25,CN,\n198.51.100.0/24,KP,\n").unwrap();
    let e = enricher(vec![csv]);
    let p = Policy::parse(POLICY, Path::new("p.toml")).unwrap();
    let plan = compile(&p, &e, &[], &[], 1).unwrap();
    assert!(
        !marked(&plan, "175.45.176.1".parse().unwrap()),
        "operator says CN"
    );
    assert!(
        marked(&plan, "175.45.176.200".parse().unwrap()),
        "the rest stays KP"
    );
    assert!(
        marked(&plan, "198.51.100.9".parse().unwrap()),
        "operator says KP"
    );
}
