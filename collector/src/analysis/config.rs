//! The detection-related sections of `collector.toml`: `[enrich]`, `[policy]`, `[detect]`
//! and `[alerts]` (with `[alerts.webhook]` and `[alerts.syslog]`). Every error names the
//! file and line; files these sections point at (databases, policy, thresholds) are
//! checked when the collector starts and by `check-config` ([`AnalysisConfig::load`]).
//!
//! ```toml
//! [enrich]
//! mmdb = ["/usr/share/GeoIP/GeoLite2-Country.mmdb", "/usr/share/GeoIP/GeoLite2-ASN.mmdb"]
//! csv = ["ranges.csv"]               # operator ranges: CIDR,country,asn
//!
//! [policy]
//! file = "policy.toml"               # SIGHUP reloads it; an invalid new file is refused
//! merge_gap_secs = 300               # repeats of one violation within this gap merge
//!
//! [detect]
//! enabled = true
//! config = "detect.toml"             # thresholds (every field optional)
//! idle_advance_secs = 5              # idle lines: event time follows the wall clock
//! state_file = "/var/lib/tidegate/detector-state.json"  # learned baselines (default: in the spool dir)
//! state_save_secs = 60               # how often they are saved (and at shutdown)
//! max_clock_skew_secs = 10           # records stamped later than now + this are clamped to now
//!
//! [alerts]
//! jsonl = "/var/log/tidegate/alerts.jsonl"
//!
//! [alerts.webhook]
//! url = "https://regulator.example/tidegate"
//! ca_file = "/etc/tidegate/regulator-ca.pem"      # default: the system trust store
//! secret_file = "/etc/tidegate/webhook.secret"   # or secret = "..."
//! outbox_dir = "/var/lib/tidegate/webhook-outbox"
//!
//! [alerts.syslog]
//! address = "siem.example:6514"
//! protocol = "tcp"
//! cef = true
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::sinks::alerts::WebhookConfig;
use crate::sinks::syslog::SyslogConfig;
use tidegate_base::{ConfigError, ConfigFile};
use tidegate_threat::detect::DetectConfig;
use tidegate_threat::enrich::{EnrichConfig, Enricher};
use tidegate_threat::policy::PolicyHandle;

/// `[policy]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    file: PathBuf,
    merge_gap_secs: Option<u64>,
}

/// `[detect]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetect {
    enabled: Option<bool>,
    config: Option<PathBuf>,
    idle_advance_secs: Option<u64>,
    state_file: Option<PathBuf>,
    state_save_secs: Option<u64>,
    max_clock_skew_secs: Option<u64>,
}

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerts {
    jsonl: Option<PathBuf>,
    webhook: Option<Spanned<RawWebhook>>,
    syslog: Option<Spanned<SyslogConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    ca_file: Option<PathBuf>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    outbox_dir: Option<PathBuf>,
    timeout_ms: Option<u64>,
    backoff_min_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    allow_plain_http: Option<bool>,
}

/// The raw sections, as `config.rs` deserializes them.
#[derive(Debug, Default)]
pub(crate) struct RawSections {
    pub enrich: Option<Spanned<EnrichConfig>>,
    pub policy: Option<Spanned<RawPolicy>>,
    pub detect: Option<Spanned<RawDetect>>,
    pub alerts: Option<Spanned<RawAlerts>>,
}

/// Detection settings of the collector.
#[derive(Clone, Debug)]
pub struct AnalysisConfig {
    /// Enrichment sources (paths resolved); empty when not configured.
    pub enrich: EnrichConfig,
    /// Policy file, if any.
    pub policy: Option<PathBuf>,
    /// Repeats of one violation within this gap (event time) merge into one.
    pub violation_merge_gap: Duration,
    /// Whether the anomaly detectors run.
    pub detect_enabled: bool,
    /// Thresholds file (defaults when `None`).
    pub detect_config: Option<PathBuf>,
    /// After this long without records, event time advances with the wall clock so the
    /// windows of an idle line close.
    pub idle_advance: Duration,
    /// Where the detectors' learned baselines are saved and restored from.
    pub detect_state: Option<PathBuf>,
    /// How often they are saved.
    pub detect_state_every: Duration,
    /// Records stamped later than the collector's clock plus this are counted and
    /// judged at the collector's clock: one wrong clock (or a forged record) cannot
    /// move event time ahead and close every window early.
    pub max_clock_skew: Duration,
    /// JSONL alert file.
    pub jsonl: Option<PathBuf>,
    /// Webhook delivery.
    pub webhook: Option<WebhookConfig>,
    /// Syslog delivery.
    pub syslog: Option<SyslogConfig>,
    /// Where the `[enrich]`, `[policy]` and `[detect]` sections are (`file:line`), for
    /// errors found when their files are loaded.
    pub(crate) locations: Locations,
}

/// `file:line` of each section (empty when absent).
#[derive(Clone, Debug, Default)]
pub(crate) struct Locations {
    enrich: String,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            enrich: EnrichConfig::default(),
            policy: None,
            violation_merge_gap: Duration::from_secs(300),
            detect_enabled: true,
            detect_config: None,
            idle_advance: Duration::from_secs(5),
            detect_state: None,
            detect_state_every: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(10),
            jsonl: None,
            webhook: None,
            syslog: None,
            locations: Locations::default(),
        }
    }
}

/// What the sections point at, loaded and checked.
#[derive(Debug)]
pub struct LoadedSources {
    /// Enrichment databases, when configured.
    pub enricher: Option<Arc<Enricher>>,
    /// The policy, when configured.
    pub policy: Option<PolicyHandle>,
    /// Detector thresholds.
    pub detect: DetectConfig,
}

impl AnalysisConfig {
    /// Loads the databases, the policy and the thresholds; errors name the file (and line).
    pub fn load(&self) -> Result<LoadedSources, String> {
        let enricher = if self.enrich.mmdb.is_empty() && self.enrich.csv.is_empty() {
            None
        } else {
            Some(Arc::new(Enricher::load(&self.enrich).map_err(|e| {
                format!("{}: [enrich]: {e}", self.locations.enrich)
            })?))
        };
        let policy = match &self.policy {
            Some(p) => Some(PolicyHandle::load(p).map_err(|e| e.to_string())?),
            None => None,
        };
        // The enforcement plan the policy compiles to (drop rules against the enrichment
        // databases and protected ranges): refused here too, so `check-config` and `run`
        // agree.
        if let Some(h) = &policy {
            let empty = Enricher::default();
            let e = enricher.as_deref().unwrap_or(&empty);
            tidegate_threat::policy::enforce::compile(&h.current(), e, &[], &[], 0)
                .map_err(|e| e.to_string())?;
        }
        let detect = match &self.detect_config {
            Some(p) => DetectConfig::load(p).map_err(|e| e.to_string())?,
            None => DetectConfig::default(),
        };
        // What the detection stage will build at start: refused here too, so `check-config`
        // and `run` agree.
        tidegate_threat::detect::Detector::new(detect.clone()).map_err(|e| {
            format!(
                "{}: detection settings: {e}",
                self.detect_config
                    .as_ref()
                    .map_or("[detect]".to_string(), |p| p.display().to_string())
            )
        })?;
        Ok(LoadedSources {
            enricher,
            policy,
            detect,
        })
    }
}

/// Validates the raw sections; `resolve` anchors relative paths at the config file and
/// `spool_dir` is where the webhook outbox goes by default.
pub(crate) fn parse(
    raw: RawSections,
    file: &ConfigFile,
    spool_dir: &Path,
) -> Result<AnalysisConfig, ConfigError> {
    let at = |off: usize, msg: String| file.at(off, msg);
    let resolve = |p: &Path| file.resolve(p);
    let mut cfg = AnalysisConfig::default();
    if let Some(e) = raw.enrich {
        cfg.locations.enrich = file.location(e.span().start);
        let e = e.into_inner();
        cfg.enrich = EnrichConfig {
            mmdb: e.mmdb.iter().map(|p| resolve(p)).collect(),
            csv: e.csv.iter().map(|p| resolve(p)).collect(),
        };
    }
    if let Some(p) = raw.policy {
        let off = p.span().start;
        let p = p.into_inner();
        cfg.policy = Some(resolve(&p.file));
        if let Some(g) = p.merge_gap_secs {
            if g == 0 || g > 86_400 {
                return Err(at(
                    file.key_offset(off, "merge_gap_secs"),
                    "policy.merge_gap_secs must be between 1 and 86400".into(),
                ));
            }
            cfg.violation_merge_gap = Duration::from_secs(g);
        }
    }
    if let Some(d) = raw.detect {
        let off = d.span().start;
        let d = d.into_inner();
        cfg.detect_enabled = d.enabled.unwrap_or(true);
        cfg.detect_config = d.config.map(|p| resolve(&p));
        if let Some(s) = d.idle_advance_secs {
            if s == 0 || s > 3600 {
                return Err(at(
                    file.key_offset(off, "idle_advance_secs"),
                    "detect.idle_advance_secs must be between 1 and 3600".into(),
                ));
            }
            cfg.idle_advance = Duration::from_secs(s);
        }
        if let Some(p) = d.state_file {
            cfg.detect_state = Some(resolve(&p));
        }
        if let Some(s) = d.state_save_secs {
            if s == 0 || s > 3600 {
                return Err(at(
                    file.key_offset(off, "state_save_secs"),
                    "detect.state_save_secs must be between 1 and 3600".into(),
                ));
            }
            cfg.detect_state_every = Duration::from_secs(s);
        }
        if let Some(s) = d.max_clock_skew_secs {
            if s > 3600 {
                return Err(at(
                    file.key_offset(off, "max_clock_skew_secs"),
                    "detect.max_clock_skew_secs must be between 0 and 3600".into(),
                ));
            }
            cfg.max_clock_skew = Duration::from_secs(s);
        }
    }
    if cfg.detect_state.is_none() {
        cfg.detect_state = Some(spool_dir.join("detector-state.json"));
    }
    if let Some(a) = raw.alerts {
        let a = a.into_inner();
        cfg.jsonl = a.jsonl.map(|p| resolve(&p));
        if let Some(w) = a.webhook {
            let off = w.span().start;
            let w = w.into_inner();
            let bad = |key: &str, msg: String| at(file.key_offset(off, key), msg);
            if !w.url.starts_with("https://") && !w.url.starts_with("http://") {
                return Err(bad(
                    "url",
                    format!(
                        "alerts.webhook.url {:?} must start with https:// or http://",
                        w.url
                    ),
                ));
            }
            let ca_file = match w.ca_file {
                Some(f) => {
                    let f = resolve(&f);
                    if let Err(e) = std::fs::File::open(&f) {
                        return Err(bad(
                            "ca_file",
                            format!("alerts.webhook.ca_file {}: {e}", f.display()),
                        ));
                    }
                    Some(f)
                }
                None => None,
            };
            let secret = match (w.secret, w.secret_file) {
                (Some(s), None) => s,
                (None, Some(f)) => {
                    let f = resolve(&f);
                    std::fs::read_to_string(&f)
                        .map_err(|e| {
                            bad(
                                "secret_file",
                                format!("alerts.webhook.secret_file {}: {e}", f.display()),
                            )
                        })?
                        .trim()
                        .to_string()
                }
                (Some(_), Some(_)) => {
                    return Err(bad(
                        "secret",
                        "alerts.webhook: give secret or secret_file, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(bad(
                        "url",
                        "alerts.webhook needs secret or secret_file (the HMAC-SHA256 key)".into(),
                    ));
                }
            };
            if secret.is_empty() {
                return Err(bad("secret", "alerts.webhook secret is empty".into()));
            }
            let ms = |key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
                match v {
                    Some(0) => Err(bad(key, format!("alerts.webhook.{key} must be at least 1"))),
                    Some(v) => Ok(Duration::from_millis(v)),
                    None => Ok(Duration::from_millis(default)),
                }
            };
            let backoff_min = ms("backoff_min_ms", w.backoff_min_ms, 200)?;
            let backoff_max = ms("backoff_max_ms", w.backoff_max_ms, 60_000)?;
            if backoff_max < backoff_min {
                return Err(bad(
                    "backoff_max_ms",
                    "alerts.webhook.backoff_max_ms must not be below backoff_min_ms".into(),
                ));
            }
            if let Some(rest) = w.url.strip_prefix("http://")
                && !w.allow_plain_http.unwrap_or(false)
            {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                let name = match host.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or(""),
                    None => host.rsplit_once(':').map_or(host, |(h, _)| h),
                };
                let loopback = name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(bad(
                        "url",
                        format!(
                            "alerts.webhook.url {:?}: plain http would carry alerts unencrypted \
                             to {name}; use https:// (or allow_plain_http = true for a receiver \
                             on a trusted network)",
                            w.url
                        ),
                    ));
                }
            }
            cfg.webhook = Some(WebhookConfig {
                url: w.url,
                ca_file,
                secret,
                timeout: ms("timeout_ms", w.timeout_ms, 5_000)?,
                backoff_min,
                backoff_max,
                outbox_dir: w
                    .outbox_dir
                    .map(|p| resolve(&p))
                    .unwrap_or_else(|| spool_dir.join("webhook-outbox")),
            });
        }
        if let Some(s) = a.syslog {
            let off = s.span().start;
            let s = s.into_inner();
            if let Err(e) = s.validate() {
                let key = match &e {
                    crate::sinks::syslog::SyslogError::Config { field, .. } => *field,
                    _ => "address",
                };
                return Err(at(file.key_offset(off, key), format!("alerts.syslog: {e}")));
            }
            cfg.syslog = Some(s);
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use crate::config::CollectorConfig;

    fn write(body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        crate::config::fixture::write(&format!("{}{body}", crate::config::fixture::TRANSPORT))
    }

    #[test]
    fn sections_resolve_paths_next_to_the_file_with_defaults() {
        let (d, p) = write(
            "[enrich]\nmmdb = [\"geo.mmdb\"]\n[policy]\nfile = \"policy.toml\"\n\
             [alerts]\njsonl = \"a.jsonl\"\n[alerts.webhook]\nurl = \"http://127.0.0.1:9/h\"\n\
             secret = \"k\"\n[alerts.syslog]\naddress = \"127.0.0.1:514\"\nprotocol = \"tcp\"\n",
        );
        let c = CollectorConfig::load(&p).unwrap().analysis;
        assert_eq!(c.enrich.mmdb, vec![d.path().join("geo.mmdb")]);
        assert_eq!(c.policy, Some(d.path().join("policy.toml")));
        assert_eq!(c.jsonl, Some(d.path().join("a.jsonl")));
        let w = c.webhook.unwrap();
        assert_eq!(w.secret, "k");
        assert!(w.outbox_dir.ends_with("webhook-outbox"));
        assert!(c.detect_enabled);
        assert!(c.detect_state.unwrap().ends_with("detector-state.json"));
        assert_eq!(c.violation_merge_gap.as_secs(), 300);
        assert!(c.syslog.is_some());
    }

    #[test]
    fn bad_sections_name_file_and_line() {
        let cases = [
            (
                "[policy]\nfile = \"p.toml\"\nmerge_gap_secs = 0\n",
                ":8: policy.merge_gap_secs",
            ),
            (
                "[detect]\nidle_advance_secs = 0\n",
                ":7: detect.idle_advance_secs",
            ),
            ("[detect]\nthreshold = 3\n", ":7:"),
            (
                "[detect]\nstate_save_secs = 0\n",
                ":7: detect.state_save_secs",
            ),
            ("[enrich]\nmmdbs = []\n", ":7:"),
            ("[alerts]\nfile = \"x\"\n", ":7:"),
            (
                "[alerts.webhook]\nsecret = \"k\"\nurl = \"ftp://x\"\n",
                ":8: alerts.webhook.url",
            ),
            (
                "[alerts.webhook]\nurl = \"https://h/\"\nsecret = \"k\"\nca_file = \"no.pem\"\n",
                ":9: alerts.webhook.ca_file",
            ),
            (
                "[alerts.webhook]\nurl = \"http://h:1/\"\n",
                ":7: alerts.webhook needs secret",
            ),
            (
                "[alerts.webhook]\nurl = \"http://h:1/\"\nsecret = \"k\"\nsecret_file = \"s\"\n",
                ":8: alerts.webhook: give secret or secret_file",
            ),
            (
                "[alerts.webhook]\nurl = \"http://h:1/\"\nsecret_file = \"missing\"\n",
                ":8: alerts.webhook.secret_file",
            ),
            (
                "[alerts.webhook]\nurl = \"http://h:1/\"\nsecret = \"k\"\nbackoff_min_ms = 0\n",
                ":9: alerts.webhook.backoff_min_ms",
            ),
            (
                "[alerts.webhook]\nsecret = \"k\"\nurl = \"http://regulator.example/h\"\n",
                ":8: alerts.webhook.url \"http://regulator.example/h\": plain http",
            ),
            (
                "[alerts.syslog]\nprotocol = \"udp\"\naddress = \"nohost\"\n",
                ":8: alerts.syslog: ",
            ),
            (
                "[alerts.syslog]\naddress = \"h:1\"\nprotocol = \"smtp\"\n",
                ":8:",
            ),
        ];
        for (body, want) in cases {
            let (_d, p) = write(body);
            let e = CollectorConfig::load(&p).unwrap_err().to_string();
            let want = format!("{}{want}", p.display());
            assert!(
                e.starts_with(&want),
                "{body:?}\n got {e:?}\nwant prefix {want:?}"
            );
        }
    }

    #[test]
    fn files_the_sections_name_are_checked_at_load() {
        let (d, p) = write("[enrich]\ncsv = [\"ranges.csv\"]\n[policy]\nfile = \"policy.toml\"\n");
        std::fs::write(d.path().join("ranges.csv"), "10.0.0.0/8,HK,64496\n").unwrap();
        std::fs::write(
            d.path().join("policy.toml"),
            "[[zone]]\nname = \"a\"\ncidrs = [\"10.0.0.1/8\"]\n",
        )
        .unwrap();
        let c = CollectorConfig::load(&p).unwrap().analysis;
        let e = c.load().unwrap_err();
        assert!(
            e.starts_with(&format!("{}:3:", d.path().join("policy.toml").display())),
            "{e}"
        );
        std::fs::write(
            d.path().join("policy.toml"),
            "[[zone]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        std::fs::write(d.path().join("ranges.csv"), "10.0.0.0/8,HK\nnot a range\n").unwrap();
        let e = c.load().unwrap_err();
        assert!(
            e.starts_with(&format!("{}:6: [enrich]", p.display())),
            "{e}"
        );
        assert!(e.contains("ranges.csv"), "{e}");
        std::fs::write(d.path().join("ranges.csv"), "10.0.0.0/8,HK,64496\n").unwrap();
        let ok = c.load().unwrap();
        assert!(ok.enricher.is_some() && ok.policy.is_some());
    }
}
