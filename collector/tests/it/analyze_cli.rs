//! An analyst pipes a capture's flow records into `tidegate-collector analyze`: alerts
//! (and, with `--policy`, violations) come out as JSON lines with the contract fields.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use crate::support::policy::{rule, special_zone_isolated, zone};

fn records_file(capture: &str, dir: &Path) -> PathBuf {
    let recs = tidegate_testkit::probe::corpus_records_of(capture, "intl-1");
    let p = dir.join(format!("{capture}.jsonl"));
    let mut f = std::fs::File::create(&p).unwrap();
    for r in &recs {
        serde_json::to_writer(&mut f, r).unwrap();
        f.write_all(b"\n").unwrap();
    }
    p
}

/// `text` written to `dir/name`; its path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `--input records --policy policy`.
fn input_and_policy<'a>(records: &'a Path, policy: &'a Path) -> [&'a str; 4] {
    [
        "--input",
        records.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]
}

fn analyze(args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
        .arg("analyze")
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn syn_flood_capture_gives_a_syn_flood_alert_with_the_contract_fields() {
    let d = tempfile::tempdir().unwrap();
    let f = records_file("stopddos-pkt.TCP.synflood.spoofed.pcap", d.path());
    let (code, out, err) = analyze(&["--input", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let flood = out
        .iter()
        .find(|a| a["type"] == "alert" && a["kind"] == "syn_flood")
        .unwrap_or_else(|| panic!("no syn_flood alert in {out:?}"));
    assert_eq!(flood["dst"], "10.10.10.10");
    for field in [
        "kind",
        "severity",
        "src",
        "dst",
        "first",
        "last",
        "evidence",
        "id",
        "measured",
        "threshold",
    ] {
        assert!(flood.get(field).is_some(), "alert lacks {field}: {flood}");
    }
    assert!(!flood["evidence"].as_array().unwrap().is_empty());
    // Same input, same alerts (event time, deterministic ids).
    let (_, again, _) = analyze(&["--input", f.to_str().unwrap()]);
    let ids =
        |v: &Vec<serde_json::Value>| v.iter().map(|a| a["id"].to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&out), ids(&again));
}

#[test]
fn policy_violations_come_out_beside_alerts() {
    let d = tempfile::tempdir().unwrap();
    let f = records_file("ndpi-1kxun.pcap", d.path());
    let policy = write(d.path(), "policy.toml", &special_zone_isolated("iso"));
    let (code, out, err) = analyze(&input_and_policy(&f, &policy));
    assert_eq!(code, 0, "{err}");
    let v: Vec<_> = out.iter().filter(|a| a["type"] == "violation").collect();
    assert!(!v.is_empty(), "no violation: {err}");
    assert!(
        v.iter().all(|x| x["rule_location"]
            .as_str()
            .unwrap()
            .ends_with("policy.toml:5")),
        "{:?}",
        v[0]
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let bad = write(d.path(), "bad.jsonl", "{\"src\": 1}\n");
    let (code, _, err) = analyze(&["--input", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.jsonl:1: not a flow record"), "{err}");
    let pol = write(d.path(), "p.toml", &zone("z", &["10.0.0.1/8"]));
    let (code, _, err) = analyze(&input_and_policy(&bad, &pol));
    assert_ne!(code, 0);
    assert!(err.contains("p.toml:3:"), "{err}");
}

#[test]
fn country_rules_use_the_geoip_database() {
    let mmdb = tidegate_testkit::paths::geolite().display().to_string();
    let d = tempfile::tempdir().unwrap();
    let f = records_file("ndpi-1kxun.pcap", d.path());
    let no_jp = rule(
        "no-jp",
        "nothing to Japan",
        "deny_list",
        "countries = [\"JP\"]\n",
    );
    let policy = write(d.path(), "policy.toml", &no_jp);
    let args = input_and_policy(&f, &policy);
    // Without enrichment a country rule cannot match anything.
    let (code, out, err) = analyze(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.iter().all(|a| a["type"] != "violation"));
    let (code, out, err) = analyze(&[&args[..], &["--mmdb", &mmdb]].concat());
    assert_eq!(code, 0, "{err}");
    let v: Vec<_> = out.iter().filter(|a| a["type"] == "violation").collect();
    assert!(
        !v.is_empty(),
        "flows to Japanese addresses must violate the deny list"
    );
    assert!(v.iter().all(|x| x["rule_id"] == "no-jp"));
}
