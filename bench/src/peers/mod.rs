//! Loss at the generator's rates over a veth: tidegate's XDP probe against the
//! libpcap-based flow exporters Debian ships (softflowd, nfpcapd, pmacctd, argus).
//!
//! One namespace pair joined by a veth; trafgen sends a fixed synthetic workload with an
//! exactly known truth ([`UdpWorkload`]: N packets over F UDP flows, N/F each) from the
//! sender's end at each offered rate (rate-limited, then flat out); for every rate each
//! tool in turn captures on the probed end, is stopped (each flushes every flow it
//! holds), and its output is counted: packets accounted / sent, flows accounted / true.
//! The veth's own drop counters say how much never reached any tool.

pub mod plot;
pub mod report;
pub mod tools;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;

pub use tools::{Counted, Tool};

use crate::machine::Machine;
use tidegate_testkit::net::{LinkCounters, UdpWorkload, VethPair};

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The workload every run sends.
    pub workload: UdpWorkload,
    /// Offered rates.
    pub rates: Vec<Rate>,
    /// Tools, in order (rotated per rate so no tool always runs first).
    pub tools: Vec<Tool>,
    /// Wait after the generator finished before a tool is stopped.
    pub drain: Duration,
}

impl Plan {
    /// The full run: 1M minimum-size frames over 10K flows at 50K, 100K, 200K, 300K pps,
    /// flat out from one CPU, and flat out from every CPU.
    pub fn full(tools: Vec<Tool>) -> Plan {
        Plan {
            workload: UdpWorkload::new(10_000, 1_000_000, 46),
            rates: vec![
                Rate::pps(50_000),
                Rate::pps(100_000),
                Rate::pps(200_000),
                Rate::pps(300_000),
                Rate::max(1),
                Rate::max(
                    std::thread::available_parallelism()
                        .map_or(1, |n| n.get() as u32)
                        .max(2),
                ),
            ],
            tools,
            drain: Duration::from_secs(2),
        }
    }

    /// CI: a few thousand packets at one modest rate.
    pub fn smoke(tools: Vec<Tool>) -> Plan {
        Plan {
            workload: UdpWorkload::new(100, 5_000, 46),
            rates: vec![Rate::pps(20_000)],
            tools,
            drain: Duration::from_millis(500),
        }
    }
}

/// How fast the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    /// Packets/s; `None` = flat out.
    pub pps: Option<u64>,
    /// trafgen processes (CPUs); each sends its share of the packets, cycling over all
    /// flows, so the per-flow truth stays exact when packets / cpus is a multiple of
    /// the flow count.
    pub cpus: u32,
}

impl Rate {
    /// `pps` packets/s from one CPU.
    pub fn pps(pps: u64) -> Rate {
        Rate {
            pps: Some(pps),
            cpus: 1,
        }
    }

    /// Flat out from `cpus` CPUs.
    pub fn max(cpus: u32) -> Rate {
        Rate {
            pps: None,
            cpus: cpus.max(1),
        }
    }

    /// `50K`, `max`, `max×2`.
    pub fn label(&self) -> String {
        let base = match self.pps {
            None => "max".into(),
            Some(r) if r >= 1000 && r % 1000 == 0 => format!("{}K", r / 1000),
            Some(r) => r.to_string(),
        };
        if self.cpus > 1 {
            format!("{base}×{}", self.cpus)
        } else {
            base
        }
    }

    /// Sort key: slowest first, flat out last, more CPUs later.
    pub fn order(&self) -> (u64, u32) {
        (self.pps.unwrap_or(u64::MAX), self.cpus)
    }

    /// Parses `50000`, `max`, `max*2`.
    pub fn parse(s: &str) -> Option<Rate> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("max") {
            let cpus = rest
                .trim_start_matches(['*', 'x', '×'])
                .parse()
                .unwrap_or(1);
            return Some(Rate::max(cpus));
        }
        s.parse().ok().map(Rate::pps)
    }
}

fn one() -> u32 {
    1
}

/// One tool at one offered rate.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// The tool.
    pub tool: Tool,
    /// Requested rate (packets/s); `None` = flat out.
    pub requested_pps: Option<u64>,
    /// trafgen processes (CPUs) sending.
    #[serde(default = "one")]
    pub generator_cpus: u32,
    /// Rate the sender's interface actually transmitted at (packets/s).
    pub offered_pps: f64,
    /// Frames trafgen generated (the workload's packet count).
    #[serde(default)]
    pub generated: u64,
    /// Frames the sender's veth end transmitted (on the wire).
    pub sent: u64,
    /// Frames the veth dropped before they reached the probed end (sender `tx_dropped`
    /// + probed `rx_dropped`).
    pub link_dropped: u64,
    /// Frames the probed end received.
    pub received: u64,
    /// What the tool reported; `None` if it failed (see `error`).
    pub counted: Option<Counted>,
    /// Peak RSS of the tool's main process.
    pub peak_rss: Option<u64>,
    /// Why the run failed.
    pub error: Option<String>,
}

impl Outcome {
    /// The rate this ran at.
    pub fn rate(&self) -> Rate {
        Rate {
            pps: self.requested_pps,
            cpus: self.generator_cpus,
        }
    }

    /// Packets accounted / sent.
    pub fn packet_ratio(&self) -> Option<f64> {
        let c = self.counted.as_ref()?;
        Some(c.packets as f64 / self.sent.max(1) as f64)
    }

    /// Loss in percent of sent packets (negative if the tool over-counted).
    pub fn loss_pct(&self) -> Option<f64> {
        self.packet_ratio().map(|r| (1.0 - r) * 100.0)
    }
}

/// A whole run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Results {
    /// Where.
    #[serde(skip)]
    pub machine: Option<Machine>,
    /// The command.
    pub command: String,
    /// Packets per run.
    pub packets: u64,
    /// True flows.
    pub flows: u32,
    /// Frame length without FCS.
    pub frame_len: u16,
    /// Every tool at every rate.
    pub outcomes: Vec<Outcome>,
    /// Tools skipped because they are not installed.
    pub missing: Vec<Tool>,
    /// Smoke run?
    pub smoke: bool,
}

/// Sends the workload once at `pps` while `tool` captures.
fn run_one(
    pair: &VethPair,
    mac: [u8; 6],
    plan: &Plan,
    tool: Tool,
    rate: Rate,
    dir: PathBuf,
    probe_bin: &Path,
) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&dir)?;
    let ctx = tools::Ctx {
        pair,
        dir: dir.clone(),
        probe_bin,
        probe_args: &[],
    };
    let w = plan.workload;
    let running = tools::Running::start(tool, &ctx)?;
    let (a0, b0) = pair.both_counters()?;
    let pps = rate.pps;
    let mut tg = w.spawn(&pair.ns_a, &pair.if_a, mac, pps, rate.cpus, &dir)?;
    // Sample the sender's tx counter from inside its namespace until trafgen exits: the
    // offered rate is the frames sent between the first and the last change.
    let budget = Duration::from_secs(30 + 3 * w.packets / pps.unwrap_or(100_000).max(1));
    let if_a = pair.if_a.clone();
    let sampled = VethPair::in_ns(&pair.ns_a, move || -> anyhow::Result<(f64, bool)> {
        let read = || -> Option<u64> {
            let t = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
            LinkCounters::parse(&t, &if_a).map(|c| c.tx_packets)
        };
        let start = read().unwrap_or(0);
        let deadline = Instant::now() + budget;
        let (mut first, mut last, mut last_v) = (None, None, start);
        loop {
            let now = Instant::now();
            let v = read().unwrap_or(last_v);
            if v != last_v {
                if first.is_none() {
                    first = Some((now, last_v));
                }
                last = Some((now, v));
                last_v = v;
            }
            if tg.exited().is_some() {
                break;
            }
            if now > deadline {
                tg.kill();
                return Ok((0.0, false));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let v = read().unwrap_or(last_v);
        if v != last_v {
            last = Some((Instant::now(), v));
        }
        let rate = match (first, last) {
            (Some((t0, v0)), Some((t1, v1))) if t1 > t0 => {
                (v1 - v0) as f64 / (t1 - t0).as_secs_f64()
            }
            _ => 0.0,
        };
        Ok((rate, true))
    })??;
    let (offered_pps, finished) = sampled;
    std::thread::sleep(plan.drain);
    let (a1, b1) = pair.both_counters()?;
    // Foreign frames (not counted) so libpcap readers get their last ring block.
    tidegate_testkit::net::trafgen::send_flush_trickle(&pair.ns_a, &pair.if_a, mac, 10, 50, &dir)?;
    std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (a1.since(&a0), b1.since(&b0));
    let peak_rss = running.peak_rss();
    let counted = running.stop(&ctx, &w);
    let mut error = None;
    if !finished {
        error = Some(format!("trafgen did not finish within {budget:?}"));
    }
    let counted = match counted {
        Ok(c) => Some(c),
        Err(e) => {
            error = Some(format!("{e:#}"));
            None
        }
    };
    Ok(Outcome {
        tool,
        requested_pps: pps,
        generator_cpus: rate.cpus,
        generated: w.packets,
        offered_pps,
        sent: a.tx_packets,
        link_dropped: a.tx_dropped + b.rx_dropped,
        received: b.rx_packets,
        counted,
        peak_rss,
        error,
    })
}

/// Runs every tool of `plan` at every rate; `progress` gets a line per run.
pub fn run(
    plan: &Plan,
    probe_bin: &Path,
    command: String,
    smoke: bool,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Results> {
    let machine = Machine::describe();
    let (tools, missing): (Vec<Tool>, Vec<Tool>) = plan.tools.iter().partition(|t| {
        if **t == Tool::Tidegate {
            probe_bin.is_file()
        } else {
            t.installed()
        }
    });
    anyhow::ensure!(
        tools::which("trafgen").is_some(),
        "trafgen is not installed (scripts/setup-bench.sh)"
    );
    let tmp = tempfile::Builder::new().prefix("tgb-peers-").tempdir()?;
    // TIDEGATE_BENCH_KEEP=1 keeps every tool's files (logs, outputs) for inspection.
    let keep = std::env::var_os("TIDEGATE_BENCH_KEEP").is_some();
    let tmp_path = tmp.path().to_path_buf();
    let pair = VethPair::new("peer")?;
    let mac = VethPair::mac(&pair.ns_b, &pair.if_b)?;
    let mut outcomes = Vec::new();
    for (ri, &rate) in plan.rates.iter().enumerate() {
        let mut order = tools.clone();
        let n = order.len().max(1);
        order.rotate_left(ri % n);
        for tool in order {
            let dir = tmp_path.join(format!("{}-{}", tool.name(), rate.label()));
            let o = run_one(&pair, mac, plan, tool, rate, dir, probe_bin)
                .with_context(|| format!("{} at {}", tool.name(), rate.label()));
            let o = match o {
                Ok(o) => o,
                Err(e) => Outcome {
                    tool,
                    requested_pps: rate.pps,
                    generator_cpus: rate.cpus,
                    generated: plan.workload.packets,
                    offered_pps: 0.0,
                    sent: 0,
                    link_dropped: 0,
                    received: 0,
                    counted: None,
                    peak_rss: None,
                    error: Some(format!("{e:#}")),
                },
            };
            progress(&report::progress_line(&o));
            outcomes.push(o);
        }
    }
    drop(pair);
    if keep {
        eprintln!("kept {}", tmp.keep().display());
    }
    Ok(Results {
        machine: Some(machine),
        command,
        packets: plan.workload.packets,
        flows: plan.workload.flows,
        frame_len: plan.workload.frame_len(),
        outcomes,
        missing,
        smoke,
    })
}
