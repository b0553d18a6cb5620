//! What every tidegate binary's `main` does: a `-v` flag, logging set up from it, and one
//! `program: error: …` line (exit 1) for a failure, with its causes.

use std::process::ExitCode;

/// The verbosity flag every subcommand takes (`#[command(flatten)]`).
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct Verbosity {
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// Sets up logging at `verbosity`, runs `f`, and turns its error into one line on stderr
/// naming `program`, with exit status 1.
pub fn run(
    program: &str,
    verbosity: Verbosity,
    f: impl FnOnce() -> anyhow::Result<()>,
) -> ExitCode {
    crate::logging::init(verbosity.verbose);
    match f() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
