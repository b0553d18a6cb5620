//! Datagrams to flow records: NetFlow v5, v9 (RFC 3954) and IPFIX (RFC 7011), parsed by
//! the `netflow_parser` crate (templates scoped per exporter and observation domain /
//! source id, template expiry, data held until its template arrives — all bounded),
//! then mapped onto [`FlowRecord`]s: absolute timestamps, sampling applied to the
//! counts, exporter interfaces mapped to lines.
//!
//! Everything here is synchronous and owns no socket, so tests and the fuzz target run
//! the decoder the listener runs.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use netflow_parser::{
    AutoScopedParser, NetflowError, NetflowPacket, NetflowParser, PendingFlowsConfig,
    static_versions::v5::V5,
    variable_versions::{
        field_value::{DataNumber, DurationValue, FieldValue},
        ipfix::{FlowSetBody as IpfixBody, IPFix, lookup::IANAIPFixField, lookup::IPFixField},
        ttl::TtlConfig,
        v9::{FlowSetBody as V9Body, V9},
    },
};
use tidegate_common::Direction;
use tidegate_wire::{FlowRecord, FlowSource};

use super::config::{ExporterConfig, NetflowConfig};

/// Why (part of) a datagram or a record was not taken: the `reason` label of
/// `tidegate_collector_netflow_dropped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Problem {
    /// Shorter than its header or a set it announces.
    Truncated,
    /// Version field not 5, 9 or 10.
    UnknownVersion,
    /// A header, template or set the parser refused (bogus lengths, zero or too many
    /// fields, a template larger than a message, ...).
    Malformed,
    /// Decoding would exceed the per-message output limits (a decompression bomb of
    /// tiny fields).
    TooLarge,
    /// From an exporter that is not listed, with `accept_unlisted = false`.
    UnknownExporter,
    /// A data set whose template is not known and that could not be held for it (the
    /// hold limits are full, or the set is too large): dropped. Sets that are held are
    /// counted in [`Decoded::held`] and decoded when their template arrives.
    NoTemplate,
    /// A record without addresses, with mixed address families, or no packets.
    BadRecord,
    /// A record whose input and output interfaces map to no configured line (skipped).
    UnmappedInterface,
    /// A record stamped more than [`MAX_AHEAD_NS`] after this collector's clock, or
    /// before 2000: an exporter's clock (or a forger) that would move event time for
    /// every line, or a time storage cannot hold.
    BadTime,
}

/// How far after this collector's clock a record may end.
pub const MAX_AHEAD_NS: u64 = 86_400 * 1_000_000_000;
/// 2000-01-01T00:00:00Z: no record starts before it.
const EARLIEST_NS: u64 = 946_684_800 * 1_000_000_000;

impl Problem {
    /// Every problem.
    pub const ALL: [Problem; 9] = [
        Problem::Truncated,
        Problem::UnknownVersion,
        Problem::Malformed,
        Problem::TooLarge,
        Problem::UnknownExporter,
        Problem::NoTemplate,
        Problem::BadRecord,
        Problem::UnmappedInterface,
        Problem::BadTime,
    ];

    /// The metric label.
    pub const fn reason(self) -> &'static str {
        match self {
            Problem::Truncated => "truncated",
            Problem::UnknownVersion => "unknown_version",
            Problem::Malformed => "malformed",
            Problem::TooLarge => "too_large",
            Problem::UnknownExporter => "unknown_exporter",
            Problem::NoTemplate => "no_template",
            Problem::BadRecord => "bad_record",
            Problem::UnmappedInterface => "unmapped_interface",
            Problem::BadTime => "bad_time",
        }
    }

    fn of(e: &NetflowError) -> Problem {
        match e {
            NetflowError::Incomplete { .. } => Problem::Truncated,
            NetflowError::UnsupportedVersion { .. } | NetflowError::FilteredVersion { .. } => {
                Problem::UnknownVersion
            }
            NetflowError::DecodedOutputLimitExceeded { .. } => Problem::TooLarge,
            _ => Problem::Malformed,
        }
    }
}

/// What one datagram gave.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The exporter's probe id (`exporter:<name or address>`), shared by its records.
    pub probe_id: Option<Arc<str>>,
    /// Its records.
    pub records: Vec<FlowRecord>,
    /// What was not taken, and how often.
    pub problems: Vec<(Problem, u64)>,
    /// Data sets held until their template arrives.
    pub held: u64,
}

impl Decoded {
    fn problem(&mut self, p: Problem) {
        match self.problems.iter_mut().find(|(q, _)| *q == p) {
            Some((_, n)) => *n += 1,
            None => self.problems.push((p, 1)),
        }
    }
}

/// What an exporter said about itself in options records, per template scope.
#[derive(Debug, Default)]
struct ScopeState {
    /// IPFIX `systemInitTimeMilliseconds`: the base of `flow*SysUpTime`.
    system_init_ms: Option<u64>,
    /// Sampling that applies to the whole scope (options without a sampler id).
    sampling: Option<u32>,
    /// Sampling per sampler / selector id.
    samplers: HashMap<u64, u32>,
}

/// Samplers remembered per scope (options records naming more are ignored).
const MAX_SAMPLERS: usize = 256;

/// The decoder: template caches and exporter state, bounded by the configuration.
pub struct Decoder {
    cfg: Arc<NetflowConfig>,
    /// Templates of listed exporters, and of the others apart: datagrams from spoofed
    /// sources fill and evict the second, never the listed exporters' templates.
    parser: AutoScopedParser,
    unlisted: AutoScopedParser,
    /// Keyed by exporter socket address and observation domain / source id.
    scopes: HashMap<(SocketAddr, u32), ScopeState>,
    /// Probe ids handed out, per exporter address (bounded like the scopes).
    ids: HashMap<IpAddr, Arc<str>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("scopes", &self.scopes.len())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder with the configuration's template and pending-data limits.
    pub fn new(cfg: Arc<NetflowConfig>) -> Result<Decoder, String> {
        Ok(Decoder {
            parser: Self::parser(&cfg)?,
            unlisted: Self::parser(&cfg)?,
            cfg,
            scopes: HashMap::new(),
            ids: HashMap::new(),
        })
    }

    fn parser(cfg: &NetflowConfig) -> Result<AutoScopedParser, String> {
        let mut pending = PendingFlowsConfig::with_ttl(cfg.pending_templates, cfg.pending_timeout);
        pending.max_entries_per_template = cfg.pending_sets_per_template;
        pending.max_entry_size_bytes = cfg.pending_set_bytes;
        pending.max_total_bytes =
            cfg.pending_templates * cfg.pending_sets_per_template.max(1) * cfg.pending_set_bytes;
        let mut builder = NetflowParser::builder()
            .with_allowed_versions(&[5, 9, 10])
            .with_cache_size(512)
            .with_max_field_count(512)
            .with_ttl(TtlConfig::new(cfg.template_timeout));
        if cfg.pending_sets_per_template > 0 {
            builder = builder.with_pending_flows(pending);
        }
        AutoScopedParser::try_with_builder(builder)
            .and_then(|p| p.with_max_sources(cfg.max_exporters))
            .map_err(|e| format!("NetFlow parser configuration: {e}"))
    }

    /// Template scopes held now.
    pub fn scopes(&self) -> usize {
        self.parser.source_count() + self.unlisted.source_count()
    }

    /// Forgets exporters not heard from for `idle` (their templates and state).
    pub fn prune(&mut self, idle: Duration) {
        self.parser.prune_idle_sources(idle);
        self.unlisted.prune_idle_sources(idle);
        if self.scopes.len() > self.cfg.max_exporters {
            self.forget_unlisted();
        }
    }

    /// Forgets the sampling state and probe ids of exporters not listed (the listed
    /// ones' stay, whatever spoofed sources send); all of it if the listed ones alone
    /// pass the bound.
    fn forget_unlisted(&mut self) {
        let listed = self.cfg.exporters.clone();
        self.scopes
            .retain(|(a, _), _| listed.contains_key(&a.ip().to_canonical()));
        if self.scopes.len() > self.cfg.max_exporters * 4 {
            self.scopes.clear();
        }
        self.ids.retain(|ip, _| listed.contains_key(ip));
    }

    fn probe_id(&mut self, ip: IpAddr) -> Arc<str> {
        if self.ids.len() >= self.cfg.max_exporters.max(1) * 2 && !self.ids.contains_key(&ip) {
            self.ids.retain(|ip, _| self.cfg.exporters.contains_key(ip));
        }
        self.ids
            .entry(ip)
            .or_insert_with(|| Arc::from(self.cfg.probe_id(ip)))
            .clone()
    }

    /// Decodes one datagram from `from`, received at `now_ns` (Unix ns).
    pub fn decode(&mut self, from: SocketAddr, bytes: &[u8], now_ns: u64) -> Decoded {
        let mut out = Decoded::default();
        let ip = from.ip().to_canonical();
        // The configuration is shared and immutable: hold it, not a copy of the entry.
        let cfg = self.cfg.clone();
        let exporter = cfg.exporters.get(&ip);
        if exporter.is_none() && !self.cfg.accept_unlisted {
            out.problem(Problem::UnknownExporter);
            return out;
        }
        out.probe_id = Some(self.probe_id(ip));
        if bytes.len() < 2 {
            out.problem(Problem::Truncated);
            return out;
        }
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        if !matches!(version, 5 | 9 | 10) {
            out.problem(Problem::UnknownVersion);
            return out;
        }
        if version == 10
            && bytes.len() >= 4
            && usize::from(u16::from_be_bytes([bytes[2], bytes[3]])) > bytes.len()
        {
            // The message says it is longer than the datagram: cut short on the way.
            out.problem(Problem::Truncated);
            return out;
        }
        let parser = if exporter.is_some() {
            &mut self.parser
        } else {
            &mut self.unlisted
        };
        let result = parser.parse_from_source(from, bytes);
        if let Some(e) = &result.error {
            out.problem(Problem::of(e));
        }
        let ex = exporter;
        if result.error.is_none() {
            // The parser leaves out of its output the data sets it holds for their
            // template, and template sets it refuses (zero or too many fields, lengths
            // beyond the set): what is missing from the datagram's sets tells which.
            let (mut templates, mut data) = (0usize, 0usize);
            for p in &result.packets {
                match p {
                    NetflowPacket::V9(v) => {
                        for f in &v.flowsets {
                            match f.body {
                                V9Body::Template(_) | V9Body::OptionsTemplate(_) => templates += 1,
                                V9Body::Empty => {}
                                _ => data += 1,
                            }
                        }
                    }
                    NetflowPacket::IPFix(v) => {
                        for f in &v.flowsets {
                            match f.body {
                                IpfixBody::Data(_)
                                | IpfixBody::OptionsData(_)
                                | IpfixBody::V9Data(_)
                                | IpfixBody::V9OptionsData(_)
                                | IpfixBody::NoTemplate(_) => data += 1,
                                IpfixBody::Empty => {}
                                _ => templates += 1,
                            }
                        }
                    }
                    _ => {}
                }
            }
            let (raw_templates, raw_data) = set_counts(bytes);
            out.held = raw_data.saturating_sub(data) as u64;
            for _ in templates..raw_templates {
                out.problem(Problem::Malformed);
            }
        }
        for packet in &result.packets {
            match packet {
                NetflowPacket::V5(v5) => self.v5(v5, ex, now_ns, &mut out),
                NetflowPacket::V9(v9) => self.v9(from, v9, ex, now_ns, &mut out),
                NetflowPacket::IPFix(p) => self.ipfix(from, p, ex, now_ns, &mut out),
                _ => out.problem(Problem::UnknownVersion),
            }
        }
        if self.scopes.len() > self.cfg.max_exporters * 4 {
            // Scopes the parser has forgotten leave state here; start over rather than
            // grow (options records are resent periodically).
            self.forget_unlisted();
        }
        out
    }

    fn v5(&mut self, p: &V5, ex: Option<&ExporterConfig>, now_ns: u64, out: &mut Decoded) {
        let h = &p.header;
        // Low 14 bits: 1-in-N; top 2 bits: the mode (0 none, 1 deterministic, 2 random).
        let header_rate = u32::from(h.sampling_interval & 0x3fff);
        let sampling = if h.sampling_interval >> 14 != 0 && header_rate > 1 {
            header_rate
        } else {
            ex.and_then(|e| e.sampling).unwrap_or(1)
        };
        let export_ms = u64::from(h.unix_secs) * 1000 + u64::from(h.unix_nsecs) / 1_000_000;
        let abs = |uptime: u32| uptime_to_ns(export_ms, h.sys_up_time, uptime);
        for f in &p.flowsets {
            let acc = Acc {
                src: Some(IpAddr::V4(f.src_addr)),
                dst: Some(IpAddr::V4(f.dst_addr)),
                sport: f.src_port,
                dport: f.dst_port,
                proto: f.protocol_number,
                packets: Some(u64::from(f.d_pkts)),
                bytes: Some(u64::from(f.d_octets)),
                tcp_flags: u16::from(f.tcp_flags),
                in_if: Some(u32::from(f.input)),
                out_if: Some(u32::from(f.output)),
                first_ns: Some(abs(f.first)),
                last_ns: Some(abs(f.last)),
                ..Acc::default()
            };
            emit(acc, FlowSource::NetflowV5, sampling, ex, now_ns, out);
        }
    }

    fn v9(
        &mut self,
        from: SocketAddr,
        p: &V9,
        ex: Option<&ExporterConfig>,
        now_ns: u64,
        out: &mut Decoded,
    ) {
        let h = &p.header;
        let export_ms = u64::from(h.unix_secs) * 1000;
        let scope = self.scopes.entry((from, h.source_id)).or_default();
        for set in &p.flowsets {
            match &set.body {
                V9Body::OptionsData(d) => {
                    for rec in &d.fields {
                        options(
                            scope,
                            rec.options_fields.iter().map(|(f, v)| (u16::from(*f), v)),
                        );
                    }
                }
                V9Body::Data(d) => {
                    for rec in &d.fields {
                        let mut acc = Acc::default();
                        for (f, v) in rec {
                            acc.set(u16::from(*f), v);
                        }
                        // v9 FIRST/LAST_SWITCHED are sysUpTime milliseconds; absolute
                        // times (150-155), when an exporter sends those, come first.
                        let up = |u: Option<u64>| {
                            Some(uptime_to_ns(export_ms, h.sys_up_time, u? as u32))
                        };
                        acc.first_ns = acc.first_ns.or(up(acc.first_up));
                        acc.last_ns = acc.last_ns.or(up(acc.last_up));
                        let fallback = if export_ms > 0 {
                            export_ms * 1_000_000
                        } else {
                            now_ns
                        };
                        acc.first_ns = acc.first_ns.or(acc.last_ns).or(Some(fallback));
                        acc.last_ns = acc.last_ns.or(acc.first_ns);
                        let sampling = sampling_of(&acc, scope, ex);
                        emit(acc, FlowSource::NetflowV9, sampling, ex, now_ns, out);
                    }
                }
                V9Body::NoTemplate(_) => out.problem(Problem::NoTemplate),
                _ => {}
            }
        }
    }

    fn ipfix(
        &mut self,
        from: SocketAddr,
        p: &IPFix,
        ex: Option<&ExporterConfig>,
        now_ns: u64,
        out: &mut Decoded,
    ) {
        let h = &p.header;
        let export_ns = u64::from(h.export_time) * 1_000_000_000;
        let scope = self
            .scopes
            .entry((from, h.observation_domain_id))
            .or_default();
        for set in &p.flowsets {
            match &set.body {
                IpfixBody::OptionsData(d) => {
                    for rec in &d.fields {
                        options(
                            scope,
                            rec.iter().filter_map(|(f, v)| Some((ipfix_ie(f)?, v))),
                        );
                    }
                }
                IpfixBody::Data(d) => {
                    for rec in &d.fields {
                        let mut acc = Acc::default();
                        for (f, v) in rec {
                            if let Some(ie) = ipfix_ie(f) {
                                acc.set(ie, v);
                            }
                        }
                        if acc.first_ns.is_none() || acc.last_ns.is_none() {
                            // flow{Start,End}SysUpTime count from systemInitTimeMilliseconds
                            // (an options record); without it the export time is the best
                            // there is.
                            let base = scope.system_init_ms;
                            let up = |u: Option<u64>| base?.checked_add(u?)?.checked_mul(1_000_000);
                            acc.first_ns = acc.first_ns.or(up(acc.first_up));
                            acc.last_ns = acc.last_ns.or(up(acc.last_up));
                            let fallback = if export_ns > 0 { export_ns } else { now_ns };
                            acc.first_ns = acc.first_ns.or(acc.last_ns).or(Some(fallback));
                            acc.last_ns = acc.last_ns.or(acc.first_ns);
                        }
                        let sampling = sampling_of(&acc, scope, ex);
                        emit(acc, FlowSource::Ipfix, sampling, ex, now_ns, out);
                    }
                }
                IpfixBody::NoTemplate(_) => out.problem(Problem::NoTemplate),
                _ => {}
            }
        }
    }
}

/// How many template sets and data sets a v9 or IPFIX datagram holds, by walking the set
/// headers ((0, 0) for anything else).
fn set_counts(bytes: &[u8]) -> (usize, usize) {
    let (start, template_ids) = match bytes.get(..2) {
        Some([0, 9]) => (20, 0..=1),
        Some([0, 10]) => (16, 2..=3),
        _ => return (0, 0),
    };
    let (mut at, mut templates, mut data) = (start, 0, 0);
    while let Some(h) = bytes.get(at..at + 4) {
        let id = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < 4 {
            break;
        }
        if template_ids.contains(&id) {
            templates += 1;
        } else if id >= 256 {
            data += 1;
        }
        at += len;
    }
    (templates, data)
}

/// Unix ns of a sysUpTime stamp `uptime` (ms), given the export time and the sysUpTime
/// at export (both from the header). u32 uptimes wrap after 49.7 days: the difference
/// is taken modulo 2^32, so a flow that started before the wrap is still in the past.
fn uptime_to_ns(export_ms: u64, up_at_export: u32, uptime: u32) -> u64 {
    let ago = u64::from(up_at_export.wrapping_sub(uptime));
    // A stamp a little after the export (clock skew inside the router) would wrap to
    // ~49 days ago: take differences above 2^31 ms as "in the future".
    let ms = if ago > u64::from(u32::MAX / 2) {
        export_ms + (u64::from(u32::MAX) + 1 - ago)
    } else {
        export_ms.saturating_sub(ago)
    };
    ms.saturating_mul(1_000_000)
}

/// The fields of one data record that tidegate keeps.
#[derive(Debug, Default)]
struct Acc {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: u16,
    dport: u16,
    proto: u8,
    packets: Option<u64>,
    bytes: Option<u64>,
    tcp_flags: u16,
    vlan: Option<u16>,
    in_if: Option<u32>,
    out_if: Option<u32>,
    direction: Option<u8>,
    icmp: Option<u16>,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    first_up: Option<u64>,
    last_up: Option<u64>,
    sampler: Option<u64>,
    sampling: Option<u32>,
}

/// A number of any width (durations as their raw count).
fn num(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::DataNumber(d) => Some(match d {
            DataNumber::U8(x) => u64::from(*x),
            DataNumber::U16(x) => u64::from(*x),
            DataNumber::U24(x) | DataNumber::U32(x) => u64::from(*x),
            DataNumber::U64(x) => *x,
            DataNumber::U128(x) => u64::try_from(*x).ok()?,
            DataNumber::I8(x) => u64::try_from(*x).ok()?,
            DataNumber::I16(x) => u64::try_from(*x).ok()?,
            DataNumber::I24(x) | DataNumber::I32(x) => u64::try_from(*x).ok()?,
            DataNumber::I64(x) => u64::try_from(*x).ok()?,
            DataNumber::I128(x) => u64::try_from(*x).ok()?,
            DataNumber::Vec(b) if b.len() <= 8 => {
                b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x))
            }
            _ => return None,
        }),
        FieldValue::Duration(DurationValue::Seconds { value, .. })
        | FieldValue::Duration(DurationValue::Millis { value, .. }) => Some(*value),
        FieldValue::ProtocolType(p) => Some(u64::from(u8::from(*p))),
        FieldValue::TcpControlBits(b, _) => Some(u64::from(u16::from(*b))),
        FieldValue::Vec(b) if b.len() <= 8 => {
            Some(b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
        }
        _ => None,
    }
}

/// Unix ns of an NTP timestamp (seconds since 1900 and a 2^-32 fraction).
fn ntp_ns(seconds: u32, fraction: u32) -> Option<u64> {
    const NTP_TO_UNIX: u64 = 2_208_988_800;
    let s = u64::from(seconds).checked_sub(NTP_TO_UNIX)?;
    Some(s * 1_000_000_000 + ((u64::from(fraction) * 1_000_000_000) >> 32))
}

/// Unix ns of an absolute time field (IPFIX 150-157, v9 150-155).
fn abs_ns(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::Duration(DurationValue::Seconds { value, .. }) => {
            value.checked_mul(1_000_000_000)
        }
        FieldValue::Duration(DurationValue::Millis { value, .. }) => value.checked_mul(1_000_000),
        FieldValue::Duration(DurationValue::MicrosNtp { seconds, fraction }) => {
            // microseconds resolution: the low 11 bits of the fraction are not significant
            ntp_ns(*seconds, fraction & !0x7ff)
        }
        FieldValue::Duration(DurationValue::NanosNtp { seconds, fraction }) => {
            ntp_ns(*seconds, *fraction)
        }
        other => num(other).and_then(|ms| ms.checked_mul(1_000_000)),
    }
}

fn addr(v: &FieldValue) -> Option<IpAddr> {
    match v {
        FieldValue::Ip4Addr(a) => Some(IpAddr::V4(*a)),
        FieldValue::Ip6Addr(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

impl Acc {
    /// Takes one field, by its IANA information element number (which NetFlow v9 shares
    /// for 1-127 and the time fields).
    fn set(&mut self, ie: u16, v: &FieldValue) {
        let n = || num(v);
        match ie {
            1 | 85 | 23 => self.bytes = self.bytes.or(n()),
            2 | 86 | 24 => self.packets = self.packets.or(n()),
            4 => self.proto = n().unwrap_or(0) as u8,
            6 => self.tcp_flags = n().unwrap_or(0) as u16,
            7 => self.sport = n().unwrap_or(0) as u16,
            11 => self.dport = n().unwrap_or(0) as u16,
            8 | 27 => self.src = self.src.or(addr(v)),
            12 | 28 => self.dst = self.dst.or(addr(v)),
            10 => self.in_if = n().map(|x| x as u32),
            14 => self.out_if = n().map(|x| x as u32),
            21 => self.last_up = n(),
            22 => self.first_up = n(),
            32 | 139 => self.icmp = n().map(|x| x as u16),
            176 | 178 => {
                let t = n().unwrap_or(0) as u16;
                self.icmp = Some((t << 8) | (self.icmp.unwrap_or(0) & 0xff));
            }
            177 | 179 => {
                let c = n().unwrap_or(0) as u16;
                self.icmp = Some((self.icmp.unwrap_or(0) & 0xff00) | (c & 0xff));
            }
            // Exporters write 0 for untagged frames.
            58 | 243 => {
                self.vlan = self
                    .vlan
                    .or(n().map(|x| (x & 0xfff) as u16).filter(|v| *v != 0))
            }
            61 => self.direction = n().map(|x| x as u8),
            150 | 152 | 154 | 156 => self.first_ns = self.first_ns.or(abs_ns(v)),
            151 | 153 | 155 | 157 => self.last_ns = self.last_ns.or(abs_ns(v)),
            48 | 302 => self.sampler = n(),
            34 | 50 => self.sampling = n().and_then(|x| u32::try_from(x).ok()),
            _ => {}
        }
    }
}

/// Reads an options record: the IPFIX system init time, and sampling (RFC 3954 34/50
/// with sampler id 48; RFC 5477 305/306 or 309/310 with selector id 302).
fn options<'a>(scope: &mut ScopeState, fields: impl Iterator<Item = (u16, &'a FieldValue)>) {
    let (mut id, mut rate, mut interval, mut space, mut size, mut population) =
        (None, None, None, None, None, None);
    for (ie, v) in fields {
        match ie {
            160 => scope.system_init_ms = abs_ns(v).map(|ns| ns / 1_000_000),
            48 | 302 => id = num(v),
            34 | 50 => rate = num(v),
            305 => interval = num(v),
            306 => space = num(v),
            309 => size = num(v),
            310 => population = num(v),
            _ => {}
        }
    }
    let rate = rate
        .or(match (interval, space) {
            (Some(i), Some(s)) if i > 0 => Some(i.saturating_add(s) / i),
            _ => None,
        })
        .or(match (size, population) {
            (Some(k), Some(n)) if k > 0 => Some(n / k),
            _ => None,
        });
    let Some(rate) = rate.map(|r| r.clamp(1, 1 << 24) as u32) else {
        return;
    };
    match id {
        Some(id) if scope.samplers.len() < MAX_SAMPLERS || scope.samplers.contains_key(&id) => {
            scope.samplers.insert(id, rate);
        }
        Some(_) => {}
        None => scope.sampling = Some(rate),
    }
}

/// A record's sampling: its own field, its sampler's options, the scope's options, the
/// configured fallback, or 1.
fn sampling_of(acc: &Acc, scope: &ScopeState, ex: Option<&ExporterConfig>) -> u32 {
    acc.sampling
        .filter(|s| *s > 0)
        .or_else(|| acc.sampler.and_then(|id| scope.samplers.get(&id).copied()))
        .or(scope.sampling)
        .or_else(|| ex.and_then(|e| e.sampling))
        .unwrap_or(1)
        .clamp(1, 1 << 24)
}

/// The IANA element number of the IPFIX fields tidegate reads.
fn ipfix_ie(f: &IPFixField) -> Option<u16> {
    use IANAIPFixField as F;
    let IPFixField::IANA(f) = f else {
        return None;
    };
    Some(match f {
        F::OctetDeltaCount => 1,
        F::PacketDeltaCount => 2,
        F::ProtocolIdentifier => 4,
        F::TcpControlBits => 6,
        F::SourceTransportPort => 7,
        F::SourceIpv4address => 8,
        F::IngressInterface => 10,
        F::DestinationTransportPort => 11,
        F::DestinationIpv4address => 12,
        F::EgressInterface => 14,
        F::FlowEndSysUpTime => 21,
        F::FlowStartSysUpTime => 22,
        F::SourceIpv6address => 27,
        F::DestinationIpv6address => 28,
        F::IcmpTypeCodeIpv4 => 32,
        F::SamplingInterval => 34,
        F::SamplerId => 48,
        F::SamplerRandomInterval => 50,
        F::VlanId => 58,
        F::FlowDirection => 61,
        F::OctetTotalCount => 85,
        F::PacketTotalCount => 86,
        F::IcmpTypeCodeIpv6 => 139,
        F::FlowStartSeconds => 150,
        F::FlowEndSeconds => 151,
        F::FlowStartMilliseconds => 152,
        F::FlowEndMilliseconds => 153,
        F::FlowStartMicroseconds => 154,
        F::FlowEndMicroseconds => 155,
        F::FlowStartNanoseconds => 156,
        F::FlowEndNanoseconds => 157,
        F::SystemInitTimeMilliseconds => 160,
        F::IcmpTypeIpv4 => 176,
        F::IcmpCodeIpv4 => 177,
        F::IcmpTypeIpv6 => 178,
        F::IcmpCodeIpv6 => 179,
        F::Dot1qVlanId => 243,
        F::SelectorId => 302,
        F::SamplingPacketInterval => 305,
        F::SamplingPacketSpace => 306,
        F::SamplingSize => 309,
        F::SamplingPopulation => 310,
        _ => return None,
    })
}

/// Finishes a record: checks it, maps its interfaces to a line, scales its counts.
fn emit(
    acc: Acc,
    source: FlowSource,
    sampling: u32,
    ex: Option<&ExporterConfig>,
    now_ns: u64,
    out: &mut Decoded,
) {
    let (Some(src), Some(dst)) = (acc.src, acc.dst) else {
        out.problem(Problem::BadRecord);
        return;
    };
    let packets = acc.packets.unwrap_or(0);
    if src.is_ipv4() != dst.is_ipv4() || packets == 0 {
        out.problem(Problem::BadRecord);
        return;
    }
    let exported_egress = acc.direction == Some(1);
    let (line, direction, ifindex) = match ex {
        Some(e) if !e.interfaces.is_empty() => {
            let input = acc.in_if.and_then(|i| e.interfaces.get(&i).map(|l| (l, i)));
            let output = acc
                .out_if
                .and_then(|i| e.interfaces.get(&i).map(|l| (l, i)));
            match (input, output) {
                (Some((l, i)), _) => (l.clone(), Direction::Ingress, i),
                (None, Some((l, i))) => (l.clone(), Direction::Egress, i),
                (None, None) => {
                    out.problem(Problem::UnmappedInterface);
                    return;
                }
            }
        }
        _ => {
            let line = match ex {
                Some(e) => e.line.clone().unwrap_or_else(|| e.name.clone()),
                None => out.probe_id.as_deref().unwrap_or("exporter").to_string(),
            };
            if exported_egress {
                (line, Direction::Egress, acc.out_if.unwrap_or(0))
            } else {
                (line, Direction::Ingress, acc.in_if.unwrap_or(0))
            }
        }
    };
    let icmp = matches!(acc.proto, 1 | 58);
    // ICMP type/code ride in the destination port in v5 and many v9 exporters.
    let icmp_tc = acc.icmp.unwrap_or(if icmp { acc.dport } else { 0 });
    let (sport, dport) = if icmp { (0, 0) } else { (acc.sport, acc.dport) };
    let first = acc.first_ns.unwrap_or(0);
    let last = acc.last_ns.unwrap_or(first).max(first);
    if first < EARLIEST_NS || last > now_ns.saturating_add(MAX_AHEAD_NS) {
        out.problem(Problem::BadTime);
        return;
    }
    let s = u64::from(sampling);
    out.records.push(FlowRecord {
        src,
        dst,
        sport,
        dport,
        proto: acc.proto,
        vlan: acc.vlan,
        packets: packets.saturating_mul(s),
        bytes: acc.bytes.unwrap_or(0).saturating_mul(s),
        first,
        last,
        tcp_flags: if acc.proto == 6 { acc.tcp_flags } else { 0 },
        icmp_type: icmp.then_some((icmp_tc >> 8) as u8),
        icmp_code: icmp.then_some(icmp_tc as u8),
        line: line.into(),
        ifindex,
        direction,
        source,
        sampling,
        ..FlowRecord::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netflow::ipfix::Encoder;
    use std::net::Ipv4Addr;

    const T: u64 = 1_700_000_000_000_000_000;

    fn record(i: u32) -> FlowRecord {
        FlowRecord {
            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            dst: "192.0.2.1".parse().unwrap(),
            sport: 1024 + i as u16,
            dport: 443,
            proto: 6,
            packets: 3,
            bytes: 180,
            first: T,
            last: T + 1_000_000_000,
            ifindex: 3,
            ..FlowRecord::default()
        }
    }

    fn decoder(cfg: NetflowConfig) -> Decoder {
        Decoder::new(Arc::new(cfg)).unwrap()
    }

    fn from(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 2055))
    }

    /// An IPFIX message: header + the given sets (id, body).
    fn ipfix(domain: u32, sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![0, 10, 0, 0];
        m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&domain.to_be_bytes());
        for (id, body) in sets {
            m.extend_from_slice(&id.to_be_bytes());
            m.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
            m.extend_from_slice(body);
        }
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    /// A template body: id, then (ie, len) pairs.
    fn template(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
        let mut b = id.to_be_bytes().to_vec();
        b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for (ie, len) in fields {
            b.extend_from_slice(&ie.to_be_bytes());
            b.extend_from_slice(&len.to_be_bytes());
        }
        b
    }

    fn valid() -> Vec<u8> {
        let r = record(1);
        Encoder::new(1)
            .messages(&[&r], 1_700_000_000, true)
            .remove(0)
    }

    fn problems(d: &Decoded) -> Vec<&'static str> {
        d.problems.iter().map(|(p, _)| p.reason()).collect()
    }

    /// Exporter 192.0.2.7 (`from(7)`), named rtr, listed with these interfaces.
    fn listed_rtr(
        interfaces: HashMap<u32, String>,
        sampling: Option<u32>,
    ) -> Arc<HashMap<IpAddr, ExporterConfig>> {
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        let rtr = ExporterConfig {
            address,
            name: "rtr".into(),
            line: None,
            interfaces,
            sampling,
        };
        Arc::new([(address, rtr)].into_iter().collect())
    }

    /// Options template 260 (selectorId 302 + samplingPacketInterval/Space) and a record
    /// of it: selector 7 samples 1 packet in 64.
    fn sampler_options() -> [(u16, Vec<u8>); 2] {
        let mut tmpl = 260u16.to_be_bytes().to_vec();
        tmpl.extend_from_slice(&3u16.to_be_bytes()); // field count
        tmpl.extend_from_slice(&1u16.to_be_bytes()); // scope count
        for (ie, len) in [(302u16, 4u16), (305, 4), (306, 4)] {
            tmpl.extend_from_slice(&ie.to_be_bytes());
            tmpl.extend_from_slice(&len.to_be_bytes());
        }
        let mut data = 7u32.to_be_bytes().to_vec();
        data.extend_from_slice(&1u32.to_be_bytes());
        data.extend_from_slice(&63u32.to_be_bytes());
        [(3, tmpl), (260, data)]
    }

    /// Data template 270 (addresses, counts, selectorId), and a record of it: 2 packets,
    /// 100 bytes, by selector `sel`.
    fn selector_template() -> (u16, Vec<u8>) {
        (
            2,
            template(270, &[(8, 4), (12, 4), (2, 4), (1, 4), (302, 4)]),
        )
    }

    fn selector_record(sel: u32) -> (u16, Vec<u8>) {
        let mut b = vec![10, 0, 0, 1, 192, 0, 2, 1];
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&100u32.to_be_bytes());
        b.extend_from_slice(&sel.to_be_bytes());
        (270, b)
    }

    /// Garbage of every kind is counted by reason; none panics or yields a record.
    #[test]
    fn bad_datagrams_are_counted_by_reason() {
        let v = valid();
        let mut v5_short = vec![0, 5, 0, 30];
        v5_short.extend_from_slice(&[0; 20]);
        let mut v9_zero_set = vec![0, 9, 0, 1];
        v9_zero_set.extend_from_slice(&[0; 16]);
        v9_zero_set.extend_from_slice(&[1, 0, 0, 0]); // set 256, length 0
        let mut long_header = v.clone();
        long_header[2..4].copy_from_slice(&4000u16.to_be_bytes());
        let huge_template = ipfix(
            1,
            &[(2, {
                let mut b = 300u16.to_be_bytes().to_vec();
                b.extend_from_slice(&65_535u16.to_be_bytes());
                b.extend_from_slice(&[0, 8, 0, 4]);
                b
            })],
        );
        let bogus_field_len = ipfix(1, &[(2, template(301, &[(8, 40_000), (12, 40_000)]))]);
        let set_longer_than_message = {
            let mut m = ipfix(1, &[(2, template(302, &[(8, 4), (12, 4)]))]);
            m[18..20].copy_from_slice(&900u16.to_be_bytes());
            m
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "truncated"),
            ("one byte", vec![0], "truncated"),
            ("version 1", vec![0, 1, 0, 0, 0, 0], "unknown_version"),
            ("version 65535", vec![0xff; 40], "unknown_version"),
            (
                "text",
                b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                "unknown_version",
            ),
            (
                "v5 header only, 30 records announced",
                v5_short,
                "malformed",
            ),
            ("v9 set of length 0", v9_zero_set, "malformed"),
            (
                "IPFIX header longer than the datagram",
                long_header,
                "truncated",
            ),
            (
                "IPFIX truncated mid-set",
                v[..v.len() - 7].to_vec(),
                "truncated",
            ),
            ("template with 65535 fields", huge_template, "malformed"),
            (
                "template records longer than any message",
                bogus_field_len,
                "malformed",
            ),
            (
                "set longer than its message",
                set_longer_than_message,
                "malformed",
            ),
        ];
        for (what, bytes, reason) in cases {
            let mut d = decoder(NetflowConfig::accepting_any());
            let out = d.decode(from(1), &bytes, T);
            assert!(out.records.is_empty(), "{what}: {:?}", out.records);
            assert_eq!(problems(&out), vec![reason], "{what}");
        }
        // Data for a template never seen is held (not a problem yet), and one beyond the
        // hold's byte limit is dropped as no_template.
        let mut d = decoder(NetflowConfig::accepting_any());
        let out = d.decode(from(1), &ipfix(7, &[(400, vec![0; 40])]), T);
        assert_eq!((out.held, out.problems.len()), (1, 0));
        let out = d.decode(from(1), &ipfix(7, &[(401, vec![0; 20_000])]), T);
        assert_eq!((out.held, problems(&out)), (0, vec!["no_template"]));
        // The valid message decodes.
        let mut d = decoder(NetflowConfig::accepting_any());
        let out = d.decode(from(1), &v, T);
        assert_eq!((out.records.len(), out.problems.len()), (1, 0));
    }

    /// Every prefix and every single-byte corruption of valid v5, v9 and IPFIX messages:
    /// no panic, and the decoder still decodes a good message afterwards.
    #[test]
    fn truncations_and_corruptions_never_panic() {
        let records: Vec<FlowRecord> = (0..5).map(record).collect();
        let refs: Vec<&FlowRecord> = records.iter().collect();
        let ipfix = Encoder::new(1)
            .messages(&refs, 1_700_000_000, true)
            .remove(0);
        let mut v5 = vec![0, 5, 0, 1];
        v5.extend_from_slice(&[
            0, 0, 0, 100, 0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        ]);
        v5.extend_from_slice(&[10, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0, 0, 1, 0, 2]);
        v5.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 180, 0, 0, 0, 50, 0, 0, 0, 90]);
        v5.extend_from_slice(&[4, 0, 1, 187, 0, 0x18, 6, 0, 0, 0, 0, 0, 24, 24, 0, 0]);
        for msg in [ipfix, v5] {
            let mut d = decoder(NetflowConfig::accepting_any());
            for n in 0..msg.len() {
                d.decode(from(2), &msg[..n], T);
            }
            for i in 0..msg.len() {
                for b in [0u8, 0xff, msg[i] ^ 0x80] {
                    let mut m = msg.clone();
                    m[i] = b;
                    d.decode(from(2), &m, T);
                }
            }
            let out = d.decode(from(3), &msg, T);
            assert!(!out.records.is_empty(), "still decodes after the garbage");
        }
    }

    #[test]
    fn data_before_its_template_is_held_and_decoded_once_it_arrives() {
        let r = record(9);
        let mut enc = Encoder::new(5);
        let with = enc.messages(&[&r], 1_700_000_000, true).remove(0);
        let without = Encoder::new(5)
            .messages(&[&r], 1_700_000_000, false)
            .remove(0);
        let tmpl = Encoder::new(5).templates(1_700_000_000);
        assert!(with.len() > without.len());
        let mut d = decoder(NetflowConfig::accepting_any());
        let early = d.decode(from(4), &without, T);
        assert!(early.records.is_empty());
        assert!(early.problems.is_empty(), "{:?}", early.problems);
        assert_eq!(early.held, 1);
        let late = d.decode(from(4), &tmpl, T);
        assert_eq!(late.records.len(), 1, "{:?}", late.problems);
        assert_eq!(late.records[0].src, r.src);
    }

    #[test]
    fn held_data_is_bounded_per_template() {
        let cfg = NetflowConfig {
            pending_sets_per_template: 4,
            ..NetflowConfig::accepting_any()
        };
        let mut d = decoder(cfg);
        let r = record(1);
        let without = Encoder::new(5)
            .messages(&[&r], 1_700_000_000, false)
            .remove(0);
        let mut dropped = 0;
        for _ in 0..100 {
            let out = d.decode(from(5), &without, T);
            dropped += out.problems.iter().map(|(_, n)| n).sum::<u64>();
        }
        assert_eq!(
            dropped, 96,
            "sets beyond the hold limit are dropped and counted"
        );
        let late = d.decode(from(5), &Encoder::new(5).templates(1_700_000_000), T);
        assert_eq!(late.records.len(), 4, "only the capped sets come back");
    }

    #[test]
    fn template_scopes_are_bounded_by_max_exporters() {
        let mut d = decoder(NetflowConfig {
            max_exporters: 16,
            ..NetflowConfig::accepting_any()
        });
        let v = valid();
        for i in 0..2000u32 {
            let from = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 2055));
            assert_eq!(d.decode(from, &v, T).records.len(), 1);
        }
        assert!(d.scopes() <= 16, "{} scopes", d.scopes());
        assert!(d.ids.len() <= 32 && d.scopes.len() <= 64);
    }

    #[test]
    fn decoder_with_defaults_refuses_unlisted_exporters_as_a_file_would() {
        let refused = decoder(NetflowConfig::default()).decode(from(8), &valid(), T);
        assert_eq!(problems(&refused), vec!["unknown_exporter"]);
        assert!(refused.records.is_empty());
        let taken = decoder(NetflowConfig::accepting_any()).decode(from(8), &valid(), T);
        assert!(problems(&taken).is_empty());
        assert!(!taken.records.is_empty());
    }

    #[test]
    fn listed_exporters_map_interfaces_to_lines_and_others_are_refused() {
        let mut d = decoder(NetflowConfig {
            exporters: listed_rtr([(3, "hk-intl-1".to_string())].into(), Some(100)),
            ..NetflowConfig::default()
        });
        let refused = d.decode(from(8), &valid(), T);
        assert_eq!(problems(&refused), vec!["unknown_exporter"]);
        // ifindex 3 ingress (exported as ingressInterface) → the line; sampling from the
        // configuration since the export does not say.
        let got = d.decode(from(7), &valid(), T);
        assert_eq!(got.probe_id.as_deref(), Some("exporter:rtr"));
        let r = &got.records[0];
        assert_eq!(
            (r.line.as_str(), r.direction, r.ifindex),
            ("hk-intl-1", Direction::Ingress, 3)
        );
        assert_eq!((r.sampling, r.packets, r.bytes), (100, 300, 18_000));
        assert_eq!(r.source, FlowSource::Ipfix);
        // Another interface: skipped and counted.
        let mut other = record(2);
        other.ifindex = 9;
        let m = Encoder::new(1)
            .messages(&[&other], 1_700_000_000, true)
            .remove(0);
        let skipped = d.decode(from(7), &m, T);
        assert!(skipped.records.is_empty());
        assert_eq!(problems(&skipped), vec!["unmapped_interface"]);
    }

    #[test]
    fn options_sampling_applies_per_scope_and_per_sampler() {
        let mut d = decoder(NetflowConfig::accepting_any());
        let [opt_tmpl, opt_data] = sampler_options();
        let m = ipfix(
            1,
            &[
                opt_tmpl,
                opt_data,
                selector_template(),
                selector_record(7),
                selector_record(8),
            ],
        );
        let out = d.decode(from(9), &m, T);
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let s: Vec<(u32, u64, u64)> = out
            .records
            .iter()
            .map(|r| (r.sampling, r.packets, r.bytes))
            .collect();
        assert_eq!(
            s,
            vec![(64, 128, 6400), (1, 2, 100)],
            "selector 7 samples 1 in 64; 8 is unknown"
        );
    }

    #[test]
    fn spoofed_sources_do_not_evict_a_listed_exporters_templates_or_sampling() {
        let mut d = decoder(NetflowConfig {
            exporters: listed_rtr(HashMap::new(), None),
            ..NetflowConfig::accepting_any()
        });
        let [opt_tmpl, opt_data] = sampler_options();
        let first = ipfix(1, &[opt_tmpl, opt_data, selector_template()]);
        assert!(d.decode(from(7), &first, T).problems.is_empty());
        // 5000 spoofed sources, each with templates of its own.
        for i in 0..5000u32 {
            let src = SocketAddr::from(([198, 51, (i / 250) as u8, (i % 250) as u8], 9000));
            let m = ipfix(i, &[(2, template(300, &[(8, 4), (12, 4), (2, 4)]))]);
            d.decode(src, &m, T);
            d.prune(Duration::from_secs(3600));
        }
        let out = d.decode(from(7), &ipfix(1, &[selector_record(7)]), T);
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let s: Vec<(u32, u64)> = out
            .records
            .iter()
            .map(|r| (r.sampling, r.packets))
            .collect();
        assert_eq!(s, [(64, 128)], "template and sampling kept");
    }

    /// Found by the fuzz target: an 8-byte flowStartSysUpTime near 2^64 on top of the
    /// system init time overflowed.
    #[test]
    fn absurd_uptimes_do_not_overflow() {
        let opt_tmpl = {
            let mut b = 260u16.to_be_bytes().to_vec();
            b.extend_from_slice(&2u16.to_be_bytes());
            b.extend_from_slice(&1u16.to_be_bytes());
            for (ie, len) in [(149u16, 4u16), (160, 8)] {
                b.extend_from_slice(&ie.to_be_bytes());
                b.extend_from_slice(&len.to_be_bytes());
            }
            b
        };
        let mut opt_data = 1u32.to_be_bytes().to_vec();
        opt_data.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        let tmpl = template(270, &[(8, 4), (12, 4), (2, 4), (22, 8), (21, 8)]);
        let mut data = vec![10, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 2];
        data.extend_from_slice(&(u64::MAX - 5).to_be_bytes());
        data.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut d = decoder(NetflowConfig::accepting_any());
        let m = ipfix(1, &[(3, opt_tmpl), (260, opt_data), (2, tmpl), (270, data)]);
        let out = d.decode(from(9), &m, T);
        assert_eq!(out.records.len(), 1, "{:?}", out.problems);
        // No time: the export time stands in.
        assert_eq!(out.records[0].first, 1_700_000_000 * 1_000_000_000);
    }

    #[test]
    fn sysuptime_stamps_become_unix_time_across_the_32_bit_wrap() {
        let export_ms = 1_700_000_000_000;
        assert_eq!(
            uptime_to_ns(export_ms, 10_000, 4_000),
            (export_ms - 6_000) * 1_000_000
        );
        // Uptime wrapped between the flow's start and the export.
        assert_eq!(
            uptime_to_ns(export_ms, 1_000, u32::MAX - 999),
            (export_ms - 2_000) * 1_000_000
        );
        // A stamp slightly after the export (router skew) stays slightly after.
        assert_eq!(
            uptime_to_ns(export_ms, 1_000, 1_500),
            (export_ms + 500) * 1_000_000
        );
        assert_eq!(ntp_ns(2_208_988_800 + 1, 1 << 31), Some(1_500_000_000));
        assert_eq!(ntp_ns(5, 0), None);
    }

    /// A NetFlow v5 datagram with one record, exported at `unix_secs`, the flow seen
    /// from 2 s to 1 s before the export.
    fn v5(unix_secs: u32) -> Vec<u8> {
        let mut m = vec![0, 5, 0, 1];
        m.extend_from_slice(&100_000u32.to_be_bytes()); // sysUpTime, ms
        m.extend_from_slice(&unix_secs.to_be_bytes());
        m.extend_from_slice(&[0; 12]); // nsecs, sequence, engine, sampling
        m.extend_from_slice(&[10, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0]);
        m.extend_from_slice(&[0, 3, 0, 4]); // input, output
        m.extend_from_slice(&5u32.to_be_bytes());
        m.extend_from_slice(&300u32.to_be_bytes());
        m.extend_from_slice(&98_000u32.to_be_bytes());
        m.extend_from_slice(&99_000u32.to_be_bytes());
        m.extend_from_slice(&[0x04, 0x00, 0x01, 0xbb, 0, 0x12, 6, 0]);
        m.extend_from_slice(&[0; 8]);
        m
    }

    #[test]
    fn absurd_exporter_times_are_refused_and_counted() {
        let mut d = decoder(NetflowConfig::accepting_any());
        let now_s = (T / 1_000_000_000) as u32;
        let ok = d.decode(from(1), &v5(now_s), T);
        assert_eq!(ok.records.len(), 1, "{:?}", ok.problems);
        assert_eq!(ok.records[0].last, T - 1_000_000_000);
        // A header clock in 2106, or at 1970.
        for secs in [u32::MAX, 0] {
            let out = d.decode(from(1), &v5(secs), T);
            assert!(out.records.is_empty());
            assert_eq!(problems(&out), ["bad_time"], "unix_secs {secs}");
        }
        // IPFIX flowEndMilliseconds in 2286; a time a few hours ahead is taken.
        for (last, taken) in [
            (10_000_000_000_000u64 * 1_000_000, false),
            (T + 3_600_000_000_000, true),
        ] {
            let mut r = record(1);
            r.last = last;
            let m = Encoder::new(2)
                .messages(&[&r], 1_700_000_000, true)
                .remove(0);
            let out = d.decode(from(2), &m, T);
            assert_eq!(
                out.records.len(),
                usize::from(taken),
                "{last}: {:?}",
                out.problems
            );
            if !taken {
                assert_eq!(problems(&out), ["bad_time"]);
            }
        }
    }

    #[test]
    fn v9_absolute_millisecond_times_are_kept() {
        // Template 256: IPv4 addresses, packets, bytes, flowStart/EndMilliseconds.
        let fields: [(u16, u16); 6] = [(8, 4), (12, 4), (2, 4), (1, 4), (152, 8), (153, 8)];
        let mut tmpl = vec![0, 0, 0, 0, 1, 0, 0, 6];
        for (t, l) in fields {
            tmpl.extend_from_slice(&t.to_be_bytes());
            tmpl.extend_from_slice(&l.to_be_bytes());
        }
        let len = tmpl.len() as u16;
        tmpl[2..4].copy_from_slice(&len.to_be_bytes());
        let (start_ms, end_ms) = (T / 1_000_000 - 5_000, T / 1_000_000 - 2_000);
        let mut data = vec![1, 0, 0, 36, 10, 0, 0, 1, 192, 0, 2, 1];
        data.extend_from_slice(&4u32.to_be_bytes());
        data.extend_from_slice(&400u32.to_be_bytes());
        data.extend_from_slice(&start_ms.to_be_bytes());
        data.extend_from_slice(&end_ms.to_be_bytes());
        let mut m = vec![0, 9, 0, 2];
        m.extend_from_slice(&3_600_000u32.to_be_bytes()); // sysUpTime
        m.extend_from_slice(&((T / 1_000_000_000) as u32).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // sequence, source id
        m.extend_from_slice(&tmpl);
        m.extend_from_slice(&data);
        let out = decoder(NetflowConfig::accepting_any()).decode(from(3), &m, T);
        assert_eq!(out.records.len(), 1, "{:?}", out.problems);
        let r = &out.records[0];
        assert_eq!(
            (r.first, r.last),
            (start_ms * 1_000_000, end_ms * 1_000_000)
        );
        assert_eq!((r.packets, r.bytes), (4, 400));
    }
}
