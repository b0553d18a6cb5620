//! `tidegate-probe`: capture flows on the edge host's lines (eBPF or AF_PACKET) or replay
//! captures, and export flow records.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tidegate_base::cli::run("tidegate-probe", args.verbosity, || cli::dispatch(args))
}
