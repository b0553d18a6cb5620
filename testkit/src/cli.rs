//! A binary's command line as a user reads it: every subcommand's `--help`, and the file
//! paths that help text mentions.

use std::path::Path;
use std::process::Command;

/// `(command line, help text)` for the binary and every subcommand, nested ones included
/// (found from each help's `Commands:` list; `help` itself is skipped).
pub fn helps(bin: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(cmd) = todo.pop() {
        let o = Command::new(bin)
            .args(&cmd)
            .arg("--help")
            .output()
            .unwrap_or_else(|e| panic!("run {} --help: {e}", bin.display()));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success() && !text.is_empty(),
            "{} {} --help failed: {}",
            bin.display(),
            cmd.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        for sub in subcommands(&text) {
            let mut c = cmd.clone();
            c.push(sub);
            todo.push(c);
        }
        let name = bin.file_name().unwrap_or_default().to_string_lossy();
        out.push((format!("{name} {}", cmd.join(" ")).trim().to_string(), text));
    }
    out
}

/// The names in a help text's `Commands:` list, except `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// The repository-relative file paths a help text cites: words with a `/` whose last part
/// has a file extension (`dashboards/examples/probe.toml`), absolute paths excluded (those
/// are deployment defaults such as `/var/lib/tidegate/spool`, not files we ship).
pub fn cited_files(help: &str) -> Vec<String> {
    help.split(|c: char| c.is_whitespace() || "`'\"(),;".contains(c))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| w.contains('/') && !w.starts_with('/') && !w.contains("://"))
        .filter(|w| {
            w.rsplit('/')
                .next()
                .and_then(|f| f.rsplit_once('.'))
                .is_some_and(|(stem, ext)| {
                    !stem.is_empty()
                        && !ext.is_empty()
                        && ext.chars().all(|c| c.is_ascii_alphanumeric())
                })
        })
        .map(str::to_string)
        .collect()
}

/// A copy of the shipped example configurations (`dashboards/examples`, with
/// `dashboards/policy` beside it as the collector example expects) under `into`, with the
/// certificates they name (`certs/`, probe `edge-hk-1`). Returns the examples directory.
pub fn example_configs(into: &Path) -> std::path::PathBuf {
    let src = crate::paths::repo().join("dashboards");
    for d in ["examples", "policy"] {
        copy_dir(&src.join(d), &into.join(d));
    }
    let examples = into.join("examples");
    crate::certs::Certs::generate(&examples.join("certs"), &["edge-hk-1"]);
    examples
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let e = e.expect("directory entry");
        let (s, d) = (e.path(), to.join(e.file_name()));
        if s.is_dir() {
            copy_dir(&s, &d);
        } else {
            std::fs::copy(&s, &d).unwrap_or_else(|e| panic!("copy {}: {e}", s.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_subcommands_and_cited_files() {
        let help = "Tool\n\nCommands:\n  run      Run it\n  check    Check (see `a/b.toml`)\n           more text\n  help     Print this\n\nOptions:\n  -h\n";
        assert_eq!(subcommands(help), ["run", "check"]);
        let text = "see dashboards/examples/probe.toml, or `scripts/x.sh`. Not pcap/pcapng, \
                    XDP/TC, /var/lib/tidegate/spool or http://a/b.html";
        assert_eq!(
            cited_files(text),
            ["dashboards/examples/probe.toml", "scripts/x.sh"]
        );
    }
}
