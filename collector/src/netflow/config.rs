//! `[netflow]`: the collector's NetFlow v5/v9 and IPFIX listeners, the exporters they
//! take flows from, and `[[netflow.export]]` targets it sends IPFIX to. Validated once
//! for `run` and `check-config` alike.
//!
//! ```toml
//! [netflow]
//! listen = ["0.0.0.0:2055", "0.0.0.0:4739"]   # UDP, NetFlow v5, v9 and IPFIX on each
//! accept_unlisted = false       # only the exporters below (the default; true takes
//!                               # any source, named by address: spoofable UDP, for labs)
//! max_exporters = 128           # template scopes kept (exporter × observation domain)
//! template_timeout_secs = 1800  # a template not refreshed for this long is forgotten
//!
//! [[netflow.exporter]]
//! address = "192.0.2.1"         # the router's source address
//! name = "hk-edge-rtr"          # stored as probe_id "exporter:hk-edge-rtr"
//! interfaces = { 3 = "hk-intl-1", 7 = "sg-intl-2" }   # ifIndex → line; other flows skipped
//! sampling = 1000               # when the router does not say (v5 header, options)
//!
//! [[netflow.export]]
//! to = "192.0.2.50:4739"        # an IPFIX collector (nfcapd, pmacct, ...)
//! ```

use std::{collections::HashMap, net::IpAddr, net::SocketAddr, sync::Arc, time::Duration};

use serde::Deserialize;
use tidegate_base::{ConfigError, ConfigFile};
use toml::Spanned;

/// One exporter the operator knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterConfig {
    /// Its source address.
    pub address: IpAddr,
    /// Name: records are stored under probe id `exporter:<name>`.
    pub name: String,
    /// Line of its flows when no interface map is given (default: the name).
    pub line: Option<String>,
    /// ifIndex → line. When not empty, a flow whose input and output interface are both
    /// unmapped is skipped (counted): routers export every interface, the hub watches
    /// its international lines.
    pub interfaces: HashMap<u32, String>,
    /// Sampling (1 in N packets) assumed when the exporter does not say.
    pub sampling: Option<u32>,
}

/// A collector that gets our flows as IPFIX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportTarget {
    /// Its address.
    pub to: SocketAddr,
    /// Observation domain id written in every message.
    pub observation_domain: u32,
    /// Templates are sent again this often (RFC 7011 §8.4: UDP needs periodic resends).
    pub template_refresh: Duration,
    /// Also send records that came in over NetFlow/IPFIX (off: only probe records, so
    /// two collectors exporting to each other cannot loop).
    pub include_ingested: bool,
}

/// Validated `[netflow]`.
#[derive(Clone, Debug)]
pub struct NetflowConfig {
    /// UDP listeners (each takes v5, v9 and IPFIX).
    pub listen: Vec<SocketAddr>,
    /// Take flows from exporters not listed (named by address). Off unless a file says
    /// so: UDP sources are spoofable, and forged flows feed detection (and any automatic
    /// blocks) like real ones.
    pub accept_unlisted: bool,
    /// Known exporters, by address.
    pub exporters: Arc<HashMap<IpAddr, ExporterConfig>>,
    /// Template scopes (exporter × observation domain / source id) kept; the least
    /// recently heard is forgotten beyond this.
    pub max_exporters: usize,
    /// A template not refreshed for this long is forgotten.
    pub template_timeout: Duration,
    /// Data sets that arrive before their template, held per template id (per scope).
    pub pending_sets_per_template: usize,
    /// Template ids with held data sets, per scope.
    pub pending_templates: usize,
    /// Largest data set held, bytes.
    pub pending_set_bytes: usize,
    /// How long held data sets wait for their template.
    pub pending_timeout: Duration,
    /// Records per spooled batch (per exporter).
    pub batch_records: usize,
    /// Longest a record waits before its batch is spooled.
    pub flush_interval: Duration,
    /// Kernel receive buffer asked for on each socket, bytes.
    pub recv_buffer_bytes: usize,
    /// IPFIX export targets.
    pub export: Vec<ExportTarget>,
}

impl NetflowConfig {
    /// The defaults, but taking flows from any source (`accept_unlisted = true`): for
    /// labs, tests and benchmarks, never a listener on a network others can reach.
    pub fn accepting_any() -> Self {
        NetflowConfig {
            accept_unlisted: true,
            ..NetflowConfig::default()
        }
    }
}

impl Default for NetflowConfig {
    fn default() -> Self {
        NetflowConfig {
            listen: Vec::new(),
            accept_unlisted: false,
            exporters: Arc::default(),
            max_exporters: 128,
            template_timeout: Duration::from_secs(1800),
            pending_sets_per_template: 16,
            pending_templates: 16,
            pending_set_bytes: 16 * 1024,
            pending_timeout: Duration::from_secs(60),
            batch_records: 4096,
            flush_interval: Duration::from_millis(500),
            recv_buffer_bytes: 8 << 20,
            export: Vec::new(),
        }
    }
}

/// `[netflow]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetflow {
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    accept_unlisted: Option<bool>,
    max_exporters: Option<Spanned<usize>>,
    template_timeout_secs: Option<Spanned<u64>>,
    pending_sets_per_template: Option<Spanned<usize>>,
    pending_templates: Option<Spanned<usize>>,
    pending_set_bytes: Option<Spanned<usize>>,
    pending_timeout_secs: Option<Spanned<u64>>,
    batch_records: Option<Spanned<usize>>,
    flush_interval_ms: Option<Spanned<u64>>,
    recv_buffer_bytes: Option<Spanned<usize>>,
    #[serde(default)]
    exporter: Vec<Spanned<RawExporter>>,
    #[serde(default)]
    export: Vec<Spanned<RawExport>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExporter {
    address: Spanned<String>,
    name: Option<Spanned<String>>,
    line: Option<Spanned<String>>,
    #[serde(default)]
    interfaces: HashMap<String, Spanned<String>>,
    sampling: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExport {
    to: Spanned<String>,
    observation_domain: Option<u32>,
    template_refresh_secs: Option<Spanned<u64>>,
    include_ingested: Option<bool>,
}

/// Names stored in ClickHouse and shown in the console: short, printable, no separators
/// that could be read as a path.
fn check_name(file: &ConfigFile, v: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s.clone())
    } else {
        Err(file.at(
            v.span().start,
            format!("{field} {s:?}: use 1 to 64 of A-Z a-z 0-9 - _ ."),
        ))
    }
}

impl NetflowConfig {
    /// Validates `[netflow]` (`off` is the section's offset, for errors about it as a
    /// whole).
    pub fn from_raw(raw: RawNetflow, file: &ConfigFile, off: usize) -> Result<Self, ConfigError> {
        let mut c = NetflowConfig::default();
        for l in &raw.listen {
            let a: SocketAddr = file.value(l, "netflow.listen", "host:port")?;
            if c.listen.contains(&a) {
                return Err(file.at(l.span().start, format!("netflow.listen {a} given twice")));
            }
            c.listen.push(a);
        }
        c.accept_unlisted = raw.accept_unlisted.unwrap_or(false);
        if let Some(v) = &raw.max_exporters {
            c.max_exporters = file.in_range(v, "netflow.max_exporters", 1..=100_000)?;
        }
        if let Some(v) = &raw.template_timeout_secs {
            let s = file.in_range(v, "netflow.template_timeout_secs", 10..=86_400)?;
            c.template_timeout = Duration::from_secs(s);
        }
        if let Some(v) = &raw.pending_sets_per_template {
            c.pending_sets_per_template =
                file.in_range(v, "netflow.pending_sets_per_template", 0..=4096)?;
        }
        if let Some(v) = &raw.pending_templates {
            c.pending_templates = file.in_range(v, "netflow.pending_templates", 1..=4096)?;
        }
        if let Some(v) = &raw.pending_set_bytes {
            c.pending_set_bytes = file.in_range(v, "netflow.pending_set_bytes", 64..=65_535)?;
        }
        if let Some(v) = &raw.pending_timeout_secs {
            let s = file.in_range(v, "netflow.pending_timeout_secs", 1..=3600)?;
            c.pending_timeout = Duration::from_secs(s);
        }
        if let Some(v) = &raw.batch_records {
            c.batch_records = file.in_range(
                v,
                "netflow.batch_records",
                1..=tidegate_wire::MAX_BATCH_RECORDS,
            )?;
        }
        if let Some(v) = &raw.flush_interval_ms {
            let ms = file.in_range(v, "netflow.flush_interval_ms", 10..=60_000)?;
            c.flush_interval = Duration::from_millis(ms);
        }
        if let Some(v) = &raw.recv_buffer_bytes {
            c.recv_buffer_bytes =
                file.in_range(v, "netflow.recv_buffer_bytes", 65_536..=(1 << 30))?;
        }
        let mut exporters = HashMap::new();
        let mut names = HashMap::new();
        for e in &raw.exporter {
            let at = e.span().start;
            let e = e.get_ref();
            let address: IpAddr =
                file.value(&e.address, "netflow.exporter.address", "an IP address")?;
            let name = match &e.name {
                Some(n) => check_name(file, n, "netflow.exporter.name")?,
                None => address.to_string(),
            };
            if exporters.contains_key(&address) {
                return Err(file.at(at, format!("netflow.exporter {address} listed twice")));
            }
            if names.insert(name.clone(), address).is_some() {
                return Err(file.at(at, format!("netflow.exporter name {name:?} used twice")));
            }
            let line = e
                .line
                .as_ref()
                .map(|l| check_name(file, l, "netflow.exporter.line"))
                .transpose()?;
            let mut interfaces = HashMap::new();
            for (k, v) in &e.interfaces {
                let ix: u32 = k.parse().map_err(|_| {
                    file.at(
                        v.span().start,
                        format!("netflow.exporter.interfaces key {k:?} is not an ifIndex (0 to 4294967295)"),
                    )
                })?;
                interfaces.insert(ix, check_name(file, v, "netflow.exporter.interfaces line")?);
            }
            let sampling = e
                .sampling
                .as_ref()
                .map(|s| file.in_range(s, "netflow.exporter.sampling", 1..=1 << 24))
                .transpose()?;
            exporters.insert(
                address,
                ExporterConfig {
                    address,
                    name,
                    line,
                    interfaces,
                    sampling,
                },
            );
        }
        if !c.accept_unlisted && exporters.is_empty() && !c.listen.is_empty() {
            return Err(file.at(
                off,
                "netflow: no [[netflow.exporter]] is listed, and only listed exporters are \
                 taken (accept_unlisted is false unless set): list the routers, or set \
                 accept_unlisted = true to take any source (spoofable; for labs)",
            ));
        }
        c.exporters = Arc::new(exporters);
        for t in &raw.export {
            let t = t.get_ref();
            let to: SocketAddr = file.value(&t.to, "netflow.export.to", "host:port")?;
            if to.port() == 0 || to.ip().is_unspecified() {
                return Err(file.at(
                    t.to.span().start,
                    format!("netflow.export.to {to}: needs a real address and port"),
                ));
            }
            let template_refresh = match &t.template_refresh_secs {
                Some(v) => Duration::from_secs(file.in_range(
                    v,
                    "netflow.export.template_refresh_secs",
                    1..=3600,
                )?),
                None => Duration::from_secs(60),
            };
            c.export.push(ExportTarget {
                to,
                observation_domain: t.observation_domain.unwrap_or(1),
                template_refresh,
                include_ingested: t.include_ingested.unwrap_or(false),
            });
        }
        Ok(c)
    }

    /// The probe id of an exporter's records: `exporter:<name>`, or `exporter:<address>`
    /// for one not listed.
    pub fn probe_id(&self, addr: IpAddr) -> String {
        match self.exporters.get(&addr) {
            Some(e) => format!("exporter:{}", e.name),
            None => format!("exporter:{addr}"),
        }
    }
}
