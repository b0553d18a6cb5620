//! `tidegate-probe run`.

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface to capture on (quick start).
    #[arg(long)]
    pub iface: Vec<String>,
}

/// Runs `run`.
pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("run is not implemented yet")
}
