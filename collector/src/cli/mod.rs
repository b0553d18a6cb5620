//! Command-line interface.

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod check_config;
pub mod evidence;
pub mod gen_certs;
pub mod hash_password;
pub mod run;

/// tidegate collector.
#[derive(Debug, Parser)]
#[command(name = "tidegate-collector", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub verbosity: tidegate_base::cli::Verbosity,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive flows from probes and store them (see `--config`).
    Run(run::Args),
    /// Run enrichment, policy and the anomaly detectors over flow records (JSON lines on
    /// stdin, e.g. from `tidegate-probe replay FILE --json`) and print alerts and
    /// violations as JSON lines.
    Analyze(analyze::Args),
    /// Validate a configuration file and exit.
    CheckConfig(check_config::Args),
    /// Generate a CA plus collector and probe certificates for a quick start.
    GenCerts(gen_certs::Args),
    /// The evidence log: generate its signing key, verify it, export a finding's bundle.
    Evidence(evidence::Args),
    /// Hash a console password (read from stdin) for `[[api.user]] password_hash`.
    HashPassword(hash_password::Args),
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => run::main(a),
        Command::CheckConfig(a) => check_config::main(a),
        Command::Analyze(a) => analyze::main(a),
        Command::GenCerts(a) => gen_certs::main(a),
        Command::Evidence(a) => evidence::main(a),
        Command::HashPassword(a) => hash_password::main(a),
    }
}
