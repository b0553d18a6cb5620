//! `tidegate-collector gen-certs` (being written).

/// Arguments of `gen-certs`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `gen-certs`.
pub fn main(_a: Args) -> anyhow::Result<()> {
    anyhow::bail!("gen-certs is being written")
}
