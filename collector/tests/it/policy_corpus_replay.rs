//! A user declares zones for a real capture's networks and replays it: the violations the
//! policy engine raises are exactly the flows an independent reading of the capture's
//! tshark ground truth (`../shared/corpus/truth/ndpi-1kxun.pcap.tsv`) says break the rules.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use tidegate_probe::{capture::pcap::Replay, table::Timeouts};
use tidegate_threat::policy::{Endpoints, Policy, PolicyEngine, PolicyHandle, ViolationKind};
use tidegate_wire::record::FlowRecord;

const LINE: &str = "hk-intl-1";

/// The capture's clients live in 192.168.0.0/16; they are isolated (may talk only among
/// themselves), and the line allows only web and DNS.
const POLICY: &str = r#"
[[zone]]
name = "clients"
cidrs = ["192.168.0.0/16"]

[[rule]]
id = "clients-isolated"
name = "clients stay local"
type = "isolate"
zone = "clients"
peers = []

[[rule]]
id = "web-dns-only"
name = "web and DNS only"
type = "ports"
lines = ["hk-intl-1"]
allow = ["tcp/80", "tcp/443", "udp/53"]
"#;

type Key = (IpAddr, IpAddr, u8, u16, u16);

fn records() -> Vec<FlowRecord> {
    let mut out = Vec::new();
    let mut replay = Replay::new(Timeouts::default());
    let path = tidegate_testkit::paths::corpus_dir().join("pcap/ndpi-1kxun.pcap");
    let report = replay
        .replay_file(&path, LINE, &mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(report.error.is_none(), "{:?}", report.error);
    replay.finish(&mut out).unwrap();
    out
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
    let policy = Policy::parse(POLICY, Path::new("corpus-policy.toml")).unwrap();
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
