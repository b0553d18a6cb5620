//! The exported flow record (the probe's output contract).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use tidegate_common::{Direction, FlowKey, FlowStats, NO_VLAN, Tunnel};

use crate::Name;

/// One flow record: a unidirectional flow's counters over one export interval. Records of
/// the same key may be split by the active/idle timeouts; sums by key are what count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// L4 source port (0 when none).
    pub sport: u16,
    /// L4 destination port (0 when none).
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Outer VLAN id, `null` when untagged.
    pub vlan: Option<u16>,
    /// Packets.
    pub packets: u64,
    /// IP-layer bytes.
    pub bytes: u64,
    /// First packet, RFC 3339 with nanoseconds.
    #[serde(with = "rfc3339_ns")]
    pub first: u64,
    /// Last packet, RFC 3339 with nanoseconds.
    #[serde(with = "rfc3339_ns")]
    pub last: u64,
    /// OR of TCP flags.
    pub tcp_flags: u16,
    /// ICMP type (ICMP/ICMPv6 flows only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub icmp_type: Option<u8>,
    /// ICMP code (ICMP/ICMPv6 flows only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub icmp_code: Option<u8>,
    /// Line (interface) name the flow was seen on.
    pub line: Name,
    /// Interface index (0 for replay).
    pub ifindex: u32,
    /// Ingress or egress.
    #[serde(with = "direction")]
    pub direction: Direction,
    /// What the line's enforcement did to the flow's packets (`pass` when no drop rule
    /// matched; left out of JSON then).
    #[serde(default, skip_serializing_if = "Verdict::is_pass")]
    pub verdict: Verdict,
    /// Id of the drop rule behind `verdict` (policy rule id, or `manual-block`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_rule: Option<Name>,
    /// Where the record came from: a tidegate probe, or a router's NetFlow/IPFIX export
    /// (`probe` is left out of JSON).
    #[serde(default, skip_serializing_if = "FlowSource::is_probe")]
    pub source: FlowSource,
    /// Packet sampling the meter applied: one packet in `sampling` was counted, and
    /// `packets`/`bytes` are already scaled up by it. 1 (left out of JSON) = every packet.
    #[serde(default = "unsampled", skip_serializing_if = "is_unsampled")]
    pub sampling: u32,
    /// The DNS question of the flow's first DNS message (probe records; absent when the
    /// flow carried none in its first packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<DnsMeta>>,
    /// The server name of the flow's TLS ClientHello, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<Box<str>>,
    /// The tunnel the flow was decapsulated from (probe with `tunnels = "inner"`): the
    /// record's addresses and ports are then the inner packet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Box<TunnelMeta>>,
}

/// The tunnel of a decapsulated flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelMeta {
    /// `gre`, `vxlan`, `gtp-u` or `ip-in-ip`.
    #[serde(with = "tunnel_kind")]
    pub kind: Tunnel,
    /// VXLAN network id, GTP-U TEID, GRE key or PPTP call id (0 when the tunnel has none).
    pub id: u32,
    /// The outer header's source (the tunnel's entry), when the probe saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer_src: Option<IpAddr>,
    /// The outer header's destination (the tunnel's exit), when the probe saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer_dst: Option<IpAddr>,
}

/// Serde adapter: [`Tunnel`] by its name.
pub mod tunnel_kind {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use tidegate_common::Tunnel;

    /// Every kind.
    pub const ALL: [Tunnel; 4] = [Tunnel::Gre, Tunnel::Vxlan, Tunnel::GtpU, Tunnel::IpInIp];

    /// The kind a name stands for.
    pub fn from_name(s: &str) -> Option<Tunnel> {
        ALL.into_iter().find(|t| t.name() == s)
    }

    /// Serde serialize.
    pub fn serialize<S: Serializer>(t: &Tunnel, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.name())
    }

    /// Serde deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tunnel, D::Error> {
        let s = String::deserialize(d)?;
        from_name(&s).ok_or_else(|| {
            D::Error::custom(format!(
                "tunnel {s:?}: expected \"gre\", \"vxlan\", \"gtp-u\" or \"ip-in-ip\""
            ))
        })
    }
}

/// The endpoints in a tunnel's outer IP header (the first bytes of an IPv4 or IPv6
/// header); `None` when they are not a whole header's.
pub fn outer_endpoints(h: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match h.first()? >> 4 {
        4 if h.len() >= 20 => {
            let a = |o: usize| IpAddr::V4(Ipv4Addr::new(h[o], h[o + 1], h[o + 2], h[o + 3]));
            Some((a(12), a(16)))
        }
        6 if h.len() >= 40 => {
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&h[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            Some((a(8), a(24)))
        }
        _ => None,
    }
}

/// The question of a DNS message seen in a flow's first packets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsMeta {
    /// Query name, dotted, without the root's trailing dot ("." for the root); bytes
    /// outside printable ASCII written `\DDD`.
    pub qname: String,
    /// Query type (1 A, 28 AAAA, 16 TXT, ...).
    pub qtype: u16,
    /// Response code, when the message was an answer (0 NOERROR, 3 NXDOMAIN, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<u8>,
}

fn unsampled() -> u32 {
    1
}

fn is_unsampled(v: &u32) -> bool {
    *v == 1
}

/// Where a flow record came from.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FlowSource {
    /// A tidegate probe (eBPF capture or replay).
    #[default]
    Probe,
    /// A NetFlow v5 exporter.
    NetflowV5,
    /// A NetFlow v9 exporter (RFC 3954).
    NetflowV9,
    /// An IPFIX exporter (RFC 7011).
    Ipfix,
}

impl FlowSource {
    /// Every source, in byte order.
    pub const ALL: [FlowSource; 4] = [
        FlowSource::Probe,
        FlowSource::NetflowV5,
        FlowSource::NetflowV9,
        FlowSource::Ipfix,
    ];

    /// The byte form (`None` for an unknown byte).
    pub const fn from_u8(v: u8) -> Option<FlowSource> {
        match v {
            0 => Some(FlowSource::Probe),
            1 => Some(FlowSource::NetflowV5),
            2 => Some(FlowSource::NetflowV9),
            3 => Some(FlowSource::Ipfix),
            _ => None,
        }
    }

    /// The byte form.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// `probe`, `netflow_v5`, `netflow_v9`, `ipfix`.
    pub const fn name(self) -> &'static str {
        match self {
            FlowSource::Probe => "probe",
            FlowSource::NetflowV5 => "netflow_v5",
            FlowSource::NetflowV9 => "netflow_v9",
            FlowSource::Ipfix => "ipfix",
        }
    }

    /// Whether this is [`FlowSource::Probe`].
    pub fn is_probe(&self) -> bool {
        *self == FlowSource::Probe
    }
}

/// What enforcement did to a flow: the strongest verdict any of its packets got.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No drop rule matched (or no policy is installed).
    #[default]
    Pass,
    /// A drop rule matched on a line in monitor mode: counted, passed.
    WouldDrop,
    /// A drop rule matched on a line in enforce mode: dropped at the line.
    Dropped,
}

impl Verdict {
    /// From the kernel's byte (`tidegate_common::enforce::VERDICT_*`; unknown = pass).
    pub const fn from_u8(v: u8) -> Verdict {
        match v {
            1 => Verdict::WouldDrop,
            2 => Verdict::Dropped,
            _ => Verdict::Pass,
        }
    }

    /// The byte form.
    pub const fn as_u8(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::WouldDrop => 1,
            Verdict::Dropped => 2,
        }
    }

    /// `pass`, `would_drop`, `dropped`.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::WouldDrop => "would_drop",
            Verdict::Dropped => "dropped",
        }
    }

    /// Whether this is [`Verdict::Pass`].
    pub fn is_pass(&self) -> bool {
        *self == Verdict::Pass
    }
}

impl Default for FlowRecord {
    /// An empty record (`0.0.0.0` to `0.0.0.0`, no ports, no packets, line `""`):
    /// the base for struct-update syntax.
    fn default() -> Self {
        FlowRecord {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            sport: 0,
            dport: 0,
            proto: 0,
            vlan: None,
            packets: 0,
            bytes: 0,
            first: 0,
            last: 0,
            tcp_flags: 0,
            icmp_type: None,
            icmp_code: None,
            line: Name::default(),
            ifindex: 0,
            direction: Direction::Ingress,
            verdict: Verdict::Pass,
            enforce_rule: None,
            source: FlowSource::Probe,
            sampling: 1,
            dns: None,
            sni: None,
            tunnel: None,
        }
    }
}

impl FlowRecord {
    /// A copy of the record on the line name `line` (the same name, another shared
    /// copy): a thread that keeps records can copy them without touching the reference
    /// count of a batch's name, which other threads are counting at the same time.
    pub fn clone_on_line(&self, line: Name) -> FlowRecord {
        debug_assert_eq!(line, self.line);
        FlowRecord {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            vlan: self.vlan,
            packets: self.packets,
            bytes: self.bytes,
            first: self.first,
            last: self.last,
            tcp_flags: self.tcp_flags,
            icmp_type: self.icmp_type,
            icmp_code: self.icmp_code,
            line,
            ifindex: self.ifindex,
            direction: self.direction,
            verdict: self.verdict,
            enforce_rule: self.enforce_rule.clone(),
            source: self.source,
            sampling: self.sampling,
            dns: self.dns.clone(),
            sni: self.sni.clone(),
            tunnel: self.tunnel.clone(),
        }
    }

    /// Builds a record from a key and counters whose timestamps are Unix-epoch ns. The
    /// verdict comes from the counters; the rule id is the caller's to fill in (the
    /// kernel keeps a rule index, which only the installed policy can name).
    pub fn new(key: &FlowKey, stats: &FlowStats, line: impl Into<Name>) -> Self {
        let is_icmp = matches!(key.proto, 1 | 58);
        FlowRecord {
            src: addr(key.family, &key.src),
            dst: addr(key.family, &key.dst),
            sport: key.sport,
            dport: key.dport,
            proto: key.proto,
            vlan: (key.vlan != NO_VLAN).then_some(key.vlan),
            packets: stats.packets,
            bytes: stats.bytes,
            first: stats.first_ns,
            last: stats.last_ns,
            tcp_flags: stats.tcp_flags,
            icmp_type: is_icmp.then_some((stats.icmp >> 8) as u8),
            icmp_code: is_icmp.then_some(stats.icmp as u8),
            line: line.into(),
            ifindex: key.ifindex,
            direction: Direction::from_u8(key.direction),
            verdict: Verdict::from_u8(stats.verdict),
            enforce_rule: None,
            source: FlowSource::Probe,
            sampling: 1,
            dns: None,
            sni: None,
            tunnel: Tunnel::from_u8(key.tunnel).map(|kind| {
                Box::new(TunnelMeta {
                    kind,
                    id: key.tunnel_id,
                    outer_src: None,
                    outer_dst: None,
                })
            }),
        }
    }
}

/// Decodes a key address: IPv4-mapped when `family == 4`.
pub fn addr(family: u8, a: &[u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*a))
    }
}

/// Encodes an address into the key form.
pub fn key_addr(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip {
        IpAddr::V4(v4) => (4, v4.to_ipv6_mapped().octets()),
        IpAddr::V6(v6) => (6, v6.octets()),
    }
}

/// Serde adapter: [`Direction`] as `"ingress"` / `"egress"` (the kernel ABI crate has no
/// serde).
pub mod direction {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use tidegate_common::Direction;

    /// The lowercase name.
    pub fn name(d: Direction) -> &'static str {
        match d {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// Serde serialize.
    pub fn serialize<S: Serializer>(d: &Direction, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(name(*d))
    }

    /// Serde deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Direction, D::Error> {
        match String::deserialize(d)?.as_str() {
            "ingress" => Ok(Direction::Ingress),
            "egress" => Ok(Direction::Egress),
            other => Err(D::Error::custom(format!(
                "direction {other:?}: expected \"ingress\" or \"egress\""
            ))),
        }
    }
}

/// Serde adapter: Unix-epoch nanoseconds <-> RFC 3339 with 9 fractional digits.
pub mod rfc3339_ns {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};

    /// Formats `ns` since the Unix epoch as RFC 3339 UTC with nanoseconds.
    pub fn format(ns: u64) -> String {
        format_digits(ns, 9)
    }

    /// Formats `ns` since the Unix epoch as RFC 3339 UTC with `digits` (1 to 9)
    /// fractional digits, truncated (syslog wants microseconds: 6).
    pub fn format_digits(ns: u64, digits: u32) -> String {
        let digits = digits.clamp(1, 9);
        let t = OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0width$}Z",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() / 10u32.pow(9 - digits),
            width = digits as usize
        )
    }

    /// Parses RFC 3339 into Unix-epoch nanoseconds.
    pub fn parse(s: &str) -> Result<u64, String> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{s:?}: {e}"))?;
        u64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{s:?}: before 1970"))
    }

    /// Serde serialize.
    pub fn serialize<S: Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ns))
    }

    /// Serde deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_on_another_name_of_the_line_equals_the_record() {
        let r = FlowRecord {
            src: "192.0.2.1".parse().unwrap(),
            dst: "2001:db8::1".parse().unwrap(),
            sport: 5353,
            dport: 53,
            proto: 17,
            vlan: Some(7),
            packets: 3,
            bytes: 300,
            first: 1,
            last: 2,
            line: "hk-intl-1".into(),
            enforce_rule: Some("deny-1".into()),
            dns: Some(Box::new(DnsMeta {
                qname: "example.org".into(),
                qtype: 1,
                rcode: Some(0),
            })),
            sni: Some("example.org".into()),
            ..Default::default()
        };
        let local = Name::from("hk-intl-1");
        let copy = r.clone_on_line(local.clone());
        assert_eq!(copy, r);
        assert!(Name::ptr_eq(&copy.line, &local));
        assert!(!Name::ptr_eq(&copy.line, &r.line));
    }

    /// Every collector stage reads the decoded records again (partition, shards, context,
    /// rows, detection): their size is memory traffic per record. The rare parts (DNS,
    /// tunnel) are boxed and the names shared, so a record is 160 bytes, not 240.
    #[test]
    fn a_decoded_record_stays_small() {
        assert!(
            std::mem::size_of::<FlowRecord>() <= 160,
            "FlowRecord is {} bytes",
            std::mem::size_of::<FlowRecord>()
        );
    }

    #[test]
    fn json_has_the_contract_fields() {
        let mut key = FlowKey::ZERO;
        let (fam, a) = key_addr("192.0.2.1".parse().unwrap());
        key.family = fam;
        key.src = a;
        key.dst = key_addr("192.0.2.2".parse().unwrap()).1;
        key.proto = 6;
        key.sport = 1;
        key.dport = 2;
        let stats = FlowStats {
            packets: 3,
            bytes: 120,
            first_ns: 1_600_000_000_123_456_789,
            last_ns: 1_600_000_001_000_000_001,
            tcp_flags: 0x12,
            ..Default::default()
        };
        let r = FlowRecord::new(&key, &stats, "line-a");
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["src"], "192.0.2.1");
        assert_eq!(v["dst"], "192.0.2.2");
        assert_eq!(v["vlan"], serde_json::Value::Null);
        assert_eq!(v["first"], "2020-09-13T12:26:40.123456789Z");
        assert_eq!(v["proto"], 6);
        assert!(v.get("icmp_type").is_none());
        let back: FlowRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
