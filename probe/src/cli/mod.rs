//! Command-line interface.

use clap::{Parser, Subcommand};

pub mod check_config;
pub mod replay;
pub mod run;

/// tidegate edge probe.
#[derive(Debug, Parser)]
#[command(name = "tidegate-probe", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub verbosity: tidegate_base::cli::Verbosity,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay pcap/pcapng files through the flow pipeline.
    Replay(replay::Args),
    /// Capture live on one or more interfaces (eBPF, or AF_PACKET with --backend afpacket).
    Run(run::Args),
    /// Validate a configuration file (and the collector's TLS files it names) and exit.
    CheckConfig(check_config::Args),
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Replay(a) => replay::main(a),
        Command::Run(a) => run::main(a),
        Command::CheckConfig(a) => check_config::main(a),
    }
}
