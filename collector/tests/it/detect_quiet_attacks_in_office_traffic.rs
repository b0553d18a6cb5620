//! The quiet attacks an office network hides, found against each host's own baseline.
//!
//! The background is real: every benign corpus capture, replayed into flow records and
//! laid out again every hour for several hours (each capture at its own offset in the
//! hour), so the detectors learn what these hosts normally do. Into it the tests inject
//! the quiet patterns at several rates and sizes — a workstation uploading megabytes
//! over HTTPS to one outside host (in bursts, and slowly over hours among its update
//! downloads), a UDP burst of a hundred-odd packets per second from three workstations at
//! an inside host that otherwise receives nothing — and check that each is found with
//! the right source and target, while the background alone raises nothing high.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tidegate_probe::{capture::pcap::Replay, table::Timeouts};
use tidegate_threat::Severity;
use tidegate_threat::detect::{Alert, AlertKind, DetectConfig, Detector, Endpoint};
use tidegate_wire::record::FlowRecord;

const NS: u64 = 1_000_000_000;
/// Start of the synthetic office day (2026-03-02 08:00 UTC).
const DAY0: u64 = 1_772_438_400 * NS;
const HOURS: u64 = 6;

use crate::detect_corpus::ATTACKS;

fn replay(path: &std::path::Path) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    let mut replay = Replay::new(Timeouts::default());
    let report = replay
        .replay_file(path, "office", &mut out)
        .unwrap_or_else(|e| panic!("replay {}: {e}", path.display()));
    assert!(
        report.error.is_none(),
        "{}: {:?}",
        path.display(),
        report.error
    );
    replay.finish(&mut out).expect("flush the replay");
    out
}

/// Every benign capture, once per hour for [`HOURS`] hours from [`DAY0`].
fn background() -> Vec<FlowRecord> {
    let dir = tidegate_testkit::paths::corpus_dir().join("pcap");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !ATTACKS.contains(&n.as_str()))
        .collect();
    names.sort();
    assert!(names.len() >= 90, "{} benign captures", names.len());
    let captures: Vec<Vec<FlowRecord>> = names.iter().map(|n| replay(&dir.join(n))).collect();
    let mut out = Vec::new();
    for h in 0..HOURS {
        for (i, recs) in captures.iter().enumerate() {
            let Some(start) = recs.iter().map(|r| r.first).min() else {
                continue;
            };
            // Each capture at its own minute of the hour; captures longer than that are
            // cut at an hour so the copies do not overlap.
            let slot = DAY0 + h * 3600 * NS + (i as u64 * 37 % 3600) * NS;
            for r in recs {
                if r.first - start >= 3000 * NS || r.last < r.first {
                    continue;
                }
                let mut r = r.clone();
                r.first = r.first - start + slot;
                r.last = r.last.min(r.first + 3000 * NS) - start + slot;
                let last = r.last.max(r.first);
                r.last = last;
                out.push(r);
            }
        }
    }
    out
}

/// The inside sources of the background, most flows first.
fn busiest_inside_hosts(bg: &[FlowRecord], cfg: &DetectConfig) -> Vec<IpAddr> {
    let inside = cfg.inside_cidrs().unwrap();
    let mut n = BTreeMap::<IpAddr, usize>::new();
    for r in bg {
        if inside.iter().any(|c| c.contains(r.src)) && !inside.iter().any(|c| c.contains(r.dst)) {
            *n.entry(r.src).or_default() += 1;
        }
    }
    let mut v: Vec<(IpAddr, usize)> = n.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().map(|(a, _)| a).collect()
}

#[allow(clippy::too_many_arguments)]
fn flow(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
    t: u64,
    secs: u64,
    packets: u64,
    bytes: u64,
) -> FlowRecord {
    FlowRecord {
        src,
        dst,
        sport,
        dport,
        proto,
        packets,
        bytes,
        first: t,
        last: t + secs * NS,
        tcp_flags: if proto == 6 { 0x1b } else { 0 },
        line: "office".into(),
        ..Default::default()
    }
}

/// An HTTPS exchange: `up` bytes from `host` to `peer`:443 and `down` bytes back,
/// in full-sized segments one way and ACK-sized ones the other.
fn https(
    host: IpAddr,
    peer: IpAddr,
    sport: u16,
    t: u64,
    secs: u64,
    up: u64,
    down: u64,
) -> [FlowRecord; 2] {
    [
        flow(host, peer, sport, 443, 6, t, secs, up / 1400 + 2, up),
        flow(
            peer,
            host,
            443,
            sport,
            6,
            t,
            secs,
            (down / 1400).max(up / 2800) + 2,
            down,
        ),
    ]
}

fn detect(mut recs: Vec<FlowRecord>) -> Vec<Alert> {
    // The probe exports a flow when it ends: the detector sees them by end time.
    recs.sort_by_key(|r| r.last);
    let mut d = Detector::new(DetectConfig::default()).unwrap();
    for r in &recs {
        d.observe(r);
    }
    d.finish()
}

fn show(alerts: &[Alert]) -> String {
    alerts
        .iter()
        .map(|a| format!("  {:?} {:?} {}\n", a.kind, a.severity, a.description))
        .collect()
}

fn addr(a: IpAddr) -> Option<Endpoint> {
    Some(Endpoint::Addr(a))
}

#[test]
fn the_office_background_alone_raises_nothing_high() {
    let bg = background();
    eprintln!("background: {} flow records over {HOURS} hours", bg.len());
    let alerts = detect(bg);
    let serious: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.severity >= Severity::High)
        .collect();
    let quiet: Vec<&Alert> = alerts
        .iter()
        .filter(|a| {
            matches!(a.kind, AlertKind::Surge | AlertKind::Upload)
                || (a.kind == AlertKind::DnsTunnel && a.key.starts_with("names:"))
        })
        .collect();
    eprintln!("background alerts:\n{}", show(&alerts));
    assert!(
        serious.is_empty(),
        "high on benign traffic:\n{}",
        show(&alerts)
    );
    // The baseline rules must stay quiet on what these hosts normally do.
    assert!(
        quiet.len() <= 2,
        "baseline rules fire on benign traffic:\n{}",
        show(&alerts)
    );
}

#[test]
fn a_workstation_uploading_megabytes_over_https_to_one_new_host_is_found() {
    let bg = background();
    let cfg = DetectConfig::default();
    let host = busiest_inside_hosts(&bg, &cfg)[0];
    let drop: IpAddr = "203.0.113.77".parse().unwrap();
    for (size, secs) in [(2_500_000u64, 40u64), (8_000_000, 120)] {
        let mut recs = bg.clone();
        // Three uploads in hour 4, each answered by a few kB of TLS records.
        for k in 0..3u64 {
            let t = DAY0 + 4 * 3600 * NS + k * 400 * NS;
            recs.extend(https(
                host,
                drop,
                51_000 + k as u16,
                t,
                secs,
                size,
                size / 60,
            ));
        }
        let alerts = detect(recs);
        let found: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::Upload && a.dst == addr(drop))
            .collect();
        assert!(
            !found.is_empty(),
            "{size} B uploads not found among:\n{}",
            show(&alerts)
        );
        let a = found[0];
        assert_eq!(a.src, addr(host));
        assert_eq!(a.port, Some(443));
        assert!(a.severity >= Severity::Medium);
        assert!(
            a.description.contains("baseline") && a.description.contains("never exchanged"),
            "{}",
            a.description
        );
        assert!(!a.evidence.is_empty());
    }
}

#[test]
fn a_slow_upload_among_update_downloads_is_found_by_its_ratio() {
    let bg = background();
    let cfg = DetectConfig::default();
    let host = busiest_inside_hosts(&bg, &cfg)[1];
    let drop: IpAddr = "203.0.113.78".parse().unwrap();
    let updates: IpAddr = "198.51.100.200".parse().unwrap();
    let mut recs = bg.clone();
    // From hour 1 to hour 6: 300 kB up every 10 minutes to one host (its answers 5 kB),
    // while the same workstation downloads 20 MB of updates every half hour — its total
    // traffic is dominated by downloads, only this one destination is inverted.
    for k in 0..30u64 {
        let t = DAY0 + 3600 * NS + k * 600 * NS;
        recs.extend(https(host, drop, 52_000 + k as u16, t, 20, 300_000, 5_000));
        if k % 3 == 0 {
            // Update checks are not on a timer to the second.
            let t = t + (60 + k * 137 % 600) * NS;
            recs.extend(https(
                host,
                updates,
                53_000 + k as u16,
                t,
                60,
                40_000,
                20_000_000,
            ));
        }
    }
    let alerts = detect(recs);
    let found: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Upload && a.dst == addr(drop))
        .collect();
    assert!(
        !found.is_empty(),
        "slow upload not found among:\n{}",
        show(&alerts)
    );
    assert_eq!(found[0].src, addr(host));
    assert!(
        !alerts.iter().any(|a| a.dst == addr(updates)
            && matches!(a.kind, AlertKind::Upload | AlertKind::Exfiltration)),
        "update downloads taken for uploads:\n{}",
        show(&alerts)
    );
}

#[test]
fn a_udp_burst_from_three_workstations_at_a_quiet_inside_host_is_one_incident() {
    let bg = background();
    let cfg = DetectConfig::default();
    let hosts = busiest_inside_hosts(&bg, &cfg);
    let sources = &hosts[..3];
    let target: IpAddr = "192.168.200.20".parse().unwrap();
    assert!(
        !bg.iter().any(|r| r.dst == target),
        "the target must be quiet in the background"
    );
    for pps in [120u64, 300] {
        let mut recs = bg.clone();
        // 60 s at hour 3, each source a third of the rate, 10-s flows.
        for s in sources {
            for k in 0..6u64 {
                let t = DAY0 + 3 * 3600 * NS + k * 10 * NS;
                let p = pps * 10 / 3;
                recs.push(flow(
                    *s,
                    target,
                    40_000 + k as u16,
                    5353 - 1000,
                    17,
                    t,
                    9,
                    p,
                    p * 180,
                ));
            }
        }
        let alerts = detect(recs);
        let found: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::Surge && a.dst == addr(target))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{pps} pps: one incident expected among:\n{}",
            show(&alerts)
        );
        let a = found[0];
        assert_eq!(
            a.src,
            Some(Endpoint::Many("3 sources".into())),
            "{}",
            a.description
        );
        assert!(
            a.measured >= pps as f64 * 0.8,
            "peak {} for {pps} pps",
            a.measured
        );
        assert!(
            a.last_ns - a.first_ns >= 50 * NS,
            "the incident spans the burst"
        );
        // Its total volume: every source's packets over the whole burst.
        let sent = (pps * 10 / 3 * 18) as f64;
        let total = a.volume.expect("surges total their volume").packets as f64;
        assert!(
            total >= sent * 0.9 && total <= sent * 1.01,
            "{pps} pps: total {total} packets, sent {sent}"
        );
        assert!(a.description.contains("baseline"), "{}", a.description);
    }
}

/// Base32 text of random-looking bytes, as DNS exfiltration kits encode data.
fn encoded(seed: u64, chars: usize) -> String {
    const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..chars)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            B32[(x % 32) as usize] as char
        })
        .collect()
}

fn dns_query(host: IpAddr, resolver: IpAddr, name: &str, t: u64, sport: u16) -> FlowRecord {
    let mut r = flow(
        host,
        resolver,
        sport,
        53,
        17,
        t,
        0,
        1,
        40 + name.len() as u64,
    );
    r.dns = Some(Box::new(tidegate_wire::record::DnsMeta {
        qname: name.into(),
        qtype: 1,
        rcode: None,
    }));
    r
}

#[test]
fn low_and_slow_data_in_dns_names_among_ordinary_lookups_is_found() {
    let bg = background();
    let cfg = DetectConfig::default();
    let host = busiest_inside_hosts(&bg, &cfg)[2];
    let resolver: IpAddr = "192.168.1.1".parse().unwrap();
    for (every_secs, label_chars) in [(90u64, 40usize), (30, 24)] {
        let mut recs = bg.clone();
        let mut k = 0u64;
        let mut t = DAY0 + 3600 * NS;
        // Five hours: one encoded name every `every_secs` (jittered), and the same host's
        // ordinary lookups in between.
        while t < DAY0 + 6 * 3600 * NS {
            let name = format!(
                "{}.{}.u.cdn-telemetry.net",
                encoded(k, label_chars),
                encoded(k + 1_000_000, 8)
            );
            recs.push(dns_query(
                host,
                resolver,
                &name,
                t,
                20_000 + (k % 40_000) as u16,
            ));
            for (j, ordinary) in [
                "www.example.com",
                "outlook.office365.com",
                "update.microsoft.com",
            ]
            .iter()
            .enumerate()
            {
                recs.push(dns_query(
                    host,
                    resolver,
                    ordinary,
                    t + (j as u64 + 1) * 7 * NS,
                    60_000 + (k % 5_000) as u16,
                ));
            }
            k += 1;
            t += (every_secs + k * 17 % 23) * NS;
        }
        let alerts = detect(recs);
        let found: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::DnsTunnel && a.key.ends_with("cdn-telemetry.net"))
            .collect();
        assert!(
            !found.is_empty(),
            "1 per {every_secs}s not found among:\n{}",
            show(&alerts)
        );
        assert_eq!(found[0].src, addr(host));
        assert_eq!(found[0].dst, addr(resolver));
        assert!(
            !alerts.iter().any(|a| a.kind == AlertKind::DnsTunnel
                && (a.key.ends_with("example.com") || a.key.ends_with("microsoft.com"))),
            "ordinary lookups alerted:\n{}",
            show(&alerts)
        );
    }
}
