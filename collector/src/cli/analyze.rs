//! `tidegate-probe replay FILE --json | tidegate-collector analyze [--policy P] [--config C]`:
//! enrichment, policy and the anomaly detectors over a stream of flow records, for
//! analysts. Prints one JSON object per alert and per policy violation.

use std::{
    io::{BufRead, BufWriter, Write},
    path::PathBuf,
};

use anyhow::Context;
use tidegate_threat::{
    detect::{DetectConfig, Detector},
    enrich::{EnrichConfig, Enricher},
    policy::{PolicyEngine, PolicyHandle},
};
use tidegate_wire::record::FlowRecord;

/// Arguments of `analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file (TOML); without it only the anomaly detectors run.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Detection thresholds (TOML, the fields of `DetectConfig`; see
    /// dashboards/examples/detect.toml). Errors are reported as file:line.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// MaxMind-format databases (country/city and/or ASN) for endpoint enrichment.
    #[arg(long = "mmdb")]
    pub mmdb: Vec<PathBuf>,
    /// Operator range files (`CIDR,country,asn` or `first,last,country,asn`); they take
    /// precedence over the databases.
    #[arg(long = "ranges")]
    pub ranges: Vec<PathBuf>,
    /// Read records from this file instead of standard input (JSON lines).
    #[arg(long)]
    pub input: Option<PathBuf>,
}

/// Runs `analyze`.
pub fn main(a: Args) -> anyhow::Result<()> {
    let cfg = match &a.config {
        Some(p) => DetectConfig::load(p)?,
        None => DetectConfig::default(),
    };
    let mut detector =
        Detector::new(cfg).map_err(|e| anyhow::anyhow!("detection settings: {e}"))?;
    let mut policy = match &a.policy {
        Some(p) => Some(PolicyEngine::new(PolicyHandle::load(p)?)),
        None => None,
    };
    let input: Box<dyn BufRead> = match &a.input {
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let name = a
        .input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<stdin>".into());
    let mut out = BufWriter::new(std::io::stdout().lock());
    let enricher = if a.mmdb.is_empty() && a.ranges.is_empty() {
        None
    } else {
        Some(Enricher::load(&EnrichConfig {
            mmdb: a.mmdb.clone(),
            csv: a.ranges.clone(),
        })?)
    };
    let (mut records, mut violations) = (0u64, 0u64);
    for (i, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("{name}:{}: cannot read", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: FlowRecord = serde_json::from_str(&line)
            .with_context(|| format!("{name}:{}: not a flow record", i + 1))?;
        records += 1;
        detector.observe(&r);
        if let Some(engine) = policy.as_mut() {
            let ends = enricher
                .as_ref()
                .map(|e| e.endpoints(&r))
                .unwrap_or_default();
            for v in engine.process(&r, &ends) {
                violations += 1;
                emit(&mut out, "violation", &v)?;
            }
        }
    }
    let alerts = detector.finish();
    for al in &alerts {
        emit(&mut out, "alert", al)?;
    }
    out.flush()?;
    tracing::info!(
        records,
        alerts = alerts.len(),
        violations,
        "analysis finished"
    );
    Ok(())
}

fn emit(out: &mut impl Write, kind: &str, v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut j = serde_json::to_value(v)?;
    if let Some(o) = j.as_object_mut() {
        o.insert("type".into(), serde_json::Value::String(kind.into()));
    }
    serde_json::to_writer(&mut *out, &j)?;
    out.write_all(b"\n")?;
    Ok(())
}
