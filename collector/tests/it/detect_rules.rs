//! Detectors on hand-built flows for behaviour the corpus does not show: host sweeps,
//! exfiltration against a learned baseline, beaconing, closing windows on event time,
//! arrival order not mattering, and configuration files.

use std::net::IpAddr;

use tidegate_threat::Severity;
use tidegate_threat::detect::{Alert, AlertKind, DetectConfig, Detector, Endpoint};
use tidegate_wire::record::FlowRecord;

const S: u64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600 * S;

fn flow(
    src: &str,
    dst: &str,
    dport: u16,
    proto: u8,
    flags: u16,
    at: u64,
    bytes: u64,
) -> FlowRecord {
    FlowRecord {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        sport: 40_000 + (at / S % 20_000) as u16,
        dport,
        proto,
        packets: bytes.div_ceil(1_000).max(1),
        bytes,
        first: at,
        last: at + S / 10,
        tcp_flags: flags,
        line: "hk-intl-1".into(),
        ..Default::default()
    }
}

fn run(cfg: DetectConfig, flows: &[FlowRecord]) -> Vec<Alert> {
    let mut d = Detector::new(cfg).unwrap();
    for f in flows {
        d.observe(f);
    }
    d.finish()
}

fn kinds(alerts: &[Alert], kind: AlertKind) -> Vec<&Alert> {
    alerts.iter().filter(|a| a.kind == kind).collect()
}

/// The one alert of `kind` (failing with every alert shown when there is not exactly one).
fn only(alerts: &[Alert], kind: AlertKind) -> &Alert {
    let found = kinds(alerts, kind);
    assert_eq!(found.len(), 1, "{alerts:?}");
    found[0]
}

fn ip(s: &str) -> Option<Endpoint> {
    Some(Endpoint::Addr(s.parse::<IpAddr>().unwrap()))
}

#[test]
fn a_sweep_of_one_port_across_many_hosts_is_a_host_sweep() {
    let flows: Vec<_> = (1..=30)
        .map(|i| {
            flow(
                "10.0.0.9",
                &format!("10.1.0.{i}"),
                445,
                6,
                0x02,
                T0 + i * S / 2,
                44,
            )
        })
        .collect();
    let alerts = run(DetectConfig::default(), &flows);
    let sweep = only(&alerts, AlertKind::HostSweep);
    assert_eq!(sweep.src, ip("10.0.0.9"));
    assert_eq!(sweep.port, Some(445));
    assert_eq!(sweep.measured, 30.0);
    // 19 hosts stay below the default of 20.
    let alerts = run(DetectConfig::default(), &flows[..19]);
    assert!(kinds(&alerts, AlertKind::HostSweep).is_empty());
}

/// `windows` windows of 5 minutes with `bytes` from 10.0.0.5 to 203.0.113.9, then one
/// transfer of `burst` bytes to 198.51.100.7.
fn transfers(windows: u64, bytes: u64, burst: u64) -> Vec<FlowRecord> {
    let mut flows: Vec<_> = (0..windows)
        .map(|i| {
            flow(
                "10.0.0.5",
                "203.0.113.9",
                443,
                6,
                0x1a,
                T0 + i * 300 * S,
                bytes,
            )
        })
        .collect();
    flows.push(flow(
        "10.0.0.5",
        "198.51.100.7",
        22,
        6,
        0x1a,
        T0 + windows * 300 * S,
        burst,
    ));
    flows
}

#[test]
fn an_inside_host_sending_far_above_its_baseline_is_exfiltration() {
    let mut cfg = DetectConfig::default();
    cfg.exfiltration.floor_bytes = 10_000_000;
    // Baseline 1 MB per window x factor 20 = 20 MB: 50 MB alerts, 15 MB does not.
    let alerts = run(cfg.clone(), &transfers(10, 1_000_000, 50_000_000));
    let ex = only(&alerts, AlertKind::Exfiltration);
    assert_eq!(ex.src, ip("10.0.0.5"));
    assert_eq!(ex.dst, ip("198.51.100.7"));
    assert_eq!(ex.threshold, 20_000_000.0);
    assert!(ex.severity >= Severity::High);
    let alerts = run(cfg.clone(), &transfers(10, 1_000_000, 15_000_000));
    assert!(
        kinds(&alerts, AlertKind::Exfiltration).is_empty(),
        "{alerts:?}"
    );
    // Without history only the floor applies: 15 MB is above 10 MB.
    let alerts = run(cfg.clone(), &transfers(0, 0, 15_000_000));
    assert_eq!(kinds(&alerts, AlertKind::Exfiltration).len(), 1);
    // Transfers between inside hosts are never exfiltration.
    let inside = vec![flow("10.0.0.5", "10.9.9.9", 22, 6, 0x1a, T0, 900_000_000)];
    assert!(kinds(&run(cfg, &inside), AlertKind::Exfiltration).is_empty());
}

#[test]
fn periodic_connections_with_low_jitter_are_beaconing() {
    let jitter = [0, 3, 1, 4, 1, 5, 2, 6, 0, 3];
    let regular: Vec<_> = jitter
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let at = T0 + i as u64 * 30 * S + j * S / 10;
            flow("10.0.0.7", "198.51.100.20", 443, 6, 0x1b, at, 900)
        })
        .collect();
    let alerts = run(DetectConfig::default(), &regular);
    let b = only(&alerts, AlertKind::Beaconing);
    assert_eq!(b.src, ip("10.0.0.7"));
    assert_eq!(b.port, Some(443));
    assert!(b.measured < 0.1);
    let irregular: Vec<_> = [0u64, 5, 70, 80, 200, 260, 270, 400, 401, 500]
        .iter()
        .map(|s| flow("10.0.0.7", "198.51.100.20", 443, 6, 0x1b, T0 + s * S, 900))
        .collect();
    assert!(
        kinds(
            &run(DetectConfig::default(), &irregular),
            AlertKind::Beaconing
        )
        .is_empty()
    );
}

fn syn_flood() -> Vec<FlowRecord> {
    (0..5_000u64)
        .map(|i| {
            let mut f = flow(
                &format!("198.18.{}.{}", i / 250, i % 250),
                "192.0.2.80",
                80,
                6,
                0x02,
                T0 + i * S / 500,
                40,
            );
            f.last = f.first;
            f
        })
        .collect()
}

#[test]
fn advancing_event_time_closes_windows_before_finish() {
    let mut d = Detector::new(DetectConfig::default()).unwrap();
    let mut updates = Vec::new();
    for f in syn_flood() {
        updates.extend(d.observe(&f));
    }
    // The last SYN is at T0 + 10 s; the windows close 75 s (lateness) after their end.
    let opened = d.advance(T0 + 200 * S);
    updates.extend(opened);
    let syn: Vec<_> = updates
        .iter()
        .filter(|u| u.alert.kind == AlertKind::SynFlood)
        .collect();
    assert!(syn[0].new, "{syn:?}");
    assert!(
        syn.iter()
            .skip(1)
            .all(|u| !u.new && u.alert.id == syn[0].alert.id)
    );
    assert_eq!(syn[0].alert.dst, ip("192.0.2.80"));
    let all = d.finish();
    assert_eq!(kinds(&all, AlertKind::SynFlood).len(), 1);
}

#[test]
fn arrival_order_does_not_change_alerts() {
    let flows = syn_flood();
    let mut reversed = flows.clone();
    reversed.reverse();
    let a = run(DetectConfig::default(), &flows);
    let b = run(DetectConfig::default(), &reversed);
    assert!(!a.is_empty());
    let ids = |v: &[Alert]| {
        v.iter()
            .map(|a| (a.id.clone(), a.evidence.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn a_config_file_sets_thresholds_and_bad_files_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("detect.toml");
    std::fs::write(
        &path,
        "inside = [\"10.0.0.0/8\"]\n[port_scan]\nmin_distinct = 50\n[volumetric]\nfloor_pps = 10.0\n",
    )
    .unwrap();
    let cfg = DetectConfig::load(&path).unwrap();
    assert_eq!(cfg.port_scan.min_distinct, 50);
    assert_eq!(cfg.volumetric.floor_pps, 10.0);
    assert_eq!(cfg.host_sweep, DetectConfig::default().host_sweep);
    std::fs::write(&path, "[volumetric]\nfloor_pps = 10.0\nfloor_ppps = 1\n").unwrap();
    let e = DetectConfig::load(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:3:", path.display())), "{e}");
    std::fs::write(&path, "[beaconing]\nmax_jitter = -1.0\n").unwrap();
    let e = DetectConfig::load(&path).unwrap_err().to_string();
    assert!(e.contains("beaconing.max_jitter"), "{e}");
    let e = DetectConfig::load(&dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.toml"), "{e}");
}

/// One UDP record per second to 192.0.2.53: `steady` seconds at 500 pps, then one second
/// at `burst` pps.
fn udp_rates(steady: u64, burst: u64) -> Vec<FlowRecord> {
    (0..=steady)
        .map(|i| {
            let mut f = flow("198.51.100.1", "192.0.2.53", 5_000, 17, 0, T0 + i * S, 0);
            f.packets = if i == steady { burst } else { 500 };
            f.bytes = f.packets * 100;
            f.last = f.first;
            f
        })
        .collect()
}

#[test]
fn volumetric_alerts_compare_with_the_learned_baseline_and_the_floor() {
    let mut cfg = DetectConfig::default();
    cfg.volumetric.floor_pps = 1_000.0;
    // Learned 500 pps x factor 10 = 5000 pps: 6000 alerts; 4000, though above the
    // floor, does not.
    let alerts = run(cfg.clone(), &udp_rates(20, 6_000));
    let vol = only(&alerts, AlertKind::Volumetric);
    assert_eq!(vol.dst, ip("192.0.2.53"));
    assert_eq!(vol.measured, 6_000.0);
    assert!((vol.threshold - 5_000.0).abs() < 1.0, "{}", vol.threshold);
    assert!(
        kinds(
            &run(cfg.clone(), &udp_rates(20, 4_000)),
            AlertKind::Volumetric
        )
        .is_empty()
    );
    // Before a baseline is learned, the floor alone applies.
    let alerts = run(cfg, &udp_rates(3, 4_000));
    assert!(!kinds(&alerts, AlertKind::Volumetric).is_empty());
}
