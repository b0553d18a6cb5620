//! The collector's configuration file (TOML). Every error names the file and line.
//!
//! ```toml
//! [collector]
//! metrics_listen = "127.0.0.1:9465"
//!
//! [transport]
//! listen = "0.0.0.0:7443"
//! ca_cert = "/etc/tidegate/ca.pem"          # probes must present a certificate from this CA
//! cert = "/etc/tidegate/collector.pem"
//! key = "/etc/tidegate/collector.key"
//!
//! [spool]
//! dir = "/var/lib/tidegate/spool"
//! max_bytes = 8589934592
//!
//! [clickhouse]
//! url = "http://127.0.0.1:8123"
//! database = "tidegate"
//! retention_days = 30
//!
//! [aggregate]
//! shards = 4
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    aggregate::AggregateConfig, sinks::clickhouse::ClickHouseConfig, spool::SpoolConfig,
    transport::TransportConfig,
};

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// An error at a line of the file.
    #[error("{path}:{line}: {msg}")]
    At {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    collector: RawCollector,
    transport: Spanned<RawTransport>,
    #[serde(default)]
    spool: Option<Spanned<SpoolConfig>>,
    #[serde(default)]
    clickhouse: Option<Spanned<ClickHouseConfig>>,
    #[serde(default)]
    aggregate: Option<Spanned<AggregateConfig>>,
    #[serde(default)]
    enrich: Option<Spanned<crate::enrich::EnrichConfig>>,
    #[serde(default)]
    policy: Option<Spanned<crate::analysis::config::RawPolicy>>,
    #[serde(default)]
    detect: Option<Spanned<crate::analysis::config::RawDetect>>,
    #[serde(default)]
    alerts: Option<Spanned<crate::analysis::config::RawAlerts>>,
    #[serde(default)]
    api: Option<Spanned<crate::api::config::RawApiConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    metrics_listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransport {
    listen: Spanned<String>,
    ca_cert: Spanned<PathBuf>,
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
    max_frame_bytes: Option<Spanned<usize>>,
    handshake_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
}

/// Validated collector configuration.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// File it came from (relative paths inside are resolved against its directory).
    pub path: PathBuf,
    /// Prometheus endpoint, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Probe-facing TLS listener.
    pub transport: TransportConfig,
    /// Write-ahead spool.
    pub spool: SpoolConfig,
    /// ClickHouse sink.
    pub clickhouse: ClickHouseConfig,
    /// Aggregation shards.
    pub aggregate: AggregateConfig,
    /// Enrichment, policy, detectors and alert delivery.
    pub analysis: crate::analysis::AnalysisConfig,
    /// Web UI and JSON API (`[api]`); none when the section is absent.
    pub api: Option<crate::api::ApiConfig>,
}

/// Offset of `key = ...` inside the table that starts at `table_off` (falls back to the
/// table itself), so errors about a field point at the field's line.
pub(crate) fn key_offset(src: &str, table_off: usize, key: &str) -> usize {
    let rest = &src[table_off.min(src.len())..];
    let mut pos = 0;
    for line in rest.split_inclusive('\n') {
        let t = line.trim_start();
        if pos > 0 && t.starts_with('[') {
            break;
        }
        if t.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return table_off + pos + (line.len() - t.len());
        }
        pos += line.len();
    }
    table_off
}

pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

impl CollectorConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&src, path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(src: &str, path: &Path) -> Result<Self, ConfigError> {
        let at = |off: usize, msg: String| ConfigError::At {
            path: path.to_path_buf(),
            line: line_of(src, off),
            msg,
        };
        let raw: Raw = toml::from_str(src).map_err(|e| {
            at(
                e.span().map(|s| s.start).unwrap_or(0),
                e.message().to_string(),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let metrics_listen = match raw.collector.metrics_listen {
            Some(v) => Some(v.get_ref().parse().map_err(|e| {
                at(
                    v.span().start,
                    format!("metrics_listen {:?} is not host:port: {e}", v.get_ref()),
                )
            })?),
            None => None,
        };

        let t = raw.transport.into_inner();
        let listen: SocketAddr = t.listen.get_ref().parse().map_err(|e| {
            at(
                t.listen.span().start,
                format!("listen {:?} is not host:port: {e}", t.listen.get_ref()),
            )
        })?;
        let mut files = Vec::new();
        for (name, f) in [("ca_cert", &t.ca_cert), ("cert", &t.cert), ("key", &t.key)] {
            let p = resolve(f.get_ref());
            if let Err(e) = std::fs::File::open(&p) {
                return Err(at(f.span().start, format!("{name} {}: {e}", p.display())));
            }
            files.push(p);
        }
        let mut transport =
            TransportConfig::new(listen, files[0].clone(), files[1].clone(), files[2].clone());
        if let Some(v) = t.max_frame_bytes {
            if !(4096..=(256 << 20)).contains(v.get_ref()) {
                return Err(at(
                    v.span().start,
                    "max_frame_bytes must be between 4096 and 268435456".into(),
                ));
            }
            transport.max_frame_bytes = *v.get_ref();
        }
        if let Some(v) = t.handshake_timeout_secs {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span().start,
                    "handshake_timeout_secs must be at least 1".into(),
                ));
            }
            transport.handshake_timeout = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = t.idle_timeout_secs {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span().start,
                    "idle_timeout_secs must be at least 1".into(),
                ));
            }
            transport.idle_timeout = Duration::from_secs(*v.get_ref());
        }

        let spool = match raw.spool {
            Some(s) => {
                let off = s.span().start;
                let mut s = s.into_inner();
                if s.segment_bytes < 4096 {
                    return Err(at(
                        key_offset(src, off, "segment_bytes"),
                        "spool.segment_bytes must be at least 4096".into(),
                    ));
                }
                if s.max_bytes < 2 * s.segment_bytes {
                    return Err(at(
                        key_offset(src, off, "max_bytes"),
                        format!(
                            "spool.max_bytes ({}) must be at least twice segment_bytes ({})",
                            s.max_bytes, s.segment_bytes
                        ),
                    ));
                }
                s.dir = resolve(&s.dir);
                s
            }
            None => SpoolConfig::default(),
        };
        let clickhouse = match raw.clickhouse {
            Some(c) => {
                let off = c.span().start;
                let c = c.into_inner();
                if !c.url.starts_with("http://") && !c.url.starts_with("https://") {
                    return Err(at(
                        key_offset(src, off, "url"),
                        format!(
                            "clickhouse.url {:?} must start with http:// or https://",
                            c.url
                        ),
                    ));
                }
                if c.database.is_empty()
                    || !c
                        .database
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    return Err(at(
                        key_offset(src, off, "database"),
                        format!(
                            "clickhouse.database {:?} must be letters, digits and _",
                            c.database
                        ),
                    ));
                }
                c
            }
            None => ClickHouseConfig::default(),
        };
        let aggregate = match raw.aggregate {
            Some(a) => {
                let off = a.span().start;
                let a = a.into_inner();
                a.validate()
                    .map_err(|e| at(off, format!("aggregate: {e}")))?;
                a
            }
            None => AggregateConfig::default(),
        };
        let analysis = crate::analysis::config::parse(
            crate::analysis::config::RawSections {
                enrich: raw.enrich,
                policy: raw.policy,
                detect: raw.detect,
                alerts: raw.alerts,
            },
            src,
            path,
            &resolve,
            &spool.dir,
        )?;
        let api = match raw.api {
            Some(a) => {
                let off = a.span().start;
                Some(
                    crate::api::ApiConfig::from_raw(a.into_inner(), off)
                        .map_err(|(o, msg)| at(o, msg))?,
                )
            }
            None => None,
        };
        Ok(CollectorConfig {
            path: path.to_path_buf(),
            metrics_listen,
            transport,
            spool,
            clickhouse,
            aggregate,
            analysis,
            api,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_certs(body: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "c.pem", "c.key"] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        let p = d.path().join("collector.toml");
        std::fs::write(&p, body).unwrap();
        (d, p)
    }

    const OK: &str = "[transport]\nlisten = \"127.0.0.1:7443\"\nca_cert = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n";

    #[test]
    fn minimal_config_resolves_paths_next_to_the_file() {
        let (d, p) = with_certs(OK);
        let c = CollectorConfig::load(&p).unwrap();
        assert_eq!(c.transport.ca_cert, d.path().join("ca.pem"));
        assert_eq!(c.transport.listen, "127.0.0.1:7443".parse().unwrap());
    }

    #[test]
    fn bad_inputs_name_file_and_line() {
        let cases = [
            (
                format!("{OK}[spool]\nmax_bytes = 100\nsegment_bytes = 4096\n"),
                ":7: spool.max_bytes",
            ),
            (OK.replace("ca.pem", "missing.pem"), ":3: ca_cert"),
            (OK.replace("127.0.0.1:7443", "nope"), ":2: listen"),
            (
                format!("{OK}[clickhouse]\nurl = \"ftp://x\"\n"),
                ":7: clickhouse.url",
            ),
            (format!("{OK}\n[bogus]\n"), ":7:"),
            ("[collector]\n".to_string(), ":1:"),
            (format!("{OK}[transport2]\n"), ":6:"),
        ];
        for (src, want) in cases {
            let (_d, p) = with_certs(&src);
            let e = CollectorConfig::load(&p).unwrap_err().to_string();
            let want = format!("{}{want}", p.display());
            assert!(
                e.starts_with(&want),
                "{src:?}\n got {e:?}\nwant prefix {want:?}"
            );
        }
    }
}
