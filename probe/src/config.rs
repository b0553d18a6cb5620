//! The probe's configuration file (TOML). Errors name the file and line.
//!
//! ```toml
//! [probe]
//! id = "edge-hk-1"              # identifies this probe to the collector
//! backend = "ebpf"              # or "afpacket"
//! active_timeout_secs = 60
//! idle_timeout_secs = 15
//! sweep_interval_ms = 1000      # how often kernel maps are drained
//! metrics_listen = "127.0.0.1:9464"
//! user = "tidegate"             # become this user (no capabilities) once capture is set up
//! tunnels = "outer"             # outer | inner: key GRE/VXLAN/GTP-U/IP-in-IP by the inner packet
//!
//! [ebpf]
//! flow_memory_mib = 128         # kernel flow table budget (128 B per slot, any CPU count)
//! # flow_entries = 699050       # or: concurrent flows to size it for (1.5 slots each)
//! fallback_bytes = 16777216
//! xdp_mode = "auto"             # auto | native | skb
//! egress = true
//! timestamps = "coarse"        # coarse (one jiffy, 1-4 ms) | tick (1 ms, a thread waking 1000/s) | precise (ns)
//! enforce = false               # install the collector's enforcement policies (XDP drops)
//! enforce_prefixes = 262144     # capacity of the enforcement prefix maps
//! enforce_max_offline_secs = 600  # collector unreachable this long: clear the policy (fail-open)
//!
//! [[line]]
//! name = "hk-intl-1"
//! iface = "eth1"
//!
//! [collector]                   # without it, records go to stdout as JSON lines
//! addr = "collector.example:7443"  # or a list, first choice first:
//! # addr = ["collector-a.example:7443", "collector-b.example:7443"]
//! # failback_secs = 300        # on another collector this long: back to the first
//! tls_ca = "certs/ca.pem"       # relative paths are relative to this file
//! tls_cert = "certs/probe-edge-hk-1.pem"
//! tls_key = "certs/probe-edge-hk-1.key"
//! spool_dir = "/var/lib/tidegate/probe-spool"
//! spool_max_bytes = 1073741824  # export waits while the spool is this full
//! batch_records = 5000
//! # server_name = "collector.example"   # name in the collector's certificate
//! ```

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use tidegate_base::ConfigFile;
use toml::Spanned;

use crate::{
    capture::ebpf::{EbpfOptions, Timestamps, XdpModeChoice},
    table::Timeouts,
};

pub use tidegate_base::ConfigError;

/// Capture backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// XDP ingress + TCX egress programs.
    #[default]
    Ebpf,
    /// AF_PACKET sockets (hosts without eBPF).
    Afpacket,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    probe: RawProbe,
    #[serde(default)]
    ebpf: RawEbpf,
    #[serde(default)]
    line: Vec<RawLine>,
    collector: Option<Spanned<RawCollector>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    addr: Option<Spanned<Addrs>>,
    failback_secs: Option<Spanned<u64>>,
    server_name: Option<Spanned<String>>,
    tls_ca: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    spool_dir: Option<Spanned<String>>,
    spool_max_bytes: Option<Spanned<u64>>,
    batch_records: Option<Spanned<u64>>,
}

/// `addr`: one collector, or a list in order of preference.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Addrs {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    id: Option<Spanned<String>>,
    backend: Option<Backend>,
    active_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    sweep_interval_ms: Option<Spanned<u64>>,
    metrics_listen: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    tunnels: Option<crate::capture::TunnelMode>,
}

/// Concurrent flows a kernel flow table of `mib` MiB is sized for.
pub fn flows_for_budget(mib: u32) -> u32 {
    use tidegate_common::slot::{flows_for_slots, slots_for_budget};
    flows_for_slots(slots_for_budget(u64::from(mib) << 20))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEbpf {
    flow_entries: Option<Spanned<u32>>,
    flow_memory_mib: Option<Spanned<u32>>,
    fallback_bytes: Option<Spanned<u32>>,
    xdp_mode: Option<XdpModeChoice>,
    egress: Option<bool>,
    timestamps: Option<Timestamps>,
    enforce: Option<bool>,
    enforce_prefixes: Option<Spanned<u32>>,
    enforce_max_offline_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    name: Spanned<String>,
    iface: Spanned<String>,
}

/// One monitored line: a name for people, an interface for the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Line name (shown in records and dashboards).
    pub name: String,
    /// Interface name.
    pub iface: String,
}

/// Where records go when a `[collector]` section (or `--collector`) is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectorConfig {
    /// Collector address, `HOST:PORT` (the first of `addr`).
    pub addr: String,
    /// The further collectors of `addr`, in order of preference.
    pub failover: Vec<String>,
    /// Back to the first collector after this long on another.
    pub failback: Duration,
    /// Name to verify in the collector's certificate (default: the host of `addr`).
    pub server_name: Option<String>,
    /// CA certificate (PEM) that issued the collector's certificate.
    pub tls_ca: PathBuf,
    /// This probe's certificate (PEM; CN = probe id).
    pub tls_cert: PathBuf,
    /// This probe's private key (PEM).
    pub tls_key: PathBuf,
    /// Spool directory for unacknowledged batches.
    pub spool_dir: PathBuf,
    /// Spool capacity in bytes.
    pub spool_max_bytes: u64,
    /// Records per batch.
    pub batch_records: usize,
}

/// Validated probe configuration.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Probe id.
    pub id: String,
    /// Capture backend.
    pub backend: Backend,
    /// Export timeouts.
    pub timeouts: Timeouts,
    /// Kernel map drain interval.
    pub sweep_interval: Duration,
    /// Prometheus endpoint, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// The user the probe becomes once capture is set up (no capability left).
    pub user: Option<String>,
    /// eBPF options.
    pub ebpf: EbpfOptions,
    /// Lines to capture on.
    pub lines: Vec<Line>,
    /// The collector, if records go to one.
    pub collector: Option<CollectorConfig>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            id: hostname(),
            backend: Backend::Ebpf,
            timeouts: Timeouts::default(),
            sweep_interval: Duration::from_secs(1),
            metrics_listen: None,
            user: None,
            ebpf: EbpfOptions::default(),
            lines: Vec::new(),
            collector: None,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "probe".into())
}

impl ProbeConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_file(&ConfigFile::read(path)?)
    }

    /// Parses configuration text; `path` is used in error messages.
    pub fn parse(src: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::from_file(&ConfigFile::new(path, src))
    }

    /// Validates the file's text; every error is located in it.
    pub fn from_file(file: &ConfigFile) -> Result<Self, ConfigError> {
        let at = |off: usize, msg: String| file.at(off, msg);
        let path = file.path();
        let raw: RawFile = file.parse()?;
        let mut c = ProbeConfig::default();
        if let Some(id) = &raw.probe.id {
            if let Some(problem) = tidegate_wire::probe_id_problem(id.get_ref()) {
                return Err(at(id.span().start, format!("probe.id: {problem}")));
            }
            c.id = id.get_ref().clone();
        } else if let Some(problem) = tidegate_wire::probe_id_problem(&c.id) {
            return Err(file.at(
                0,
                format!("the host name is not a usable probe id ({problem}): set probe.id"),
            ));
        }
        c.backend = raw.probe.backend.unwrap_or_default();
        c.ebpf.tunnels = raw.probe.tunnels.unwrap_or_default();
        if let Some(v) = &raw.probe.active_timeout_secs {
            let secs = file.in_range(v, "active_timeout_secs", 1..=86_400)?;
            c.timeouts.active = Duration::from_secs(secs);
        }
        if let Some(v) = &raw.probe.idle_timeout_secs {
            let secs = file.in_range(v, "idle_timeout_secs", 1..=86_400)?;
            c.timeouts.idle = Duration::from_secs(secs);
        }
        if let Some(v) = &raw.probe.sweep_interval_ms {
            let ms = file.in_range(v, "sweep_interval_ms", 10..=60_000)?;
            c.sweep_interval = Duration::from_millis(ms);
        }
        if let Some(u) = &raw.probe.user {
            if let Err(e) = crate::privileges::lookup(u.get_ref()) {
                return Err(at(u.span().start, e.to_string()));
            }
            c.user = Some(u.get_ref().clone());
        }
        if let Some(v) = &raw.probe.metrics_listen {
            c.metrics_listen = Some(file.value(v, "metrics_listen", "host:port")?);
        }
        match (&raw.ebpf.flow_entries, &raw.ebpf.flow_memory_mib) {
            (Some(_), Some(m)) => {
                return Err(at(
                    m.span().start,
                    "give flow_memory_mib or flow_entries, not both (both size the flow table)"
                        .into(),
                ));
            }
            (Some(v), None) => {
                c.ebpf.flow_entries = file.in_range(v, "flow_entries", 64..=16_777_216)?;
            }
            (None, Some(m)) => {
                let mib = file.in_range(m, "flow_memory_mib", 1..=65_536)?;
                c.ebpf.flow_entries = flows_for_budget(mib);
            }
            (None, None) => {}
        }
        if let Some(v) = raw.ebpf.fallback_bytes {
            let b = *v.get_ref();
            if !b.is_power_of_two() || b < 4096 {
                return Err(at(
                    v.span().start,
                    "fallback_bytes must be a power of two of at least 4096".into(),
                ));
            }
            c.ebpf.fallback_bytes = b;
        }
        if let Some(m) = raw.ebpf.xdp_mode {
            c.ebpf.xdp_mode = m;
        }
        if let Some(e) = raw.ebpf.egress {
            c.ebpf.egress = e;
        }
        if let Some(t) = raw.ebpf.timestamps {
            c.ebpf.timestamps = t;
        }
        if let Some(e) = raw.ebpf.enforce {
            c.ebpf.enforce = e;
        }
        if let Some(v) = &raw.ebpf.enforce_max_offline_secs {
            c.ebpf.enforce_max_offline_secs =
                Some(file.in_range(v, "enforce_max_offline_secs", 1..=604_800)?);
        }
        if let Some(v) = &raw.ebpf.enforce_prefixes {
            c.ebpf.enforce_prefixes = file.in_range(v, "enforce_prefixes", 16..=16_777_216)?;
        }
        let mut names = HashSet::new();
        let mut ifaces = HashSet::new();
        for l in raw.line {
            if l.name.get_ref().trim().is_empty() {
                return Err(at(
                    l.name.span().start,
                    "line name must not be empty".into(),
                ));
            }
            if !names.insert(l.name.get_ref().clone()) {
                return Err(at(
                    l.name.span().start,
                    format!("duplicate line name {:?}", l.name.get_ref()),
                ));
            }
            if names.len() > tidegate_wire::MAX_HEALTH_ITEMS {
                return Err(at(
                    l.name.span().start,
                    format!(
                        "more than {} lines (a collector refuses a larger health report)",
                        tidegate_wire::MAX_HEALTH_ITEMS
                    ),
                ));
            }
            if !ifaces.insert(l.iface.get_ref().clone()) {
                return Err(at(
                    l.iface.span().start,
                    format!("interface {:?} used by two lines", l.iface.get_ref()),
                ));
            }
            c.lines.push(Line {
                name: l.name.into_inner(),
                iface: l.iface.into_inner(),
            });
        }
        if let Some(rc) = raw.collector {
            let base = path.parent().unwrap_or(Path::new(""));
            c.collector = Some(collector(rc, base, &at)?);
        }
        if c.lines.is_empty() {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                msg: "no [[line]] configured: add at least one line with name and iface".into(),
            });
        }
        Ok(c)
    }
}

/// Validates the `[collector]` section; relative paths are taken from `base` (the
/// configuration file's directory).
fn collector(
    rc: Spanned<RawCollector>,
    base: &Path,
    at: &dyn Fn(usize, String) -> ConfigError,
) -> Result<CollectorConfig, ConfigError> {
    let section = rc.span().start;
    let rc = rc.into_inner();
    let required = |v: Option<Spanned<String>>, key: &str| {
        let v = v.ok_or_else(|| at(section, format!("[collector] needs {key}")))?;
        if v.get_ref().trim().is_empty() {
            return Err(at(v.span().start, format!("{key} must not be empty")));
        }
        Ok(v)
    };
    let file =
        |v: Option<Spanned<String>>, key: &str| required(v, key).map(|v| base.join(v.into_inner()));
    let addr = rc
        .addr
        .ok_or_else(|| at(section, "[collector] needs addr".to_string()))?;
    let addr_at = addr.span().start;
    let list = match addr.into_inner() {
        Addrs::One(a) => vec![a],
        Addrs::Many(v) => v,
    };
    if list.is_empty() {
        return Err(at(addr_at, "addr must name at least one collector".into()));
    }
    for (i, a) in list.iter().enumerate() {
        if a.trim().is_empty() {
            return Err(at(addr_at, "addr must not be empty".into()));
        }
        crate::export::collector::split_host_port(a)
            .map_err(|m| at(addr_at, format!("addr {m}")))?;
        if list[..i].contains(a) {
            return Err(at(addr_at, format!("addr lists {a} twice")));
        }
    }
    let failback = match rc.failback_secs {
        Some(v) if *v.get_ref() == 0 => {
            return Err(at(
                v.span().start,
                "failback_secs must be at least 1".into(),
            ));
        }
        Some(v) => Duration::from_secs(*v.get_ref()),
        None => Duration::from_secs(300),
    };
    let mut list = list.into_iter();
    let mut cfg = CollectorConfig {
        addr: list.next().expect("checked non-empty"),
        failover: list.collect(),
        failback,
        server_name: rc.server_name.map(Spanned::into_inner),
        tls_ca: file(rc.tls_ca, "tls_ca")?,
        tls_cert: file(rc.tls_cert, "tls_cert")?,
        tls_key: file(rc.tls_key, "tls_key")?,
        spool_dir: match rc.spool_dir {
            Some(d) => base.join(required(Some(d), "spool_dir")?.into_inner()),
            None => PathBuf::from(crate::export::collector::DEFAULT_SPOOL_DIR),
        },
        spool_max_bytes: crate::export::collector::DEFAULT_SPOOL_MAX_BYTES,
        batch_records: crate::export::collector::DEFAULT_BATCH_RECORDS,
    };
    if let Some(v) = rc.spool_max_bytes {
        if *v.get_ref() < 1 << 20 {
            return Err(at(
                v.span().start,
                "spool_max_bytes must be at least 1048576 (1 MiB)".into(),
            ));
        }
        cfg.spool_max_bytes = *v.get_ref();
    }
    if let Some(v) = rc.batch_records {
        if !(1..=crate::export::collector::MAX_BATCH_RECORDS as u64).contains(v.get_ref()) {
            return Err(at(
                v.span().start,
                format!(
                    "batch_records must be between 1 and {}",
                    crate::export::collector::MAX_BATCH_RECORDS
                ),
            ));
        }
        cfg.batch_records = *v.get_ref() as usize;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        ProbeConfig::parse(src, Path::new("probe.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_probe_id_outside_the_charset_is_refused_at_its_line() {
        let e = err("[probe]\nid = \"../../etc/x\"\n");
        assert!(e.starts_with("probe.toml:2:"), "{e}");
        assert!(e.contains("probe.id"), "{e}");
    }

    #[test]
    fn collectors_listed_in_order_of_preference() {
        let c = ProbeConfig::parse(
            "[[line]]\nname = \"a\"\niface = \"eth1\"\n[collector]\naddr = [\"c1:7443\", \"[::1]:7443\", \"c3:7443\"]\nfailback_secs = 60\ntls_ca = \"ca.pem\"\ntls_cert = \"p.pem\"\ntls_key = \"p.key\"\n",
            Path::new("/etc/tidegate/probe.toml"),
        )
        .unwrap();
        let cc = c.collector.unwrap();
        assert_eq!(cc.addr, "c1:7443");
        assert_eq!(cc.failover, ["[::1]:7443", "c3:7443"]);
        assert_eq!(cc.failback, Duration::from_secs(60));
    }

    #[test]
    fn the_flow_table_is_sized_from_a_memory_budget() {
        let c = ProbeConfig::parse(
            "[ebpf]\nflow_memory_mib = 128\n[[line]]\nname = \"a\"\niface = \"eth1\"\n",
            Path::new("/etc/tidegate/probe.toml"),
        )
        .unwrap();
        // 128 MiB = 1 048 576 slots of 128 bytes, for two thirds as many flows.
        assert_eq!(c.ebpf.flow_entries, 699_050);
        assert_eq!(
            tidegate_common::slot::slots_for_flows(c.ebpf.flow_entries) as u64 * 128,
            (128 << 20) - 128
        );
        let e = err("[ebpf]\nflow_entries = 4096\nflow_memory_mib = 64\n");
        assert!(e.starts_with("probe.toml:3:"), "{e}");
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn tunnels_are_keyed_by_the_outer_header_unless_told() {
        let line = "[[line]]\nname = \"a\"\niface = \"eth1\"\n";
        let c = ProbeConfig::parse(line, Path::new("p.toml")).unwrap();
        assert_eq!(c.ebpf.tunnels, crate::capture::TunnelMode::Outer);
        let c = ProbeConfig::parse(
            &format!("[probe]\ntunnels = \"inner\"\n{line}"),
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.ebpf.tunnels, crate::capture::TunnelMode::Inner);
        let e = err("[probe]\nid = \"p\"\ntunnels = \"deepest\"\n");
        assert!(e.starts_with("probe.toml:3:"), "{e}");
        assert!(e.contains("outer") && e.contains("inner"), "{e}");
    }

    #[test]
    fn full_config_parses() {
        let c = ProbeConfig::parse(
            "[probe]\nid = \"edge-1\"\nactive_timeout_secs = 30\n[ebpf]\nflow_entries = 4096\nxdp_mode = \"skb\"\ntimestamps = \"tick\"\n[[line]]\nname = \"a\"\niface = \"eth1\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.id, "edge-1");
        assert_eq!(c.timeouts.active, Duration::from_secs(30));
        assert_eq!(c.ebpf.flow_entries, 4096);
        assert_eq!(c.ebpf.xdp_mode, XdpModeChoice::Skb);
        assert_eq!(c.ebpf.timestamps, Timestamps::Tick);
        assert_eq!(
            c.lines,
            vec![Line {
                name: "a".into(),
                iface: "eth1".into()
            }]
        );
    }

    #[test]
    fn collector_section_resolves_paths_next_to_the_file() {
        let c = ProbeConfig::parse(
            "[[line]]\nname = \"a\"\niface = \"eth1\"\n[collector]\naddr = \"[::1]:7443\"\ntls_ca = \"certs/ca.pem\"\ntls_cert = \"/abs/p.pem\"\ntls_key = \"certs/p.key\"\nspool_dir = \"spool\"\nbatch_records = 100\n",
            Path::new("/etc/tidegate/probe.toml"),
        )
        .unwrap();
        let cc = c.collector.unwrap();
        assert_eq!(cc.addr, "[::1]:7443");
        assert_eq!(cc.tls_ca, Path::new("/etc/tidegate/certs/ca.pem"));
        assert_eq!(cc.tls_cert, Path::new("/abs/p.pem"));
        assert_eq!(cc.spool_dir, Path::new("/etc/tidegate/spool"));
        assert_eq!(cc.batch_records, 100);
        assert_eq!(cc.spool_max_bytes, 1 << 30);
        let none = ProbeConfig::parse(
            "[[line]]\nname = \"a\"\niface = \"e\"\n",
            Path::new("p.toml"),
        );
        assert!(none.unwrap().collector.is_none());
    }

    #[test]
    fn bad_inputs_name_file_and_line() {
        let cases = [
            ("[probe]\nidle_timeout_secs = \"x\"\n", "probe.toml:2:"),
            ("[probe]\n\nbogus = 1\n", "probe.toml:3:"),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[[line]]\nname = \"a\"\niface = \"f\"\n",
                "probe.toml:5: duplicate line name",
            ),
            (
                "[ebpf]\nfallback_bytes = 5000\n[[line]]\nname = \"a\"\niface = \"e\"\n",
                "probe.toml:2: fallback_bytes",
            ),
            (
                "[probe]\nmetrics_listen = \"nope\"\n[[line]]\nname = \"a\"\niface = \"e\"\n",
                "probe.toml:2: metrics_listen",
            ),
            ("[probe\n", "probe.toml:1:"),
            ("[probe]\nid = \"x\"\n", "probe.toml: no [[line]]"),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[collector]\naddr = \"c:7443\"\ntls_ca = \"ca.pem\"\ntls_cert = \"p.pem\"\n",
                "probe.toml:4: [collector] needs tls_key",
            ),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[collector]\naddr = \"nohost\"\n",
                "probe.toml:5: addr \"nohost\": no port",
            ),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[collector]\naddr = [\"c:1\", \"nohost\"]\n",
                "probe.toml:5: addr \"nohost\": no port",
            ),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[collector]\naddr = [\"c:1\", \"c:1\"]\n",
                "probe.toml:5: addr lists c:1 twice",
            ),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[collector]\naddr = []\n",
                "probe.toml:5: addr must name at least one collector",
            ),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[collector]\naddr = \"c:1\"\nfailback_secs = 0\n",
                "probe.toml:6: failback_secs must be at least 1",
            ),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[collector]\naddr = \"c:1\"\ntls_ca = \"a\"\ntls_cert = \"b\"\ntls_key = \"c\"\n\nbatch_records = 0\n",
                "probe.toml:10: batch_records",
            ),
            (
                "[[line]]\nname = \"a\"\niface = \"e\"\n[collector]\nadress = \"c:1\"\n",
                "probe.toml:5:",
            ),
        ];
        for (src, want) in cases {
            let e = err(src);
            assert!(
                e.starts_with(want),
                "{src:?}: got {e:?}, want prefix {want:?}"
            );
        }
    }
}
