//! Collector end to end: rows/s from a probe exporter through mutually-authenticated TLS,
//! the collector's write-ahead spool and pipeline, into ClickHouse — compared in the same
//! run with a plain insert of the same rows through the same `clickhouse` crate (the
//! storage's own limit on this machine).
//!
//! `cargo build --release -p tidegate-collector -p tidegate-bench &&
//!  target/release/collector_e2e [--rows N] [--smoke]`

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv6Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use clickhouse::Row;
use serde::Serialize;
use tidegate_bench::{aggregate::workload, machine::Machine};
use tidegate_collector::{
    certs::{GenCertsOptions, ca_paths, collector_paths, generate, probe_paths},
    sinks::clickhouse::{ClickHouseConfig, ClickHouseSink, SinkMetrics},
};
use tidegate_common::record::FlowRecord;
use tidegate_probe::export::{
    Exporter,
    collector::{CollectorExporter, CollectorOptions, ExportMetrics},
};

#[derive(Parser)]
struct Args {
    /// Rows (flow records) per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Records per probe batch.
    #[arg(long, default_value_t = 10_000)]
    batch_records: usize,
    /// Seconds-long run for CI (20 000 rows); asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/collector_e2e.md")]
    out: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A throwaway ClickHouse from the repo's launcher.
struct Ch {
    dir: tempfile::TempDir,
    port: u16,
}

impl Ch {
    fn start() -> anyhow::Result<Ch> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let ch = Ch { dir, port };
        let st = ch.script("start").status()?;
        anyhow::ensure!(st.success(), "scripts/clickhouse.sh start failed");
        Ok(ch)
    }
    fn script(&self, cmd: &str) -> Command {
        let mut c = Command::new(repo().join("scripts/clickhouse.sh"));
        c.arg(cmd)
            .env("TIDEGATE_CH_DIR", self.dir.path())
            .env("TIDEGATE_CH_PORT", self.port.to_string());
        c.stdout(Stdio::null());
        c
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default().with_url(self.url())
    }
    async fn count(&self, table: &str) -> u64 {
        self.client()
            .query(&format!("SELECT count() FROM {table}"))
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    }
}

impl Drop for Ch {
    fn drop(&mut self) {
        let _ = self.script("stop").status();
    }
}

/// What a user of the plain crate would write for `flows`.
#[derive(Row, Serialize)]
struct PlainRow<'a> {
    probe_id: &'a str,
    batch_seq: u64,
    line: &'a str,
    ifindex: u32,
    direction: i8,
    ip_version: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    vlan: Option<u16>,
    packets: u64,
    bytes: u64,
    first: i64,
    last: i64,
    tcp_flags: u16,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
}

fn v6(a: IpAddr) -> (u8, Ipv6Addr) {
    match a {
        IpAddr::V4(v4) => (4, v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => (6, v6),
    }
}

impl<'a> PlainRow<'a> {
    fn new(seq: u64, r: &'a FlowRecord) -> Self {
        let (ip_version, src) = v6(r.src);
        PlainRow {
            probe_id: "edge-bench",
            batch_seq: seq,
            line: &r.line,
            ifindex: r.ifindex,
            direction: r.direction as i8,
            ip_version,
            src,
            dst: v6(r.dst).1,
            sport: r.sport,
            dport: r.dport,
            proto: r.proto,
            vlan: r.vlan,
            packets: r.packets,
            bytes: r.bytes,
            first: r.first as i64,
            last: r.last as i64,
            tcp_flags: r.tcp_flags,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
        }
    }
}

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn start_collector(dir: &Path, ch_url: &str, port: u16, certs: &Path) -> anyhow::Result<Collector> {
    let (ca, c) = (ca_paths(certs), collector_paths(certs));
    let cfg = format!(
        "[transport]\nlisten = \"127.0.0.1:{port}\"\nca_cert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [spool]\ndir = \"{}\"\n\n[clickhouse]\nurl = \"{ch_url}\"\nretention_days = 0\n",
        ca.cert.display(),
        c.cert.display(),
        c.key.display(),
        dir.join("spool").display()
    );
    let path = dir.join("collector.toml");
    std::fs::write(&path, cfg)?;
    let exe = std::env::current_exe()?.with_file_name("tidegate-collector");
    anyhow::ensure!(
        exe.is_file(),
        "{} missing: cargo build --release -p tidegate-collector",
        exe.display()
    );
    let mut child = Command::new(exe)
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()?;
    let err = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = (false, false);
    while !(ready.0 && ready.1) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                ready.0 |= l.contains("collector accepting probes");
                ready.1 |= l.contains("ClickHouse schema ready");
            }
            Err(_) if Instant::now() > deadline => bail!("collector did not get ready"),
            Err(_) => {}
        }
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Ok(Collector(child))
}

async fn run(a: &Args) -> anyhow::Result<String> {
    let records = workload::synthetic(a.rows, a.rows, 3600);
    let ch = Ch::start()?;
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    generate(&GenCertsOptions {
        out: certs.clone(),
        probes: vec!["edge-bench".into()],
        collector_names: vec![],
        collector_ips: vec![],
        force: false,
    })?;
    let port = free_port()?;
    let _collector = start_collector(dir.path(), &ch.url(), port, &certs)?;

    // Plain insert of the same rows into the same schema (`flows` with its rollup views),
    // migrated into a database of its own.
    let plain_db = ClickHouseSink::connect(
        ClickHouseConfig {
            url: ch.url(),
            database: "tidegate_plain".into(),
            retention_days: 0,
            ..Default::default()
        },
        SinkMetrics::default(),
    )
    .await?;
    plain_db.migrate().await?;
    let client = ch.client().with_database("tidegate_plain");
    let t = Instant::now();
    for (i, chunk) in records.chunks(100_000).enumerate() {
        let mut ins = client.insert::<PlainRow>("flows").await?;
        for r in chunk {
            ins.write(&PlainRow::new(i as u64, r)).await?;
        }
        ins.end().await?;
    }
    let plain = t.elapsed();
    anyhow::ensure!(
        ch.count("tidegate_plain.flows").await == a.rows as u64,
        "plain insert lost rows"
    );

    // End to end: probe exporter -> TLS -> collector -> ClickHouse.
    let p = probe_paths(&certs, "edge-bench");
    let mut o = CollectorOptions::new(
        format!("127.0.0.1:{port}"),
        "edge-bench",
        ca_paths(&certs).cert,
        p.cert,
        p.key,
        dir.path().join("probe-spool"),
    );
    o.batch_records = a.batch_records;
    let t = Instant::now();
    let recs = records.clone();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut ex = CollectorExporter::start(o, ExportMetrics::new())?;
        for r in &recs {
            ex.export(r)?;
        }
        Ok(ex.finish(Duration::from_secs(600))?)
    })
    .await??;
    anyhow::ensure!(report.left_batches == 0, "batches left unacknowledged");
    let acked = t.elapsed();
    while ch.count("tidegate.flows").await < a.rows as u64 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(900),
            "rows did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = t.elapsed();
    anyhow::ensure!(
        ch.count("tidegate.flows").await == a.rows as u64,
        "row count differs after arrival"
    );

    let rate = |d: Duration| a.rows as f64 / d.as_secs_f64();
    let mut s = String::new();
    writeln!(
        s,
        "# Collector end to end vs a plain ClickHouse insert (generated)\n"
    )?;
    writeln!(s, "{}", Machine::describe().markdown())?;
    writeln!(
        s,
        "Command: `{}`\n",
        std::env::args().collect::<Vec<_>>().join(" ")
    )?;
    writeln!(
        s,
        "{} synthetic flow records ({} distinct keys over one hour), one probe, batches of {} records; local ClickHouse 26.9 (chdb-core) on the same machine.\n",
        a.rows, a.rows, a.batch_records
    )?;
    writeln!(s, "| path | seconds | rows/s | ratio to plain |")?;
    writeln!(s, "|---|---:|---:|---:|")?;
    writeln!(
        s,
        "| plain `clickhouse` crate insert into `flows` with its rollup views (100 000 rows per INSERT) | {:.2} | {:.0} | 1.00 |",
        plain.as_secs_f64(),
        rate(plain)
    )?;
    writeln!(
        s,
        "| probe → TLS → collector spool (all acknowledged) | {:.2} | {:.0} | {:.2} |",
        acked.as_secs_f64(),
        rate(acked),
        rate(acked) / rate(plain)
    )?;
    writeln!(
        s,
        "| probe → TLS → collector → ClickHouse `flows` (all rows stored) | {:.2} | {:.0} | {:.2} (target ≥ 0.9) |",
        stored.as_secs_f64(),
        rate(stored),
        rate(stored) / rate(plain)
    )?;
    if a.smoke {
        writeln!(s, "\n(smoke run: figures are not meaningful)")?;
    }
    Ok(s)
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.rows = a.rows.min(20_000);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let s = rt.block_on(run(&a))?;
    print!("{s}");
    if let Some(d) = a.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&a.out, s)?;
    Ok(())
}
