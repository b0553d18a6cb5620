//! The console's Overview with 10 M flow records in ClickHouse: latency of
//! `GET /api/v1/overview` (and, for reference, the other API endpoints the pages call)
//! on a real `tidegate-collector run`, and the Overview page's time to show its totals in
//! headless Chromium when node and the browser tooling are installed
//! (scripts/setup-browser.sh). Rows are synthetic, written by ClickHouse itself
//! (`INSERT ... SELECT FROM numbers(N)`: four lines, 24 hours, enrichment columns set), so
//! the rollups are filled by the same materialized views as in production.
//!
//! `cargo build --release -p tidegate-collector -p tidegate-bench &&
//!  target/release/ui_overview [--rows 10000000] [--smoke]`

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::Context;
use clap::Parser;
use tidegate_bench::machine::Machine;
use tidegate_collector::api::auth::digest_hex;
use tidegate_testkit::{
    CollectorProcess, TestClickHouse, collector::start_deployed, free_port, paths::repo,
};

#[derive(Parser)]
struct Args {
    /// Flow records inserted.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Timed requests per endpoint (after one cold request).
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Seconds-long run for CI (100 000 rows, 2 requests); asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/ui_overview.md")]
    out: PathBuf,
}

const TOKEN: &str = "bench-token";
const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

/// The collector with `[api]` on `ui_port` (as deployed otherwise); returns once it
/// accepts probes and its schema is ready.
fn start_collector(dir: &Path, ch_url: &str, ui_port: u16) -> anyhow::Result<CollectorProcess> {
    let api = format!(
        "[api]\nlisten = \"127.0.0.1:{ui_port}\"\n\n[[api.user]]\nname = \"{USER}\"\npassword_hash = \"{}\"\n\n\
         [[api.token]]\nname = \"bench\"\nsha256 = \"{}\"\n",
        tidegate_collector::api::auth::hash_password(PASSWORD),
        digest_hex(TOKEN),
    );
    Ok(start_deployed(dir, None, ch_url, "edge-bench", &api)?.0)
}

/// GET with the bearer token; returns (status, body length).
fn get(port: u16, path: &str) -> anyhow::Result<(u16, usize)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    Ok((status, buf.len()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The Overview page in Chromium, if the browser tooling is installed.
fn page_timing(ui_port: u16, range: &str, reps: usize) -> Option<Vec<f64>> {
    let dir = repo().join("testkit/browser");
    if !dir.join("node_modules/playwright-core").is_dir()
        || !Path::new("/usr/bin/chromium").exists()
    {
        return None;
    }
    let out = Command::new("node")
        .arg(dir.join("overview_timing.mjs"))
        .current_dir(&dir)
        .env("URL", format!("http://127.0.0.1:{ui_port}"))
        .env("USER", USER)
        .env("PASSWORD", PASSWORD)
        .env("RANGE", range)
        .env("REPS", reps.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "page timing failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["ms"]
            .as_array()?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect(),
    )
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.rows = 100_000;
        a.reps = 2;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ch = TestClickHouse::try_start_in(None)?;
    let dir = tempfile::tempdir()?;
    let ui_port = free_port();
    let _collector = start_collector(dir.path(), &ch.url(), ui_port)?;

    // Synthetic traffic over the last 24 hours, evenly spread, written by ClickHouse.
    let now_ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let start_ns = now_ns - 86_400_000_000_000;
    let spacing = 86_400_000_000_000 / a.rows as i64;
    let insert = format!(
        "INSERT INTO tidegate.flows (probe_id, batch_seq, line, ifindex, direction, ip_version, src, dst, sport, dport, proto, vlan, packets, bytes, first, last, tcp_flags, src_country, dst_country, src_asn, dst_asn) \
         SELECT 'edge-bench', intDiv(number, 10000), ['hk-intl-1', 'sg-intl-2', 'mo-intl-3', 'tw-intl-4'][number % 4 + 1], 1, number % 2, 4, \
         toIPv6(toIPv4(toUInt32(167772160 + cityHash64(number) % 65536))), toIPv6(toIPv4(toUInt32(16777216 + cityHash64(number, 1) % 3500000000))), \
         toUInt16(1024 + cityHash64(number, 2) % 60000), [443, 80, 53, 22, 8443][number % 5 + 1], [6, 6, 17, 6, 1][number % 5 + 1], NULL, \
         1 + cityHash64(number, 3) % 50 AS p, p * (60 + cityHash64(number, 4) % 1400), \
         fromUnixTimestamp64Nano(toInt64({start_ns} + number * {spacing})), fromUnixTimestamp64Nano(toInt64({start_ns} + number * {spacing} + 1000000000)), 24, \
         '', ['US', 'CN', 'DE', 'JP', 'SG', 'GB', 'FR', 'KR', 'BR', 'IN'][cityHash64(number, 5) % 10 + 1], 0, 13335 + cityHash64(number, 6) % 50 \
         FROM numbers({})",
        a.rows
    );
    eprintln!("inserting {} synthetic flow records", a.rows);
    let t = Instant::now();
    rt.block_on(async {
        ch.client()
            .query(&insert)
            .with_setting("max_insert_threads", "2")
            .execute()
            .await
    })
    .context("synthetic insert")?;
    let insert_s = t.elapsed().as_secs_f64();
    let stored: u64 = rt.block_on(async {
        ch.client()
            .query("SELECT count() FROM tidegate.flows")
            .fetch_one::<u64>()
            .await
    })?;
    anyhow::ensure!(stored == a.rows, "stored {stored} rows, wanted {}", a.rows);
    let (rows_1m, parts): (u64, u64) = rt.block_on(async {
        ch.client()
            .query("SELECT toUInt64(ifNull((SELECT count() FROM tidegate.flows_1m), 0)), toUInt64(ifNull((SELECT count() FROM system.parts WHERE database = 'tidegate' AND table = 'flows' AND active), 0))")
            .fetch_one::<(u64, u64)>()
            .await
    })?;

    let ms = |d: i64| (now_ns / 1_000_000) - d;
    let now_ms = now_ns / 1_000_000;
    let endpoints: Vec<(String, String)> = vec![
        (
            "overview, last hour (default range)".into(),
            "/api/v1/overview".into(),
        ),
        (
            "overview, last 6 hours".into(),
            format!("/api/v1/overview?from={}&to={now_ms}", ms(6 * 3_600_000)),
        ),
        (
            "overview, last 24 hours".into(),
            format!("/api/v1/overview?from={}&to={now_ms}", ms(86_400_000)),
        ),
        (
            "overview, last 24 hours, one line".into(),
            format!(
                "/api/v1/overview?from={}&to={now_ms}&line=hk-intl-1",
                ms(86_400_000)
            ),
        ),
        (
            "geo (map), last 24 hours".into(),
            format!("/api/v1/geo?from={}&to={now_ms}", ms(86_400_000)),
        ),
        (
            "top talkers by source, last hour".into(),
            format!("/api/v1/top-talkers?from={}&to={now_ms}", ms(3_600_000)),
        ),
        (
            "top talkers by source, last 24 hours".into(),
            format!("/api/v1/top-talkers?from={}&to={now_ms}", ms(86_400_000)),
        ),
        (
            "flow search 10.0.1.0/24, last 24 hours, page 1".into(),
            format!(
                "/api/v1/flows?from={}&to={now_ms}&ip=10.0.1.0%2F24",
                ms(86_400_000)
            ),
        ),
        (
            "flow search, port 22, last hour".into(),
            format!("/api/v1/flows?from={}&to={now_ms}&port=22", ms(3_600_000)),
        ),
        (
            "flow search, filter expression, last hour".into(),
            format!(
                "/api/v1/flows?from={}&to={now_ms}&q={}",
                ms(3_600_000),
                "dst%20%3D%2010.0.0.0%2F8%20and%20dport%20in%20(22%2C%20443)%20and%20bytes%20%3E%201k%20not%20country%20%3D%20CN"
            ),
        ),
    ];
    let mut table = String::new();
    for (name, path) in &endpoints {
        let t = Instant::now();
        let (st, _) = get(ui_port, path)?;
        anyhow::ensure!(st == 200, "{path}: status {st}");
        let cold = t.elapsed().as_secs_f64() * 1000.0;
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..a.reps {
            let t = Instant::now();
            let (st, n) = get(ui_port, path)?;
            anyhow::ensure!(st == 200, "{path}: status {st}");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            size = n;
        }
        times.sort_by(|x, y| x.total_cmp(y));
        eprintln!("{name}: median {:.1} ms", percentile(&times, 0.5));
        writeln!(
            table,
            "| {name} | {cold:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            times[0],
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            size as f64 / 1024.0
        )?;
    }
    let page = page_timing(ui_port, "24h", a.reps.min(5));

    let mut s = String::new();
    writeln!(
        s,
        "# Console Overview with {} flow records (generated)\n",
        a.rows
    )?;
    writeln!(s, "{}", Machine::describe().markdown())?;
    let cmd: Vec<String> = std::env::args().collect();
    writeln!(s, "Command: `{}`\n", cmd.join(" "))?;
    writeln!(
        s,
        "{} synthetic flow records over the last 24 hours (4 lines, 2 directions, 10 destination countries), \
         written by `INSERT ... SELECT FROM numbers({})` into `tidegate.flows` in {insert_s:.1} s, which filled \
         `flows_1m` ({rows_1m} rows) and `flows_1h` through the materialized views; `flows` in {parts} active parts. \
         A real `tidegate-collector run` serves the API (bearer token, HTTP/1.0, one request at a time); \
         local ClickHouse 26.9 (chdb-core) on the same machine. Times in milliseconds: the first (cold) \
         request, then {} timed requests.\n",
        a.rows, a.rows, a.reps
    )?;
    writeln!(
        s,
        "| request | cold ms | min ms | median ms | p95 ms | response KiB |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|")?;
    s.push_str(&table);
    match page {
        Some(mut p) => {
            p.sort_by(|x, y| x.total_cmp(y));
            writeln!(
                s,
                "\nOverview page, last 24 hours, in headless Chromium (navigation until the totals show, \
                 charts drawn; {} loads): min {:.0} ms, median {:.0} ms, max {:.0} ms.",
                p.len(),
                p[0],
                percentile(&p, 0.5),
                p[p.len() - 1]
            )?;
        }
        None => writeln!(
            s,
            "\nOverview page timing skipped: browser tooling not installed (scripts/setup-browser.sh)."
        )?,
    }
    writeln!(
        s,
        "\nThe overview reads only the per-minute rollup (`flows_1m`: rows per minute × line × direction × \
         protocol × country pair), so its cost follows the time range, not the number of raw flow records; \
         top talkers and flow searches scan `flows` within the range."
    )?;
    tidegate_bench::report::publish(s, false, Some(&a.out))?;
    Ok(())
}
