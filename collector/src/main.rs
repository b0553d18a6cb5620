//! `tidegate-collector`: receive flow records from probes, aggregate, store in ClickHouse.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tidegate_base::cli::run("tidegate-collector", args.verbosity, || cli::dispatch(args))
}
