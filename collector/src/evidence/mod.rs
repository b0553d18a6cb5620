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
//! # tsa_url = "https://tsa.example/tsr"   # RFC 3161 time stamp of every checkpoint
//! # tsa_ca_file = "/etc/tidegate/tsa-ca.pem"  # for https (default: the system store)
//! ```

pub mod digest;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tidegate_base::{ConfigError, ConfigFile, FieldError};
use tidegate_evidence::{EvidenceLog, SigningKeyFile};

pub use tidegate_evidence::entry::{
    CONFIG, ENFORCEMENT, FLOWS_DIGEST, PROBE_CONNECT, PROBE_DISCONNECT, TRIAGE,
};

/// `[evidence]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvidence {
    dir: PathBuf,
    key: PathBuf,
    origin: Option<String>,
    #[serde(default = "default_checkpoint_secs")]
    checkpoint_secs: u64,
    tsa_url: Option<String>,
    tsa_ca_file: Option<PathBuf>,
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
    /// RFC 3161 time-stamp authority every new checkpoint is sent to.
    pub tsa: Option<Tsa>,
}

/// An RFC 3161 time-stamp authority.
#[derive(Clone, Debug)]
pub struct Tsa {
    /// Its URL (`http://` or `https://`).
    pub url: hyper::Uri,
    /// CA file for `https` (default: the system trust store).
    pub ca_file: Option<PathBuf>,
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
        let tsa = match raw.tsa_url {
            None => None,
            Some(u) => {
                let url: hyper::Uri = u
                    .parse()
                    .ok()
                    .filter(|x: &hyper::Uri| {
                        matches!(x.scheme_str(), Some("http" | "https")) && x.host().is_some()
                    })
                    .ok_or_else(|| err("tsa_url", format!("{u:?}: not an http(s) URL")))?;
                let ca_file = raw.tsa_ca_file.map(|p| file.resolve(&p));
                if let Some(p) = &ca_file {
                    tidegate_base::tls::trusting_client_config(Some(p), true)
                        .map_err(|e| err("tsa_ca_file", e.to_string()))?;
                }
                Some(Tsa { url, ca_file })
            }
        };
        Ok(EvidenceConfig {
            dir: file.resolve(&raw.dir),
            key,
            origin,
            checkpoint_every: Duration::from_secs(raw.checkpoint_secs),
            tsa,
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

/// Asks `tsa` to time-stamp `note`; returns the DER response once the TSA granted it.
pub async fn timestamp(tsa: &Tsa, note: &str) -> anyhow::Result<Vec<u8>> {
    use http_body_util::{BodyExt, Full, Limited};
    let https = tsa.url.scheme_str() == Some("https");
    let tls = tidegate_base::tls::trusting_client_config(tsa.ca_file.as_deref(), https)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<bytes::Bytes>>(connector);
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
    let body = tidegate_evidence::rfc3161::request(
        &tidegate_evidence::rfc3161::imprint(note),
        u64::from_be_bytes(nonce),
    );
    let req = hyper::Request::post(tsa.url.clone())
        .header(hyper::header::CONTENT_TYPE, "application/timestamp-query")
        .body(Full::new(bytes::Bytes::from(body)))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req)).await??;
    anyhow::ensure!(
        resp.status().is_success(),
        "TSA answered HTTP {}",
        resp.status()
    );
    // A time-stamp response is a few KiB; refuse to buffer more than 1 MiB of anything.
    let bytes = Limited::new(resp.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the TSA's answer: {e}"))?
        .to_bytes()
        .to_vec();
    match tidegate_evidence::rfc3161::status(&bytes) {
        Some(0 | 1) => Ok(bytes),
        Some(s) => anyhow::bail!("the TSA refused the request (PKIStatus {s})"),
        None => anyhow::bail!("the TSA's answer is not a TimeStampResp"),
    }
}

/// Signs a checkpoint every `every` until `stop` turns true, then a last one; each new
/// checkpoint is time-stamped by `tsa` when one is configured.
pub fn spawn_checkpoints(
    log: Arc<EvidenceLog>,
    every: Duration,
    tsa: Option<Tsa>,
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
                Ok(Ok(Some(c))) => {
                    tracing::debug!(size = c.size, "evidence checkpoint signed");
                    if let Some(tsa) = &tsa {
                        match timestamp(tsa, &c.note).await {
                            Ok(der) => {
                                use base64::Engine;
                                let t = tidegate_evidence::log::Timestamp {
                                    size: c.size,
                                    note_sha256: tidegate_evidence::hex(
                                        &tidegate_evidence::rfc3161::imprint(&c.note),
                                    ),
                                    response: base64::engine::general_purpose::STANDARD.encode(der),
                                };
                                if let Err(e) = log.record_timestamp(&t) {
                                    tracing::error!(error = %e, "storing the checkpoint's time stamp");
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, tsa = %tsa.url, size = c.size,
                                "checkpoint not time-stamped"),
                        }
                    }
                }
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
