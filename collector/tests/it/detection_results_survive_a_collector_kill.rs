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
        metrics: false,
    })
}

#[test]
fn violations_waiting_for_clickhouse_survive_a_collector_kill() {
    let analysis = Analysis::new();

    // What an undisturbed collector stores for the capture.
    let control = stack(&analysis);
    control.wait_for_schema();
    let sent = control.replay("edge-1", &[CAPTURE]);
    let want = settled_violations(&control);
    drop(control);

    // Now ClickHouse refuses violation states (a transient refusal: the store retries)
    // while it takes the flows.
    let mut stack = stack(&analysis);
    stack.wait_for_schema();
    block_on(
        stack
            .ch
            .exec("ALTER TABLE tidegate.policy_violations ADD CONSTRAINT held CHECK 0"),
    );
    assert_eq!(stack.replay("edge-1", &[CAPTURE]).len(), sent.len());
    stack.wait_for_flows(sent.len() as u64, Duration::from_secs(60));
    // Detection has seen every batch and its states are queued for ClickHouse.
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
    stack.collector.kill();
    block_on(
        stack
            .ch
            .exec("ALTER TABLE tidegate.policy_violations DROP CONSTRAINT held"),
    );
    stack.restart_collector();
    assert_eq!(
        settled_violations(&stack),
        want,
        "the restarted collector stores what an undisturbed one did"
    );
    let totals = |s: &Stack| {
        block_on(s.ch.query("SELECT count(), sum(packets), sum(bytes) FROM tidegate.flows"))
    };
    let flows: u64 = sent.iter().map(|r| r.packets).sum();
    assert_eq!(
        totals(&stack),
        format!(
            "{}\t{flows}\t{}",
            sent.len(),
            sent.iter().map(|r| r.bytes).sum::<u64>()
        ),
        "the replayed batches are stored once"
    );
}
