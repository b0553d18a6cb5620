//! An operator edits the policy and sends SIGHUP: a valid file is swapped in, an invalid
//! one is refused and the old policy kept, and later SIGHUPs still work.
//! (One test in this binary: the SIGHUP handler is process-wide.)

use std::time::{Duration, Instant};

use tidegate_collector::reload::spawn_sighup_reload;
use tidegate_threat::policy::PolicyHandle;

fn policy(rule_id: &str) -> String {
    format!(
        "[[zone]]\nname = \"hub\"\ncidrs = [\"10.0.0.0/8\"]\n[[rule]]\nid = \"{rule_id}\"\nname = \"n\"\ntype = \"deny\"\nfrom = [\"hub\"]\n"
    )
}

async fn wait_for_rule(handle: &PolicyHandle, id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if handle.current().rules[0].id == id {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn hup() {
    // SAFETY: raise(2) only sends a signal to this process; tokio's handler is installed.
    assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_a_valid_policy_and_keeps_the_old_one_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy("v1")).unwrap();
    let handle = PolicyHandle::load(&path).unwrap();
    let task = spawn_sighup_reload(handle.clone(), path.clone(), None, None).unwrap();

    std::fs::write(&path, policy("v2")).unwrap();
    hup();
    assert!(wait_for_rule(&handle, "v2").await, "SIGHUP did not reload");

    // Invalid: refused, v2 stays.
    std::fs::write(
        &path,
        "[[zone]]\nname = \"hub\"\ncidrs = [\"10.0.0.0/99\"]\n",
    )
    .unwrap();
    hup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.current().rules[0].id, "v2");

    // The handler survived the refusal and the signals are handled in order.
    std::fs::write(&path, policy("v3")).unwrap();
    hup();
    assert!(
        wait_for_rule(&handle, "v3").await,
        "SIGHUP after a refusal did not reload"
    );
    assert!(!task.is_finished());
    task.abort();
}
