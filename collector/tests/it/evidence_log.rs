//! The evidence log as a regulator relies on it: alerts and violations from a real
//! replay through the live collector enter the signed log; `evidence verify` passes; a
//! flipped byte, a deleted entry or two swapped entries are found and pinpointed; a
//! bundle exported over the API passes the auditor's script (Python's standard library
//! and `openssl` only) and a tampered one fails; a collector SIGKILLed mid-stream, again
//! and again, restarts with a log that verifies and misses no alert.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::analysis::Analysis;
use crate::support::evidence::keygen;
use crate::support::ui::{CAPTURES, Console, api, block_on, wait_settled};
use tidegate_testkit::{Stack, probe::replay_into, stack::StackOptions};

const BIN: &str = env!("CARGO_BIN_EXE_tidegate-collector");

fn section(key: &Path) -> String {
    format!(
        "\n[evidence]\ndir = \"evidence\"\nkey = \"{}\"\norigin = \"tidegate.test/hub-1\"\ncheckpoint_secs = 1\n",
        key.display()
    )
}

/// Runs the binary; (success, stdout + stderr).
fn run(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn verify_copy(dir: &Path, public: &Path) -> (bool, String) {
    run(&[
        "evidence".as_ref(),
        "verify".as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
        "--public-key".as_ref(),
        public.as_os_str(),
    ])
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("entries.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Ids of the logged states of `kind` (`alert`, `violation`).
fn logged_ids(dir: &Path, kind: &str) -> BTreeSet<String> {
    lines(dir)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == kind)
        .map(|e| e["data"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn stored_ids(stack: &Stack, table: &str) -> BTreeSet<String> {
    stack
        .ch
        .query_sync(&format!(
            "SELECT DISTINCT id FROM tidegate.{table} FORMAT TSV"
        ))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every alert and violation ClickHouse holds is in the log.
fn assert_logged(stack: &Stack, dir: &Path) {
    for (table, kind) in [("alerts", "alert"), ("policy_violations", "violation")] {
        let stored = stored_ids(stack, table);
        assert!(!stored.is_empty(), "no {table} stored");
        let logged = logged_ids(dir, kind);
        let missing: Vec<_> = stored.difference(&logged).collect();
        assert!(
            missing.is_empty(),
            "{table} not in the evidence log: {missing:?}"
        );
    }
}

fn copy_with(dir: &Path, to: &Path, lines: &[String]) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(dir.join("checkpoints.jsonl"), to.join("checkpoints.jsonl")).unwrap();
    std::fs::write(to.join("entries.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn alerts_enter_a_log_that_verifies_and_tampering_is_pinpointed() {
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path());
    let public = PathBuf::from(format!("{}.pub.pem", key.display()));
    let mut c = Console::start_with(
        true,
        &format!("{}\n[alerts]\njsonl = \"alerts.jsonl\"\n", section(&key)),
    );
    c.seed(&CAPTURES);
    let dir = c.dir().join("evidence");

    // A bundle over the API, checked by the auditor's script.
    let alert = c
        .stack
        .ch
        .query_sync(
            "SELECT id FROM tidegate.alerts FINAL ORDER BY severity DESC, id LIMIT 1 FORMAT TSV",
        )
        .unwrap()
        .trim()
        .to_string();
    let resp = block_on(api(&c.url, &format!("/api/v1/evidence/bundle/{alert}")));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(
        resp.header("content-disposition")
            .unwrap()
            .contains("attachment")
    );
    let bundle = keys.path().join("bundle.json");
    std::fs::write(&bundle, &resp.body).unwrap();
    let script = tidegate_testkit::paths::repo().join("dashboards/evidence/verify_bundle.py");
    let audit = |file: &Path| {
        let out = Command::new("python3")
            .arg(&script)
            .arg(file)
            .arg("--public-key")
            .arg(&public)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, said) = audit(&bundle);
    assert!(ok, "the auditor's script refused a genuine bundle: {said}");
    assert!(said.contains(&alert), "{said}");
    let mut b: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let line = b["entries"][0]["line"].as_str().unwrap().to_string();
    b["entries"][0]["line"] = line
        .replacen("\"severity\":\"", "\"severity\":\"x", 1)
        .into();
    let tampered = keys.path().join("tampered.json");
    std::fs::write(&tampered, b.to_string()).unwrap();
    let (ok, said) = audit(&tampered);
    assert!(
        !ok && said.contains("FAILED"),
        "a tampered bundle passed: {said}"
    );
    assert_eq!(
        block_on(api(&c.url, "/api/v1/evidence/bundle/no-such-id")).status,
        404
    );

    // Checkpoints and a consistency proof between the first and the newest. The log
    // grows after the first checkpoint (another probe session: its connect, flow digests
    // and disconnect), so a later checkpoint covers more — however fast the seed went.
    let checkpoints = || block_on(api(&c.url, "/api/v1/evidence/checkpoints")).json();
    let until = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let cps = checkpoints();
            if cps["checkpoints"].as_array().map_or(0, Vec::len) >= n {
                return cps;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {n} checkpoints: {cps}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    until(1);
    c.stack.replay("edge-2", &CAPTURES[..1]);
    let cps = until(2);
    let list = cps["checkpoints"].as_array().unwrap();
    let (first, last) = (&list[0], &list[list.len() - 1]);
    let vk = {
        use ed25519_dalek::pkcs8::DecodePublicKey;
        ed25519_dalek::VerifyingKey::from_public_key_pem(cps["public_key_pem"].as_str().unwrap())
            .unwrap()
    };
    let open = |c: &serde_json::Value| {
        tidegate_evidence::Checkpoint::open(c["note"].as_str().unwrap(), &vk).unwrap()
    };
    let (c1, c2) = (open(first), open(last));
    let proof = block_on(api(
        &c.url,
        &format!(
            "/api/v1/evidence/consistency?old={}&new={}",
            c1.size, c2.size
        ),
    ))
    .json();
    let proof: Vec<[u8; 32]> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| tidegate_evidence::unhex(h.as_str().unwrap()).unwrap())
        .collect();
    assert!(tidegate_evidence::merkle::verify_consistency(
        c1.size, c2.size, &c1.root, &c2.root, &proof
    ));

    // The collector stops cleanly (a last checkpoint); the whole log verifies.
    assert_eq!(c.stack.collector.stop(), 0);
    let config = c.stack.config_path();
    let (ok, said) = run(&[
        "evidence".as_ref(),
        "verify".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(ok && said.contains(": OK"), "{said}");
    assert_logged(&c.stack, &dir);
    let all = lines(&dir);
    for kind in [
        "config",
        "probe_connect",
        "probe_disconnect",
        "alert",
        "violation",
    ] {
        assert!(
            all.iter()
                .any(|l| l.contains(&format!("\"type\":\"{kind}\""))),
            "no {kind} entry"
        );
    }

    // Stored flows match their logged digests; a changed or deleted row is found, and the
    // entry named is the digest of that row's line and batch.
    let flows_check = || {
        run(&[
            "evidence".as_ref(),
            "verify".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--flows".as_ref(),
        ])
    };
    let (ok, said) = flows_check();
    assert!(
        ok && said.contains("flows digests match ClickHouse"),
        "{said}"
    );
    let target = c
        .stack
        .ch
        .query_sync(
            "SELECT line, batch_epoch, batch_seq, toUnixTimestamp64Nano(first), src_text FROM tidegate.flows \
             ORDER BY first, src_text LIMIT 1 FORMAT TSV",
        )
        .unwrap();
    let f: Vec<&str> = target.trim().split('\t').collect();
    let row = format!(
        "line = '{}' AND batch_epoch = {} AND batch_seq = {} AND toUnixTimestamp64Nano(first) = {} AND src_text = '{}'",
        f[0], f[1], f[2], f[3], f[4]
    );
    let named = |said: &str| -> serde_json::Value {
        let i: usize = said
            .split("first bad: entry ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no entry named: {said}"));
        serde_json::from_str(&lines(&dir)[i]).unwrap()
    };
    for (what, sql) in [
        (
            "changed",
            format!(
                "ALTER TABLE tidegate.flows UPDATE bytes = bytes + 1 WHERE {row} SETTINGS mutations_sync = 2"
            ),
        ),
        ("deleted", format!("DELETE FROM tidegate.flows WHERE {row}")),
    ] {
        c.stack.ch.query_sync(&sql).unwrap();
        let (ok, said) = flows_check();
        assert!(!ok, "a {what} flows row went unnoticed: {said}");
        let e = named(&said);
        assert_eq!(e["type"], "flows_digest", "{said}");
        assert_eq!(e["data"]["line"], f[0]);
        let batch: u64 = f[2].parse().unwrap();
        assert!(
            e["data"]["batches"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b[2] == batch),
            "{what}: entry {e} does not cover batch {batch}"
        );
    }

    // Notifications (the JSONL body is the webhook's) name their log entry: the leaf hash
    // is that entry's, so a regulator can ask for its inclusion proof.
    let notes = std::fs::read_to_string(c.dir().join("alerts.jsonl")).unwrap();
    assert!(!notes.is_empty());
    for n in notes.lines() {
        let n: serde_json::Value = serde_json::from_str(n).unwrap();
        let ev = &n["body"]["evidence"];
        let i = ev["log_index"]
            .as_u64()
            .unwrap_or_else(|| panic!("no evidence in {n}"));
        let line = &all[i as usize];
        assert_eq!(
            ev["leaf_hash"].as_str().unwrap(),
            tidegate_evidence::hex(&tidegate_evidence::merkle::leaf_hash(line.as_bytes()))
        );
        assert_eq!(ev["log"], "tidegate.test/hub-1");
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["data"]["id"], n["body"]["id"], "{n}");
    }

    // Tampering, on copies: pinpointed by index.
    let k = all.len() / 2;
    let work = keys.path().join("copies");
    let mut flipped = all.clone();
    let pos = flipped[k].find("\"time_ns\":").unwrap() + 11;
    let mut bytes = flipped[k].clone().into_bytes();
    bytes[pos] = if bytes[pos] == b'1' { b'2' } else { b'1' };
    flipped[k] = String::from_utf8(bytes).unwrap();
    let mut deleted = all.clone();
    deleted.remove(k);
    let mut swapped = all.clone();
    swapped.swap(k, k + 1);
    for (name, l) in [
        ("flipped", flipped),
        ("deleted", deleted),
        ("swapped", swapped),
    ] {
        let d = work.join(name);
        copy_with(&dir, &d, &l);
        let (ok, said) = verify_copy(&d, &public);
        assert!(!ok, "{name}: verify passed");
        assert!(
            said.contains(&format!("first bad: entry {k} (logged ")),
            "{name}: entry {k} not named: {said}"
        );
    }
    copy_with(&dir, &work.join("intact"), &all);
    assert!(verify_copy(&work.join("intact"), &public).0);
}

#[test]
fn a_collector_killed_mid_stream_restarts_with_a_log_that_verifies() {
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path());
    let analysis = Analysis::new();
    let mut stack = Stack::start_with(StackOptions {
        extra: format!("{}{}", analysis.config(), section(&key)),
        ..StackOptions::default()
    });
    for (i, cap) in CAPTURES.iter().enumerate() {
        let mut ex = stack.exporter("edge-1");
        let cap = cap.to_string();
        let sender = std::thread::spawn(move || {
            replay_into(&[&cap], &mut ex);
            ex.finish(Duration::from_secs(90)).unwrap().left_batches
        });
        std::thread::sleep(Duration::from_millis(150 + 350 * i as u64));
        stack.collector.kill();
        stack.restart_collector();
        assert_eq!(
            sender.join().unwrap(),
            0,
            "every batch delivered after the restart"
        );
    }
    wait_settled(&stack);
    assert_eq!(stack.collector.stop(), 0);
    let config = stack.config_path();
    let (ok, said) = run(&[
        "evidence".as_ref(),
        "verify".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(ok && said.contains(": OK"), "{said}");
    assert_logged(&stack, &stack.dir().join("evidence"));
}
