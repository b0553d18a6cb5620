//! `tidegate-collector check-config FILE`: validate a configuration without starting.

use std::path::PathBuf;

use tidegate_collector::config::CollectorConfig;

/// Arguments of `check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML; every section documented in dashboards/examples/collector.toml).
    pub file: PathBuf,
}

/// Runs `check-config`: prints a summary and exits 0, or one `file:line: message` error.
pub fn main(a: Args) -> anyhow::Result<()> {
    let c = CollectorConfig::load(&a.file)?;
    let sources = c.analysis.load().map_err(anyhow::Error::msg)?;
    println!(
        "{}: OK (probes on {}, spool {}, ClickHouse {} database {}, {} aggregation shards)",
        a.file.display(),
        c.transport.listen,
        c.spool.dir.display(),
        c.clickhouse.url,
        c.clickhouse.database,
        c.aggregate.shards
    );
    if let Some(cl) = &c.clickhouse.cluster {
        println!(
            "ClickHouse cluster {}: <table>_local on every node ({}) + Distributed <table>; \
             schema changes {}; insert tokens per {}",
            cl.name,
            if cl.replicated {
                "Replicated*MergeTree"
            } else {
                "MergeTree, one copy per shard"
            },
            match cl.ddl {
                tidegate_collector::sinks::clickhouse::Ddl::OnCluster => "ON CLUSTER".to_string(),
                tidegate_collector::sinks::clickhouse::Ddl::EachNode =>
                    format!("run on each of {} nodes", cl.nodes.len()),
            },
            match c.clickhouse.dedup() {
                tidegate_collector::sinks::clickhouse::Dedup::Batch => "probe batch",
                tidegate_collector::sinks::clickhouse::Dedup::Group => "spool group",
            }
        );
    }
    let a = &c.analysis;
    println!(
        "detection: {}; enrichment: {} database(s), {} range file(s); policy: {}; alerts to: {}",
        if a.detect_enabled { "on" } else { "off" },
        a.enrich.mmdb.len(),
        a.enrich.csv.len(),
        sources
            .policy
            .as_ref()
            .map(|p| format!("{} rules", p.current().rules.len()))
            .unwrap_or_else(|| "none".into()),
        [
            Some("clickhouse"),
            a.jsonl.as_ref().map(|_| "jsonl"),
            a.webhook.as_ref().map(|_| "webhook"),
            a.syslog.as_ref().map(|_| "syslog"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    );
    match &c.api {
        Some(api) => println!(
            "web UI and API: http://{} ({} user(s), {} token(s))",
            api.listen,
            api.users.len(),
            api.tokens.len()
        ),
        None => println!("web UI and API: off (no [api] section)"),
    }
    match &c.evidence {
        Some(e) => println!(
            "evidence log: {} as {:?}, signed with {}, checkpoint every {} s",
            e.dir.display(),
            e.origin,
            e.key.display(),
            e.checkpoint_every.as_secs()
        ),
        None => println!("evidence log: off (no [evidence] section)"),
    }
    Ok(())
}
