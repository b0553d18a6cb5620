//! `tidegate-probe check-config FILE`: validate a configuration without capturing.

use std::path::PathBuf;

use anyhow::Context;
use tidegate_probe::{config::ProbeConfig, export::collector::CollectorOptions};

/// Arguments of `check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML; see dashboards/examples/probe.toml).
    pub file: PathBuf,
}

/// Runs `check-config`: what `run --config FILE` checks before it captures (the file, and
/// the collector's TLS files when it names a collector); prints a summary and exits 0, or
/// one `file:line: message` error.
pub fn main(a: Args) -> anyhow::Result<()> {
    let c = ProbeConfig::load(&a.file)?;
    println!(
        "{}: OK (probe {}, {} backend, {} line(s): {})",
        a.file.display(),
        c.id,
        format!("{:?}", c.backend).to_lowercase(),
        c.lines.len(),
        c.lines
            .iter()
            .map(|l| format!("{} on {}", l.name, l.iface))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &c.collector {
        Some(col) => {
            CollectorOptions::from_config(col, &c.id)
                .validate()
                .with_context(|| format!("{}: [collector]", a.file.display()))?;
            println!(
                "collector: {}{} (spool {}, batches of {} records)",
                col.addr,
                col.failover
                    .iter()
                    .map(|a| format!(", then {a}"))
                    .collect::<String>(),
                col.spool_dir.display(),
                col.batch_records
            );
        }
        None => println!("collector: none (records go to stdout as JSON lines)"),
    }
    match c.metrics_listen {
        Some(m) => println!("metrics: http://{m}/metrics"),
        None => println!("metrics: off"),
    }
    Ok(())
}
