//! What a new user reads first: `--help` of every subcommand cites only files that exist,
//! and the shipped example configurations pass `check-config`.

use std::path::Path;
use std::process::Command;

use tidegate_testkit::{cli, paths};
use tidegate_threat::detect::DetectConfig;

const BIN: &str = env!("CARGO_BIN_EXE_tidegate-collector");

#[test]
fn every_help_cites_files_that_exist() {
    let helps = cli::helps(Path::new(BIN));
    assert!(helps.len() >= 5, "expected the subcommands: {helps:?}");
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
fn example_configs_pass_check_config() {
    let d = tempfile::tempdir().unwrap();
    let examples = cli::example_configs(d.path());
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(examples.join("collector.toml"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    for want in ["OK", "policy:", "web UI and API:"] {
        assert!(stdout.contains(want), "summary lacks {want:?}: {stdout}");
    }
    // The detect example documents every threshold at its default.
    let detect = DetectConfig::load(&examples.join("detect.toml")).unwrap();
    assert_eq!(detect, DetectConfig::default());
}
