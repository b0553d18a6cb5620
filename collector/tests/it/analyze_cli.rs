//! An analyst pipes a capture's flow records into `tidegate-collector analyze`: alerts
//! (and, with `--policy`, violations) come out as JSON lines with the contract fields.

use std::{io::Write, path::PathBuf, process::Command};

use tidegate_probe::{capture::pcap::Replay, table::Timeouts};
use tidegate_wire::record::FlowRecord;

fn records_file(capture: &str, dir: &std::path::Path) -> PathBuf {
    let pcap = tidegate_testkit::paths::corpus_pcap(capture);
    let mut recs: Vec<FlowRecord> = Vec::new();
    let mut replay = Replay::new(Timeouts::default());
    replay
        .replay_file(&pcap, "intl-1", &mut recs)
        .expect("replay");
    replay.finish(&mut recs).expect("flush");
    let p = dir.join(format!("{capture}.jsonl"));
    let mut f = std::fs::File::create(&p).unwrap();
    for r in &recs {
        serde_json::to_writer(&mut f, r).unwrap();
        f.write_all(b"\n").unwrap();
    }
    p
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
    let policy = d.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[zone]]\nname = \"special-zone\"\ncidrs = [\"192.168.0.0/16\"]\n\n[[rule]]\nid = \"iso\"\nname = \"special zone stays inside\"\ntype = \"isolate\"\nzone = \"special-zone\"\npeers = []\n",
    )
    .unwrap();
    let (code, out, err) = analyze(&[
        "--input",
        f.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
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
    let bad = d.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"src\": 1}\n").unwrap();
    let (code, _, err) = analyze(&["--input", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.jsonl:1: not a flow record"), "{err}");
    let pol = d.path().join("p.toml");
    std::fs::write(&pol, "[[zone]]\nname = \"z\"\ncidrs = [\"10.0.0.1/8\"]\n").unwrap();
    let (code, _, err) = analyze(&[
        "--input",
        bad.to_str().unwrap(),
        "--policy",
        pol.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("p.toml:3:"), "{err}");
}

#[test]
fn country_rules_use_the_geoip_database() {
    let mmdb = tidegate_testkit::paths::geolite().display().to_string();
    let d = tempfile::tempdir().unwrap();
    let f = records_file("ndpi-1kxun.pcap", d.path());
    let policy = d.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nid = \"no-jp\"\nname = \"nothing to Japan\"\ntype = \"deny_list\"\ncountries = [\"JP\"]\n",
    )
    .unwrap();
    let args = [
        "--input",
        f.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ];
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
