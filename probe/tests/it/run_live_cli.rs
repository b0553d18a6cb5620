//! `tidegate-probe run` as a user runs it: live capture on a veth line in a namespace,
//! records on stdout, everything flushed on SIGINT; clear errors for bad input.

use std::{collections::HashMap, net::Ipv4Addr, process::Command};

use tidegate_testkit::net::{
    VethPair,
    frames::{self, RawSender},
};

use crate::support::probe_cli::{ProbeProcess, bin};

// The crafted flows' source and destination.
const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// `flows` (`(sport, ip_len, count)`) from [`SRC`] over `pair` to `mac`.
fn send_flows(pair: &VethPair, mac: [u8; 6], flows: &[(u16, u16, u64)]) {
    frames::send_udp_flows(pair, mac, SRC, DST, flows);
}

fn sums(records: &[serde_json::Value]) -> HashMap<u64, (u64, u64)> {
    let mut m = HashMap::new();
    for r in records {
        if r["src"] == SRC.to_string() {
            let e = m.entry(r["sport"].as_u64().unwrap()).or_insert((0, 0));
            e.0 += r["packets"].as_u64().unwrap();
            e.1 += r["bytes"].as_u64().unwrap();
        }
    }
    m
}

/// A veth pair tagged `tag`, the MAC of its probed end, and `tidegate-probe run --iface
/// <that end> --json ARGS...` capturing on it.
fn json_probe(tag: &str, args: &[&str]) -> (VethPair, [u8; 6], ProbeProcess) {
    let pair = VethPair::new(tag).expect("veth pair");
    let mac_b = VethPair::mac(&pair.ns_b, &pair.if_b).unwrap();
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let p = ProbeProcess::run_on(&pair, &all);
    (pair, mac_b, p)
}

fn check_capture(backend: &str) {
    let (pair, mac_b, p) = json_probe(
        &backend[..3],
        &["--backend", backend, "--flow-entries", "4096"],
    );
    let flows = [(1000u16, 64u16, 500u64), (1001, 1400, 77), (1002, 28, 1)];
    send_flows(&pair, mac_b, &flows);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, records, err) = p.stop();
    assert_eq!(code, 0, "probe exit code; stderr: {err:?}");
    let got = sums(&records);
    for (sport, len, count) in flows {
        assert_eq!(
            got.get(&(sport as u64)),
            Some(&(count, count * len as u64)),
            "flow {sport} via {backend}: {got:?}"
        );
    }
    let r = records
        .iter()
        .find(|r| r["src"] == SRC.to_string())
        .unwrap();
    assert_eq!(r["line"], pair.if_b.as_str());
    assert_eq!(r["direction"], "ingress");
    assert_eq!(r["vlan"], serde_json::Value::Null);
    assert!(r["first"].as_str().unwrap().len() == "2026-01-01T00:00:00.000000000Z".len());
    assert!(
        err.iter().any(|l| l.contains("all flows exported")),
        "{err:?}"
    );
}

#[test]
fn ebpf_capture_prints_every_flow_and_flushes_on_sigint() {
    check_capture("ebpf");
}

/// `Uid:` and `CapEff:` of a process.
fn identity(pid: u32) -> (String, String) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let f = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    (f("Uid:"), f("CapEff:"))
}

#[test]
fn after_attaching_the_probe_runs_as_a_plain_user_and_still_counts_every_packet() {
    for backend in ["ebpf", "afpacket"] {
        let (pair, mac_b, p) = json_probe(
            &format!("u{}", &backend[..2]),
            &[
                "--backend",
                backend,
                "--flow-entries",
                "4096",
                "--user",
                "nobody",
            ],
        );
        let mut seen = (String::new(), String::new());
        for _ in 0..100 {
            seen = identity(p.pid());
            if !seen.0.is_empty() && !seen.0.starts_with("0") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(
            seen.0.split_whitespace().all(|u| u == "65534"),
            "{backend}: uids {:?}",
            seen.0
        );
        assert_eq!(seen.1, "0000000000000000", "{backend}: capabilities left");
        let flows = [(2000u16, 100u16, 300u64), (2001, 600, 20)];
        send_flows(&pair, mac_b, &flows);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (code, records, err) = p.stop();
        assert_eq!(code, 0, "{backend}: {err:?}");
        let got = sums(&records);
        for (sport, len, count) in flows {
            assert_eq!(
                got.get(&(sport as u64)),
                Some(&(count, count * len as u64)),
                "{backend} flow {sport}: {got:?}"
            );
        }
        assert!(
            err.iter().any(|l| l.contains("privileges dropped")),
            "{err:?}"
        );
    }
}

#[test]
fn afpacket_capture_counts_the_same() {
    check_capture("afpacket");
}

#[test]
fn short_idle_timeout_exports_while_running() {
    let (pair, mac_b, p) = json_probe(
        "idle",
        &[
            "--idle-timeout",
            "1",
            "--sweep-interval-ms",
            "100",
            "--flow-entries",
            "1024",
        ],
    );
    send_flows(&pair, mac_b, &[(2000, 100, 10)]);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    send_flows(&pair, mac_b, &[(2000, 100, 5)]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, records, _) = p.stop();
    assert_eq!(code, 0);
    let recs: Vec<_> = records.iter().filter(|r| r["sport"] == 2000).collect();
    assert_eq!(
        recs.len(),
        2,
        "idle timeout splits the flow into two records: {recs:?}"
    );
    assert_eq!(
        recs.iter()
            .map(|r| r["packets"].as_u64().unwrap())
            .sum::<u64>(),
        15
    );
}

fn run_fails(args: &[&str], want: &str) {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{args:?} must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains(want),
        "{args:?}: last stderr line {last:?} should mention {want:?}; all: {err}"
    );
    assert!(last.starts_with("tidegate-probe: error:"), "{last}");
}

#[test]
fn unknown_interface_is_one_clear_error() {
    run_fails(
        &["run", "--iface", "nosuchif0"],
        "unknown interface \"nosuchif0\"",
    );
    run_fails(
        &["run", "--iface", "nosuchif0", "--backend", "afpacket"],
        "unknown interface \"nosuchif0\"",
    );
}

#[test]
fn bad_config_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("probe.toml");
    std::fs::write(
        &p,
        "[probe]\nidle_timeout_secs = 0\n[[line]]\nname = \"a\"\niface = \"lo\"\n",
    )
    .unwrap();
    run_fails(
        &["run", "--config", p.to_str().unwrap()],
        &format!("{}:2: idle_timeout_secs", p.display()),
    );
    run_fails(
        &["run", "--config", "/nonexistent/probe.toml"],
        "/nonexistent/probe.toml: cannot read",
    );
}

#[test]
fn missing_privileges_is_one_clear_error() {
    // Drop to nobody with no capabilities.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            bin(),
            "run",
            "--iface",
            "lo",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .contains("missing privileges"),
        "{err}"
    );
}

/// Runs `ip ARGS...`; panics with its stderr unless it succeeds; returns its stdout.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn scrape(ns: &str, port: u16) -> String {
    ip(&[
        "netns",
        "exec",
        ns,
        "curl",
        "-sf",
        &format!("http://127.0.0.1:{port}/metrics"),
    ])
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.trim().parse::<f64>().ok())
        })
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}")) as u64
}

#[test]
fn metrics_endpoint_reports_packets_and_errors_by_reason() {
    let (pair, mac_b, p) = json_probe(
        "met",
        &[
            "--no-egress",
            "--sweep-interval-ms",
            "100",
            "--flow-entries",
            "1024",
            "--metrics-listen",
            "127.0.0.1:19464",
        ],
    );
    send_flows(&pair, mac_b, &[(3000, 80, 40)]);
    VethPair::in_ns(&pair.ns_a, || {
        let tx = RawSender::new(&pair.if_a).unwrap();
        for _ in 0..6 {
            tx.send(&frames::arp(mac_b)).unwrap();
        }
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let text = scrape(&pair.ns_b, 19464);
    assert_eq!(
        metric(&text, "tidegate_probe_accounted_packets_total"),
        40,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "tidegate_probe_parse_errors_total{reason=\"non_ip\"}"
        ),
        6
    );
    assert_eq!(metric(&text, "tidegate_probe_packets_total"), 46);
    assert_eq!(metric(&text, "tidegate_probe_fallback_dropped_total"), 0);
    let (code, records, _) = p.stop();
    assert_eq!(code, 0);
    assert_eq!(sums(&records).get(&3000), Some(&(40, 3200)));
}

#[test]
fn one_probe_watches_two_named_lines_from_a_config_file() {
    // Two lines: two veth pairs whose probed ends share one namespace.
    let a = VethPair::new("mla").expect("veth pair");
    let b = VethPair::new("mlb").expect("veth pair");
    ip(&["-n", &b.ns_b, "link", "set", &b.if_b, "netns", &a.ns_b]);
    ip(&["-n", &a.ns_b, "link", "set", &b.if_b, "up"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.toml");
    std::fs::write(
        &cfg,
        format!(
            "[probe]\nid = \"edge-test\"\nsweep_interval_ms = 100\n[ebpf]\nflow_entries = 4096\n\n\
             [[line]]\nname = \"hk-intl-1\"\niface = \"{}\"\n\n[[line]]\nname = \"sg-intl-2\"\niface = \"{}\"\n",
            a.if_b, b.if_b
        ),
    )
    .unwrap();
    let p = ProbeProcess::start(
        &a.ns_b,
        &["run", "--config", cfg.to_str().unwrap(), "--json"],
    );
    let mac_a = VethPair::mac(&a.ns_b, &a.if_b).unwrap();
    let mac_b = VethPair::mac(&a.ns_b, &b.if_b).unwrap();
    send_flows(&a, mac_a, &[(4000, 100, 25)]);
    send_flows(&b, mac_b, &[(4001, 200, 9)]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, records, err) = p.stop();
    assert_eq!(code, 0, "{err:?}");
    let line_of = |sport: u64| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["sport"] == sport)
            .map(|r| r["line"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sums(&records).get(&4000), Some(&(25, 2500)));
    assert_eq!(sums(&records).get(&4001), Some(&(9, 1800)));
    assert!(
        line_of(4000).iter().all(|l| l == "hk-intl-1"),
        "{:?}",
        line_of(4000)
    );
    assert!(
        line_of(4001).iter().all(|l| l == "sg-intl-2"),
        "{:?}",
        line_of(4001)
    );
}

#[test]
fn native_xdp_unavailable_falls_back_to_skb_mode_with_a_warning() {
    // Loopback has no driver XDP support (its own, in the test's namespace).
    let pair = VethPair::new("skb").expect("veth pair");
    let p = ProbeProcess::start(
        &pair.ns_b,
        &["run", "--iface", "lo", "--json", "--flow-entries", "1024"],
    );
    let (code, _, err) = p.stop();
    assert_eq!(code, 0, "{err:?}");
    assert!(
        err.iter()
            .any(|l| l.contains("WARN") && l.contains("falling back to generic (SKB) mode")),
        "{err:?}"
    );
    assert!(
        err.iter().any(|l| l.contains("xdp_mode=\"skb\"")),
        "{err:?}"
    );
}
