//! IPFIX (RFC 7011) messages of tidegate's flow records, with IANA information elements:
//! one template for IPv4 flows (id 256) and one for IPv6 (id 257). Messages stay under
//! [`MAX_MESSAGE`] bytes so they fit an Ethernet MTU over UDP.
//!
//! | IE | name | bytes |
//! |----|------|-------|
//! | 8 / 27 | sourceIPv4Address / sourceIPv6Address | 4 / 16 |
//! | 12 / 28 | destinationIPv4Address / destinationIPv6Address | 4 / 16 |
//! | 7, 11 | sourceTransportPort, destinationTransportPort | 2, 2 |
//! | 4 | protocolIdentifier | 1 |
//! | 6 | tcpControlBits | 2 |
//! | 1, 2 | octetDeltaCount, packetDeltaCount | 8, 8 |
//! | 152, 153 | flowStartMilliseconds, flowEndMilliseconds | 8, 8 |
//! | 58 | vlanId (0 when untagged) | 2 |
//! | 10, 14 | ingressInterface, egressInterface (the line's ifIndex on the record's side, 0 on the other) | 4, 4 |
//! | 61 | flowDirection (0 ingress, 1 egress) | 1 |
//! | 32 / 139 | icmpTypeCodeIPv4 / icmpTypeCodeIPv6 | 2 |
//!
//! Counts of sampled records are already scaled up (as stored).

use std::net::IpAddr;

use tidegate_common::Direction;
use tidegate_wire::FlowRecord;

/// Template id of IPv4 flows.
pub const TEMPLATE_V4: u16 = 256;
/// Template id of IPv6 flows.
pub const TEMPLATE_V6: u16 = 257;
/// Largest message written, bytes.
pub const MAX_MESSAGE: usize = 1400;

const HEADER: usize = 16;
const SET_HEADER: usize = 4;

/// (IE, length) of the IPv4 template; the IPv6 one swaps the addresses and ICMP field.
const FIELDS_V4: [(u16, u16); 15] = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 2),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
    (58, 2),
    (10, 4),
    (14, 4),
    (61, 1),
    (32, 2),
];

fn fields(v6: bool) -> [(u16, u16); 15] {
    let mut f = FIELDS_V4;
    if v6 {
        f[0] = (27, 16);
        f[1] = (28, 16);
        f[14] = (139, 2);
    }
    f
}

fn record_len(v6: bool) -> usize {
    fields(v6).iter().map(|(_, l)| *l as usize).sum()
}

/// The template set (both templates).
fn template_set(out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&2u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        let f = fields(v6);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        for (ie, len) in f {
            out.extend_from_slice(&ie.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_record(out: &mut Vec<u8>, r: &FlowRecord) {
    match (r.src, r.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&r.sport.to_be_bytes());
    out.extend_from_slice(&r.dport.to_be_bytes());
    out.push(r.proto);
    out.extend_from_slice(&r.tcp_flags.to_be_bytes());
    out.extend_from_slice(&r.bytes.to_be_bytes());
    out.extend_from_slice(&r.packets.to_be_bytes());
    out.extend_from_slice(&(r.first / 1_000_000).to_be_bytes());
    out.extend_from_slice(&(r.last / 1_000_000).to_be_bytes());
    out.extend_from_slice(&r.vlan.unwrap_or(0).to_be_bytes());
    let (ingress, egress, dir) = match r.direction {
        Direction::Ingress => (r.ifindex, 0, 0u8),
        Direction::Egress => (0, r.ifindex, 1u8),
    };
    out.extend_from_slice(&ingress.to_be_bytes());
    out.extend_from_slice(&egress.to_be_bytes());
    out.push(dir);
    let icmp = (u16::from(r.icmp_type.unwrap_or(0)) << 8) | u16::from(r.icmp_code.unwrap_or(0));
    out.extend_from_slice(&icmp.to_be_bytes());
}

fn is_v6(r: &FlowRecord) -> bool {
    !(r.src.is_ipv4() && r.dst.is_ipv4())
}

/// Writes IPFIX messages for one observation domain, keeping the sequence number (the
/// count of data records sent before each message, modulo 2^32).
#[derive(Debug)]
pub struct Encoder {
    domain: u32,
    sequence: u32,
}

impl Encoder {
    /// An encoder for `domain`, starting at sequence 0.
    pub fn new(domain: u32) -> Self {
        Encoder {
            domain,
            sequence: 0,
        }
    }

    /// A message with only the template set.
    pub fn templates(&self, export_secs: u32) -> Vec<u8> {
        let mut m = self.header(export_secs);
        template_set(&mut m);
        finish(&mut m);
        m
    }

    fn header(&self, export_secs: u32) -> Vec<u8> {
        let mut m = Vec::with_capacity(MAX_MESSAGE);
        m.extend_from_slice(&10u16.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&export_secs.to_be_bytes());
        m.extend_from_slice(&self.sequence.to_be_bytes());
        m.extend_from_slice(&self.domain.to_be_bytes());
        m
    }

    /// Messages carrying `records` (templates first when `with_templates`), each at most
    /// [`MAX_MESSAGE`] bytes.
    pub fn messages(
        &mut self,
        records: &[&FlowRecord],
        export_secs: u32,
        with_templates: bool,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut m = self.header(export_secs);
        if with_templates {
            template_set(&mut m);
        }
        let mut set: Option<(u16, usize)> = None; // (template, start)
        let mut in_msg = 0u32;
        for r in records {
            let v6 = is_v6(r);
            let tid = if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
            let need = record_len(v6)
                + if set.map(|s| s.0) == Some(tid) {
                    0
                } else {
                    SET_HEADER
                };
            if m.len() + need > MAX_MESSAGE && in_msg > 0 {
                close_set(&mut m, set.take());
                finish(&mut m);
                out.push(std::mem::take(&mut m));
                self.sequence = self.sequence.wrapping_add(in_msg);
                in_msg = 0;
                m = self.header(export_secs);
            }
            if set.map(|s| s.0) != Some(tid) {
                close_set(&mut m, set.take());
                set = Some((tid, m.len()));
                m.extend_from_slice(&tid.to_be_bytes());
                m.extend_from_slice(&0u16.to_be_bytes());
            }
            put_record(&mut m, r);
            in_msg += 1;
        }
        close_set(&mut m, set.take());
        if in_msg > 0 || with_templates {
            finish(&mut m);
            out.push(m);
            self.sequence = self.sequence.wrapping_add(in_msg);
        }
        out
    }
}

fn close_set(m: &mut [u8], set: Option<(u16, usize)>) {
    if let Some((_, start)) = set {
        let len = (m.len() - start) as u16;
        m[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

fn finish(m: &mut [u8]) {
    debug_assert!(m.len() >= HEADER);
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netflow::{Decoder, NetflowConfig};
    use std::sync::Arc;

    fn rec(i: u32, v6: bool) -> FlowRecord {
        FlowRecord {
            src: if v6 {
                format!("2001:db8::{i:x}").parse().unwrap()
            } else {
                format!("10.0.{}.{}", i / 200, i % 200).parse().unwrap()
            },
            dst: if v6 {
                "2001:db8::ffff".parse().unwrap()
            } else {
                "192.0.2.1".parse().unwrap()
            },
            sport: 1000 + i as u16,
            dport: 443,
            proto: 6,
            packets: u64::from(i) + 1,
            bytes: (u64::from(i) + 1) * 1500,
            first: 1_700_000_000_123_000_000 + u64::from(i) * 1_000_000,
            last: 1_700_000_001_456_000_000 + u64::from(i) * 1_000_000,
            tcp_flags: 0x1b,
            line: "exporter:test".into(),
            ifindex: 7,
            vlan: i.is_multiple_of(2).then_some(42),
            ..FlowRecord::default()
        }
    }

    /// What we write, the `netflow_parser` crate reads back record for record (the
    /// interop tests check nfcapd too).
    #[test]
    fn messages_decode_back_with_netflow_parser() {
        let records: Vec<FlowRecord> = (0..300).map(|i| rec(i, i % 3 == 0)).collect();
        let refs: Vec<&FlowRecord> = records.iter().collect();
        let mut enc = Encoder::new(9);
        let msgs = enc.messages(&refs, 1_700_000_002, true);
        assert!(msgs.len() > 10);
        assert!(msgs.iter().all(|m| m.len() <= MAX_MESSAGE));
        let mut dec = Decoder::new(Arc::new(NetflowConfig::accepting_any())).unwrap();
        let from = "127.0.0.1:5000".parse().unwrap();
        let mut got = Vec::new();
        for m in &msgs {
            let d = dec.decode(from, m, tidegate_base::clock::wall_ns());
            assert!(d.problems.is_empty(), "{:?}", d.problems);
            got.extend(d.records);
        }
        assert_eq!(got.len(), records.len());
        for (g, r) in got.iter().zip(&records) {
            assert_eq!(
                (g.src, g.dst, g.sport, g.dport, g.proto),
                (r.src, r.dst, r.sport, r.dport, r.proto)
            );
            assert_eq!(
                (g.packets, g.bytes, g.tcp_flags, g.vlan),
                (r.packets, r.bytes, r.tcp_flags, r.vlan)
            );
            assert_eq!((g.first, g.last), (r.first, r.last));
            assert_eq!((g.ifindex, g.direction), (7, Direction::Ingress));
        }
        // The sequence number counts data records.
        assert_eq!(enc.sequence, 300);
    }
}
