//! A user caps the bytes sent to each destination per window: crossing the cap raises
//! exactly one violation per destination per window, with the flows as evidence, on event
//! time only.

use std::path::Path;

use crate::support::policy::{rule, tables, zone};
use crate::support::records::tcp;
use tidegate_common::Direction;
use tidegate_threat::policy::violation::MAX_EVIDENCE;
use tidegate_threat::policy::{
    Endpoints, Policy, PolicyEngine, PolicyHandle, Violation, ViolationKind,
};
use tidegate_wire::record::FlowRecord;

/// Bytes from `hub` to each `abroad` destination capped at 1000 per minute; the rule is at
/// line 9.
fn policy() -> String {
    tables(&[
        zone("hub", &["10.0.0.0/8"]),
        zone("abroad", &["203.0.113.0/24"]),
        rule(
            "cap",
            "1000 bytes per destination per minute",
            "byte_cap",
            "from = [\"hub\"]\nto = [\"abroad\"]\nmax_bytes = 1000\nwindow_secs = 60\n",
        ),
    ])
}

/// 2023-11-14T22:13:00Z: a multiple of 60 s, so windows start at T0 + k minutes.
const T0: u64 = 1_699_999_980_000_000_000;
const S: u64 = 1_000_000_000;

fn flow(dst: &str, bytes: u64, at_s: u64) -> FlowRecord {
    FlowRecord {
        bytes,
        first: T0 + at_s * S,
        last: T0 + at_s * S + S / 2,
        direction: Direction::Egress,
        ..tcp("10.1.1.1", dst)
    }
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(PolicyHandle::new(
        Policy::parse(&policy(), Path::new("caps.toml")).unwrap(),
    ))
}

fn run(e: &mut PolicyEngine, flows: &[FlowRecord]) -> Vec<Violation> {
    flows
        .iter()
        .flat_map(|f| e.process(f, &Endpoints::default()))
        .collect()
}

#[test]
fn crossing_the_cap_raises_one_violation_per_destination_per_window() {
    let a = "203.0.113.1";
    let b = "203.0.113.2";
    let flows = vec![
        flow(a, 400, 0),
        flow(b, 900, 1),            // b stays under the cap (900 <= 1000)
        flow(a, 400, 10),           // a: 800
        flow(a, 400, 20),           // a: 1200 -> violation
        flow(a, 400, 30),           // a: already reported in this window
        flow(b, 100, 40),           // b: 1000 exactly, not over
        flow(a, 600, 61),           // next window: a 600
        flow(a, 600, 62),           // a 1200 -> second violation
        flow("192.0.2.1", 5000, 5), // not in `abroad`: not capped
    ];
    let v = run(&mut engine(), &flows);
    assert_eq!(v.len(), 2, "{v:#?}");
    assert!(
        v.iter()
            .all(|v| v.kind == ViolationKind::ByteCap && v.rule_id == "cap")
    );
    assert!(v.iter().all(|v| v.dst.to_string() == a));
    assert_eq!(v[0].rule_location, "caps.toml:9");
    assert_eq!(
        v[0].evidence,
        flows[0..4]
            .iter()
            .filter(|f| f.dst.to_string() == a)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(v[0].first_ns, T0);
    assert_eq!(v[0].last_ns, T0 + 20 * S + S / 2);
    assert!(
        v[0].description.starts_with(
            "1200 bytes to 203.0.113.1 in the 60 s window starting 2023-11-14T22:13:00"
        ),
        "{}",
        v[0].description
    );
    assert_eq!(v[1].evidence, vec![flows[6].clone(), flows[7].clone()]);
    assert_eq!(v[1].first_ns, T0 + 61 * S);
}

#[test]
fn replaying_the_same_flows_gives_the_same_violations() {
    let flows: Vec<_> = (0..500)
        .map(|i| flow(&format!("203.0.113.{}", i % 7), 37 * (i % 11), i / 3))
        .collect();
    let first = run(&mut engine(), &flows);
    let second = run(&mut engine(), &flows);
    assert!(!first.is_empty());
    assert_eq!(first, second);
    // Independently: per (destination, minute) total over the cap <=> one violation.
    let mut totals = std::collections::BTreeMap::new();
    for f in &flows {
        *totals
            .entry((f.dst, (f.first - T0) / (60 * S)))
            .or_insert(0u64) += f.bytes;
    }
    let over = totals.values().filter(|b| **b > 1000).count();
    assert_eq!(first.len(), over);
}

#[test]
fn evidence_is_bounded_and_ends_with_the_crossing_flow() {
    let mut flows: Vec<_> = (0..100).map(|i| flow("203.0.113.5", 1, i % 60)).collect();
    flows.push(flow("203.0.113.5", 5000, 59));
    let v = run(&mut engine(), &flows);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].evidence.len(), MAX_EVIDENCE);
    assert_eq!(v[0].evidence.last(), flows.last());
    assert_eq!(v[0].evidence[0], flows[0]);
}

#[test]
fn old_windows_are_forgotten_as_event_time_moves_on() {
    let mut e = engine();
    run(
        &mut e,
        &[flow("203.0.113.1", 10, 0), flow("203.0.113.2", 10, 0)],
    );
    assert_eq!(e.open_windows(), 2);
    e.sweep();
    assert_eq!(
        e.open_windows(),
        2,
        "still within one window of the watermark"
    );
    run(&mut e, &[flow("203.0.113.3", 10, 121)]);
    e.sweep();
    assert_eq!(
        e.open_windows(),
        1,
        "the windows of minute 0 ended > 1 window ago"
    );
}
