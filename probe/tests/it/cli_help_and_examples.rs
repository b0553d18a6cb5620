//! What a new user reads first: `--help` of every subcommand cites only files that exist,
//! the shipped example configuration passes `check-config`, and a failed replay says only
//! that it failed.

use std::path::Path;
use std::process::Command;

use tidegate_testkit::{cli, paths};

use crate::support::probe_cli::bin;

#[test]
fn every_help_cites_files_that_exist() {
    let helps = cli::helps(Path::new(bin()));
    assert!(helps.len() >= 4, "expected the subcommands: {helps:?}");
    for (cmd, text) in helps {
        for f in cli::cited_files(&text) {
            assert!(
                paths::repo().join(&f).is_file(),
                "`{cmd} --help` cites {f}, which does not exist"
            );
        }
    }
}

#[test]
fn example_config_passes_check_config() {
    let d = tempfile::tempdir().unwrap();
    let examples = cli::example_configs(d.path());
    let file = examples.join("probe.toml");
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK (probe edge-hk-1"), "{stdout}");
    assert!(
        stdout.contains("collector: collector.example:7443"),
        "{stdout}"
    );

    // A broken collector section is refused with the file named, as `run` would.
    std::fs::remove_file(examples.join("certs/probe-edge-hk-1.key")).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}", file.display())) && stderr.contains("probe-edge-hk-1.key"),
        "{stderr}"
    );
}

#[test]
fn replay_of_a_missing_capture_reports_only_the_error() {
    let out = Command::new(bin())
        .args(["replay", "/nonexistent.pcap"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent.pcap"), "{stderr}");
    assert!(
        !stderr.contains("done"),
        "a failed replay logged completion: {stderr}"
    );
    assert_eq!(
        stderr.matches("No such file").count(),
        1,
        "the OS error once: {stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a non-terminal: {stderr:?}"
    );
}
