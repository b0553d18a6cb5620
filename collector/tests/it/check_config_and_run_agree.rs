//! An operator's broken `collector.toml`: `check-config` and `run` give the same answer,
//! the same `file:line: field: problem` error, for every bad value of `[clickhouse]`,
//! `[api]` and `[collector]` — neither accepts what the other refuses, and nothing
//! panics on odd bytes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tidegate_testkit::{certs::Certs, collector::CollectorConfig, free_port};

/// `tidegate-collector ARGS`, killed if it has not exited after 30 s (a `run` that
/// accepted the file would keep running: that is a failure here).
fn collector(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `path:line:` error line of a failed run.
fn error_line(stderr: &str, path: &Path) -> Option<String> {
    let prefix = format!("{}:", path.display());
    stderr
        .lines()
        .find_map(|l| l.find(&prefix).map(|i| l[i..].to_string()))
}

const PW: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

#[test]
fn check_config_and_run_refuse_the_same_bad_values_at_the_same_line() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"), &["edge-1"]);
    // A config whose ClickHouse is unreachable: `run` must fail on the file, before it
    // ever tries the server.
    let base = CollectorConfig::new(dir.path(), &certs, free_port(), "http://127.0.0.1:9").render();
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle:?} not in {text}"))
    };
    let api = |body: &str| {
        format!(
            "{base}\n[api]\nlisten = \"127.0.0.1:{}\"\n{body}",
            free_port()
        )
    };
    let user = format!("[[api.user]]\nname = \"ana\"\npassword_sha256 = \"{PW}\"\n");
    // [clickhouse]: a value replaced (old, new) or a setting added after the others; the
    // error is at the line of the new text and names `field`.
    let (url, db, retention) = ("http://127.0.0.1:9", "\"tidegate\"", "retention_days = 0");
    let replaced = [
        (url, "https://ch.example:8443", "clickhouse.url"),
        (db, "\"1db\"", "clickhouse.database"),
        (db, "\"x; DROP TABLE flows\"", "clickhouse.database"),
        (url, "ftp://ch.example", "clickhouse.url"),
        (url, "http://u:p@ch.example:8123", "clickhouse.url"),
    ];
    let added = [
        ("user = \"\"", "clickhouse.user"),
        ("max_rows_per_insert = 0", "clickhouse.max_rows_per_insert"),
        ("insert_timeout = 0", "clickhouse.insert_timeout"),
        // retention_days is 0 (forever) here: hourly rollups cannot expire sooner.
        (
            "rollup_retention_days = 90",
            "clickhouse.rollup_retention_days",
        ),
        ("databse = \"x\"", "databse"),
    ];
    let mut cases: Vec<(String, &str, &str)> = replaced
        .into_iter()
        .map(|(old, new, field)| (base.replace(old, new), new, field))
        .chain(added.into_iter().map(|(setting, field)| {
            let text = base.replace(retention, &format!("{retention}\n{setting}"));
            (text, setting, field)
        }))
        .collect();
    cases.extend([
        // [api]
        (
            api(&format!("session_hours = 0\n{user}")),
            "session_hours",
            "api.session_hours",
        ),
        (
            api(&format!("home_country = \"Hong Kong\"\n{user}")),
            "home_country",
            "api.home_country",
        ),
        (api(""), "[api]", "[api] needs at least one"),
        (
            api("[[api.user]]\nname = \"a b\"\npassword_sha256 = \"PW\"\n").replace("PW", PW),
            "name = \"a b\"",
            "api.user name",
        ),
        (
            api("[[api.user]]\nname = \"ana\"\npassword_sha256 = \"nothex\"\n"),
            "password_sha256",
            "api.user password_sha256",
        ),
        (
            // 64 bytes, not 64 hex digits: two-byte characters.
            api(&format!(
                "[[api.user]]\nname = \"ana\"\npassword_sha256 = \"{}\"\n",
                "ä".repeat(32)
            )),
            "password_sha256",
            "api.user password_sha256",
        ),
        (
            format!("{base}\n[api]\nlisten = \"nope\"\n{user}"),
            "listen = \"nope\"",
            "api.listen",
        ),
        // [collector]
        (
            format!("[collector]\nmetrics_listen = \"nope\"\n{base}"),
            "metrics_listen",
            "collector.metrics_listen",
        ),
        (
            format!("[collector]\nmetrics_listen = \"127.0.0.1:99999\"\n{base}"),
            "metrics_listen",
            "collector.metrics_listen",
        ),
        (
            format!("[collector]\nmetrics = \"127.0.0.1:9\"\n{base}"),
            "metrics = ",
            "metrics",
        ),
    ]);
    let path = dir.path().join("collector.toml");
    for (text, at, field) in &cases {
        std::fs::write(&path, text).unwrap();
        let line = line_of(text, at);
        let p = path.to_str().unwrap();
        let (check_code, check_err) = collector(&["check-config", p]);
        let (run_code, run_err) = collector(&["run", "--config", p]);
        assert!(
            check_code.is_some_and(|c| c != 0) && run_code.is_some_and(|c| c != 0),
            "{field}: check-config exit {check_code:?}, run exit {run_code:?}\n{text}\n{check_err}\n{run_err}"
        );
        for err in [&check_err, &run_err] {
            assert!(!err.contains("panicked"), "{field}: {err}");
        }
        let check = error_line(&check_err, &path).unwrap_or_else(|| panic!("{field}: {check_err}"));
        let run = error_line(&run_err, &path).unwrap_or_else(|| panic!("{field}: {run_err}"));
        assert_eq!(check, run, "{field}: check-config and run disagree");
        let want = format!("{p}:{line}: ");
        assert!(
            check.starts_with(&want) && check.contains(field),
            "{field}: want {want}… naming {field}, got {check}"
        );
    }

    // And the file with none of those mistakes passes both (run is stopped once it
    // has accepted the file and is waiting for ClickHouse).
    std::fs::write(&path, api(&user)).unwrap();
    let (code, err) = collector(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
}
