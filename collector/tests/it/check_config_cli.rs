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

/// `[netflow]` mistakes name the file, the line and the setting (the same validation
/// `run` does).
#[test]
fn netflow_section_errors_name_file_and_line() {
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
    let ok = format!(
        "{good}[netflow]\nlisten = [\"127.0.0.1:2055\", \"[::1]:4739\"]\naccept_unlisted = false\n\n\
         [[netflow.exporter]]\naddress = \"192.0.2.1\"\nname = \"hk-rtr\"\ninterfaces = {{ 3 = \"hk-intl-1\" }}\nsampling = 1000\n\n\
         [[netflow.export]]\nto = \"192.0.2.50:4739\"\n"
    );
    std::fs::write(&p, &ok).unwrap();
    let (code, out, err) = run(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");
    for (section, want) in [
        (
            "[netflow]\nlisten = [\"127.0.0.1:99999\"]\n",
            ":10: netflow.listen",
        ),
        (
            "[netflow]\nlisten = [\"127.0.0.1:2055\", \"127.0.0.1:2055\"]\n",
            ":10: netflow.listen 127.0.0.1:2055 given twice",
        ),
        (
            "[netflow]\nmax_exporters = 0\n",
            ":10: netflow.max_exporters",
        ),
        (
            "[netflow]\nbatch_records = 0\n",
            ":10: netflow.batch_records",
        ),
        (
            "[netflow]\nlisten = [\"127.0.0.1:2055\"]\naccept_unlisted = false\n",
            ":9: netflow: no [[netflow.exporter]] is listed",
        ),
        (
            // Only listed exporters unless the file says otherwise.
            "[netflow]\nlisten = [\"127.0.0.1:2055\"]\n",
            ":9: netflow: no [[netflow.exporter]] is listed",
        ),
        ("[netflow]\nbogus = 1\n", ":10:"),
        (
            "[[netflow.exporter]]\naddress = \"router-1\"\n",
            ":10: netflow.exporter.address",
        ),
        (
            "[[netflow.exporter]]\naddress = \"192.0.2.1\"\nname = \"../etc\"\n",
            ":11: netflow.exporter.name",
        ),
        (
            "[[netflow.exporter]]\naddress = \"192.0.2.1\"\ninterfaces = { eth0 = \"l\" }\n",
            ":11: netflow.exporter.interfaces key \"eth0\"",
        ),
        (
            "[[netflow.exporter]]\naddress = \"192.0.2.1\"\nsampling = 0\n",
            ":11: netflow.exporter.sampling",
        ),
        (
            "[[netflow.exporter]]\naddress = \"192.0.2.1\"\n[[netflow.exporter]]\naddress = \"192.0.2.1\"\n",
            ":11: netflow.exporter 192.0.2.1 listed twice",
        ),
        (
            "[[netflow.export]]\nto = \"0.0.0.0:4739\"\n",
            ":10: netflow.export.to",
        ),
        (
            "[[netflow.export]]\nto = \"192.0.2.9:4739\"\ntemplate_refresh_secs = 0\n",
            ":11: netflow.export.template_refresh_secs",
        ),
    ] {
        std::fs::write(&p, format!("{good}{section}")).unwrap();
        let (code, _, err) = run(&["check-config", p.to_str().unwrap()]);
        assert_ne!(code, 0, "accepted:\n{section}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.contains(&format!("{}{want}", p.display())),
            "want {want}: {last}"
        );
    }
}
