//! Two collectors started on one spool directory would interleave appends and commits:
//! the second one exits at once with a clear error, and the first carries on storing.

use std::process::Command;
use std::time::Duration;

use tidegate_testkit::{Stack, free_port};

#[test]
fn a_second_collector_on_the_same_spool_exits_with_a_clear_error() {
    let stack = Stack::start();
    // The same file but another probe port: only the spool is shared.
    let mut second = stack.config.clone();
    second.port = free_port();
    let dir = stack.dir().join("second");
    std::fs::create_dir_all(&dir).unwrap();
    let path = second.write(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second collector ran: {err}");
    assert!(
        err.contains("in use by another process")
            && err.contains(&stack.config.spool.display().to_string()),
        "{err}"
    );

    // The first one still takes batches and stores them.
    let records = stack.replay("edge-1", &["ndpi-1kxun.pcap"]);
    stack.wait_for_flows(records.len() as u64, Duration::from_secs(90));
}
