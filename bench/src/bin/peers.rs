//! Loss at the generator's rates over a veth: tidegate's XDP probe vs the libpcap flow
//! exporters from Debian (softflowd, nfpcapd, pmacctd, argus), each on the same replay.
//! Needs root (namespaces, XDP) and `scripts/setup-bench.sh`.
//!
//! ```sh
//! target/release/peers            # writes bench/results/peers.md, .json and loss_vs_rate.png
//! target/release/peers --smoke    # seconds; a few thousand packets, one rate, tools present
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tidegate_bench::peers::{self, Plan, Tool};

#[derive(Parser)]
#[command(
    name = "peers",
    about = "Loss vs offered rate: tidegate vs libpcap flow exporters"
)]
struct Args {
    /// A few thousand packets at one rate with the tools that are installed; prints the
    /// report and writes files only with --out.
    #[arg(long)]
    smoke: bool,
    /// Offered rates in packets/s, comma-separated; `max` = flat out from one CPU,
    /// `max*N` = flat out from N trafgen processes.
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<String>>,
    /// Packets per run (rounded up to a multiple of --flows).
    #[arg(long)]
    packets: Option<u64>,
    /// Distinct flows in the workload (≤ 50 000).
    #[arg(long)]
    flows: Option<u32>,
    /// Tools to run, comma-separated (tidegate, softflowd, nfpcapd, pmacctd, argus).
    #[arg(long, value_delimiter = ',')]
    tools: Option<Vec<String>>,
    /// The tidegate-probe binary [default: beside this program].
    #[arg(long)]
    probe_bin: Option<PathBuf>,
    /// Markdown results file [full run default: bench/results/peers.md]; the JSON
    /// results and the PNG plot are written beside it.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tidegate_testkit::net::install_signal_cleanup();
    let a = Args::parse();
    let tools = match &a.tools {
        Some(v) => v
            .iter()
            .map(|s| Tool::parse(s.trim()).with_context(|| format!("unknown tool {s:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Tool::ALL.to_vec(),
    };
    let mut plan = if a.smoke {
        Plan::smoke(tools)
    } else {
        Plan::full(tools)
    };
    if let Some(r) = &a.rates {
        plan.rates = r
            .iter()
            .map(|s| peers::Rate::parse(s).with_context(|| format!("rate {s:?}")))
            .collect::<anyhow::Result<_>>()?;
    }
    if a.packets.is_some() || a.flows.is_some() {
        plan.workload = tidegate_testkit::net::UdpWorkload::new(
            a.flows.unwrap_or(plan.workload.flows),
            a.packets.unwrap_or(plan.workload.packets),
            plan.workload.ip_len,
        );
    }
    let probe_bin = a.probe_bin.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("tidegate-probe")))
            .unwrap_or_else(|| PathBuf::from("tidegate-probe"))
    });
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let results = peers::run(&plan, &probe_bin, command, a.smoke, |l| eprintln!("{l}"))?;
    let md = peers::report::markdown(&results);
    let out = a.out.clone().or_else(|| {
        (!a.smoke).then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/peers.md"))
    });
    match out {
        Some(path) => {
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, &md)?;
            std::fs::write(
                path.with_extension("json"),
                serde_json::to_string_pretty(&results)?,
            )?;
            let png = dir.join("loss_vs_rate.png");
            match peers::plot::loss_vs_rate(&results, &png) {
                Ok(()) => eprintln!("wrote {}", png.display()),
                Err(e) => eprintln!("peers: no plot: {e:#}"),
            }
            eprintln!("wrote {}", path.display());
        }
        None => print!("{md}"),
    }
    Ok(())
}
