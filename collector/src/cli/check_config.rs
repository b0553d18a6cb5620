//! `tidegate-collector check-config FILE`: validate a configuration without starting.

use std::path::PathBuf;

use tidegate_collector::config::CollectorConfig;

/// Arguments of `check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file.
    pub file: PathBuf,
}

/// Runs `check-config`: prints a summary and exits 0, or one `file:line: message` error.
pub fn main(a: Args) -> anyhow::Result<()> {
    let c = CollectorConfig::load(&a.file)?;
    println!(
        "{}: OK (probes on {}, spool {}, ClickHouse {} database {}, {} aggregation shards)",
        a.file.display(),
        c.transport.listen,
        c.spool.dir.display(),
        c.clickhouse.url,
        c.clickhouse.database,
        c.aggregate.shards
    );
    Ok(())
}
