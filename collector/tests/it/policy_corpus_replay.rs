//! A user declares zones for a real capture's networks and replays it: the violations the
//! policy engine raises are exactly the flows an independent reading of the capture's
//! tshark ground truth (`../shared/corpus/truth/ndpi-1kxun.pcap.tsv`) says break the rules.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::support::policy::{rule, tables, zone};
use tidegate_threat::policy::{Endpoints, Policy, PolicyEngine, PolicyHandle, ViolationKind};
use tidegate_wire::record::FlowRecord;

const LINE: &str = "hk-intl-1";

/// The capture's clients live in 192.168.0.0/16; they are isolated (may talk only among
/// themselves), and the line allows only web and DNS.
fn policy() -> String {
    tables(&[
        zone("clients", &["192.168.0.0/16"]),
        rule(
            "clients-isolated",
            "clients stay local",
            "isolate",
            "zone = \"clients\"\npeers = []\n",
        ),
        rule(
            "web-dns-only",
            "web and DNS only",
            "ports",
            "lines = [\"hk-intl-1\"]\nallow = [\"tcp/80\", \"tcp/443\", \"udp/53\"]\n",
        ),
    ])
}

type Key = (IpAddr, IpAddr, u8, u16, u16);

fn records() -> Vec<FlowRecord> {
    tidegate_testkit::probe::corpus_records_of("ndpi-1kxun.pcap", LINE)
}

/// Ground-truth flows (fam src dst proto sport dport ...), read without the policy code.
fn truth() -> Vec<Key> {
    let text = std::fs::read_to_string(
        tidegate_testkit::paths::corpus_dir().join("truth/ndpi-1kxun.pcap.tsv"),
    )
    .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
                c[4].parse().unwrap(),
                c[5].parse().unwrap(),
            )
        })
        .collect()
}

fn is_client(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if u32::from(v4) >> 16 == u32::from(Ipv4Addr::new(192, 168, 0, 0)) >> 16)
}

fn web_or_dns(k: &Key) -> bool {
    let (_, _, proto, sport, dport) = *k;
    (proto == 6 && [80, 443].iter().any(|p| *p == sport || *p == dport))
        || (proto == 17 && (sport == 53 || dport == 53))
}

#[test]
fn replayed_capture_violations_match_the_ground_truth() {
    let policy = Policy::parse(&policy(), Path::new("corpus-policy.toml")).unwrap();
    let mut engine = PolicyEngine::new(PolicyHandle::new(policy));
    let records = records();
    let mut isolation = BTreeSet::new();
    let mut ports = BTreeSet::new();
    let mut total = 0;
    for r in &records {
        for v in engine.process(r, &Endpoints::default()) {
            total += 1;
            assert_eq!(v.evidence, vec![r.clone()]);
            assert_eq!(v.line, LINE);
            let k: Key = (r.src, r.dst, r.proto, r.sport, r.dport);
            match v.kind {
                ViolationKind::Isolation => isolation.insert(k),
                ViolationKind::ForbiddenPort => ports.insert(k),
                other => panic!("unexpected {other:?}"),
            };
        }
    }
    let truth = truth();
    let want_isolation: BTreeSet<Key> = truth
        .iter()
        .filter(|(s, d, ..)| is_client(*s) != is_client(*d))
        .copied()
        .collect();
    let want_ports: BTreeSet<Key> = truth.iter().filter(|k| !web_or_dns(k)).copied().collect();
    assert!(want_isolation.len() > 50, "{}", want_isolation.len());
    assert!(want_ports.len() > 50, "{}", want_ports.len());
    assert_eq!(isolation, want_isolation);
    assert_eq!(ports, want_ports);
    eprintln!(
        "{} records, {total} violations: {} isolation flows, {} forbidden-port flows",
        records.len(),
        isolation.len(),
        ports.len()
    );
}
