//! An analyst replays several captures with `tidegate-probe replay --collector`, all with
//! one `--probe-id` and each with its own `--spool-dir` (one after another, then two side
//! by side): every record reaches ClickHouse. Each spool is its own sequence (epoch), so
//! a new spool's numbers starting again at 1 are never taken for resends of batches the
//! collector already holds.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use tidegate_testkit::{Stack, paths};

const PROBE: &str = "edge-1";
/// In the order replayed: the first alone, the other two at the same time; small
/// batches, so every run spools many.
const CAPTURES: [&str; 3] = [
    "ndpi-gnutella.pcap",
    "ndpi-synscan.pcap",
    "stopddos-amp.UDP.isakmp.pcap",
];

fn replay(s: &Stack, capture: &str, spool: &Path) -> std::process::Child {
    let ca = s.certs.ca().cert;
    let me = s.certs.probe(PROBE);
    Command::new(paths::bin("tidegate-probe"))
        .arg("replay")
        .arg(paths::corpus_pcap(capture))
        .args(["--probe-id", PROBE, "--batch-records", "100"])
        .args(["--collector", &s.config.addr().to_string()])
        .args(["--tls-server-name", "localhost"])
        .arg("--tls-ca")
        .arg(ca)
        .arg("--tls-cert")
        .arg(me.cert)
        .arg("--tls-key")
        .arg(me.key)
        .arg("--spool-dir")
        .arg(spool)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tidegate-probe replay")
}

fn finished(out: Output, capture: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "replay of {capture} failed:\n{stderr}"
    );
    stderr
}

/// (records, packets, bytes) the probe makes of `capture` (its JSON output).
fn expected(capture: &str) -> (u64, u64, u64) {
    let out = Command::new(paths::bin("tidegate-probe"))
        .args(["replay", "--json"])
        .arg(paths::corpus_pcap(capture))
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut t = (0, 0, 0);
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        t.0 += 1;
        t.1 += v["packets"].as_u64().unwrap();
        t.2 += v["bytes"].as_u64().unwrap();
    }
    t
}

#[test]
fn every_record_of_every_replay_is_stored() {
    let s = Stack::start();
    let spool = |i: usize| s.dir().join(format!("replay-spool-{i}"));

    let first = replay(&s, CAPTURES[0], &spool(0))
        .wait_with_output()
        .unwrap();
    let mut logs = finished(first, CAPTURES[0]);
    let side_by_side: Vec<_> = (1..3).map(|i| replay(&s, CAPTURES[i], &spool(i))).collect();
    for (i, child) in side_by_side.into_iter().enumerate() {
        logs += &finished(child.wait_with_output().unwrap(), CAPTURES[i + 1]);
    }
    assert!(
        !logs.contains("removed them"),
        "a replay deleted spooled batches as already stored:\n{logs}"
    );

    let want: Vec<(String, (u64, u64, u64))> = CAPTURES
        .iter()
        .map(|c| (c.rsplit_once('.').unwrap().0.to_string(), expected(c)))
        .collect();
    let total: u64 = want.iter().map(|(_, (n, _, _))| n).sum();
    s.wait_for_flows(total, Duration::from_secs(90));
    for (line, (n, packets, bytes)) in &want {
        let got =
            s.ch.query_sync(&format!(
                "SELECT count(), sum(packets), sum(bytes) FROM tidegate.flows \
                 WHERE probe_id = '{PROBE}' AND line = '{line}' FORMAT TSV"
            ))
            .unwrap();
        assert_eq!(
            got.trim(),
            format!("{n}\t{packets}\t{bytes}"),
            "line {line}: stored (rows, packets, bytes) differ from what the probe exported"
        );
    }
    // Each spool was a sequence of its own, and every row says which.
    let epochs =
        s.ch.query_sync(&format!(
            "SELECT uniqExact(batch_epoch), countIf(batch_epoch = 0) FROM tidegate.flows \
             WHERE probe_id = '{PROBE}' FORMAT TSV"
        ))
        .unwrap();
    assert_eq!(epochs.trim(), "3\t0");
    // Nothing more arrives later (no duplicate either).
    std::thread::sleep(Duration::from_secs(2));
    let rows =
        s.ch.query_sync("SELECT count() FROM tidegate.flows FORMAT TSV")
            .unwrap();
    assert_eq!(rows.trim(), total.to_string());
}
