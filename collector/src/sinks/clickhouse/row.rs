//! Rows as the sink sends them (RowBinary), converted from the collector's types.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use tidegate_common::Direction;
use tidegate_wire::record::{FlowRecord, FlowSource, Verdict};

use tidegate_threat::enrich::FlowContext;

/// One row of `flows` (the columns the sink writes; the others have defaults). Field
/// order and types follow `dashboards/clickhouse/migrations/0001_flows.sql`. Strings
/// borrow from the record when written and are owned when read back
/// ([`FlowRow::record`] turns a stored row into the record it was made from).
#[derive(Clone, Debug, PartialEq, Eq, Row, Serialize, Deserialize)]
#[allow(missing_docs)] // the columns of `0001_flows.sql`
pub struct FlowRow<'a> {
    pub probe_id: Cow<'a, str>,
    /// Added by `0005_flows_batch_epoch.sql`.
    pub batch_epoch: u64,
    pub batch_seq: u64,
    pub line: Cow<'a, str>,
    pub ifindex: u32,
    /// `Enum8('ingress' = 0, 'egress' = 1)`.
    pub direction: i8,
    pub ip_version: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub vlan: Option<u16>,
    pub packets: u64,
    pub bytes: u64,
    /// `DateTime64(9)`: nanoseconds since the Unix epoch.
    pub first: i64,
    pub last: i64,
    pub tcp_flags: u16,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub src_country: Cow<'a, str>,
    pub dst_country: Cow<'a, str>,
    pub src_asn: u32,
    pub dst_asn: u32,
    pub src_zone: Cow<'a, str>,
    pub dst_zone: Cow<'a, str>,
    /// Added by `0006_flows_enforcement.sql`: `Enum8('pass' = 0, 'would_drop' = 1,
    /// 'dropped' = 2)`.
    pub verdict: i8,
    /// The drop rule behind `verdict` (empty for pass).
    pub enforce_rule: Cow<'a, str>,
    /// Added by `0007_flows_source.sql`: `Enum8('probe' = 0, 'netflow_v5' = 1,
    /// 'netflow_v9' = 2, 'ipfix' = 3)`.
    pub source: i8,
    /// One packet in `sampling` was counted (1 = every packet).
    pub sampling: u32,
    /// Added by `0008_flows_app.sql`: the first DNS question ('' when none).
    pub dns_qname: Cow<'a, str>,
    /// Its type (0 when none).
    pub dns_qtype: u16,
    /// Its response code, -1 for a query or none.
    pub dns_rcode: i16,
    /// The TLS server name ('' when none).
    pub tls_sni: Cow<'a, str>,
    /// Added by `0013_flows_tunnel.sql`: `gre`, `vxlan`, `gtp-u`, `ip-in-ip` ('' when the
    /// flow was keyed by its outermost header).
    pub tunnel: Cow<'a, str>,
    /// The tunnel's id (0 when none).
    pub tunnel_id: u32,
    /// The tunnel's endpoints, IPv4 as IPv4-mapped (`::` when not seen).
    pub outer_src: Ipv6Addr,
    pub outer_dst: Ipv6Addr,
}

impl FlowRow<'_> {
    /// Each column the sink writes with its type as ClickHouse names it
    /// (`system.columns.type`), in field order. Checked against the table once at start
    /// ([`super::ClickHouseSink::migrate`]) — flows are then inserted as plain RowBinary,
    /// without the client's per-row validation.
    pub const COLUMN_TYPES: &'static [(&'static str, &'static str)] = &[
        ("probe_id", "LowCardinality(String)"),
        ("batch_epoch", "UInt64"),
        ("batch_seq", "UInt64"),
        ("line", "LowCardinality(String)"),
        ("ifindex", "UInt32"),
        ("direction", "Enum8('ingress' = 0, 'egress' = 1)"),
        ("ip_version", "UInt8"),
        ("src", "IPv6"),
        ("dst", "IPv6"),
        ("sport", "UInt16"),
        ("dport", "UInt16"),
        ("proto", "UInt8"),
        ("vlan", "Nullable(UInt16)"),
        ("packets", "UInt64"),
        ("bytes", "UInt64"),
        ("first", "DateTime64(9, 'UTC')"),
        ("last", "DateTime64(9, 'UTC')"),
        ("tcp_flags", "UInt16"),
        ("icmp_type", "Nullable(UInt8)"),
        ("icmp_code", "Nullable(UInt8)"),
        ("src_country", "LowCardinality(String)"),
        ("dst_country", "LowCardinality(String)"),
        ("src_asn", "UInt32"),
        ("dst_asn", "UInt32"),
        ("src_zone", "LowCardinality(String)"),
        ("dst_zone", "LowCardinality(String)"),
        (
            "verdict",
            "Enum8('pass' = 0, 'would_drop' = 1, 'dropped' = 2)",
        ),
        ("enforce_rule", "LowCardinality(String)"),
        (
            "source",
            "Enum8('probe' = 0, 'netflow_v5' = 1, 'netflow_v9' = 2, 'ipfix' = 3)",
        ),
        ("sampling", "UInt32"),
        ("dns_qname", "String"),
        ("dns_qtype", "UInt16"),
        ("dns_rcode", "Int16"),
        ("tls_sni", "String"),
        ("tunnel", "LowCardinality(String)"),
        ("tunnel_id", "UInt32"),
        ("outer_src", "IPv6"),
        ("outer_dst", "IPv6"),
    ];
}

impl<'a> FlowRow<'a> {
    /// Converts a record of batch `seq` of the probe sequence (`probe_id`, `epoch`) with
    /// its enrichment (`None`: the enrichment columns keep their defaults); the error says
    /// what does not fit.
    pub fn new(
        probe_id: &'a str,
        epoch: u64,
        seq: u64,
        r: &'a FlowRecord,
        ctx: Option<&'a FlowContext>,
    ) -> Result<Self, String> {
        let (ip_version, src, dst) = match (r.src, r.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (4, s.to_ipv6_mapped(), d.to_ipv6_mapped()),
            (IpAddr::V6(s), IpAddr::V6(d)) => (6, s, d),
            (s, d) => {
                return Err(format!(
                    "src {s} and dst {d} are of different address families"
                ));
            }
        };
        let text = |v: Option<&'a str>| Cow::Borrowed(v.unwrap_or(""));
        Ok(FlowRow {
            probe_id: Cow::Borrowed(probe_id),
            batch_epoch: epoch,
            batch_seq: seq,
            line: Cow::Borrowed(&r.line),
            ifindex: r.ifindex,
            direction: match r.direction {
                Direction::Ingress => 0,
                Direction::Egress => 1,
            },
            ip_version,
            src,
            dst,
            sport: r.sport,
            dport: r.dport,
            proto: r.proto,
            vlan: r.vlan,
            packets: r.packets,
            bytes: r.bytes,
            first: timestamp("first", r.first)?,
            last: timestamp("last", r.last)?,
            tcp_flags: r.tcp_flags,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
            src_country: text(ctx.and_then(|c| c.ends.src.country.as_deref())),
            dst_country: text(ctx.and_then(|c| c.ends.dst.country.as_deref())),
            src_asn: ctx.and_then(|c| c.ends.src.asn).unwrap_or(0),
            dst_asn: ctx.and_then(|c| c.ends.dst.asn).unwrap_or(0),
            src_zone: text(ctx.map(|c| &*c.src_zone)),
            dst_zone: text(ctx.map(|c| &*c.dst_zone)),
            verdict: r.verdict.as_u8() as i8,
            enforce_rule: text(r.enforce_rule.as_deref()),
            source: r.source.as_u8() as i8,
            sampling: r.sampling.max(1),
            dns_qname: text(r.dns.as_ref().map(|d| d.qname.as_str())),
            dns_qtype: r.dns.as_ref().map_or(0, |d| d.qtype),
            dns_rcode: r.dns.as_ref().and_then(|d| d.rcode).map_or(-1, i16::from),
            tls_sni: text(r.sni.as_deref()),
            tunnel: Cow::Borrowed(r.tunnel.as_ref().map_or("", |t| t.kind.name())),
            tunnel_id: r.tunnel.as_ref().map_or(0, |t| t.id),
            outer_src: mapped(r.tunnel.as_ref().and_then(|t| t.outer_src)),
            outer_dst: mapped(r.tunnel.as_ref().and_then(|t| t.outer_dst)),
        })
    }

    /// The column list of an INSERT of these rows, in [`Self::COLUMN_TYPES`] order.
    pub fn column_list() -> String {
        let names: Vec<String> = Self::COLUMN_TYPES
            .iter()
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        names.join(",")
    }

    /// Appends the row to `out` in RowBinary, its columns in [`Self::COLUMN_TYPES`]
    /// order: the bytes the client's serde path writes for this type (the tests read them
    /// back with the client's own reader), at a few stores per column instead of a
    /// serializer call per field and per address byte. Only for a table whose columns
    /// were checked against [`Self::COLUMN_TYPES`]: RowBinary carries no types.
    pub fn write_row_binary(&self, out: &mut Vec<u8>) {
        let FlowRow {
            probe_id,
            batch_epoch,
            batch_seq,
            line,
            ifindex,
            direction,
            ip_version,
            src,
            dst,
            sport,
            dport,
            proto,
            vlan,
            packets,
            bytes,
            first,
            last,
            tcp_flags,
            icmp_type,
            icmp_code,
            src_country,
            dst_country,
            src_asn,
            dst_asn,
            src_zone,
            dst_zone,
            verdict,
            enforce_rule,
            source,
            sampling,
            dns_qname,
            dns_qtype,
            dns_rcode,
            tls_sni,
            tunnel,
            tunnel_id,
            outer_src,
            outer_dst,
        } = self;
        let mut w = RowBinary(out);
        w.string(probe_id);
        w.put(batch_epoch.to_le_bytes());
        w.put(batch_seq.to_le_bytes());
        w.string(line);
        w.put(ifindex.to_le_bytes());
        w.put(direction.to_le_bytes());
        w.put([*ip_version]);
        w.put(src.octets());
        w.put(dst.octets());
        w.put(sport.to_le_bytes());
        w.put(dport.to_le_bytes());
        w.put([*proto]);
        w.nullable(vlan.map(u16::to_le_bytes));
        w.put(packets.to_le_bytes());
        w.put(bytes.to_le_bytes());
        w.put(first.to_le_bytes());
        w.put(last.to_le_bytes());
        w.put(tcp_flags.to_le_bytes());
        w.nullable(icmp_type.map(|v| [v]));
        w.nullable(icmp_code.map(|v| [v]));
        w.string(src_country);
        w.string(dst_country);
        w.put(src_asn.to_le_bytes());
        w.put(dst_asn.to_le_bytes());
        w.string(src_zone);
        w.string(dst_zone);
        w.put(verdict.to_le_bytes());
        w.string(enforce_rule);
        w.put(source.to_le_bytes());
        w.put(sampling.to_le_bytes());
        w.string(dns_qname);
        w.put(dns_qtype.to_le_bytes());
        w.put(dns_rcode.to_le_bytes());
        w.string(tls_sni);
        w.string(tunnel);
        w.put(tunnel_id.to_le_bytes());
        w.put(outer_src.octets());
        w.put(outer_dst.octets());
    }

    /// SHA-256 of every column the sink writes, in a fixed binary layout (strings
    /// length-prefixed, numbers big-endian, `Option`s with a presence byte): the same for
    /// the row as written and as read back from ClickHouse, so a digest of stored rows
    /// shows any later change.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let s = |h: &mut sha2::Sha256, v: &str| {
            h.update((v.len() as u32).to_be_bytes());
            h.update(v.as_bytes());
        };
        s(&mut h, &self.probe_id);
        h.update(self.batch_epoch.to_be_bytes());
        h.update(self.batch_seq.to_be_bytes());
        s(&mut h, &self.line);
        h.update(self.ifindex.to_be_bytes());
        h.update([self.direction as u8, self.ip_version]);
        h.update(self.src.octets());
        h.update(self.dst.octets());
        h.update(self.sport.to_be_bytes());
        h.update(self.dport.to_be_bytes());
        h.update([self.proto]);
        match self.vlan {
            Some(v) => h.update([&[1u8][..], &v.to_be_bytes()].concat()),
            None => h.update([0u8]),
        }
        h.update(self.packets.to_be_bytes());
        h.update(self.bytes.to_be_bytes());
        h.update(self.first.to_be_bytes());
        h.update(self.last.to_be_bytes());
        h.update(self.tcp_flags.to_be_bytes());
        for o in [self.icmp_type, self.icmp_code] {
            match o {
                Some(v) => h.update([1u8, v]),
                None => h.update([0u8]),
            }
        }
        s(&mut h, &self.src_country);
        s(&mut h, &self.dst_country);
        h.update(self.src_asn.to_be_bytes());
        h.update(self.dst_asn.to_be_bytes());
        s(&mut h, &self.src_zone);
        s(&mut h, &self.dst_zone);
        // Enforcement columns only when set: rows without a verdict hash as before
        // (digests in evidence logs written before enforcement still verify).
        if self.verdict != 0 || !self.enforce_rule.is_empty() {
            h.update([self.verdict as u8]);
            s(&mut h, &self.enforce_rule);
        }
        // Likewise the source columns only for records that are not unsampled probe
        // records.
        if self.source != 0 || self.sampling != 1 {
            h.update([self.source as u8]);
            h.update(self.sampling.to_be_bytes());
        }
        // And the application metadata only for records that have some.
        if !self.dns_qname.is_empty() || !self.tls_sni.is_empty() {
            s(&mut h, &self.dns_qname);
            h.update(self.dns_qtype.to_be_bytes());
            h.update(self.dns_rcode.to_be_bytes());
            s(&mut h, &self.tls_sni);
        }
        // And the tunnel only for decapsulated flows.
        if !self.tunnel.is_empty() {
            s(&mut h, &self.tunnel);
            h.update(self.tunnel_id.to_be_bytes());
            h.update(self.outer_src.octets());
            h.update(self.outer_dst.octets());
        }
        h.finalize().into()
    }

    /// The record a stored row was made from; the error says what cannot be one
    /// (a row not written by the sink).
    pub fn record(&self) -> Result<FlowRecord, String> {
        let ip = |a: Ipv6Addr| match (self.ip_version, a.to_ipv4_mapped()) {
            (4, Some(v4)) => Ok(IpAddr::V4(v4)),
            (4, None) => Err(format!("ip_version 4 but {a} is not IPv4-mapped")),
            _ => Ok(IpAddr::V6(a)),
        };
        let ns = |field: &str, v: i64| {
            u64::try_from(v).map_err(|_| format!("{field} = {v} is before 1970"))
        };
        Ok(FlowRecord {
            src: ip(self.src)?,
            dst: ip(self.dst)?,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            vlan: self.vlan,
            packets: self.packets,
            bytes: self.bytes,
            first: ns("first", self.first)?,
            last: ns("last", self.last)?,
            tcp_flags: self.tcp_flags,
            icmp_type: self.icmp_type,
            icmp_code: self.icmp_code,
            line: self.line.as_ref().into(),
            ifindex: self.ifindex,
            direction: match self.direction {
                0 => Direction::Ingress,
                1 => Direction::Egress,
                d => return Err(format!("direction {d}")),
            },
            verdict: match self.verdict {
                0..=2 => Verdict::from_u8(self.verdict as u8),
                v => return Err(format!("verdict {v}")),
            },
            enforce_rule: (!self.enforce_rule.is_empty())
                .then(|| self.enforce_rule.as_ref().into()),
            source: u8::try_from(self.source)
                .ok()
                .and_then(FlowSource::from_u8)
                .ok_or_else(|| format!("source {}", self.source))?,
            sampling: match self.sampling {
                0 => return Err("sampling 0".into()),
                s => s,
            },
            dns: (!self.dns_qname.is_empty()).then(|| {
                Box::new(tidegate_wire::record::DnsMeta {
                    qname: self.dns_qname.to_string(),
                    qtype: self.dns_qtype,
                    rcode: u8::try_from(self.dns_rcode).ok(),
                })
            }),
            sni: (!self.tls_sni.is_empty()).then(|| self.tls_sni.as_ref().into()),
            tunnel: match &*self.tunnel {
                "" => None,
                name => {
                    let kind = tidegate_wire::record::tunnel_kind::from_name(name)
                        .ok_or_else(|| format!("tunnel {name:?}"))?;
                    let outer = |a: Ipv6Addr| {
                        (!a.is_unspecified()).then(|| match a.to_ipv4_mapped() {
                            Some(v4) => IpAddr::V4(v4),
                            None => IpAddr::V6(a),
                        })
                    };
                    Some(Box::new(tidegate_wire::record::TunnelMeta {
                        kind,
                        id: self.tunnel_id,
                        outer_src: outer(self.outer_src),
                        outer_dst: outer(self.outer_dst),
                    }))
                }
            },
        })
    }
}

/// An address as the IPv6 columns hold it (IPv4-mapped; `::` for none).
/// RowBinary as ClickHouse reads it: numbers little-endian, `IPv6` as its 16 bytes,
/// strings (`LowCardinality` ones too) LEB128-length-prefixed, `Nullable` a null byte
/// (1 = NULL) before the value.
struct RowBinary<'a>(&'a mut Vec<u8>);

impl RowBinary<'_> {
    fn put<const N: usize>(&mut self, b: [u8; N]) {
        self.0.extend_from_slice(&b);
    }

    fn string(&mut self, s: &str) {
        clickhouse_types::put_leb128(&mut *self.0, s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn nullable<const N: usize>(&mut self, v: Option<[u8; N]>) {
        match v {
            None => self.0.push(1),
            Some(b) => {
                self.0.push(0);
                self.put(b);
            }
        }
    }
}

fn mapped(a: Option<IpAddr>) -> Ipv6Addr {
    match a {
        Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped(),
        Some(IpAddr::V6(v6)) => v6,
        None => Ipv6Addr::UNSPECIFIED,
    }
}

/// Nanoseconds since the epoch as `DateTime64(9)` holds them (signed; up to 2262-04-11).
fn timestamp(field: &str, ns: u64) -> Result<i64, String> {
    i64::try_from(ns).map_err(|_| {
        format!("{field} = {ns} ns is after 2262-04-11, the end of ClickHouse's DateTime64(9)")
    })
}

/// A probe's health report, as the sink stores it in `probe_health` (converted by the
/// collector from the transport's `wire::ProbeHealth`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeHealthRow {
    /// When the probe took the report, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Probe identity; must be empty or equal to the `probe_id` given to
    /// [`insert_health`](super::ClickHouseSink::insert_health), which is what is stored.
    pub probe_id: String,
    /// Cumulative counters by name.
    pub counters: Vec<(String, u64)>,
    /// Bytes the probe holds in its spool, not yet acknowledged.
    pub spool_bytes: u64,
    /// Batches the probe holds in its spool.
    pub spool_batches: u64,
    /// Lines (interfaces) the probe captures on.
    pub lines: Vec<String>,
}

/// One row of `probe_health` (see `0003_probe_health.sql`).
#[derive(Clone, Debug, PartialEq, Eq, Row, Serialize)]
pub(crate) struct HealthRow<'a> {
    pub ts: i64,
    pub probe_id: &'a str,
    /// `Map(LowCardinality(String), UInt64)`, sent as a sequence of pairs.
    pub counters: &'a [(String, u64)],
    pub spool_bytes: u64,
    pub spool_batches: u64,
    pub lines: &'a [String],
}

impl<'a> HealthRow<'a> {
    /// Converts a report of `probe_id`; the error says what does not fit.
    pub fn new(probe_id: &'a str, h: &'a ProbeHealthRow) -> Result<Self, String> {
        if !h.probe_id.is_empty() && h.probe_id != probe_id {
            return Err(format!(
                "the report names probe {:?} but came from {probe_id:?}",
                h.probe_id
            ));
        }
        let mut names: Vec<&str> = h.counters.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("counter {:?} appears twice", w[0]));
        }
        Ok(HealthRow {
            ts: timestamp("ts", h.ts_ns)?,
            probe_id,
            counters: &h.counters,
            spool_bytes: h.spool_bytes,
            spool_batches: h.spool_batches,
            lines: &h.lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_column_types_name_every_column_written_in_order() {
        let names: Vec<&str> = FlowRow::COLUMN_TYPES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, <FlowRow<'_> as clickhouse::Row>::COLUMN_NAMES);
    }

    fn record() -> FlowRecord {
        FlowRecord {
            src: "192.0.2.1".parse().unwrap(),
            dst: "198.51.100.7".parse().unwrap(),
            sport: 1234,
            dport: 443,
            proto: 6,
            vlan: Some(0),
            packets: 3,
            bytes: 180,
            first: 1_700_000_000_000_000_001,
            last: 1_700_000_000_500_000_000,
            tcp_flags: 0x12,
            line: "hk-1".into(),
            ifindex: 7,
            direction: Direction::Egress,
            ..Default::default()
        }
    }

    /// Rows covering each column's forms: IPv4 and IPv6, NULL and set `Nullable`s,
    /// enrichment or none, every enum value, DNS, SNI and tunnel metadata, multi-byte
    /// string lengths.
    fn varied_records() -> Vec<(FlowRecord, Option<FlowContext>)> {
        use tidegate_common::Tunnel;
        use tidegate_wire::record::{DnsMeta, TunnelMeta};
        let mut out = vec![(record(), None)];
        let mut r = record();
        r.src = "2001:db8::1".parse().unwrap();
        r.dst = "2001:db8::ff".parse().unwrap();
        (r.vlan, r.proto, r.icmp_type, r.icmp_code) = (None, 58, Some(128), Some(0));
        (r.verdict, r.enforce_rule) = (Verdict::Dropped, Some("deny-\u{00e9}".into()));
        (r.source, r.sampling) = (FlowSource::Ipfix, 1000);
        r.direction = Direction::Ingress;
        let ctx = FlowContext {
            ends: tidegate_threat::policy::Endpoints {
                src: tidegate_threat::policy::EndpointInfo {
                    country: Some("HK".into()),
                    asn: Some(4_200_000_000),
                },
                dst: Default::default(),
            },
            src_zone: "isolated".into(),
            dst_zone: "x".repeat(300).into(),
        };
        out.push((r, Some(ctx)));
        let mut r = record();
        r.dns = Some(Box::new(DnsMeta {
            qname: "a.example".repeat(20),
            qtype: 16,
            rcode: Some(3),
        }));
        r.sni = Some("sni.example".into());
        r.tunnel = Some(Box::new(TunnelMeta {
            kind: Tunnel::GtpU,
            id: 0xdead_beef,
            outer_src: Some("192.0.2.9".parse().unwrap()),
            outer_dst: Some("2001:db8::9".parse().unwrap()),
        }));
        (r.packets, r.bytes, r.tcp_flags) = (u64::MAX, u64::MAX - 1, 0x1ff);
        out.push((r, None));
        out
    }

    #[tokio::test]
    async fn rows_written_as_row_binary_read_back_as_the_rows() {
        use clickhouse::test::{Mock, handlers};
        let mock = Mock::new();
        let client = clickhouse::Client::default()
            .with_url(mock.url())
            .with_compression(clickhouse::Compression::None);
        let recording = mock.add(handlers::record::<OwnedFlowRow>());
        let records = varied_records();
        let rows: Vec<FlowRow<'_>> = records
            .iter()
            .enumerate()
            .map(|(i, (r, ctx))| {
                FlowRow::new("edge-\u{4e00}", 7, i as u64, r, ctx.as_ref()).unwrap()
            })
            .collect();
        let mut body = Vec::new();
        for row in &rows {
            row.write_row_binary(&mut body);
        }
        let mut insert = client.insert_formatted_with(format!(
            "INSERT INTO flows({}) FORMAT RowBinary",
            FlowRow::column_list()
        ));
        insert.send(body.into()).await.unwrap();
        insert.end().await.unwrap();
        let got: Vec<OwnedFlowRow> = recording.collect().await;
        // Field by field (the same names and values), through JSON.
        let got: Vec<_> = got
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        let want: Vec<_> = rows
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        assert_eq!(got, want);
    }

    /// [`FlowRow`] with owned strings, for the client's reader (which hands out only
    /// owned rows): the same fields with the same types.
    #[derive(Debug, Row, Serialize, Deserialize)]
    struct OwnedFlowRow {
        probe_id: String,
        batch_epoch: u64,
        batch_seq: u64,
        line: String,
        ifindex: u32,
        direction: i8,
        ip_version: u8,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        sport: u16,
        dport: u16,
        proto: u8,
        vlan: Option<u16>,
        packets: u64,
        bytes: u64,
        first: i64,
        last: i64,
        tcp_flags: u16,
        icmp_type: Option<u8>,
        icmp_code: Option<u8>,
        src_country: String,
        dst_country: String,
        src_asn: u32,
        dst_asn: u32,
        src_zone: String,
        dst_zone: String,
        verdict: i8,
        enforce_rule: String,
        source: i8,
        sampling: u32,
        dns_qname: String,
        dns_qtype: u16,
        dns_rcode: i16,
        tls_sni: String,
        tunnel: String,
        tunnel_id: u32,
        outer_src: Ipv6Addr,
        outer_dst: Ipv6Addr,
    }

    #[test]
    fn ipv4_is_stored_mapped_with_version_4() {
        let r = record();
        let row = FlowRow::new("p", 0, 9, &r, None).unwrap();
        assert_eq!(row.ip_version, 4);
        assert_eq!(row.src, "::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(row.direction, 1);
        assert_eq!(row.vlan, Some(0));
        assert_eq!(row.first, 1_700_000_000_000_000_001);
        assert_eq!(
            (&*row.probe_id, row.batch_seq, &*row.line),
            ("p", 9, "hk-1")
        );
        // And back: a stored row is the record it was made from.
        assert_eq!(row.record().unwrap(), r);
    }

    #[test]
    fn mapped_ipv6_keeps_version_6() {
        let mut r = record();
        r.src = "::ffff:192.0.2.1".parse().unwrap();
        r.dst = "2001:db8::1".parse().unwrap();
        let row = FlowRow::new("p", 0, 1, &r, None).unwrap();
        assert_eq!(row.ip_version, 6);
        assert_eq!(row.src, "::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(row.record().unwrap(), r);
    }

    #[test]
    fn out_of_range_records_are_refused_with_the_reason() {
        let mut r = record();
        r.last = u64::MAX;
        let e = FlowRow::new("p", 0, 1, &r, None).unwrap_err();
        assert!(e.starts_with("last = 18446744073709551615 ns"), "{e}");
        let mut r = record();
        r.dst = "2001:db8::1".parse().unwrap();
        let e = FlowRow::new("p", 0, 1, &r, None).unwrap_err();
        assert!(e.contains("different address families"), "{e}");
    }

    #[test]
    fn health_checks_identity_and_duplicate_counters() {
        let mut h = ProbeHealthRow {
            ts_ns: 5,
            probe_id: "edge-1".into(),
            counters: vec![("packets".into(), 1), ("drops".into(), 2)],
            ..Default::default()
        };
        assert_eq!(HealthRow::new("edge-1", &h).unwrap().ts, 5);
        assert!(
            HealthRow::new("edge-2", &h)
                .unwrap_err()
                .contains("\"edge-1\"")
        );
        h.probe_id.clear();
        assert_eq!(HealthRow::new("edge-2", &h).unwrap().probe_id, "edge-2");
        h.counters.push(("packets".into(), 3));
        assert!(
            HealthRow::new("edge-2", &h)
                .unwrap_err()
                .contains("\"packets\" appears twice")
        );
    }
}
