//! `tidegate-collector evidence keygen | verify | bundle`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;
use tidegate_collector::config::CollectorConfig;
use tidegate_evidence::{EvidenceLog, SigningKeyFile, bundle::Bundle, key, verify_dir};

/// Arguments of `evidence`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Generate the log's Ed25519 signing key (PKCS#8 PEM, mode 0600) and its public key
    /// beside it (FILE.pub.pem, for auditors).
    Keygen {
        /// Where to write the private key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a whole log: every entry, every checkpoint signature, consistency between
    /// checkpoints. Names the first bad entry by index and time; exit 1 when the log does
    /// not verify.
    Verify {
        /// The collector's configuration (its `[evidence]` dir and key).
        #[arg(long, short = 'c', conflicts_with_all = ["dir", "public_key"])]
        config: Option<PathBuf>,
        /// The log directory (with --public-key: verify a copy without the private key).
        #[arg(long, requires = "public_key")]
        dir: Option<PathBuf>,
        /// The log's public key (PEM, as `keygen` wrote it).
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Also recompute every `flows_digest` entry from the configured ClickHouse: a
        /// flows row changed or deleted after it was stored is named by the entry that
        /// covers it (rows past `retention_days` are expected to be gone and skipped).
        #[arg(long, requires = "config")]
        flows: bool,
        /// Also check each checkpoint's RFC 3161 time stamp (timestamps.jsonl) with
        /// `openssl ts -verify` against this CA (the time-stamp authority's).
        #[arg(long)]
        tsa_ca: Option<PathBuf>,
    },
    /// Write the evidence bundle of one alert or violation (its logged states, their
    /// inclusion proofs, a signed checkpoint and the public key) as JSON; check it with
    /// dashboards/evidence/verify_bundle.py.
    Bundle {
        /// The collector's configuration.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The alert or violation id.
        #[arg(long)]
        id: String,
        /// Prove against checkpoint number K (0 = oldest) instead of a new one.
        #[arg(long)]
        checkpoint: Option<usize>,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn evidence_config(
    path: &std::path::Path,
) -> anyhow::Result<tidegate_collector::evidence::EvidenceConfig> {
    let cfg = CollectorConfig::load(path)?;
    cfg.evidence
        .with_context(|| format!("{}: no [evidence] section", path.display()))
}

/// Checks every stored RFC 3161 time stamp with `openssl ts -verify` against `ca`:
/// (stamps that verify, problems).
fn check_timestamps(
    dir: &std::path::Path,
    ca: &std::path::Path,
) -> anyhow::Result<(u64, Vec<tidegate_evidence::Problem>)> {
    use base64::Engine;
    use tidegate_evidence::log::{CHECKPOINTS, TIMESTAMPS, Timestamp, read_checkpoints};
    let notes: std::collections::HashMap<u64, String> = read_checkpoints(&dir.join(CHECKPOINTS))?
        .into_iter()
        .map(|c| (c.size, c.note))
        .collect();
    let text = std::fs::read_to_string(dir.join(TIMESTAMPS)).unwrap_or_default();
    let tmp = tempfile::tempdir()?;
    let (mut ok, mut bad) = (0, Vec::new());
    for line in text.lines() {
        let t: Timestamp = serde_json::from_str(line)?;
        let mut fail = |reason: String| {
            bad.push(tidegate_evidence::Problem {
                index: t.size,
                time_ns: None,
                reason: format!("time stamp of checkpoint {}: {reason}", t.size),
            })
        };
        let Some(note) = notes.get(&t.size) else {
            fail("no such checkpoint".into());
            continue;
        };
        if tidegate_evidence::hex(&tidegate_evidence::rfc3161::imprint(note)) != t.note_sha256 {
            fail("it covers another note than the checkpoint's".into());
            continue;
        }
        let der = base64::engine::general_purpose::STANDARD.decode(&t.response)?;
        let (data, tsr) = (tmp.path().join("note"), tmp.path().join("tsr"));
        std::fs::write(&data, note)?;
        std::fs::write(&tsr, der)?;
        let out = std::process::Command::new("openssl")
            .args(["ts", "-verify", "-data"])
            .arg(&data)
            .arg("-in")
            .arg(&tsr)
            .arg("-CAfile")
            .arg(ca)
            .output()
            .map_err(|e| anyhow::anyhow!("running openssl: {e}"))?;
        if out.status.success() {
            ok += 1;
        } else {
            fail(format!(
                "openssl ts -verify: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
            ));
        }
    }
    Ok((ok, bad))
}

/// Recomputes every `flows_digest` entry of the log in `dir` from ClickHouse: (digests
/// that match, digests past retention, problems).
fn check_flows(
    dir: &std::path::Path,
    cfg: &CollectorConfig,
) -> anyhow::Result<(u64, u64, Vec<tidegate_evidence::Problem>)> {
    use std::io::BufRead;
    let ch = &cfg.clickhouse;
    let client = ch.client();
    let horizon = (ch.retention_days > 0).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // A day of slack: TTL merges drop whole days.
        now.as_nanos() as i64 - (i64::from(ch.retention_days) - 1) * 86_400_000_000_000
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let f = std::fs::File::open(dir.join(tidegate_evidence::log::ENTRIES))?;
    let (mut checked, mut expired, mut bad) = (0, 0, Vec::new());
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        if !line.contains("\"type\":\"flows_digest\"") {
            continue;
        }
        let e = tidegate_evidence::Entry::parse(&line).map_err(anyhow::Error::msg)?;
        if horizon.is_some_and(|h| e.data["first_max"].as_i64().unwrap_or(0) < h) {
            expired += 1;
            continue;
        }
        let verdict = rt
            .block_on(tidegate_collector::evidence::digest::check(
                &client, &e.data,
            ))
            .map_err(|m| anyhow::anyhow!("ClickHouse at {}: {m}", ch.url))?;
        match verdict {
            None => checked += 1,
            Some(reason) => bad.push(tidegate_evidence::Problem {
                index: e.index,
                time_ns: Some(e.time_ns),
                reason,
            }),
        }
    }
    Ok((checked, expired, bad))
}

/// Runs `evidence`.
pub fn main(a: Args) -> anyhow::Result<()> {
    match a.command {
        Command::Keygen { out } => {
            let k = SigningKeyFile::generate(&out)?;
            println!("wrote {} (private, 0600)", out.display());
            println!("wrote {} (public)", key::public_path(&out).display());
            let _ = k;
            Ok(())
        }
        Command::Verify {
            config,
            dir,
            public_key,
            flows,
            tsa_ca,
        } => {
            let (dir, key): (PathBuf, VerifyingKey) = match (config.clone(), dir, public_key) {
                (Some(c), _, _) => {
                    let e = evidence_config(&c)?;
                    (
                        e.dir.clone(),
                        SigningKeyFile::load(&e.key)?.key.verifying_key(),
                    )
                }
                (None, Some(d), Some(k)) => {
                    let pem = std::fs::read_to_string(&k)
                        .with_context(|| format!("cannot read {}", k.display()))?;
                    let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
                        anyhow::anyhow!("{}: not an Ed25519 public key: {e}", k.display())
                    })?;
                    (d, key)
                }
                _ => bail!("give --config FILE, or --dir DIR with --public-key FILE"),
            };
            let mut r = verify_dir(&dir, &key)?;
            if flows && r.ok() {
                let cfg = CollectorConfig::load(config.as_deref().expect("clap: requires config"))?;
                let (checked, expired, bad) = check_flows(&dir, &cfg)?;
                println!(
                    "{}: {checked} flows digests match ClickHouse, {expired} past retention",
                    dir.display()
                );
                r.problems.extend(bad);
            }
            if let Some(ca) = &tsa_ca
                && r.ok()
            {
                let (n, bad) = check_timestamps(&dir, ca)?;
                println!(
                    "{}: {n} checkpoint time stamps verify (RFC 3161)",
                    dir.display()
                );
                r.problems.extend(bad);
            }
            let root = r
                .root
                .map(|h| tidegate_evidence::hex(&h))
                .unwrap_or_default();
            if r.ok() {
                println!(
                    "{}: OK — {} entries, {} checkpoints (newest covers {} entries), root {root}",
                    dir.display(),
                    r.entries,
                    r.checkpoints,
                    r.checkpointed
                );
                return Ok(());
            }
            for p in r.problems.iter().take(20) {
                println!("{}: {p}", dir.display());
            }
            bail!(
                "{}: the evidence log does not verify; first bad: {}",
                dir.display(),
                r.problems[0]
            )
        }
        Command::Bundle {
            config,
            id,
            checkpoint,
            out,
        } => {
            let e = evidence_config(&config)?;
            let log = EvidenceLog::open(&e.dir, &e.origin, SigningKeyFile::load(&e.key)?.key)
                .context("opening the evidence log (stop the collector, or use the API)")?;
            let b = Bundle::build(&log, &id, checkpoint)?;
            let text = serde_json::to_string_pretty(&b)?;
            match out {
                Some(p) => std::fs::write(&p, text + "\n")
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => println!("{text}"),
            }
            Ok(())
        }
    }
}
