//! Detection latency: from the first packet of a SYN flood on a veth to the alert in the
//! collector's JSONL sink and in ClickHouse's `alerts` table, over repeated runs.
//!
//! Everything runs inside a namespace pair this benchmark creates (`tgb-lat-*`): trafgen
//! floods from one side; on the other side the XDP probe, the collector (live detection)
//! and a local ClickHouse talk over that namespace's loopback. Each run floods a new
//! target address, so each raises a new alert.
//!
//! `target/release/detect_latency [--runs 10] [--out bench/results/detect_latency.md]`

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use tidegate_bench::machine::Machine;
use tidegate_testkit::{
    TestClickHouse,
    collector::start_deployed,
    net::{ChildGuard, VethPair, in_netns, install_signal_cleanup},
    paths::bin,
};

#[derive(Parser)]
#[command(name = "detect_latency", version, about)]
struct Args {
    /// Floods (one alert each).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// SYN packets per flood.
    #[arg(long, default_value_t = 4000)]
    packets: u64,
    /// Flood rate, packets/s.
    #[arg(long, default_value_t = 800)]
    pps: u64,
    /// One run, for CI; asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/detect_latency.md")]
    out: PathBuf,
}

/// Probe timeouts and detector settings of the measurement (written into the results).
const PROBE_ACTIVE_SECS: u64 = 5;
const PROBE_IDLE_SECS: u64 = 2;
const DETECT_TOML: &str = "lateness_secs = 5\n\n[syn_flood]\nwindow_secs = 10\n";
const IDLE_ADVANCE_SECS: u64 = 1;

struct Run {
    target: String,
    jsonl: Duration,
    clickhouse: Duration,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn start_probe(pair: &VethPair, port: u16, certs: &Path, dir: &Path) -> anyhow::Result<ChildGuard> {
    let exe = bin("tidegate-probe");
    let mut child = in_netns(Some(&pair.ns_b), exe)
        .args([
            "run",
            "--iface",
            &pair.if_b,
            "--probe-id",
            "edge-lat",
            "--no-egress",
        ])
        .args(["--active-timeout", &PROBE_ACTIVE_SECS.to_string()])
        .args(["--idle-timeout", &PROBE_IDLE_SECS.to_string()])
        .args(["--collector", &format!("127.0.0.1:{port}")])
        .arg("--tls-ca")
        .arg(certs.join("ca.pem"))
        .arg("--tls-cert")
        .arg(certs.join("probe-edge-lat.pem"))
        .arg("--tls-key")
        .arg(certs.join("probe-edge-lat.key"))
        .arg("--spool-dir")
        .arg(dir.join("probe-spool"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn tidegate-probe")?;
    let err = child.stderr.take().context("stderr")?;
    let guard = ChildGuard::new(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains("capturing") => break,
            Ok(_) => {}
            Err(_) if Instant::now() > deadline => bail!("the probe did not start"),
            Err(_) => {}
        }
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Ok(guard)
}

fn flood(pair: &VethPair, target: &str, a: &Args, dir: &Path) -> anyhow::Result<ChildGuard> {
    let mac = VethPair::mac(&pair.ns_b, &pair.if_b)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let cfg = dir.join("flood.cfg");
    std::fs::write(
        &cfg,
        format!(
            "{{\n  eth(da={mac}, sa=02:00:00:00:00:01, type=0x0800),\n  \
             ipv4(saddr=198.51.100.9, daddr={target}, ttl=64),\n  \
             tcp(sp=dinc(1024, 65000), dp=80, syn, win=1024),\n}}\n"
        ),
    )?;
    let child = in_netns(Some(&pair.ns_a), "trafgen")
        .args(["--dev", &pair.if_a, "--conf"])
        .arg(&cfg)
        .args([
            "--num",
            &a.packets.to_string(),
            "--rate",
            &format!("{}pps", a.pps),
        ])
        .args(["--cpus", "1", "--no-sock-mem", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn trafgen (apt-get install netsniff-ng)")?;
    Ok(ChildGuard::new(child))
}

fn jsonl_has(path: &Path, target: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["body"]["kind"] == "syn_flood" && v["body"]["dst"] == target)
        })
    })
}

fn measure(a: &Args) -> anyhow::Result<(Vec<Run>, String)> {
    let dir = tempfile::tempdir()?;
    let pair = VethPair::new("lat")?;
    let ch = TestClickHouse::try_start_in(Some(&pair.ns_b))?;
    std::fs::write(dir.path().join("detect.toml"), DETECT_TOML)?;
    let jsonl = dir.path().join("alerts.jsonl");
    let extra = format!(
        "[detect]\nconfig = \"detect.toml\"\nidle_advance_secs = {IDLE_ADVANCE_SECS}\n\n\
         [alerts]\njsonl = \"{}\"\n",
        jsonl.display()
    );
    let (collector, certs) =
        start_deployed(dir.path(), Some(&pair.ns_b), &ch.url(), "edge-lat", &extra)?;
    let mut probe = start_probe(&pair, collector.addr.port(), &certs.dir, dir.path())?;
    let mut runs = Vec::new();
    for i in 0..a.runs {
        let target = format!("10.9.{}.1", i + 1);
        let t0 = Instant::now();
        let mut generator = flood(&pair, &target, a, dir.path())?;
        let (mut t_jsonl, mut t_ch) = (None, None);
        let limit = Duration::from_secs(120);
        while t_jsonl.is_none() || t_ch.is_none() {
            if t0.elapsed() > limit {
                bail!(
                    "no alert for {target} after {limit:?} (see {}/collector.log)",
                    dir.path().display()
                );
            }
            if t_jsonl.is_none() && jsonl_has(&jsonl, &target) {
                t_jsonl = Some(t0.elapsed());
            }
            if t_ch.is_none()
                && ch.query_sync(&format!(
                    "SELECT count() FROM tidegate.alerts WHERE kind = 'syn_flood' AND dst = '{target}'"
                ))? != "0"
            {
                t_ch = Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        generator.wait_timeout(Duration::from_secs(60));
        let r = Run {
            target,
            jsonl: t_jsonl.expect("set"),
            clickhouse: t_ch.expect("set"),
        };
        eprintln!(
            "run {}: {} alert in JSONL after {:.2} s, in ClickHouse after {:.2} s",
            i + 1,
            r.target,
            r.jsonl.as_secs_f64(),
            r.clickhouse.as_secs_f64()
        );
        runs.push(r);
        // Let the previous flood's windows close before the next one starts.
        std::thread::sleep(Duration::from_secs(2));
    }
    probe.signal(libc::SIGINT);
    probe.wait_timeout(Duration::from_secs(30));
    drop(collector);
    Ok((
        runs,
        format!("{DETECT_TOML}idle_advance_secs = {IDLE_ADVANCE_SECS} (collector [detect])"),
    ))
}

fn main() -> anyhow::Result<()> {
    install_signal_cleanup();
    let mut a = Args::parse();
    if a.smoke {
        a.runs = 1;
        a.packets = a.packets.min(2000);
    }
    let machine = Machine::describe();
    let (runs, settings) = measure(&a)?;
    let mut j: Vec<f64> = runs.iter().map(|r| r.jsonl.as_secs_f64()).collect();
    let mut c: Vec<f64> = runs.iter().map(|r| r.clickhouse.as_secs_f64()).collect();
    j.sort_by(f64::total_cmp);
    c.sort_by(f64::total_cmp);
    let mut s = String::new();
    writeln!(s, "# Detection latency: first flood packet → alert\n")?;
    writeln!(s, "{}", machine.markdown())?;
    writeln!(
        s,
        "Command: `target/release/detect_latency --runs {} --packets {} --pps {}{}`\n",
        a.runs,
        a.packets,
        a.pps,
        if a.smoke { " --smoke" } else { "" }
    )?;
    writeln!(
        s,
        "Each run: trafgen sends {} TCP SYNs at {} pps from one source to a new target over a \
         veth; the XDP probe (active timeout {PROBE_ACTIVE_SECS} s, idle timeout \
         {PROBE_IDLE_SECS} s) exports to the collector, whose live detection writes the \
         alert to its JSONL sink and to ClickHouse. Latency is measured from just before \
         trafgen starts to the alert's appearance (polled every 50 ms).\n",
        a.packets, a.pps
    )?;
    writeln!(s, "Detector settings:\n\n```toml\n{settings}\n```\n")?;
    writeln!(s, "| | p50 | p99 | min | max |\n|---|---|---|---|---|")?;
    for (name, v) in [("JSONL sink", &j), ("ClickHouse `alerts`", &c)] {
        writeln!(
            s,
            "| {name} | {:.2} s | {:.2} s | {:.2} s | {:.2} s |",
            percentile(v, 50.0),
            percentile(v, 99.0),
            v.first().copied().unwrap_or(f64::NAN),
            v.last().copied().unwrap_or(f64::NAN)
        )?;
    }
    writeln!(
        s,
        "\n| run | target | JSONL | ClickHouse |\n|---|---|---|---|"
    )?;
    for (i, r) in runs.iter().enumerate() {
        writeln!(
            s,
            "| {} | {} | {:.2} s | {:.2} s |",
            i + 1,
            r.target,
            r.jsonl.as_secs_f64(),
            r.clickhouse.as_secs_f64()
        )?;
    }
    writeln!(
        s,
        "\nWith {} runs, p99 is the slowest run. The detectors warn as soon as the flood's \
         open window crosses the threshold (`min_syn_pps` × `window_secs` SYNs, 1000 by \
         default), without waiting for the window to close: the latency is the time to send \
         that many SYNs at the flood's rate, plus the probe's idle timeout (a finished \
         flow's record is exported after it) and sweep interval, plus transport and \
         storage.",
        runs.len()
    )?;
    tidegate_bench::report::publish(s, a.smoke, Some(&a.out))?;
    Ok(())
}
