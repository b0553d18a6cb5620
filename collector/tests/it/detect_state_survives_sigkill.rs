//! What the detectors learned survives a SIGKILL of the collector: the baselines are
//! saved to the state file every `state_save_secs` with a durable rename, and the
//! restarted collector starts from them (it saves them again unchanged), not from zero.

use std::time::Duration;

use tidegate_testkit::Stack;
use tidegate_testkit::stack::StackOptions;
use tidegate_threat::detect::DetectorState;

fn read_state(path: &std::path::Path) -> Option<DetectorState> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Entries of a rule's saved baselines (`baselines` list, or per-window lists).
fn learned(s: &DetectorState, rule: &str) -> usize {
    match s.rules.get(rule).and_then(|v| v.get("baselines")) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|e| match e.get(1) {
                Some(serde_json::Value::Array(inner)) if rule == "upload" => inner.len(),
                _ => 1,
            })
            .sum(),
        _ => 0,
    }
}

#[test]
fn detector_baselines_survive_a_sigkill_of_the_collector() {
    let mut stack = Stack::start_with(StackOptions {
        extra: "\n[detect]\nstate_save_secs = 1\n".into(),
        ..StackOptions::default()
    });
    let state = stack.dir().join("spool").join("detector-state.json");
    let records = stack.replay("edge-1", &["ndpi-1kxun.pcap", "ndpi-quic-29.pcap"]);
    stack.wait_for_flows(records.len() as u64, Duration::from_secs(60));
    // Saved within a second or two of the detectors seeing the records.
    let mut before = None;
    tidegate_testkit::eventually("learned baselines saved", Duration::from_secs(30), || {
        before = read_state(&state).filter(|s| learned(s, "surge") > 0 && learned(s, "upload") > 0);
        before.is_some()
    });
    let before = before.unwrap();

    stack.collector.kill(); // SIGKILL: no shutdown, no final save
    stack.restart_collector();
    // The restarted collector saves what it restored (nothing new arrives): the file
    // is rewritten with the same baselines.
    let written = std::fs::metadata(&state).unwrap().modified().unwrap();
    let mut after = None;
    tidegate_testkit::eventually(
        "the restarted collector saves its state",
        Duration::from_secs(30),
        || {
            let newer = std::fs::metadata(&state)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > written);
            after = newer.then(|| read_state(&state)).flatten();
            after.is_some()
        },
    );
    let after = after.unwrap();
    assert_eq!(after.rules.get("surge"), before.rules.get("surge"));
    assert_eq!(after.rules.get("upload"), before.rules.get("upload"));
}
