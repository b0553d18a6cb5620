//! `tidegate-probe replay FILE... --json`.

/// Arguments of `replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// pcap or pcapng files.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

/// Runs `replay`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("replay is not implemented yet")
}
