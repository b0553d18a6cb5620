//! `tidegate-collector`: receive flow records from probes, aggregate, store in ClickHouse.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidegate-collector: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
