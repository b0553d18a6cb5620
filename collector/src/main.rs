//! `tidegate-collector`: receive flow records from probes, aggregate, store in ClickHouse.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tidegate_base::logging::init(args.verbose);
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidegate-collector: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
