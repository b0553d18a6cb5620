//! NetFlow/IPFIX ingest: flow records per CPU-second and loss, tidegate's collector
//! listener (decode, map, batch, spool with fsync) against nfcapd (nfdump 1.7, decode
//! and write nfcapd files), on the same replayed datagrams, in one run.
//!
//! The datagrams are real exports: softflowd (Debian) replaying corpus captures as
//! NetFlow v5, v9 and IPFIX. A sender process replays them over loopback at a paced rate
//! (records/s offered); each receiver gets the same sequence. Records taken are counted
//! where each receiver keeps them (tidegate: records made durable in its spool; nfcapd:
//! flows in its files, read back by `nfdump -I`) and compared with the records sent.
//! CPU is the receiver's own user + system time (all its threads).
//!
//! `cargo build --release -p tidegate-bench && target/release/netflow_ingest [--smoke]`

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use tidegate_collector::{
    ingest::{Exporters, Ingest, IngestMetrics},
    netflow::{Decoder, NetflowConfig, NetflowMetrics, listener},
    spool::{Spool, SpoolConfig},
};

#[derive(Parser)]
struct Args {
    /// Corpus pcap directory (default: `$TIDEGATE_CORPUS/pcap`, else
    /// `../shared/corpus/pcap` beside the repository).
    #[arg(long, default_value_os_t = tidegate_bench::aggregate::default_corpus())]
    corpus: PathBuf,
    /// Offered rates, records per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000,400000,800000,1200000,1600000"
    )]
    rates: Vec<u64>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Seconds the decoder alone is timed (0: skip).
    #[arg(long, default_value_t = 5)]
    decode_secs: u64,
    /// Seconds-long run for CI; asserts nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file.
    #[arg(long, default_value = "bench/results/netflow_ingest.md")]
    out: PathBuf,
    /// Internal: be the sender (datagram file, target, records/s, records per pass, secs).
    #[arg(long, hide = true, num_args = 5)]
    send: Option<Vec<String>>,
}

/// Captures softflowd exports, each in v5, v9 and IPFIX.
const CAPTURES: [&str; 4] = [
    "stopddos-pkt.TCP.synflood.spoofed.pcap",
    "stopddos-amp.UDP.isakmp.pcap",
    "ndpi-1kxun.pcap",
    "ndpi-webex.pcap",
];

/// Runs softflowd over each capture and version, collecting every datagram it sends.
fn datagrams(corpus: &Path, captures: &[&str]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut all = Vec::new();
    for cap in captures {
        for v in ["5", "9", "10"] {
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            // Big enough for a whole export burst.
            set_rcvbuf(&sock, 64 << 20);
            let port = sock.local_addr()?.port();
            let status = Command::new("softflowd")
                .args(["-d", "-a", "-c", "none", "-r"])
                .arg(corpus.join(cap))
                .args(["-n", &format!("127.0.0.1:{port}"), "-v", v, "-m", "100000"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("running softflowd (scripts/setup.sh installs it)")?;
            if !status.success() {
                bail!("softflowd -v {v} on {cap}: {status}");
            }
            sock.set_read_timeout(Some(Duration::from_millis(300)))?;
            let mut buf = vec![0u8; 65_535];
            while let Ok(n) = sock.recv(&mut buf) {
                all.push(buf[..n].to_vec());
            }
        }
    }
    Ok(all)
}

fn set_rcvbuf(sock: &UdpSocket, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on our socket with a live c_int.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            4,
        );
    }
}

/// Records per pass over `dgrams`, as a receiver that has every template sees them (a
/// second pass: the first one teaches the templates).
fn records_per_pass(dgrams: &[Vec<u8>]) -> u64 {
    let mut d = Decoder::new(Arc::new(NetflowConfig::accepting_any())).expect("decoder");
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for g in dgrams {
        d.decode(from, g, tidegate_base::clock::wall_ns());
    }
    dgrams
        .iter()
        .map(|g| {
            d.decode(from, g, tidegate_base::clock::wall_ns())
                .records
                .len() as u64
        })
        .sum()
}

fn write_datagrams(path: &Path, dgrams: &[Vec<u8>]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for d in dgrams {
        f.write_all(&(d.len() as u32).to_be_bytes())?;
        f.write_all(d)?;
    }
    f.flush()
}

fn read_datagrams(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let n = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(bytes[at + 4..at + 4 + n].to_vec());
        at += 4 + n;
    }
    Ok(out)
}

/// The sender: replays the datagrams (the first pass unpaced, to teach templates), then
/// paced passes for `secs`; prints the records it sent after the first pass.
fn send(args: &[String]) -> anyhow::Result<()> {
    let dgrams = read_datagrams(Path::new(&args[0]))?;
    let to: SocketAddr = args[1].parse()?;
    let rate: f64 = args[2].parse()?;
    let per_pass: u64 = args[3].parse()?;
    let secs: u64 = args[4].parse()?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(to)?;
    for d in &dgrams {
        sock.send(d)?;
        std::thread::sleep(Duration::from_micros(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    // Paced: records per datagram averaged over the pass.
    let per_dgram = per_pass as f64 / dgrams.len() as f64;
    let gap = Duration::from_secs_f64(per_dgram / rate);
    let start = Instant::now();
    let mut sent = 0u64;
    let passes = 'outer: loop {
        for d in &dgrams {
            let due = start + gap.mul_f64(sent as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let _ = sock.send(d);
            sent += 1;
            if start.elapsed() >= Duration::from_secs(secs)
                && sent.is_multiple_of(dgrams.len() as u64)
            {
                break 'outer sent / dgrams.len() as u64;
            }
        }
    };
    println!("{} {}", passes * per_pass, start.elapsed().as_secs_f64());
    Ok(())
}

struct Run {
    offered: u64,
    sent: u64,
    taken: u64,
    cpu: Duration,
    wall: f64,
}

fn spawn_sender(
    file: &Path,
    to: SocketAddr,
    rate: u64,
    per_pass: u64,
    secs: u64,
) -> anyhow::Result<std::process::Child> {
    Ok(Command::new(std::env::current_exe()?)
        .arg("--send")
        .arg(file)
        .args([
            to.to_string(),
            rate.to_string(),
            per_pass.to_string(),
            secs.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?)
}

fn sender_result(child: std::process::Child) -> anyhow::Result<(u64, f64)> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    Ok((
        f.next().context("sender output")?.parse()?,
        f.next().context("sender time")?.parse()?,
    ))
}

/// tidegate's listener on one core (a current-thread runtime), spooling into `dir`.
fn run_tidegate(
    file: &Path,
    per_pass: u64,
    rate: u64,
    secs: u64,
    dir: &Path,
) -> anyhow::Result<Run> {
    let _ = std::fs::remove_dir_all(dir);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let addr = sock.local_addr()?;
    drop(sock);
    let cfg = Arc::new(NetflowConfig {
        listen: vec![addr],
        flush_interval: Duration::from_millis(200),
        recv_buffer_bytes: 64 << 20,
        ..NetflowConfig::accepting_any()
    });
    let metrics = NetflowMetrics::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (cfg2, m2) = (cfg.clone(), metrics.clone());
    let dir2 = dir.to_path_buf();
    let rt = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let (spool, _reader) = Spool::open(SpoolConfig {
                dir: dir2,
                max_bytes: 8 << 30,
                ..SpoolConfig::default()
            })?;
            let ingest = Arc::new(Exporters(Arc::new(Ingest::new(
                spool,
                IngestMetrics::default(),
            ))));
            let sockets = listener::bind(&cfg2)?;
            listener::serve(cfg2, sockets, ingest, m2, stop_rx).await
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = tidegate_bench::procfs::cpu_time();
    let sender = spawn_sender(file, addr, rate, per_pass, secs)?;
    let (sent, wall) = sender_result(sender)?;
    std::thread::sleep(Duration::from_millis(800));
    let cpu = tidegate_bench::procfs::cpu_time() - cpu0;
    let _ = stop_tx.send(true);
    rt.join()
        .map_err(|_| anyhow::anyhow!("listener thread panicked"))??;
    let text = {
        let mut r = prometheus_client::registry::Registry::default();
        metrics.register(&mut r);
        tidegate_base::metrics::render(&r)
    };
    let taken: u64 = text
        .lines()
        .filter(|l| l.starts_with("netflow_records_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    // The first pass (templates) is not in `sent`.
    let taken = taken.saturating_sub(per_pass);
    Ok(Run {
        offered: rate,
        sent,
        taken,
        cpu,
        wall,
    })
}

/// CPU time of every thread of process `pid` (on-CPU nanoseconds from
/// /proc/<pid>/task/*/schedstat: finer than the clock ticks of /proc/<pid>/stat).
fn proc_cpu(pid: u32) -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// nfcapd receiving the same sequence; its flows counted with `nfdump -I`.
fn run_nfcapd(file: &Path, per_pass: u64, rate: u64, secs: u64, dir: &Path) -> anyhow::Result<Run> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new("nfcapd")
        .args([
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-B",
            "67108864",
            "-t",
            "3600",
            "-w",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running nfcapd (scripts/setup.sh installs nfdump)")?;
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = proc_cpu(child.id());
    let sender = spawn_sender(
        file,
        SocketAddr::from(([127, 0, 0, 1], port)),
        rate,
        per_pass,
        secs,
    )?;
    let (sent, wall) = sender_result(sender)?;
    std::thread::sleep(Duration::from_millis(800));
    let cpu = proc_cpu(child.id()) - cpu0;
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait()?;
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .arg("-I")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let flows: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Flows:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("nfdump -I said: {text}"))?;
    Ok(Run {
        offered: rate,
        sent,
        taken: flows.saturating_sub(per_pass),
        cpu,
        wall,
    })
}

fn row(name: &str, r: &Run) -> String {
    let loss = if r.sent == 0 {
        0.0
    } else {
        100.0 * (r.sent.saturating_sub(r.taken)) as f64 / r.sent as f64
    };
    let per_cpu = r.taken as f64 / r.cpu.as_secs_f64().max(1e-9);
    format!(
        "| {name} | {} | {:.0} | {} | {} | {loss:.2} % | {:.2} | {:.0} | {:.2} |\n",
        r.offered,
        r.sent as f64 / r.wall.max(1e-9),
        r.sent,
        r.taken,
        r.cpu.as_secs_f64(),
        per_cpu,
        1e6 * r.cpu.as_secs_f64() / (r.taken.max(1)) as f64,
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(s) = &args.send {
        return send(s);
    }
    if args.smoke {
        args.rates = vec![20_000];
        args.secs = 1;
    }
    let captures: &[&str] = if args.smoke {
        &CAPTURES[2..3]
    } else {
        &CAPTURES
    };
    let dgrams = datagrams(&args.corpus, captures)?;
    let per_pass = records_per_pass(&dgrams);
    let work = tempfile::tempdir()?;
    let file = work.path().join("datagrams.bin");
    write_datagrams(&file, &dgrams)?;
    let bytes: usize = dgrams.iter().map(Vec::len).sum();

    let mut text = tidegate_bench::report::heading("NetFlow/IPFIX ingest: tidegate vs nfcapd");
    let _ = writeln!(
        text,
        "Datagrams: {} real exports by softflowd 1.1.0 of {} corpus captures (each as NetFlow v5, v9 \
         and IPFIX), {} records, {:.1} MB per pass; replayed over loopback by a separate sender \
         process, paced to the offered rate, {} s per measurement, after one unpaced pass that \
         teaches the templates (not counted).\n\n\
         tidegate: the collector's listener (`netflow::listener`) on a current-thread runtime — \
         decode (netflow_parser), map to records, batch per exporter, encode and append to the \
         spool with fsync (the durability the pipeline reads from). nfcapd (nfdump 1.7): decode \
         and write its flow files. Both with a 64 MiB receive buffer. Taken = records durable in \
         tidegate's spool / flows in nfcapd's files (`nfdump -I`). CPU = the receiver's user + \
         system time, all threads. Loopback on {} cores shared with the sender.\n",
        dgrams.len(),
        captures.len(),
        per_pass,
        bytes as f64 / 1e6,
        args.secs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    );
    text.push_str("| receiver | offered rec/s | sent rec/s | sent | taken | loss | CPU s | records per CPU-s | CPU µs/record |\n|---|---|---|---|---|---|---|---|---|\n");
    // Where tidegate's time goes: the decoder alone, in process (no socket, no spool).
    let decode_ns = {
        let mut d = Decoder::new(Arc::new(NetflowConfig::accepting_any())).expect("decoder");
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for g in &dgrams {
            d.decode(from, g, tidegate_base::clock::wall_ns());
        }
        let (t0, mut n) = (Instant::now(), 0u64);
        while t0.elapsed() < Duration::from_secs(if args.smoke { 1 } else { args.decode_secs }) {
            for g in &dgrams {
                n += d
                    .decode(from, g, tidegate_base::clock::wall_ns())
                    .records
                    .len() as u64;
            }
        }
        t0.elapsed().as_nanos() as f64 / n.max(1) as f64
    };
    let mut best = (0.0f64, 0.0f64);
    let mut lossless = (0u64, 0u64);
    for &rate in &args.rates {
        let t = run_tidegate(&file, per_pass, rate, args.secs, &work.path().join("spool"))?;
        let n = run_nfcapd(
            &file,
            per_pass,
            rate,
            args.secs,
            &work.path().join("nfcapd"),
        )?;
        text.push_str(&row("tidegate", &t));
        text.push_str(&row("nfcapd", &n));
        eprint!("{}{}", row("tidegate", &t), row("nfcapd", &n));
        let eff = |r: &Run| r.taken as f64 / r.cpu.as_secs_f64().max(1e-9);
        if t.taken >= t.sent {
            best.0 = best.0.max(eff(&t));
            lossless.0 = lossless.0.max(rate);
        }
        if n.taken >= n.sent {
            best.1 = best.1.max(eff(&n));
            lossless.1 = lossless.1.max(rate);
        }
    }
    let _ = writeln!(
        text,
        "\nThe decoder alone (netflow_parser, then mapping to records), in process on one core: \
         {decode_ns:.0} ns per record."
    );
    let _ = writeln!(
        text,
        "\nRecords per CPU-second at rates taken without loss: tidegate {:.0}, nfcapd {:.0} — {:.2}× nfcapd.",
        best.0,
        best.1,
        if best.1 > 0.0 { best.0 / best.1 } else { 0.0 }
    );
    let _ = writeln!(
        text,
        "\nHighest offered rate taken without loss: tidegate {} rec/s, nfcapd {} rec/s (of those offered).\n\n\
         Reading it: the goal of this benchmark (≥ 5× nfcapd per core) is not met. The maintained \
         parser the collector uses (netflow_parser) spends the decode time above per record — by \
         itself more than nfcapd's whole per-record cost — building a typed value per field (an \
         allocation per record and per template field) before tidegate maps the values to its \
         record; the spool's encode, zstd and fsync come on top. Closing the gap would take a \
         template-compiled hot path (field offsets resolved once per template, counters read \
         straight from the datagram), batched receives (recvmmsg) and a spool that appends the \
         datagrams' records without re-encoding — measured per core here, not assumed.",
        lossless.0, lossless.1
    );
    tidegate_bench::report::publish(text, args.smoke, Some(&args.out))?;
    Ok(())
}
