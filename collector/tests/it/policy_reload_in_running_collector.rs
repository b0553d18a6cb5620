//! An operator edits the policy of a running collector and sends SIGHUP: a broken file is
//! refused with its file:line error and the old policy stays in force; a valid one takes
//! over, and the violations raised afterwards follow it.

use std::time::Duration;

use crate::support::policy::{special_zone_isolated, zone};
use tidegate_testkit::{Stack, eventually_async as eventually, stack::StackOptions};

#[test]
fn sighup_swaps_in_a_valid_policy_and_refuses_a_broken_one() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The policy is read at start, before the stack's directory exists.
        let files = tempfile::tempdir().unwrap();
        let policy = files.path().join("policy.toml");
        std::fs::write(&policy, special_zone_isolated("first")).unwrap();
        let stack = Stack::start_with(StackOptions {
            extra: format!(
                "[policy]\nfile = \"{}\"\n\n[detect]\nenabled = false\n",
                policy.display()
            ),
            ..StackOptions::default()
        });
        let collector = &stack.collector;

        let rules = async || {
            let ch = &stack.ch;
            if ch.query("EXISTS TABLE tidegate.policy_violations").await != "1" {
                return String::new();
            }
            ch.query("SELECT DISTINCT rule_id FROM tidegate.policy_violations ORDER BY rule_id")
                .await
        };
        // Waits until the violations stored are of the rules `want`.
        let violations_of = async |want: &str, what: &str| {
            let ok = eventually(Duration::from_secs(60), async || rules().await == want).await;
            assert!(ok, "violations {what}: {:?}", rules().await);
        };
        let send = |probe: &str| stack.replay(probe, &["ndpi-1kxun.pcap"]);
        send("edge-1");
        violations_of("first", "of the first policy").await;

        // A broken file: refused, named with its line; the old policy stays.
        std::fs::write(&policy, zone("special-zone", &["192.168.0.1/16"])).unwrap();
        collector.signal(libc::SIGHUP);
        let refused = collector
            .wait_log("policy reload refused", Duration::from_secs(10))
            .expect("the refusal is logged");
        assert!(
            refused.contains(&format!("{}:3", policy.display())),
            "{refused}"
        );

        // A valid file takes over.
        std::fs::write(&policy, special_zone_isolated("second")).unwrap();
        collector.signal(libc::SIGHUP);
        collector
            .wait_log("policy reloaded", Duration::from_secs(10))
            .expect("the reload is logged");
        send("edge-2");
        violations_of("first\nsecond", "after the reload").await;
    });
}
