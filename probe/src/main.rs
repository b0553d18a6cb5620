//! `tidegate-probe`: capture flows on the edge host's lines (eBPF or AF_PACKET) or replay
//! captures, and export flow records.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tidegate_base::logging::init(args.verbose);
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidegate-probe: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
