//! A user writes a policy with a mistake: loading refuses it with `file:line: message`
//! pointing at the mistake. And the documented example policy loads.

use std::path::{Path, PathBuf};

use tidegate_threat::policy::{Policy, PolicyError, RuleBody};

/// Zones most cases reference; occupies lines 1-6.
const ZONES: &str = "[[zone]]\nname = \"domestic\"\ncidrs = [\"10.0.0.0/8\"]\n[[zone]]\nname = \"special\"\ncidrs = [\"10.77.0.0/16\"]\n";

/// (policy text, expected line, expected message prefix)
fn cases() -> Vec<(String, usize, &'static str)> {
    let z = |rest: &str| format!("{ZONES}{rest}");
    vec![
        (
            "[[zone]]\nname = \"a\"\ncidrs = [\"10.1.2.3/16\"]\n".into(),
            3,
            "invalid CIDR \"10.1.2.3/16\": host bits are set (did you mean 10.1.0.0/16?)",
        ),
        (
            "[[zone]]\nname = \"a\"\ncidrs = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/40\",\n]\n".into(),
            5,
            "invalid CIDR \"10.0.0.0/40\": prefix must be 0..=32",
        ),
        (
            "[[zone]]\nname = \"a\"\ncidrs = [\"2001:db8::/33x\"]\n".into(),
            3,
            "invalid CIDR \"2001:db8::/33x\": prefix must be 0..=128",
        ),
        (
            z("[[zone]]\nname = \"domestic\"\nasns = [1]\n"),
            8,
            "duplicate zone name \"domestic\" (first defined at line 2)",
        ),
        (
            z("[[zone]]\nname = \"other\"\ncidrs = [\"10.0.0.0/8\"]\n"),
            9,
            "CIDR 10.0.0.0/8 is already in zone \"domestic\"",
        ),
        (
            z("[[zone]]\nname = \"x\"\nasns = [64500]\n[[zone]]\nname = \"y\"\nasns = [64500]\n"),
            12,
            "ASN 64500 is already in zone \"x\"",
        ),
        (
            z("\n[[zone]]\nname = \"empty\"\n"),
            8,
            "zone \"empty\" has no cidrs, countries or asns",
        ),
        (
            "[[zone]]\nname = \"unzoned\"\ncountries = [\"HK\"]\n".into(),
            2,
            "zone name \"unzoned\" is reserved",
        ),
        (
            "[[zone]]\nname = \"a\"\ncountries = [\"HK\", \"hk\"]\n".into(),
            3,
            "invalid country code \"hk\": expected ISO 3166-1 alpha-2",
        ),
        (
            "[[zone]]\nname = \"a\"\n\ncidr = [\"10.0.0.0/8\"]\n".into(),
            4,
            "unknown field `cidr`",
        ),
        (
            "[[zone]]\nname = \"a\"\nasns = [\"AS64500\"]\n".into(),
            3,
            "invalid type: string \"AS64500\", expected u32",
        ),
        (
            "[[zone]\nname = \"a\"\n".into(),
            1,
            "unclosed array table, expected `]`",
        ),
        (
            "[[zone]]\nname = \"a\"\ncountries = [\"HK\"]\n\n[policy]\nname = \"x\"\n".into(),
            5,
            "unknown field `policy`, expected one of `zone`, `rule`, `enforce`",
        ),
        (
            z(
                "[[rule]]\nid = \"r\"\nname = \"n\"\ntype = \"deny\"\nfrom = [\"domestic\"]\nto = [\"abroad\"]\n",
            ),
            12,
            "unknown zone \"abroad\"",
        ),
        (
            z("[[rule]]\nid = \"r\"\nname = \"n\"\ntype = \"block\"\n"),
            10,
            "unknown rule type \"block\"",
        ),
        (
            z(
                "[[rule]]\nid = \"r\"\nname = \"n\"\ntype = \"deny\"\n\n[[rule]]\nid = \"r\"\nname = \"m\"\ntype = \"allow\"\n",
            ),
            13,
            "duplicate rule id \"r\" (first defined at line 8)",
        ),
        (
            z("[[rule]]\nid = \"r\"\nname = \"n\"\ntype = \"deny\"\npeers = [\"special\"]\n"),
            11,
            "`peers` is not used by rule type \"deny\"",
        ),
        (
            z("\n[[rule]]\nid = \"r\"\nname = \"n\"\ntype = \"isolate\"\nzone = \"special\"\n"),
            8,
            "rule type \"isolate\" needs `peers`",
        ),
        (
            z(
                "[[rule]]\nid = \"a\"\nname = \"n\"\ntype = \"isolate\"\nzone = \"special\"\npeers = []\n[[rule]]\nid = \"b\"\nname = \"n\"\ntype = \"isolate\"\nzone = \"special\"\npeers = [\"domestic\"]\n",
            ),
            13,
            "zone \"special\" is already isolated by rule \"a\" at ",
        ),
        (
            z(
                "[[rule]]\nid = \"p\"\nname = \"n\"\ntype = \"ports\"\nlines = [\"hk-intl-1\"]\nallow = [\"tcp/443\",\n  \"icmp/8\"]\n",
            ),
            13,
            "invalid port spec \"icmp/8\": protocol icmp has no ports",
        ),
        (
            z(
                "[[rule]]\nid = \"c\"\nname = \"n\"\ntype = \"byte_cap\"\nmax_bytes = 100\nwindow_secs = 0\n",
            ),
            12,
            "`window_secs` must be between 1 and",
        ),
        (
            z("[[rule]]\nid = \"s\"\nname = \"n\"\ntype = \"deny\"\nseverity = \"urgent\"\n"),
            11,
            "unknown severity \"urgent\"",
        ),
        (
            z("[[rule]]\nid = \"d\"\nname = \"n\"\ntype = \"deny_list\"\nfrom = [\"special\"]\n"),
            7,
            "rule type \"deny_list\" needs at least one of `cidrs`, `countries`, `asns`",
        ),
        (
            z(
                "[[rule]]\nid = \"d\"\nname = \"n\"\ntype = \"allow_list\"\ncidrs = [\"203.0.113.0/24\", \"::1/200\"]\n",
            ),
            11,
            "invalid CIDR \"::1/200\": prefix must be 0..=128",
        ),
        (
            z(
                "[[rule]]\nid = \"i\"\nname = \"n\"\ntype = \"isolate\"\nzone = \"unzoned\"\npeers = []\n",
            ),
            11,
            "zone \"unzoned\" cannot be isolated",
        ),
        // Enforcement.
        (
            "[[rule]]\nid = \"r\"\nname = \"n\"\ntype = \"deny_list\"\ncidrs = [\"198.51.100.0/24\"]\naction = \"block\"\n".into(),
            6,
            "unknown action \"block\" (alert or drop)",
        ),
        (
            "[[rule]]\nid = \"r\"\nname = \"n\"\ntype = \"allow\"\naction = \"drop\"\n".into(),
            5,
            "rule type \"allow\" cannot drop",
        ),
        (
            "[[rule]]\nid = \"r\"\nname = \"n\"\ntype = \"deny_list\"\ncountries = [\"XX\"]\naction = \"drop\"\n".into(),
            5,
            "unknown country \"XX\"",
        ),
        (
            "[enforce]\nmode = \"monitor\"\nprotected = [\"10.0.0.1/8\"]\n".into(),
            3,
            "invalid CIDR \"10.0.0.1/8\": host bits are set (did you mean 10.0.0.0/8?)",
        ),
        (
            "[enforce]\nlines = { \"hk-1\" = \"on\" }\n".into(),
            2,
            "unknown mode \"on\" (monitor or enforce)",
        ),
        (
            "[enforce]\nmode = \"enforce\"\nprotect = []\n".into(),
            3,
            "unknown field `protect`",
        ),
    ]
}

fn write(dir: &Path, i: usize, text: &str) -> PathBuf {
    let p = dir.join(format!("bad-{i}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn every_malformed_policy_gets_its_file_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (i, (text, line, msg)) in cases.iter().enumerate() {
        let path = write(dir.path(), i, text);
        let want = format!("{}:{line}: {msg}", path.display());
        match Policy::load(&path) {
            Ok(_) => failures.push(format!("case {i}: accepted, wanted {want}")),
            Err(e) => {
                assert!(matches!(e, PolicyError::At { .. }), "case {i}: {e}");
                let got = e.to_string();
                if !got.starts_with(&want) {
                    failures.push(format!("case {i}:\n  got  {got}\n  want {want}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_missing_file_names_the_path() {
    let e = Policy::load(Path::new("/nonexistent/policy.toml")).unwrap_err();
    assert!(matches!(e, PolicyError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/policy.toml: cannot read")
    );
}

#[test]
fn the_documented_example_policy_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/policy/example.toml");
    let p = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // 3 declared zones plus `unzoned`, 9 rules, each located at its [[rule]] header.
    assert_eq!(p.zones.len(), 4);
    assert_eq!(p.rules.len(), 9);
    let text = std::fs::read_to_string(&path).unwrap();
    for r in &p.rules {
        let line: usize = r.location.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(text.lines().nth(line - 1), Some("[[rule]]"), "{}", r.id);
        let id_line = text.lines().nth(line).unwrap();
        assert_eq!(id_line, format!("id = \"{}\"", r.id));
    }
    assert!(matches!(p.rules[0].body, RuleBody::Isolate { .. }));
    // One rule drops; the section sets monitor mode with one line enforcing, and
    // protects the management network and the collector.
    let drops: Vec<&str> = p
        .rules
        .iter()
        .filter(|r| r.action == tidegate_threat::policy::Action::Drop)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(drops, ["sanctioned"]);
    assert_eq!(
        p.enforce.default_mode,
        tidegate_wire::enforce::Mode::Monitor
    );
    assert_eq!(
        p.enforce.lines,
        [(
            "hk-intl-1".to_string(),
            tidegate_wire::enforce::Mode::Enforce
        )]
    );
    assert_eq!(p.enforce.protected.len(), 2);
    assert!(matches!(
        &p.rules[5].body,
        RuleBody::DenyList { dest, .. } if dest.domains == ["banned-storage.example", "tracker.example.net"]
    ));
    assert!(matches!(
        p.rules[8].body,
        RuleBody::ByteCap {
            max_bytes: 10_000_000_000,
            window_ns: 3_600_000_000_000,
            ..
        }
    ));
}
