//! Machine CPU per packet over a veth: tidegate against softflowd and nfpcapd, each over
//! its own reference run.
//!
//! trafgen sends the same workload (60-byte IPv4/UDP frames over many flows) at a fixed
//! rate from one end of a veth pair while a tool captures on the other end; the busy
//! time of every CPU (`/proc/stat`: everything but idle and iowait) from the start of
//! the send until the tool's output is complete, divided by the packets received, is the
//! CPU per packet of the whole machine — generator, kernel, tool. Two reference runs
//! take out what is not the tool's: *no tool* (the libpcap peers are compared with it)
//! and *return-only XDP* (the XDP program that only returns `XDP_PASS`, attached
//! natively: attaching any XDP program switches the veth to its NAPI receive path,
//! which costs by itself; tidegate is compared with it). Modes run in rotating order,
//! `--repeats` times; medians are reported.
//!
//! `target/release/veth_cpu [--smoke] [--out FILE]`

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use aya::programs::{Xdp, XdpMode, xdp::XdpLinkId};
use clap::Parser;
use tidegate_bench::{
    numbers::thousands,
    peers::tools::{Ctx, Running, Tool},
    xdp::load_for_test_runs,
};
use tidegate_common::maps::PROG_XDP_BASELINE;
use tidegate_testkit::net::{UdpWorkload, VethPair};

#[derive(Parser)]
#[command(
    name = "veth_cpu",
    about = "Machine CPU per packet over a veth, per tool"
)]
struct Args {
    /// Offered rate, packets/s.
    #[arg(long, default_value_t = 200_000)]
    rate: u64,
    /// Distinct flows (source × destination ports beyond 50 000).
    #[arg(long, default_value_t = 100_000)]
    flows: u32,
    /// Packets per run.
    #[arg(long, default_value_t = 2_000_000)]
    packets: u64,
    /// Runs of every mode.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The tidegate-probe binary [default: beside this program].
    #[arg(long)]
    probe_bin: Option<PathBuf>,
    /// An extra argument for `tidegate-probe run` in both tidegate modes (repeatable,
    /// e.g. `--probe-arg=--timestamps --probe-arg=precise`).
    #[arg(long = "probe-arg", allow_hyphen_values = true)]
    probe_args: Vec<String>,
    /// Seconds-long run (few packets, one repeat); prints, writes a file only with --out.
    #[arg(long)]
    smoke: bool,
    /// Markdown results file [full run default: bench/results/veth_cpu.md].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What captures during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Nothing attached.
    None,
    /// `tidegate_xdp_baseline` attached natively (returns XDP_PASS).
    XdpReturn,
    /// A flow exporter.
    Tool(Tool),
    /// tidegate with its kernel table sized for the workload's flows (`--flow-entries`)
    /// instead of the default 1 M slots (128 MiB).
    TidegateSized,
    /// tidegate with the millisecond tick clock (`--timestamps tick`: a probe thread
    /// publishes the time 1 000 times a second) instead of the default coarse clock.
    TidegateTick,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::None => "no tool",
            Mode::XdpReturn => "return-only XDP",
            Mode::Tool(t) => t.name(),
            Mode::TidegateSized => "tidegate, table sized for the flows",
            Mode::TidegateTick => "tidegate, tick clock",
        }
    }

    /// The reference run a tool is compared with.
    fn reference(self) -> Option<Mode> {
        match self {
            Mode::Tool(Tool::Tidegate) | Mode::TidegateSized | Mode::TidegateTick => {
                Some(Mode::XdpReturn)
            }
            Mode::Tool(_) => Some(Mode::None),
            _ => None,
        }
    }
}

/// Busy jiffies of all CPUs (`/proc/stat` line `cpu`: all but idle and iowait).
fn busy_ticks() -> anyhow::Result<u64> {
    let t = std::fs::read_to_string("/proc/stat")?;
    let l = t.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    anyhow::ensure!(v.len() >= 8, "short cpu line in /proc/stat: {l}");
    // user nice system idle iowait irq softirq steal (guest is inside user).
    Ok(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

fn tick_ns() -> f64 {
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    1e9 / hz as f64
}

/// The return-only program attached natively to the probed end.
struct XdpReturn {
    _ebpf: aya::Ebpf,
    _link: XdpLinkId,
}

fn attach_return_only(pair: &VethPair) -> anyhow::Result<XdpReturn> {
    let iface = pair.if_b.clone();
    VethPair::in_ns(&pair.ns_b, move || -> anyhow::Result<XdpReturn> {
        let mut ebpf = load_for_test_runs(1024)?;
        let p: &mut Xdp = ebpf
            .program_mut(PROG_XDP_BASELINE)
            .context("baseline program")?
            .try_into()?;
        let link = p.attach(&iface, XdpMode::Driver)?;
        Ok(XdpReturn {
            _ebpf: ebpf,
            _link: link,
        })
    })?
}

/// One run: busy ns per received packet, and whether the tool (if any) accounted every
/// packet sent.
struct Run {
    ns_per_pkt: f64,
    received: u64,
    exact: Option<bool>,
}

fn run_one(
    pair: &VethPair,
    mac: [u8; 6],
    w: &UdpWorkload,
    mode: Mode,
    rate: u64,
    dir: PathBuf,
    probe: (&std::path::Path, &[String]),
) -> anyhow::Result<Run> {
    let (probe_bin, probe_args) = probe;
    std::fs::create_dir_all(&dir)?;
    let mut args = probe_args.to_vec();
    match mode {
        Mode::TidegateSized => args.extend(["--flow-entries".to_string(), w.flows.to_string()]),
        Mode::TidegateTick => args.extend(["--timestamps".to_string(), "tick".to_string()]),
        _ => {}
    }
    let ctx = Ctx {
        pair,
        dir: dir.clone(),
        probe_bin,
        probe_args: &args,
    };
    let mut xdp = None;
    let mut running = None;
    match mode {
        Mode::None => {}
        Mode::XdpReturn => xdp = Some(attach_return_only(pair)?),
        Mode::Tool(t) => running = Some(Running::start(t, &ctx)?),
        Mode::TidegateSized | Mode::TidegateTick => {
            running = Some(Running::start(Tool::Tidegate, &ctx)?)
        }
    }
    // Let the tool settle (start-up work is not the packets').
    std::thread::sleep(Duration::from_millis(500));
    let (_, b0) = pair.both_counters()?;
    let t0 = busy_ticks()?;
    let mut tg = w.spawn(&pair.ns_a, &pair.if_a, mac, Some(rate), 1, &dir)?;
    let deadline = Instant::now() + Duration::from_secs(60 + 2 * w.packets / rate.max(1));
    while tg.exited().is_none() {
        anyhow::ensure!(Instant::now() < deadline, "trafgen did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Up to one sweep for the tool to take in the last packets.
    std::thread::sleep(Duration::from_millis(1_100));
    let t1 = busy_ticks()?;
    let (_, b1) = pair.both_counters()?;
    let received = b1.since(&b0).rx_packets;
    let exact = match running {
        Some(r) => {
            let c = r.stop(&ctx, w)?;
            Some(c.packets == received)
        }
        None => None,
    };
    drop(xdp);
    Ok(Run {
        ns_per_pkt: (t1 - t0) as f64 * tick_ns() / received.max(1) as f64,
        received,
        exact,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn main() -> anyhow::Result<()> {
    tidegate_testkit::net::install_signal_cleanup();
    let mut a = Args::parse();
    if a.smoke {
        a.packets = a.packets.min(100_000);
        a.repeats = 1;
        a.rate = a.rate.min(100_000);
    }
    let probe_bin = match &a.probe_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("tidegate-probe"),
    };
    anyhow::ensure!(
        probe_bin.is_file(),
        "{} not found (cargo build --release -p tidegate-probe)",
        probe_bin.display()
    );
    let w = UdpWorkload::new(a.flows, a.packets, 46);
    let mut modes = vec![
        Mode::None,
        Mode::XdpReturn,
        Mode::Tool(Tool::Tidegate),
        Mode::TidegateSized,
        Mode::TidegateTick,
    ];
    let mut missing = Vec::new();
    for t in [Tool::Softflowd, Tool::Nfpcapd] {
        if t.installed() {
            modes.push(Mode::Tool(t));
        } else {
            missing.push(t.name());
        }
    }
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("tgb-vethcpu-").tempdir()?;
    let pair = VethPair::new("vcpu")?;
    let mac = VethPair::mac(&pair.ns_b, &pair.if_b)?;
    let mut runs: Vec<(Mode, Run)> = Vec::new();
    for rep in 0..a.repeats {
        let mut order = modes.clone();
        order.rotate_left(rep % modes.len());
        for m in order {
            let dir = tmp
                .path()
                .join(format!("{}-{rep}", m.name().replace(' ', "_")));
            let r = run_one(&pair, mac, &w, m, a.rate, dir, (&probe_bin, &a.probe_args))
                .with_context(|| format!("{} (run {})", m.name(), rep + 1))?;
            eprintln!(
                "{}: {:.0} ns/pkt of machine CPU, {} packets{}",
                m.name(),
                r.ns_per_pkt,
                r.received,
                match r.exact {
                    Some(true) => ", all accounted",
                    Some(false) => ", NOT all accounted",
                    None => "",
                }
            );
            runs.push((m, r));
        }
    }
    drop(pair);
    let med = |m: Mode| {
        let mut v: Vec<f64> = runs
            .iter()
            .filter(|(x, _)| *x == m)
            .map(|(_, r)| r.ns_per_pkt)
            .collect();
        median(&mut v)
    };

    let mut s = String::new();
    s.push_str(&tidegate_bench::report::heading(
        "Machine CPU per packet over a veth",
    ));
    writeln!(s, "Took {:.0} s.\n", started.elapsed().as_secs_f64())?;
    writeln!(
        s,
        "Workload: trafgen sends {} frames of 60 bytes (IPv4/UDP) over {} flows at {} packets/s from \
         one end of a veth pair in its own network namespace; the tool captures on the other end \
         (tidegate: `tidegate-probe run --iface IF --json`, defaults — XDP native, the coarse clock, the shared flow \
         table, 1 s sweeps; the peers as in results/peers.md). *Machine CPU per packet* = busy time \
         of every CPU from `/proc/stat` (user, nice, system, irq, softirq, steal) from the start of \
         the send to 1.1 s after its end, divided by the packets the probed end received: generator, \
         kernel and tool together. *Over reference*: minus the median of the reference run — no tool \
         for the libpcap peers; the return-only XDP program for tidegate, because attaching any XDP \
         program switches the veth to its NAPI receive path, which costs by itself (the \
         *return-only XDP* row minus the *no tool* row). Median of {} runs per mode, modes in \
         rotating order. *tidegate, table sized for the flows* adds `--flow-entries {}` (the \
         workload's flows: 1.5 slots each) to the defaults' 1 M slots (128 MiB): the same flows' slots then \
         lie on ~7× fewer pages, so the program's flow-table access per packet (flows visited round \
         robin, the worst case for caches) should miss the TLB less often. *tidegate, tick clock* adds `--timestamps tick`: a probe \
         thread publishes the time every millisecond instead of the program reading the kernel's \
         coarse clock (the default).\n",
        thousands(&w.packets.to_string()),
        thousands(&w.flows.to_string()),
        thousands(&a.rate.to_string()),
        a.repeats,
        w.flows
    )?;
    if !a.probe_args.is_empty() {
        writeln!(
            s,
            "Extra arguments to `tidegate-probe run` in both tidegate modes: `{}`.\n",
            a.probe_args.join(" ")
        )?;
    }
    writeln!(
        s,
        "| mode | machine CPU ns/pkt (median) | runs (ns/pkt) | reference | over reference ns/pkt | every packet accounted |"
    )?;
    writeln!(s, "|---|--:|---|---|--:|---|")?;
    let mut over = Vec::new();
    for &m in &modes {
        let all: Vec<String> = runs
            .iter()
            .filter(|(x, _)| *x == m)
            .map(|(_, r)| format!("{:.0}", r.ns_per_pkt))
            .collect();
        let exact: Vec<bool> = runs
            .iter()
            .filter(|(x, _)| *x == m)
            .filter_map(|(_, r)| r.exact)
            .collect();
        let (reference, o) = match m.reference() {
            Some(r) => {
                let o = med(m) - med(r);
                over.push((m, o));
                (r.name(), format!("{o:.0}"))
            }
            None => ("", String::new()),
        };
        writeln!(
            s,
            "| {} | {:.0} | {} | {reference} | {o} | {} |",
            m.name(),
            med(m),
            all.join(", "),
            if exact.is_empty() {
                "—"
            } else if exact.iter().all(|e| *e) {
                "yes"
            } else {
                "**no**"
            }
        )?;
    }
    let peers: Vec<_> = over
        .iter()
        .filter(|(m, o)| matches!(m, Mode::Tool(t) if *t != Tool::Tidegate) && *o > 0.0)
        .collect();
    for (mode, label) in [
        (Mode::Tool(Tool::Tidegate), ""),
        (Mode::TidegateSized, " (table sized for the flows)"),
        (Mode::TidegateTick, " (tick clock)"),
    ] {
        let Some((_, tg)) = over.iter().find(|(m, _)| *m == mode) else {
            continue;
        };
        writeln!(s)?;
        for (m, o) in &peers {
            writeln!(
                s,
                "- tidegate's CPU per packet{label} over its reference is **{:.2}×** {}'s over its reference.",
                tg / o,
                m.name()
            )?;
        }
    }
    if !missing.is_empty() {
        writeln!(s, "\nNot installed, skipped: {}.", missing.join(", "))?;
    }
    let out = a.out.clone().or_else(|| {
        (!a.smoke).then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/veth_cpu.md"))
    });
    tidegate_bench::report::publish(s, a.smoke, out.as_deref())?;
    Ok(())
}
