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
//!
//! Each section has one validator, next to the code that uses it
//! ([`TransportConfig::from_section`], [`SpoolConfig::validate`],
//! [`ClickHouseConfig::validate`], [`AggregateConfig::validate`],
//! `analysis::config`, [`crate::api::ApiConfig::from_raw`],
//! [`crate::evidence::EvidenceConfig::from_raw`],
//! [`crate::netflow::NetflowConfig::from_raw`]); [`CollectorConfig::load`]
//! runs them all and locates their errors, and both `run` and `check-config` start
//! from it, so they accept and refuse the same files.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use tidegate_base::{ConfigFile, FieldError};
use toml::Spanned;

pub use tidegate_base::ConfigError;

use crate::{
    aggregate::AggregateConfig,
    sinks::clickhouse::{ClickHouseConfig, SinkError},
    spool::SpoolConfig,
    transport::{RawTransport, TransportConfig},
};

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
    enrich: Option<Spanned<tidegate_threat::enrich::EnrichConfig>>,
    #[serde(default)]
    policy: Option<Spanned<crate::analysis::config::RawPolicy>>,
    #[serde(default)]
    detect: Option<Spanned<crate::analysis::config::RawDetect>>,
    #[serde(default)]
    alerts: Option<Spanned<crate::analysis::config::RawAlerts>>,
    #[serde(default)]
    api: Option<Spanned<crate::api::config::RawApiConfig>>,
    #[serde(default)]
    evidence: Option<Spanned<crate::evidence::RawEvidence>>,
    #[serde(default)]
    netflow: Option<Spanned<crate::netflow::RawNetflow>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    metrics_listen: Option<Spanned<String>>,
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
    /// The evidence log (`[evidence]`); none when the section is absent.
    pub evidence: Option<crate::evidence::EvidenceConfig>,
    /// NetFlow/IPFIX listeners and IPFIX export (`[netflow]`); none when absent.
    pub netflow: Option<crate::netflow::NetflowConfig>,
}

impl CollectorConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_file(&ConfigFile::read(path)?)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(src: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::from_file(&ConfigFile::new(path, src))
    }

    /// Validates every section of `file`.
    pub fn from_file(file: &ConfigFile) -> Result<Self, ConfigError> {
        let raw: Raw = file.parse()?;
        let metrics_listen = raw
            .collector
            .metrics_listen
            .as_ref()
            .map(|v| file.value(v, "collector.metrics_listen", "host:port"))
            .transpose()?;
        let transport = TransportConfig::from_section(raw.transport.into_inner(), file)?;
        let spool = match raw.spool {
            Some(s) => {
                let off = s.span().start;
                let mut s = s.into_inner();
                s.validate().map_err(|e| file.field_error_in(off, &e))?;
                s.dir = file.resolve(&s.dir);
                s
            }
            None => SpoolConfig::default(),
        };
        // A batch that cannot fit in a segment is refused at every resend: its probe would
        // never get past it.
        let largest = transport.max_frame_bytes as u64 + crate::spool::MAX_ENTRY_OVERHEAD as u64;
        if largest > spool.segment_bytes {
            let at = file
                .field_offset("spool.segment_bytes")
                .or_else(|| file.field_offset("transport.max_frame_bytes"))
                .unwrap_or(0);
            return Err(file.at(
                at,
                format!(
                    "spool.segment_bytes ({}) must hold the largest batch a probe may send: \
                     transport.max_frame_bytes ({}) plus {} bytes; raise segment_bytes or \
                     lower max_frame_bytes",
                    spool.segment_bytes,
                    transport.max_frame_bytes,
                    crate::spool::MAX_ENTRY_OVERHEAD
                ),
            ));
        }
        let clickhouse = match raw.clickhouse {
            Some(c) => {
                let off = c.span().start;
                let c = c.into_inner();
                c.validate().map_err(|e| match e {
                    SinkError::Config { field, reason } => {
                        // A key of `[clickhouse]` or of a table inside it (`cluster.nodes`).
                        let path = format!("clickhouse.{field}");
                        let e = FieldError::new(path.clone(), reason);
                        match file.field_offset(&path) {
                            Some(at) => file.at(at, e.to_string()),
                            None => file.field_error_in(off, &e),
                        }
                    }
                    other => file.at(off, other.to_string()),
                })?;
                c
            }
            None => ClickHouseConfig::default(),
        };
        let aggregate = match raw.aggregate {
            Some(a) => {
                let off = a.span().start;
                let a = a.into_inner();
                a.validate()
                    .map_err(|e| file.at(off, format!("aggregate: {e}")))?;
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
            file,
            &spool.dir,
        )?;
        let api = match raw.api {
            Some(a) => {
                let off = a.span().start;
                let mut api = crate::api::ApiConfig::from_raw(a.into_inner(), off)
                    .map_err(|(o, msg)| file.at(o, msg))?;
                api.load_tls(|p| file.resolve(p))
                    .map_err(|(o, msg)| file.at(o, msg))?;
                Some(api)
            }
            None => None,
        };
        let evidence = match raw.evidence {
            Some(e) => {
                let off = e.span().start;
                Some(crate::evidence::EvidenceConfig::from_raw(
                    e.into_inner(),
                    file,
                    off,
                )?)
            }
            None => None,
        };
        let netflow = match raw.netflow {
            Some(n) => {
                let off = n.span().start;
                Some(crate::netflow::NetflowConfig::from_raw(
                    n.into_inner(),
                    file,
                    off,
                )?)
            }
            None => None,
        };
        Ok(CollectorConfig {
            netflow,
            evidence,
            path: file.path().to_path_buf(),
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

/// Fixtures for the configuration tests of this crate: a directory with a real CA and
/// collector certificate, and a file written in it.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::PathBuf;

    /// The `[transport]` section every test file starts with (lines 1-5).
    pub const TRANSPORT: &str = "[transport]\nlisten = \"127.0.0.1:7443\"\nca_cert = \"ca.pem\"\ncert = \"collector.pem\"\nkey = \"collector.key\"\n";

    /// A directory holding `ca.pem`, `collector.pem` and `collector.key`, and
    /// `collector.toml` with `body`.
    pub fn write(body: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        crate::certs::generate(&crate::certs::GenCertsOptions {
            out: d.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        let p = d.path().join("collector.toml");
        std::fs::write(&p, body).unwrap();
        (d, p)
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{TRANSPORT as OK, write as with_certs};
    use super::*;

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
            (OK.replace("ca.pem", "missing.pem"), ":3: transport.ca_cert"),
            (OK.replace("ca.pem", "."), ":3: transport.ca_cert"),
            (
                OK.replace("collector.key", "ca.key"),
                ":4: transport: TLS: collector certificate and key",
            ),
            (
                OK.replace("collector.key", "ca.pem"),
                ":5: transport: collector key",
            ),
            (OK.replace("127.0.0.1:7443", "nope"), ":2: transport.listen"),
            (
                format!("{OK}[clickhouse]\nurl = \"ftp://x\"\n"),
                ":7: clickhouse.url",
            ),
            (
                format!(
                    "{OK}[clickhouse]\nurl = \"http://a:1\"\n\n[clickhouse.cluster]\nname = \"tg\"\nddl = \"each_node\"\nnodes = [\"ftp://b\"]\n"
                ),
                ":12: clickhouse.cluster.nodes",
            ),
            (format!("{OK}\n[bogus]\n"), ":7:"),
            (
                format!("{OK}[spool]\nmax_bytes = 1073741824\nsegment_bytes = 4194304\n"),
                ":8: spool.segment_bytes (4194304) must hold the largest batch",
            ),
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
