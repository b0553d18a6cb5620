//! `tidegate-collector check-config FILE` as an operator runs it: OK for a valid file,
//! one `file:line: message` error (exit ≠ 0) for a broken one.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate-collector"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_and_broken_configs() {
    let d = tempfile::tempdir().unwrap();
    let certs = d.path().join("certs");
    let (code, _, err) = run(&[
        "gen-certs",
        "--out",
        certs.to_str().unwrap(),
        "--probe",
        "edge-1",
    ]);
    assert_eq!(code, 0, "{err}");
    let good = "[transport]\nlisten = \"127.0.0.1:7443\"\nca_cert = \"certs/ca.pem\"\ncert = \"certs/collector.pem\"\nkey = \"certs/collector.key\"\n\n[clickhouse]\nurl = \"http://127.0.0.1:8123\"\n";
    let p = d.path().join("collector.toml");
    std::fs::write(&p, good).unwrap();
    let (code, out, err) = run(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");

    for (src, want) in [
        (
            good.replace("certs/ca.pem", "certs/nope.pem"),
            ":3: transport.ca_cert",
        ),
        (good.replace("7443", "99999"), ":2: transport.listen"),
        (
            format!("{good}[spool]\nmax_bytes = 10\nsegment_bytes = 4096\n"),
            ":10: spool.max_bytes",
        ),
        (format!("{good}unknown_key = 1\n"), ":9:"),
    ] {
        std::fs::write(&p, &src).unwrap();
        let (code, _, err) = run(&["check-config", p.to_str().unwrap()]);
        assert_ne!(code, 0);
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.contains(&format!("{}{want}", p.display())),
            "want {want}: {last}"
        );
    }
    let (code, _, err) = run(&["check-config", "/nonexistent.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent.toml: cannot read"), "{err}");
}
