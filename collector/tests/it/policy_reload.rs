//! A user edits the policy and reloads it: a valid file replaces the policy in force
//! (the engine follows at the next record); an invalid one is refused with its file:line
//! error and the old policy stays.

use std::path::Path;

use crate::support::records::{T0, tcp};
use tidegate_common::Direction;
use tidegate_threat::policy::{Endpoints, PolicyEngine, PolicyError, PolicyHandle, ViolationKind};
use tidegate_wire::record::FlowRecord;

const DENY_SSH: &str = "[[zone]]\nname = \"hub\"\ncidrs = [\"10.0.0.0/8\"]\n\n[[rule]]\nid = \"no-ssh\"\nname = \"only https\"\ntype = \"ports\"\nlines = [\"hk-intl-1\"]\nallow = [\"tcp/443\"]\n";
const ALLOW_SSH: &str = "[[zone]]\nname = \"hub\"\ncidrs = [\"10.0.0.0/8\"]\n\n[[rule]]\nid = \"ssh-ok\"\nname = \"https and ssh\"\ntype = \"ports\"\nlines = [\"hk-intl-1\"]\nallow = [\"tcp/443\", \"tcp/22\"]\n";
const BROKEN: &str = "[[zone]]\nname = \"hub\"\ncidrs = [\"10.0.0.0/8\"]\n\n[[rule]]\nid = \"x\"\nname = \"typo\"\ntype = \"ports\"\nlines = [\"hk-intl-1\"]\nallow = [\"tcp/2222222\"]\n";

/// 10 packets of SSH from the hub, for a second.
fn ssh() -> FlowRecord {
    FlowRecord {
        sport: 50000,
        dport: 22,
        packets: 10,
        bytes: 1000,
        last: T0 + 1_000_000_000,
        direction: Direction::Egress,
        ..tcp("10.0.0.1", "192.0.2.1")
    }
}

#[test]
fn a_bad_file_keeps_the_old_policy_and_a_good_file_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, DENY_SSH).unwrap();
    let handle = PolicyHandle::load(&path).unwrap();
    let mut engine = PolicyEngine::new(handle.clone());
    let ctx = Endpoints::default();
    let v = engine.process(&ssh(), &ctx);
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].rule_id.as_str(), v[0].kind),
        ("no-ssh", ViolationKind::ForbiddenPort)
    );

    // A broken edit is refused with its location; the old policy still applies.
    std::fs::write(&path, BROKEN).unwrap();
    let e = handle.reload(&path).unwrap_err();
    assert!(matches!(e, PolicyError::At { line: 10, .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:10: invalid port spec", path.display()))
    );
    assert_eq!(handle.current().rules[0].id, "no-ssh");
    assert_eq!(engine.process(&ssh(), &ctx).len(), 1);

    // A missing file is refused too.
    let gone = dir.path().join("missing.toml");
    assert!(matches!(
        handle.reload(&gone),
        Err(PolicyError::Read { .. })
    ));
    assert_eq!(handle.current().rules[0].id, "no-ssh");

    // A good edit takes effect at the next record.
    std::fs::write(&path, ALLOW_SSH).unwrap();
    handle.reload(&path).unwrap();
    assert_eq!(handle.current().rules[0].id, "ssh-ok");
    assert!(engine.process(&ssh(), &ctx).is_empty());
    assert_eq!(handle.current().path, Path::new(&path));
}
