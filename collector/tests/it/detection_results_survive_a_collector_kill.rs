//! A collector killed while its alert and violation states still wait for ClickHouse
//! loses none of them: the spool is not committed past batches whose detection results
//! are not stored, so the next start replays them through detection.

use std::time::{Duration, Instant};

use crate::support::analysis::Analysis;
use tidegate_testkit::wait::block_on;
use tidegate_testkit::{Stack, stack::StackOptions};

/// The capture whose office traffic (192.168.0.0/16) breaks the test policy's isolation.
const CAPTURE: &str = "ndpi-1kxun.pcap";

/// The stored violations, each as its address pair (a breach's two directions are one
/// violation, named after whichever the probe exported first) and totals.
const VIOLATIONS: &str = "SELECT rule_id, line, least(src, dst) AS a, greatest(src, dst) AS b, \
     flows, packets, bytes FROM tidegate.policy_violations FINAL ORDER BY a, b FORMAT TSV";

/// Waits until the stored violations are non-empty and unchanged for 5 s; returns them.
fn settled_violations(stack: &Stack) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut since) = (String::new(), Instant::now());
    loop {
        let now = block_on(stack.ch.query(VIOLATIONS));
        if now != last {
            (last, since) = (now, Instant::now());
        } else if !now.is_empty() && since.elapsed() > Duration::from_secs(5) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "violations never settled: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stack(analysis: &Analysis) -> Stack {
    Stack::start_with(StackOptions {
        extra: analysis.config(),
        ..StackOptions::default()
    })
}

/// What an undisturbed collector stores for the capture; the records sent.
fn control(analysis: &Analysis) -> (String, Vec<tidegate_wire::record::FlowRecord>) {
    let control = stack(analysis);
    control.wait_for_schema();
    let sent = control.replay("edge-1", &[CAPTURE]);
    (settled_violations(&control), sent)
}

/// A stack whose ClickHouse takes the flows of the capture but refuses violation states
/// (a transient refusal: the store retries); returns once the flows are stored and
/// detection has seen every batch.
fn held_back(analysis: &Analysis, sent: usize) -> Stack {
    let stack = stack(analysis);
    stack.wait_for_schema();
    block_on(
        stack
            .ch
            .exec("ALTER TABLE tidegate.policy_violations ADD CONSTRAINT held CHECK 0"),
    );
    assert_eq!(stack.replay("edge-1", &[CAPTURE]).len(), sent);
    stack.wait_for_flows(sent as u64, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        block_on(
            stack
                .ch
                .query("SELECT count() FROM tidegate.policy_violations")
        ),
        "0",
        "the constraint holds the violations back"
    );
    stack
}

fn release_and_restart(stack: &mut Stack) {
    block_on(
        stack
            .ch
            .exec("ALTER TABLE tidegate.policy_violations DROP CONSTRAINT held"),
    );
    stack.restart_collector();
}

fn assert_flows_once(stack: &Stack, sent: &[tidegate_wire::record::FlowRecord]) {
    let packets: u64 = sent.iter().map(|r| r.packets).sum();
    let bytes: u64 = sent.iter().map(|r| r.bytes).sum();
    assert_eq!(
        block_on(
            stack
                .ch
                .query("SELECT count(), sum(packets), sum(bytes) FROM tidegate.flows")
        ),
        format!("{}\t{packets}\t{bytes}", sent.len()),
        "the replayed batches are stored once"
    );
}

#[test]
fn violations_waiting_for_clickhouse_survive_a_collector_kill() {
    let analysis = Analysis::new();
    let (want, sent) = control(&analysis);
    let mut stack = held_back(&analysis, sent.len());
    stack.collector.kill();
    release_and_restart(&mut stack);
    assert_eq!(
        settled_violations(&stack),
        want,
        "the restarted collector stores what an undisturbed one did"
    );
    assert_flows_once(&stack, &sent);
}

#[test]
fn a_collector_stopped_while_clickhouse_refuses_violation_states_stops_and_keeps_them() {
    let analysis = Analysis::new();
    let (want, sent) = control(&analysis);
    let mut stack = held_back(&analysis, sent.len());
    // A clean stop does not wait forever for states ClickHouse refuses, and does not
    // commit their batches either.
    let t = std::time::Instant::now();
    let code = stack.collector.stop_within(Duration::from_secs(120));
    assert_eq!(code, Some(0), "the collector stopped cleanly");
    assert!(
        t.elapsed() < Duration::from_secs(100),
        "stopped in {:?}",
        t.elapsed()
    );
    release_and_restart(&mut stack);
    assert_eq!(
        settled_violations(&stack),
        want,
        "the next start stores them"
    );
    assert_flows_once(&stack, &sent);
}
