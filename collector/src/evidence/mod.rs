//! The evidence log in the collector (`[evidence]`): every alert and violation state,
//! probe connection and configuration load goes into the signed, append-only log of
//! [`tidegate_evidence`] — durably, before it is sent to any sink — and a checkpoint is
//! signed every `checkpoint_secs` and at shutdown.
//!
//! ```toml
//! [evidence]
//! dir = "/var/lib/tidegate/evidence"
//! key = "/etc/tidegate/evidence.key"   # `tidegate-collector evidence keygen --out …` (0600)
//! origin = "tidegate.example/hub-1"    # the log's name in its checkpoints
//! checkpoint_secs = 60
//! ```

pub mod digest;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tidegate_base::{ConfigError, ConfigFile, FieldError};
use tidegate_evidence::{EvidenceLog, SigningKeyFile};

pub use tidegate_evidence::entry::{CONFIG, FLOWS_DIGEST, PROBE_CONNECT, PROBE_DISCONNECT};

/// `[evidence]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvidence {
    dir: PathBuf,
    key: PathBuf,
    origin: Option<String>,
    #[serde(default = "default_checkpoint_secs")]
    checkpoint_secs: u64,
}

fn default_checkpoint_secs() -> u64 {
    60
}

/// Validated `[evidence]`.
#[derive(Clone, Debug)]
pub struct EvidenceConfig {
    /// The log's directory.
    pub dir: PathBuf,
    /// The signing key (PKCS#8 PEM, 0600).
    pub key: PathBuf,
    /// The log's name (checkpoint origin).
    pub origin: String,
    /// How often a checkpoint is signed.
    pub checkpoint_every: Duration,
}

impl EvidenceConfig {
    /// Validates the section (at byte offset `off` of `file`): the key must load, the
    /// origin be one printable line, the interval 1..=86400 s.
    pub fn from_raw(raw: RawEvidence, file: &ConfigFile, off: usize) -> Result<Self, ConfigError> {
        let err = |field: &str, msg: String| {
            file.field_error_in(off, &FieldError::new(format!("evidence.{field}"), msg))
        };
        let key = file.resolve(&raw.key);
        SigningKeyFile::load(&key).map_err(|e| err("key", e.to_string()))?;
        let origin = raw
            .origin
            .unwrap_or_else(|| format!("tidegate/{}", crate::sinks::syslog::local_hostname()));
        if origin.is_empty()
            || origin.len() > 255
            || !origin.chars().all(|c| c.is_ascii_graphic())
            || origin.contains('+')
        {
            return Err(err(
                "origin",
                format!("{origin:?}: one word of 1 to 255 printable ASCII characters, no '+'"),
            ));
        }
        if !(1..=86_400).contains(&raw.checkpoint_secs) {
            return Err(err(
                "checkpoint_secs",
                format!("{}: must be 1..=86400", raw.checkpoint_secs),
            ));
        }
        Ok(EvidenceConfig {
            dir: file.resolve(&raw.dir),
            key,
            origin,
            checkpoint_every: Duration::from_secs(raw.checkpoint_secs),
        })
    }

    /// Opens the log.
    pub fn open(&self) -> anyhow::Result<Arc<EvidenceLog>> {
        let key = SigningKeyFile::load(&self.key)?;
        Ok(Arc::new(EvidenceLog::open(
            &self.dir,
            &self.origin,
            key.key,
        )?))
    }
}

/// Appends an entry and makes it durable, logging (not returning) a failure: used for
/// events whose processing must go on either way (probe connections, reloads).
pub fn record(log: &EvidenceLog, kind: &str, data: Value) {
    if let Err(e) = log.append_durable(kind, data) {
        tracing::error!(error = %e, kind, "evidence log append failed");
    }
}

/// Signs a checkpoint every `every` until `stop` turns true, then a last one.
pub fn spawn_checkpoints(
    log: Arc<EvidenceLog>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            let l = log.clone();
            match tokio::task::spawn_blocking(move || l.checkpoint()).await {
                Ok(Ok(Some(c))) => tracing::debug!(size = c.size, "evidence checkpoint signed"),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "evidence checkpoint failed"),
                Err(e) => tracing::error!(error = %e, "evidence checkpoint task failed"),
            }
            if *stop.borrow() {
                return;
            }
        }
    })
}

/// The `config` entry of a start: what was loaded, by content hash.
pub fn start_entry(config_path: &std::path::Path, policy: Option<&std::path::Path>) -> Value {
    json!({
        "event": "start",
        "software": concat!("tidegate-collector ", env!("CARGO_PKG_VERSION")),
        "config": file_digest(config_path),
        "policy": policy.map(file_digest),
    })
}

/// `{"path": …, "sha256": …}` of a file (sha256 null when unreadable).
pub fn file_digest(p: &std::path::Path) -> Value {
    use sha2::Digest;
    let sha = std::fs::read(p)
        .ok()
        .map(|b| tidegate_evidence::hex(&sha2::Sha256::digest(&b)));
    json!({"path": p.display().to_string(), "sha256": sha})
}
