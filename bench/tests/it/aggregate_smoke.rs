//! The aggregation benchmark runs end to end on small workloads and reports consistent
//! numbers: every record processed, the expected flows held, a plausible memory per flow,
//! and a results file naming the machine and the command.

use tidegate_bench::aggregate::{Plan, default_corpus, markdown, run};

#[test]
fn a_small_run_measures_every_workload_and_writes_a_complete_report() {
    let plan = Plan {
        corpus_records: 20_000,
        synthetic: vec![(1_000, 5_000), (10_000, 20_000)],
        memory_flows: 50_000,
        shard_counts: vec![1, 2],
        batch: 500,
        repeats: 2,
    };
    let mut lines = Vec::new();
    let r = run(&plan, &default_corpus(), "cargo test".into(), |l| {
        lines.push(l.to_string())
    })
    .expect("benchmark run");
    assert_eq!(r.throughput.len(), 6);
    assert_eq!(lines.len(), 7, "{lines:?}");
    for t in &r.throughput {
        assert_eq!(
            t.processed, t.records,
            "{}: every record processed",
            t.workload
        );
        assert_eq!(t.evictions, 0, "{}", t.workload);
        assert!(t.per_sec() > 0.0 && t.per_cpu_sec() > 0.0);
        assert_eq!(t.runs, 2);
        assert!(t.per_sec_range.0 <= t.per_sec() && t.per_sec() <= t.per_sec_range.1);
        if t.workload.starts_with("synthetic") {
            // Synthetic flows all stay within flow_idle: every key is held.
            assert_eq!(t.active_flows, t.keys as u64, "{}", t.workload);
        } else {
            assert!(t.active_flows > 0 && t.active_flows <= t.keys as u64);
        }
    }
    assert_eq!(r.memory.flows, 50_000);
    let per_flow = r.memory.per_flow();
    assert!(
        (40.0..4000.0).contains(&per_flow),
        "{per_flow} bytes per flow is implausible"
    );
    let md = markdown(&r);
    for needle in [
        "## Machine",
        "Logical CPUs",
        "Kernel",
        "rustc ",
        "cargo test",
        "| corpus | ",
        "| synthetic-10K | ",
        "## Memory per active flow",
        "| 50,000 | 2 |",
    ] {
        assert!(md.contains(needle), "{needle:?} missing from\n{md}");
    }
}
