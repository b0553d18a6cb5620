//! Alerts and violations written to a JSONL file: each once, one per line, across reopens.

use crate::support::alerts::samples;
use tidegate_collector::sinks::alerts::{JsonlSink, Notification};

fn read(path: &std::path::Path) -> Vec<Notification> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn jsonl_file_holds_every_notification_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let sent = samples(10);

    let mut sink = JsonlSink::open(&path).unwrap();
    assert_eq!(sink.write(&sent[..6]).unwrap(), 6);
    // An overlapping batch (an alert reported again): only the new ones are written.
    assert_eq!(sink.write(&sent[4..8]).unwrap(), 2);
    assert_eq!(sink.write(&sent[..8]).unwrap(), 0);
    assert_eq!(read(&path), sent[..8]);
    drop(sink);

    // A new run appends.
    let mut sink = JsonlSink::open(&path).unwrap();
    assert_eq!(sink.write(&sent[8..]).unwrap(), 2);
    assert_eq!(read(&path), sent);

    // Lines carry the id, the kind and the full alert / violation.
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["kind"], "alert");
    assert_eq!(first["body"]["kind"], "port_scan");
    assert_eq!(first["body"]["evidence"][0]["dport"], 443);
    let second: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(second["kind"], "violation");
    assert_eq!(second["body"]["rule_location"], "policy.toml:12");
}

#[test]
fn notification_ids_are_stable_and_distinct() {
    let a = samples(20);
    let b = samples(20);
    assert_eq!(a, b, "same events, same ids");
    let mut ids: Vec<&str> = a.iter().map(|n| n.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    assert!(a[0].id.starts_with("alert-") && a[1].id.starts_with("violation-"));
}
