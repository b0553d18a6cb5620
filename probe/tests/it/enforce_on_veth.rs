//! Enforcement on a real kernel: a policy compiled by the collector's compiler is
//! installed into the XDP program on a veth pair inside namespaces this test creates;
//! frames are sent from the other end and counted on arrival (an AF_PACKET socket behind
//! XDP sees exactly what XDP passed).
//!
//! - monitor mode drops nothing, and the rule's counters equal the would-drop traffic;
//! - enforce mode drops the denied flow to the packet and passes the others untouched;
//! - a protected source is never dropped;
//! - swapping policies under continuous traffic judges every packet by one whole policy;
//! - once the probe stops (programs detached), everything passes again.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use tidegate_common::{Counter, FlowKey, FlowStats};
use tidegate_probe::{
    capture::{
        afpacket::AfPacketCapture,
        ebpf::{EbpfCapture, EbpfOptions, Enforcer, XdpModeChoice},
    },
    config::Line,
    live::LiveSource,
    record::addr,
};
use tidegate_testkit::net::{
    VethPair,
    frames::{self, RawSender},
};
use tidegate_threat::{
    enrich::Enricher,
    policy::{Policy, enforce::compile},
};
use tidegate_wire::{EnforcePlan, Verdict};

const LINE: &str = "line-b";
const HOME: &str = "10.10.1.1";
const PROTECTED_HOST: &str = "10.10.9.5";
const DENIED: &str = "198.51.100.7";
const ALLOWED: &str = "203.0.113.9";
const LEN: u16 = 120;

fn policy(mode: &str, denied: &str, rule: &str) -> String {
    format!(
        r#"
[[zone]]
name = "home"
cidrs = ["10.10.0.0/16"]

[[rule]]
id = "{rule}"
name = "no traffic to the sanctioned network"
type = "deny_list"
cidrs = ["{denied}"]
action = "drop"

[enforce]
mode = "{mode}"
protected = ["10.10.9.0/24"]
"#
    )
}

fn plan(text: &str, version: u64) -> EnforcePlan {
    let p = Policy::parse(text, Path::new("policy.toml")).expect("policy");
    compile(&p, &Enricher::default(), &[], &[], version).expect("compile")
}

type Pair = (IpAddr, IpAddr);

/// Frames per (src, dst) seen arriving on `iface` (inside `ns`) while `send` runs, and
/// the socket's own drop count (must be 0 for the counts to be exact).
fn receive_while(ns: &str, iface: &str, send: impl FnOnce() + Send) -> (HashMap<Pair, u64>, u64) {
    let stop = AtomicBool::new(false);
    let ready = AtomicBool::new(false);
    std::thread::scope(|s| {
        let rx = s.spawn(|| {
            VethPair::in_ns(ns, || {
                let mut cap = AfPacketCapture::open(
                    &[Line {
                        name: "rx".into(),
                        iface: iface.into(),
                    }],
                    tidegate_common::Tunnels::Outer,
                )
                .expect("AF_PACKET");
                let mut got: HashMap<Pair, u64> = HashMap::new();
                let mut sink = |k: &FlowKey, st: &FlowStats| {
                    if k.direction != 0 {
                        return;
                    }
                    let pair = (addr(k.family, &k.src), addr(k.family, &k.dst));
                    *got.entry(pair).or_default() += st.packets;
                };
                ready.store(true, Ordering::SeqCst);
                while !stop.load(Ordering::SeqCst) {
                    cap.poll(Duration::from_millis(20), &mut sink).unwrap();
                }
                // veth delivers asynchronously: drain what is still arriving.
                let end = Instant::now() + Duration::from_millis(300);
                while Instant::now() < end {
                    cap.poll(Duration::from_millis(20), &mut sink).unwrap();
                }
                cap.finish(&mut sink).unwrap();
                let dropped = cap.counters().unwrap()[Counter::CaptureDropped as usize];
                (got, dropped)
            })
            .unwrap()
        });
        while !ready.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        send();
        stop.store(true, Ordering::SeqCst);
        rx.join().unwrap()
    })
}

struct Rig {
    pair: VethPair,
    mac_b: [u8; 6],
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let pair = VethPair::new(tag).expect("veth pair");
        let mac_b = VethPair::mac(&pair.ns_b, &pair.if_b).unwrap();
        Rig { pair, mac_b }
    }

    fn frame(&self, src: &str, dst: &str, sport: u16) -> Vec<u8> {
        frames::ipv4(
            self.mac_b,
            None,
            17,
            src.parse().unwrap(),
            dst.parse().unwrap(),
            sport,
            5000,
            LEN,
            0,
        )
    }

    /// Sends `count` of each frame from the far end, paced so nothing is lost on the way.
    fn send(&self, frames: &[(Vec<u8>, u64)]) {
        VethPair::in_ns(&self.pair.ns_a, || {
            let tx = RawSender::new(&self.pair.if_a).unwrap();
            let most = frames.iter().map(|f| f.1).max().unwrap_or(0);
            for i in 0..most {
                for (f, n) in frames {
                    if i < *n {
                        tx.send(f).unwrap();
                    }
                }
                if i % 64 == 63 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
        .unwrap();
    }

    /// Loads and attaches the programs on the near end (inside its namespace) and
    /// returns them with the enforcement tables.
    fn load(&self) -> (EbpfCapture, Enforcer, u32) {
        VethPair::in_ns(&self.pair.ns_b, || {
            let mut cap = EbpfCapture::load(EbpfOptions {
                flow_entries: 4096,
                xdp_mode: XdpModeChoice::Native,
                enforce: true,
                ..Default::default()
            })
            .expect("load eBPF");
            let rep = cap.attach(&self.pair.if_b).expect("attach");
            let mut e = cap.take_enforcer().expect("enforcer");
            e.set_lines(HashMap::from([(LINE.to_string(), vec![rep.ifindex])]));
            (cap, e, rep.ifindex)
        })
        .unwrap()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Sums the drained flow stats per (src, dst) and names each verdict's rule.
fn flows(cap: &mut EbpfCapture, e: &Enforcer) -> HashMap<Pair, (u64, Verdict, Option<String>)> {
    let mut raw: HashMap<FlowKey, FlowStats> = HashMap::new();
    cap.finish(&mut |k: &FlowKey, s: &FlowStats| raw.entry(*k).or_default().merge(s))
        .unwrap();
    let mut out = HashMap::new();
    for (k, s) in raw {
        if k.direction != 0 {
            continue;
        }
        let (a, b) = (addr(k.family, &k.src), addr(k.family, &k.dst));
        let v = Verdict::from_u8(s.verdict);
        let rule = (!v.is_pass()).then(|| e.rule_name(s.policy, s.rule).expect("named rule"));
        out.insert((a, b), (s.packets, v, rule));
    }
    out
}

fn run_mode(tag: &str, mode: &str) {
    let rig = Rig::new(tag);
    let (mut cap, mut e, _) = rig.load();
    let installed = e
        .install(&plan(&policy(mode, "198.51.100.0/24", "sanctioned"), 7))
        .unwrap();
    assert_eq!(installed.version, 7);
    let (denied, allowed, protected) = (300u64, 200u64, 50u64);
    let (got, sock_drops) = receive_while(&rig.pair.ns_b, &rig.pair.if_b, || {
        rig.send(&[
            (rig.frame(HOME, DENIED, 40000), denied),
            (rig.frame(HOME, ALLOWED, 40001), allowed),
            (rig.frame(PROTECTED_HOST, DENIED, 40002), protected),
        ])
    });
    assert_eq!(
        sock_drops, 0,
        "the receiving socket lost frames: counts would not be exact"
    );
    let enforce = mode == "enforce";
    let rx = |s: &str, d: &str| got.get(&(ip(s), ip(d))).copied().unwrap_or(0);
    // The receiver's count per flow: the denied flow arrives only in monitor mode.
    assert_eq!(
        rx(HOME, DENIED),
        if enforce { 0 } else { denied },
        "denied flow at the receiver"
    );
    assert_eq!(rx(HOME, ALLOWED), allowed, "allowed flow untouched");
    assert_eq!(
        rx(PROTECTED_HOST, DENIED),
        protected,
        "protected source never dropped"
    );

    // The rule's counters: exactly the denied flow, as would-drop or dropped.
    let verdict = if enforce {
        Verdict::Dropped
    } else {
        Verdict::WouldDrop
    };
    let totals = e.rule_totals().unwrap();
    let t = totals
        .get(&("sanctioned".to_string(), verdict))
        .unwrap_or_else(|| panic!("no {verdict:?} counters: {totals:?}"));
    assert_eq!((t.packets, t.bytes), (denied, denied * LEN as u64));
    assert_eq!(totals.len(), 1, "{totals:?}");
    let c = cap.counters().unwrap();
    let (wd, dr) = (
        c[Counter::EnforceWouldDrop as usize],
        c[Counter::EnforceDropped as usize],
    );
    assert_eq!((wd, dr), if enforce { (0, denied) } else { (denied, 0) });
    assert_eq!(c[Counter::EnforceProtected as usize], protected);

    // Every flow is still accounted, dropped or not, with its verdict and rule.
    let f = flows(&mut cap, &e);
    let flow = |s: &str, d: &str| f.get(&(ip(s), ip(d))).cloned().expect("flow accounted");
    assert_eq!(
        flow(HOME, DENIED),
        (denied, verdict, Some("sanctioned".to_string()))
    );
    assert_eq!(flow(HOME, ALLOWED), (allowed, Verdict::Pass, None));
    assert_eq!(
        flow(PROTECTED_HOST, DENIED),
        (protected, Verdict::Pass, None)
    );
}

#[test]
fn enforce_monitor_mode_drops_nothing_and_counts_would_drop_exactly() {
    run_mode("enm", "monitor");
}

#[test]
fn enforce_mode_drops_denied_flows_to_the_packet_and_passes_the_rest() {
    run_mode("ene", "enforce");
}

#[test]
fn enforce_policy_swaps_under_traffic_judge_each_packet_by_one_policy() {
    let rig = Rig::new("ens");
    let (mut cap, mut e, _) = rig.load();
    // Two policies dropping different destinations under the same rule bit.
    let (d1, d2) = ("198.51.100.7", "192.0.2.7");
    let x = policy("enforce", "198.51.100.0/24", "x");
    let y = policy("enforce", "192.0.2.0/24", "y");
    e.install(&plan(&x, 1)).unwrap();
    let per_dest = 6000u64;
    let mut swaps = 0u64;
    let done = AtomicBool::new(false);
    let (got, sock_drops) = std::thread::scope(|s| {
        let swapper = s.spawn(|| {
            let mut v = 2u64;
            while !done.load(Ordering::SeqCst) {
                let text = if v.is_multiple_of(2) { &y } else { &x };
                e.install(&plan(text, v)).unwrap();
                v += 1;
                swaps += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let r = receive_while(&rig.pair.ns_b, &rig.pair.if_b, || {
            rig.send(&[
                (rig.frame(HOME, d1, 41000), per_dest),
                (rig.frame(HOME, d2, 41001), per_dest),
            ]);
        });
        done.store(true, Ordering::SeqCst);
        swapper.join().unwrap();
        r
    });
    assert_eq!(sock_drops, 0);
    assert!(
        swaps >= 20,
        "only {swaps} swaps happened during the traffic"
    );
    let totals = e.rule_totals().unwrap();
    let dropped = |rule: &str| {
        totals
            .get(&(rule.to_string(), Verdict::Dropped))
            .map(|t| t.packets)
            .unwrap_or(0)
    };
    let rx = |d: &str| got.get(&(ip(HOME), ip(d))).copied().unwrap_or(0);
    // Every packet was judged by one whole policy: to d1 it was dropped by x or passed
    // (y does not name d1), to d2 dropped by y or passed.
    assert_eq!(
        rx(d1) + dropped("x"),
        per_dest,
        "d1: received {} + dropped by x {}",
        rx(d1),
        dropped("x")
    );
    assert_eq!(
        rx(d2) + dropped("y"),
        per_dest,
        "d2: received {} + dropped by y {}",
        rx(d2),
        dropped("y")
    );
    assert!(
        dropped("x") > 0 && dropped("y") > 0 && rx(d1) > 0 && rx(d2) > 0,
        "both policies were in force at times"
    );
    let c = cap.counters().unwrap();
    assert_eq!(
        c[Counter::EnforceDropped as usize],
        dropped("x") + dropped("y")
    );
    let f = flows(&mut cap, &e);
    assert_eq!(f[&(ip(HOME), ip(d1))].0, per_dest, "every packet accounted");
    assert_eq!(f[&(ip(HOME), ip(d1))].2.as_deref(), Some("x"));
    assert_eq!(f[&(ip(HOME), ip(d2))].2.as_deref(), Some("y"));
    assert_eq!(
        f[&(ip(HOME), ip(d1))].1.max(f[&(ip(HOME), ip(d2))].1),
        Verdict::Dropped
    );
}

#[test]
fn enforce_stops_with_the_probe_and_traffic_passes() {
    let rig = Rig::new("enx");
    let (mut cap, mut e, _) = rig.load();
    e.install(&plan(
        &policy("enforce", "198.51.100.0/24", "sanctioned"),
        3,
    ))
    .unwrap();
    let (got, _) = receive_while(&rig.pair.ns_b, &rig.pair.if_b, || {
        rig.send(&[(rig.frame(HOME, DENIED, 42000), 100)])
    });
    assert_eq!(
        got.get(&(ip(HOME), ip(DENIED))).copied().unwrap_or(0),
        0,
        "enforced while running"
    );
    // The probe stops: its programs are detached (as when the process exits).
    cap.detach_all();
    drop(cap);
    let (got, drops) = receive_while(&rig.pair.ns_b, &rig.pair.if_b, || {
        rig.send(&[(rig.frame(HOME, DENIED, 42000), 100)])
    });
    assert_eq!(drops, 0);
    assert_eq!(
        got.get(&(ip(HOME), ip(DENIED))).copied(),
        Some(100),
        "fail-open: everything passes"
    );
    // Clearing the rules (the other fail-open path) also works on a live program.
    let (mut cap2, mut e2, _) = rig.load();
    e2.install(&plan(
        &policy("enforce", "198.51.100.0/24", "sanctioned"),
        4,
    ))
    .unwrap();
    e2.clear().unwrap();
    assert_eq!(e2.version(), 0);
    let (got, _) = receive_while(&rig.pair.ns_b, &rig.pair.if_b, || {
        rig.send(&[(rig.frame(HOME, DENIED, 42001), 100)])
    });
    assert_eq!(
        got.get(&(ip(HOME), ip(DENIED))).copied(),
        Some(100),
        "rules cleared: passes"
    );
    let f = flows(&mut cap2, &e2);
    assert_eq!(f[&(ip(HOME), ip(DENIED))], (100, Verdict::Pass, None));
    drop(e);
}

/// `tidegate-probe run --enforce` as an operator runs it: the collector pushes a plan over
/// the probe's connection, the probe reports the version it enforces, flow records carry
/// the verdict and the rule, and a newer plan (monitor → enforce) takes over.
#[test]
fn enforce_plans_pushed_by_the_collector_are_installed_reported_and_stamped_on_records() {
    use tidegate_testkit::{
        certs::Certs,
        transport::{MemSink, TestServer},
    };
    let rig = Rig::new("enc");
    let tmp = tempfile::tempdir().unwrap();
    let probe = "edge-enforce";
    let certs = Certs::generate(&tmp.path().join("pki"), &[probe]);
    let sink = MemSink::new();
    sink.publish(&plan(
        &policy("monitor", "198.51.100.0/24", "sanctioned"),
        11,
    ));
    let server = VethPair::in_ns(&rig.pair.ns_b, || {
        TestServer::start(&certs.transport_config(0), sink.clone())
    })
    .unwrap();
    let spool = tmp.path().join("spool");
    let addr = server.addr.to_string();
    let mut args = vec![
        "--backend",
        "ebpf",
        "--enforce",
        "--flow-entries",
        "4096",
        "--sweep-interval-ms",
        "100",
    ];
    let to_collector = crate::support::probe_cli::collector_args(&certs, probe, &addr, &spool);
    args.extend(to_collector.iter().map(String::as_str));
    let proc = crate::support::probe_cli::ProbeProcess::run_on(&rig.pair, &args);
    sink.wait_enforcing(probe, 11, Duration::from_secs(20))
        .expect("the probe reports enforcing the pushed plan");
    rig.send(&[
        (rig.frame(HOME, DENIED, 43000), 40),
        (rig.frame(HOME, ALLOWED, 43001), 30),
    ]);
    // A newer plan: the same rule, now enforcing.
    sink.publish(&plan(
        &policy("enforce", "198.51.100.0/24", "sanctioned"),
        12,
    ));
    sink.wait_enforcing(probe, 12, Duration::from_secs(20))
        .expect("the probe reports enforcing the newer plan");
    rig.send(&[(rig.frame(HOME, DENIED, 43002), 25)]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, _, err) = proc.stop();
    assert_eq!(code, 0, "probe exit code; stderr: {err:#?}");
    assert!(
        err.iter()
            .any(|l| l.contains("enforcement policy installed")),
        "{err:#?}"
    );
    let records = sink.records(probe);
    let sum = |sport: u16| {
        records
            .iter()
            .filter(|r| r.sport == sport && r.direction == tidegate_common::Direction::Ingress)
            .fold((0, None, None), |(n, _, _), r| {
                (n + r.packets, Some(r.verdict), r.enforce_rule.clone())
            })
    };
    assert_eq!(
        sum(43000),
        (40, Some(Verdict::WouldDrop), Some("sanctioned".into()))
    );
    assert_eq!(sum(43001), (30, Some(Verdict::Pass), None));
    assert_eq!(
        sum(43002),
        (25, Some(Verdict::Dropped), Some("sanctioned".into()))
    );
    assert!(
        sink.statuses()
            .iter()
            .all(|(_, s)| s.failed_version.is_none()),
        "{:?}",
        sink.statuses()
    );
    server.stop();
}

/// IPv6 has its own tables (LPM trie and host map): a dropping deny list of an IPv6 block
/// and an IPv6 host drops exactly those flows, to the packet; an IPv4 rule does not touch
/// IPv6 traffic.
#[test]
fn enforce_ipv6_prefixes_and_hosts_drop_to_the_packet() {
    let rig = Rig::new("en6");
    let (mut cap, mut e, _) = rig.load();
    let text = r#"
[[rule]]
id = "v6-block"
name = "no traffic to the sanctioned IPv6 block and host"
type = "deny_list"
cidrs = ["2001:db8:bad::/48", "2001:db8:1::66/128", "198.51.100.0/24"]
action = "drop"

[enforce]
mode = "enforce"
"#;
    e.install(&plan(text, 21)).unwrap();
    let src: std::net::Ipv6Addr = "2001:db8:9::1".parse().unwrap();
    let to =
        |d: &str, sport: u16| frames::ipv6_udp(rig.mac_b, src, d.parse().unwrap(), sport, 5000, 80);
    let (got, drops) = receive_while(&rig.pair.ns_b, &rig.pair.if_b, || {
        VethPair::in_ns(&rig.pair.ns_a, || {
            let tx = RawSender::new(&rig.pair.if_a).unwrap();
            for (f, n) in [
                (to("2001:db8:bad::7", 46000), 30u64),
                (to("2001:db8:1::66", 46001), 20),
                (to("2001:db8:1::67", 46002), 25),
                (to("::ffff:198.51.100.7", 46003), 15),
            ] {
                for _ in 0..n {
                    tx.send(&f).unwrap();
                }
            }
        })
        .unwrap();
    });
    assert_eq!(drops, 0);
    let rx = |d: &str| got.get(&(IpAddr::V6(src), ip(d))).copied().unwrap_or(0);
    assert_eq!(rx("2001:db8:bad::7"), 0, "IPv6 block (LPM) dropped");
    assert_eq!(rx("2001:db8:1::66"), 0, "IPv6 host (exact map) dropped");
    assert_eq!(rx("2001:db8:1::67"), 25, "the neighbour passes");
    // A genuine IPv6 packet to an IPv4-mapped address is not matched by IPv4 rules.
    assert_eq!(rx("::ffff:198.51.100.7"), 15);
    let totals = e.rule_totals().unwrap();
    let t = &totals[&("v6-block".to_string(), Verdict::Dropped)];
    assert_eq!((t.packets, t.bytes), (50, 30 * 120 + 20 * 120));
    let f = flows(&mut cap, &e);
    assert_eq!(
        f[&(IpAddr::V6(src), ip("2001:db8:1::66"))],
        (20, Verdict::Dropped, Some("v6-block".to_string()))
    );
    assert_eq!(
        f[&(IpAddr::V6(src), ip("2001:db8:1::67"))],
        (25, Verdict::Pass, None)
    );
}

/// With `enforce_max_offline_secs`, a probe whose collector is gone for longer clears its
/// policy (fail-open) and says so; traffic the policy dropped then passes.
#[test]
fn enforce_clears_after_the_collector_is_unreachable_for_too_long() {
    use tidegate_testkit::{
        certs::Certs,
        probe::{exporter, probe_options},
        transport::{MemSink, TestServer},
    };
    let rig = Rig::new("eno");
    let (cap, e, _) = rig.load();
    let enf = tidegate_probe::capture::ebpf::SharedEnforcer::new(e);
    let tmp = tempfile::tempdir().unwrap();
    let probe = "edge-offline";
    let certs = Certs::generate(&tmp.path().join("pki"), &[probe]);
    let sink = MemSink::new();
    sink.publish(&plan(
        &policy("enforce", "198.51.100.0/24", "sanctioned"),
        31,
    ));
    let server = TestServer::start(&certs.transport_config(0), sink.clone());
    let mut o = probe_options(&certs, probe, server.addr, &tmp.path().join("spool"));
    o.enforcer = Some(enf.clone());
    o.enforce_max_offline = Some(Duration::from_secs(1));
    o.finish_timeout = Duration::from_secs(1);
    let ex = exporter(o);
    sink.wait_enforcing(probe, 31, Duration::from_secs(20))
        .expect("enforcing");
    let (got, _) = receive_while(&rig.pair.ns_b, &rig.pair.if_b, || {
        rig.send(&[(rig.frame(HOME, DENIED, 47000), 50)])
    });
    assert_eq!(
        got.get(&(ip(HOME), ip(DENIED))).copied().unwrap_or(0),
        0,
        "enforced"
    );
    // The collector goes away; after the limit the probe clears its policy.
    server.stop();
    let t0 = Instant::now();
    while enf.lock().version() != 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "policy not cleared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (got, _) = receive_while(&rig.pair.ns_b, &rig.pair.if_b, || {
        rig.send(&[(rig.frame(HOME, DENIED, 47001), 50)])
    });
    assert_eq!(
        got.get(&(ip(HOME), ip(DENIED))).copied(),
        Some(50),
        "fail-open"
    );
    drop(ex);
    drop(cap);
}
