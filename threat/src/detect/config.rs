//! Detector thresholds (TOML, every field optional with a sensible default).

use std::path::Path;

use tidegate_base::{Cidr, ConfigError, ConfigFile, FieldError};

use serde::Deserialize;

/// All detector settings. Times are event time (flow timestamps).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// How late (seconds of event time) a record may arrive after newer ones; windows
    /// close this long after their end. Covers the probe's active timeout.
    pub lateness_secs: u64,
    /// Repeats of a kind and key within this many seconds update the open alert.
    pub merge_gap_secs: u64,
    /// Sample flows kept as evidence per alert.
    pub evidence_max: usize,
    /// Address blocks considered inside (for exfiltration).
    pub inside: Vec<String>,
    /// Port scan.
    pub port_scan: ScanConfig,
    /// Host sweep.
    pub host_sweep: ScanConfig,
    /// SYN flood.
    pub syn_flood: SynFloodConfig,
    /// Volumetric DDoS.
    pub volumetric: VolumetricConfig,
    /// Amplification (reflection) attacks.
    pub amplification: AmplificationConfig,
    /// DNS tunnelling.
    pub dns_tunnel: TunnelConfig,
    /// ICMP tunnelling.
    pub icmp_tunnel: TunnelConfig,
    /// Exfiltration-like transfers.
    pub exfiltration: ExfilConfig,
    /// Beaconing.
    pub beaconing: BeaconConfig,
    /// Rate surges towards inside hosts, against each host's own baseline.
    pub surge: SurgeConfig,
    /// Uploads: bytes out far above bytes in between an inside host and one destination.
    pub upload: UploadConfig,
    /// DNS tunnelling by query names (needs the probe's DNS metadata).
    pub dns_names: DnsNamesConfig,
}

/// Port scan / host sweep: distinct ports (or hosts) probed by small flows.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Distinct ports (port scan) or hosts (host sweep) that raise an alert.
    pub min_distinct: u64,
    /// A flow with at most this many packets counts as a probe.
    pub probe_max_packets: u64,
}

/// SYN flood.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SynFloodConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Uncompleted SYNs per second towards one target that raise an alert.
    pub min_syn_pps: f64,
}

/// Volumetric: per (target, protocol) rate above max(floor, baseline × factor).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VolumetricConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Absolute packets-per-second floor.
    pub floor_pps: f64,
    /// Absolute bits-per-second floor.
    pub floor_bps: f64,
    /// Alert when the rate exceeds the learned baseline by this factor.
    pub baseline_factor: f64,
    /// Weight of a new window in the baseline (exponential moving average).
    pub baseline_alpha: f64,
}

/// Amplification: bytes from amplification source ports towards one target.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AmplificationConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Bits per second from amplification ports (fragments included) that raise an alert.
    pub min_bps: f64,
    /// Distinct reflectors needed.
    pub min_reflectors: u64,
    /// Mean packet size (bytes) needed: reflection answers are large.
    pub min_mean_packet_bytes: f64,
    /// UDP source ports of amplification services.
    pub ports: Vec<u16>,
}

/// Tunnel detectors (DNS, ICMP): many packets with large payloads between one pair.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TunnelConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Packets from the client needed in a window.
    pub min_packets: u64,
    /// Mean IP packet size (bytes) from the client needed.
    pub min_mean_packet_bytes: f64,
    /// Client bytes in a window that raise an alert.
    pub min_bytes: u64,
}

/// Exfiltration: outbound bytes from an inside host to a foreign host.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExfilConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Absolute floor of bytes per window to one foreign destination.
    pub floor_bytes: u64,
    /// Alert when above the host's baseline of outbound bytes per window × this factor.
    pub baseline_factor: f64,
    /// Weight of a new window in the baseline.
    pub baseline_alpha: f64,
}

/// Beaconing: periodic connection starts with low jitter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BeaconConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Connection starts needed.
    pub min_events: usize,
    /// Shortest period considered (seconds).
    pub min_period_secs: f64,
    /// Largest coefficient of variation of the intervals (jitter).
    pub max_jitter: f64,
}

/// Rate surges: packets per second of requests towards one inside host and protocol,
/// against that host's own learned baseline ([`super::baseline`]). Catches what the
/// absolute floors of `volumetric` are too high to see (a few hundred pps at a host
/// that normally receives almost nothing); above those floors `volumetric` reports.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SurgeConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Minimum evidence: packets per second below this never alert, whatever the baseline.
    pub min_pps: f64,
    /// Alert at this many spreads (mean absolute deviations) above the host's level...
    pub deviations: f64,
    /// ...and at least this factor above its level.
    pub factor: f64,
    /// Weight of a new window in the baseline.
    pub baseline_alpha: f64,
    /// Windows of history (the detector's, for hosts never seen) before anything alerts.
    pub warmup_windows: u64,
    /// Hosts whose baseline is kept (least recently seen forgotten first).
    pub max_hosts: usize,
}

/// Uploads by asymmetry: per (inside host, outside destination), bytes sent vs bytes
/// received over windows of several lengths (each hopping by half its length, so a burst
/// shorter than half a window always falls whole into one), against the pair's own
/// baseline of bytes sent per window.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window lengths (seconds), shortest first.
    pub window_secs: Vec<u64>,
    /// Bytes sent to one destination needed in a window, one per window length.
    pub min_out_bytes: Vec<u64>,
    /// Bytes sent must be at least this many times the bytes received.
    pub min_ratio: f64,
    /// Alert at this many spreads above the pair's level of bytes sent per window...
    pub deviations: f64,
    /// ...and at least this factor above it.
    pub factor: f64,
    /// Weight of a new window in the baseline.
    pub baseline_alpha: f64,
    /// Seconds of history before a destination can be called new to a host.
    pub warmup_secs: u64,
    /// (host, destination) pairs tracked per window; past it the pairs that sent least
    /// are dropped first (they are furthest from alerting).
    pub max_pairs: usize,
}

/// DNS tunnelling by query names: per (host, parent domain), distinct leading parts and
/// their mean length and entropy over windows of several lengths.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsNamesConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window lengths (seconds), shortest first.
    pub window_secs: Vec<u64>,
    /// Distinct names under one parent needed, one per window length.
    pub min_distinct: Vec<u64>,
    /// Mean length (characters) of the leading part needed.
    pub min_mean_length: f64,
    /// Mean Shannon entropy (bits per character) of the leading part needed.
    pub min_entropy: f64,
    /// (host, parent) keys tracked per window; past it those with fewest names go first.
    pub max_keys: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            lateness_secs: 75,
            merge_gap_secs: 300,
            evidence_max: 10,
            inside: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            port_scan: ScanConfig {
                enabled: true,
                window_secs: 60,
                min_distinct: 6,
                probe_max_packets: 3,
            },
            host_sweep: ScanConfig {
                enabled: true,
                window_secs: 60,
                min_distinct: 20,
                probe_max_packets: 3,
            },
            syn_flood: SynFloodConfig {
                enabled: true,
                window_secs: 10,
                min_syn_pps: 100.0,
            },
            volumetric: VolumetricConfig {
                enabled: true,
                window_secs: 1,
                floor_pps: 2000.0,
                floor_bps: 200e6,
                baseline_factor: 10.0,
                baseline_alpha: 0.05,
            },
            amplification: AmplificationConfig {
                enabled: true,
                window_secs: 10,
                min_bps: 200e3,
                min_reflectors: 3,
                min_mean_packet_bytes: 400.0,
                ports: vec![19, 53, 123, 161, 389, 500, 1900, 3702, 4500, 11211],
            },
            dns_tunnel: TunnelConfig {
                enabled: true,
                window_secs: 300,
                min_packets: 50,
                min_mean_packet_bytes: 95.0,
                min_bytes: 10_000,
            },
            icmp_tunnel: TunnelConfig {
                enabled: true,
                window_secs: 600,
                min_packets: 50,
                min_mean_packet_bytes: 150.0,
                min_bytes: 20_000,
            },
            exfiltration: ExfilConfig {
                enabled: true,
                window_secs: 300,
                floor_bytes: 500_000_000,
                baseline_factor: 20.0,
                baseline_alpha: 0.1,
            },
            beaconing: BeaconConfig {
                enabled: true,
                min_events: 8,
                min_period_secs: 10.0,
                max_jitter: 0.1,
            },
            surge: SurgeConfig {
                enabled: true,
                window_secs: 10,
                min_pps: 50.0,
                deviations: 8.0,
                factor: 6.0,
                baseline_alpha: 0.02,
                warmup_windows: 60,
                max_hosts: 1 << 18,
            },
            upload: UploadConfig {
                enabled: true,
                window_secs: vec![600, 3600, 6 * 3600],
                min_out_bytes: vec![2_000_000, 3_000_000, 6_000_000],
                min_ratio: 4.0,
                deviations: 8.0,
                factor: 4.0,
                baseline_alpha: 0.05,
                warmup_secs: 3600,
                max_pairs: 1 << 18,
            },
            dns_names: DnsNamesConfig {
                enabled: true,
                window_secs: vec![600, 6 * 3600],
                min_distinct: vec![40, 150],
                min_mean_length: 20.0,
                min_entropy: 3.3,
                max_keys: 1 << 16,
            },
        }
    }
}

macro_rules! defaults_from {
    ($t:ty, $field:ident) => {
        impl Default for $t {
            fn default() -> Self {
                DetectConfig::default().$field
            }
        }
    };
}
defaults_from!(SynFloodConfig, syn_flood);
defaults_from!(VolumetricConfig, volumetric);
defaults_from!(AmplificationConfig, amplification);
defaults_from!(ExfilConfig, exfiltration);
defaults_from!(BeaconConfig, beaconing);
defaults_from!(SurgeConfig, surge);
defaults_from!(UploadConfig, upload);
defaults_from!(DnsNamesConfig, dns_names);

impl Default for ScanConfig {
    fn default() -> Self {
        DetectConfig::default().port_scan
    }
}

impl Default for TunnelConfig {
    fn default() -> Self {
        DetectConfig::default().dns_tunnel
    }
}

fn invalid(field: &str, msg: impl Into<String>) -> FieldError {
    FieldError::new(field, msg)
}

impl DetectConfig {
    /// Parses TOML text; `path` names the source in errors (`path:line: message`, for
    /// syntax and for out-of-range values alike).
    pub fn from_toml(text: &str, path: &str) -> Result<DetectConfig, ConfigError> {
        Self::from_file(&ConfigFile::new(Path::new(path), text))
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<DetectConfig, ConfigError> {
        Self::from_file(&ConfigFile::read(path)?)
    }

    /// Parses and validates a file's text; every error is located in it.
    pub fn from_file(file: &ConfigFile) -> Result<DetectConfig, ConfigError> {
        let cfg: DetectConfig = file.parse()?;
        cfg.validate().map_err(|e| file.field_error(&e))?;
        Ok(cfg)
    }

    /// The inside address blocks, parsed.
    pub fn inside_cidrs(&self) -> Result<Vec<Cidr>, FieldError> {
        self.inside
            .iter()
            .map(|s| Cidr::parse(s).map_err(|m| invalid("inside", m.to_string())))
            .collect()
    }

    /// Checks every value is in range.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.inside_cidrs()?;
        if self.evidence_max == 0 {
            return Err(invalid("evidence_max", "must be at least 1"));
        }
        let windows = [
            ("port_scan.window_secs", self.port_scan.window_secs),
            ("host_sweep.window_secs", self.host_sweep.window_secs),
            ("syn_flood.window_secs", self.syn_flood.window_secs),
            ("volumetric.window_secs", self.volumetric.window_secs),
            ("amplification.window_secs", self.amplification.window_secs),
            ("dns_tunnel.window_secs", self.dns_tunnel.window_secs),
            ("icmp_tunnel.window_secs", self.icmp_tunnel.window_secs),
            ("exfiltration.window_secs", self.exfiltration.window_secs),
            ("surge.window_secs", self.surge.window_secs),
        ];
        for (f, v, max) in [
            ("lateness_secs", self.lateness_secs, 86_400),
            ("merge_gap_secs", self.merge_gap_secs, 7 * 86_400),
        ] {
            if v > max {
                return Err(invalid(f, format!("{v}: must be 0..={max}")));
            }
        }
        for (f, v) in windows {
            if v == 0 || v > 86_400 {
                return Err(invalid(f, format!("{v}: must be 1..=86400")));
            }
        }
        let positive = [
            ("syn_flood.min_syn_pps", self.syn_flood.min_syn_pps),
            ("volumetric.floor_pps", self.volumetric.floor_pps),
            ("volumetric.floor_bps", self.volumetric.floor_bps),
            (
                "volumetric.baseline_factor",
                self.volumetric.baseline_factor,
            ),
            ("amplification.min_bps", self.amplification.min_bps),
            (
                "exfiltration.baseline_factor",
                self.exfiltration.baseline_factor,
            ),
            ("beaconing.min_period_secs", self.beaconing.min_period_secs),
            ("beaconing.max_jitter", self.beaconing.max_jitter),
            ("surge.min_pps", self.surge.min_pps),
            ("surge.deviations", self.surge.deviations),
            ("surge.factor", self.surge.factor),
            ("upload.min_ratio", self.upload.min_ratio),
            ("upload.deviations", self.upload.deviations),
            ("upload.factor", self.upload.factor),
            ("dns_names.min_mean_length", self.dns_names.min_mean_length),
            ("dns_names.min_entropy", self.dns_names.min_entropy),
        ];
        for (f, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(f, format!("{v}: must be a positive number")));
            }
        }
        for (f, v) in [
            ("volumetric.baseline_alpha", self.volumetric.baseline_alpha),
            (
                "exfiltration.baseline_alpha",
                self.exfiltration.baseline_alpha,
            ),
            ("surge.baseline_alpha", self.surge.baseline_alpha),
            ("upload.baseline_alpha", self.upload.baseline_alpha),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(invalid(f, format!("{v}: must be in (0, 1]")));
            }
        }
        for (f, v) in [
            ("port_scan.min_distinct", self.port_scan.min_distinct),
            ("host_sweep.min_distinct", self.host_sweep.min_distinct),
        ] {
            if v < 2 {
                return Err(invalid(f, format!("{v}: must be at least 2")));
            }
        }
        if self.beaconing.min_events < 4 {
            return Err(invalid("beaconing.min_events", "must be at least 4"));
        }
        if self.surge.warmup_windows > 100_000 {
            return Err(invalid("surge.warmup_windows", "must be 0..=100000"));
        }
        for (f, v) in [
            ("surge.max_hosts", self.surge.max_hosts),
            ("upload.max_pairs", self.upload.max_pairs),
            ("dns_names.max_keys", self.dns_names.max_keys),
        ] {
            if !(16..=1 << 24).contains(&v) {
                return Err(invalid(f, format!("{v}: must be 16..=16777216")));
            }
        }
        let u = &self.upload;
        if u.window_secs.is_empty() || u.window_secs.len() > 8 {
            return Err(invalid("upload.window_secs", "give 1 to 8 window lengths"));
        }
        if u.min_out_bytes.len() != u.window_secs.len() {
            return Err(invalid(
                "upload.min_out_bytes",
                format!(
                    "{} values for {} window lengths: give one per upload.window_secs",
                    u.min_out_bytes.len(),
                    u.window_secs.len()
                ),
            ));
        }
        for &w in &u.window_secs {
            if !(60..=7 * 86_400).contains(&w) {
                return Err(invalid(
                    "upload.window_secs",
                    format!("{w}: must be 60..=604800"),
                ));
            }
        }
        if u.min_out_bytes.contains(&0) {
            return Err(invalid("upload.min_out_bytes", "must be at least 1"));
        }
        let n = &self.dns_names;
        if n.window_secs.is_empty() || n.window_secs.len() > 8 {
            return Err(invalid(
                "dns_names.window_secs",
                "give 1 to 8 window lengths",
            ));
        }
        if n.min_distinct.len() != n.window_secs.len() {
            return Err(invalid(
                "dns_names.min_distinct",
                "give one per dns_names.window_secs",
            ));
        }
        if n.window_secs.iter().any(|w| !(60..=7 * 86_400).contains(w)) {
            return Err(invalid("dns_names.window_secs", "each must be 60..=604800"));
        }
        if n.min_distinct.iter().any(|&d| d < 2) {
            return Err(invalid("dns_names.min_distinct", "each must be at least 2"));
        }
        if u.warmup_secs > 30 * 86_400 {
            return Err(invalid("upload.warmup_secs", "must be 0..=2592000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_empty_toml_gives_them() {
        DetectConfig::default().validate().unwrap();
        assert_eq!(
            DetectConfig::from_toml("", "d.toml").unwrap(),
            DetectConfig::default()
        );
    }

    #[test]
    fn unknown_fields_name_file_and_line() {
        let e = DetectConfig::from_toml("[port_scan]\nmin_distinct = 5\nbogus = 1\n", "d.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.toml:3:"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let e = DetectConfig::from_toml("[syn_flood]\nwindow_secs = 0\n", "d.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("syn_flood.window_secs"), "{e}");
        let e = DetectConfig::from_toml("inside = [\"10.0.0.0/33\"]\n", "d.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside") && e.contains("33"), "{e}");
        let e = DetectConfig::from_toml(
            "[upload]\nwindow_secs = [600, 3600]\nmin_out_bytes = [1]\n",
            "d.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("d.toml:") && e.contains("upload.min_out_bytes"),
            "{e}"
        );
        let e = DetectConfig::from_toml("[surge]\nmin_pps = -1\n", "d.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("surge.min_pps"), "{e}");
    }

    #[test]
    fn cidr_membership() {
        let c = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(c.contains("172.31.255.1".parse().unwrap()));
        assert!(!c.contains("172.32.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("fc00::/7")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }
}
