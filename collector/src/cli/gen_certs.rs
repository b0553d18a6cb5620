//! `tidegate-collector gen-certs --out DIR --probe ID... [--collector-name NAME]
//! [--collector-ip IP]`: a CA plus collector and probe certificates for a quick start;
//! `--revoke ID` adds probes' certificates to the directory's `crl.pem`.

use std::{net::IpAddr, path::PathBuf};

use tidegate_collector::certs::{GenCertsOptions, generate, revoke};

/// Arguments of `gen-certs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the PEM files (created if missing). An existing CA there is reused.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A probe id to issue a client certificate for (CN = id); repeatable.
    #[arg(long = "probe", value_name = "ID")]
    pub probes: Vec<String>,
    /// Extra DNS name of the collector (the first one is also its CN); repeatable.
    /// localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long = "collector-name", value_name = "NAME")]
    pub collector_names: Vec<String>,
    /// Extra IP address of the collector; repeatable.
    #[arg(long = "collector-ip", value_name = "IP")]
    pub collector_ips: Vec<IpAddr>,
    /// Overwrite existing files, the CA included (invalidates every certificate it
    /// issued before).
    #[arg(long)]
    pub force: bool,
    /// Revoke this probe's current certificate: add it to `crl.pem` in the directory
    /// (signed by the CA; `[transport] crl` makes the collector refuse it); repeatable.
    #[arg(long = "revoke", value_name = "ID", conflicts_with_all = ["probes", "force"])]
    pub revoke: Vec<String>,
}

/// Runs `gen-certs`.
pub fn main(a: Args) -> anyhow::Result<()> {
    if !a.revoke.is_empty() {
        let (crl, serials) = revoke(&a.out, &a.revoke)?;
        for (id, s) in a.revoke.iter().zip(&serials) {
            println!("revoked {id} (serial {s})");
        }
        println!(
            "wrote {} — list it under [transport] crl and restart the collector",
            crl.display()
        );
        return Ok(());
    }
    let done = generate(&GenCertsOptions {
        out: a.out,
        probes: a.probes,
        collector_names: a.collector_names,
        collector_ips: a.collector_ips,
        force: a.force,
    })?;
    for p in &done.written {
        println!("wrote {}", p.display());
    }
    for p in &done.kept {
        println!("kept  {} (exists; --force overwrites)", p.display());
    }
    Ok(())
}
