//! The one packet parser: link layer → outer IP header → L4 ports/flags.
//!
//! It is generic over [`PacketBytes`], so the XDP and TC programs run it on packet memory
//! (bounds-checked against `data_end`, as the verifier wants) and userspace runs it on
//! byte slices. Every read is a fixed-size array at an offset; every loop has a constant
//! bound.
//!
//! Semantics (see README "Flow semantics"):
//! - the **outermost** IP header keys the flow (tunnels are not decapsulated);
//! - up to two VLAN tags (802.1Q, 802.1ad QinQ, 0x9100); the outer id is recorded;
//!   MPLS label stacks (up to [`MAX_MPLS_LABELS`]) and PPPoE sessions are walked to IP;
//! - IPv6 extension headers are walked (up to [`MAX_IPV6_EXT`]) to the upper-layer protocol;
//! - ports for TCP, UDP, UDP-Lite, SCTP, DCCP; 0 for non-first fragments and other protocols;
//! - bytes are IP-layer bytes: IPv4 total length, IPv6 40 + payload length.

use crate::{Counter, FlowKey, NO_VLAN};

/// Maximum number of VLAN tags walked (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;
/// Maximum MPLS labels walked.
pub const MAX_MPLS_LABELS: usize = 4;
/// Maximum IPv6 extension headers walked before giving up on finding L4.
pub const MAX_IPV6_EXT: usize = 6;

/// Read access to a packet's bytes.
pub trait PacketBytes {
    /// The `N` bytes starting at `off`, or `None` when the packet ends before `off + N`.
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]>;
    /// Length of the whole packet from the start of the link-layer header (XDP:
    /// `data_end - data`; TC: `skb->len`; a capture: the frame's length on the wire).
    fn packet_len(&self) -> usize;

    /// Returns `off` unchanged, but lets a kernel implementation hide its exact value
    /// from the eBPF verifier, so the many link-layer paths (VLAN tags, MPLS labels,
    /// PPPoE) that reach the IP header at different constant offsets are verified as one
    /// state instead of one each. Identity in userspace.
    #[inline(always)]
    fn opaque(&self, off: usize) -> usize {
        off
    }
}

impl PacketBytes for [u8] {
    #[inline]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        let s = self.get(off..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }

    #[inline]
    fn packet_len(&self) -> usize {
        self.len()
    }
}

/// A captured frame that may have been cut short by the capture's snap length: reads see
/// `data`, while [`PacketBytes::packet_len`] reports the length on the wire.
#[derive(Clone, Copy, Debug)]
pub struct WireFrame<'a> {
    /// Captured bytes.
    pub data: &'a [u8],
    /// Original length on the wire (≥ `data.len()`).
    pub wire_len: usize,
}

impl PacketBytes for WireFrame<'_> {
    #[inline]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.data.bytes(off)
    }

    #[inline]
    fn packet_len(&self) -> usize {
        self.wire_len.max(self.data.len())
    }
}

/// Why a frame could not be accounted into a flow. Each maps to a [`Counter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No IP packet in the frame (ARP, LLDP, ...).
    NonIp,
    /// Frame shorter than its link-layer headers.
    TruncatedL2,
    /// Frame ends inside the IP header.
    TruncatedIp,
    /// Invalid IP header.
    BadIpHeader,
}

impl ParseError {
    /// The counter that records this error.
    pub const fn counter(self) -> Counter {
        match self {
            ParseError::NonIp => Counter::ErrNonIp,
            ParseError::TruncatedL2 => Counter::ErrTruncatedL2,
            ParseError::TruncatedIp => Counter::ErrTruncatedIp,
            ParseError::BadIpHeader => Counter::ErrBadIpHeader,
        }
    }
}

/// A parsed packet: its flow key (without interface and direction, which the capture
/// path fills in) and its per-packet counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Flow key; `ifindex` and `direction` are zero.
    pub key: FlowKey,
    /// IP-layer bytes.
    pub ip_bytes: u32,
    /// TCP flags (12 bits), 0 for other protocols.
    pub tcp_flags: u16,
    /// ICMP `type << 8 | code`, 0 for other protocols.
    pub icmp: u16,
    /// Bytes from the start of the IP header to the end of the L4 header (for GSO
    /// segment accounting); 0 when unknown.
    pub hdr_len: u16,
    /// Offset of the (outer) IP header in the frame: with `hdr_len`, where the L4
    /// payload starts (userspace application metadata reads it).
    pub l3_off: u16,
    /// Set when the packet was accounted with reduced detail.
    pub warn: Option<Counter>,
}

/// Link-layer framing of a capture (pcap LINKTYPE_* values in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II (1).
    Ethernet,
    /// Raw IPv4/IPv6, version from the first nibble (101, 12, 14, 228, 229).
    RawIp,
    /// Linux cooked capture v1 (113).
    LinuxSll,
    /// Linux cooked capture v2 (276).
    LinuxSll2,
    /// BSD loopback / null: 4-byte address family (0, 108).
    Null,
    /// Cisco HDLC (104).
    CiscoHdlc,
}

impl LinkType {
    /// Maps a pcap LINKTYPE_* number.
    pub const fn from_linktype(v: u32) -> Option<LinkType> {
        Some(match v {
            1 => LinkType::Ethernet,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 | 108 => LinkType::Null,
            104 => LinkType::CiscoHdlc,
            _ => return None,
        })
    }
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ_OLD: u16 = 0x9100;
const ETH_P_MPLS_UC: u16 = 0x8847;
const ETH_P_MPLS_MC: u16 = 0x8848;
const ETH_P_PPPOE_SESS: u16 = 0x8864;

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn u16_at<P: PacketBytes + ?Sized>(p: &P, off: usize) -> Option<u16> {
    p.bytes::<2>(off).map(be16)
}

/// Parses a frame of the given link type (userspace capture paths).
#[inline(always)]
pub fn parse_frame<P: PacketBytes + ?Sized>(p: &P, link: LinkType) -> Result<Parsed, ParseError> {
    match link {
        LinkType::Ethernet => parse_ethernet(p),
        LinkType::RawIp => parse_by_version(p, 0, NO_VLAN),
        LinkType::LinuxSll => {
            let et = u16_at(p, 14).ok_or(ParseError::TruncatedL2)?;
            parse_l2_payload(p, et, 16, NO_VLAN)
        }
        LinkType::LinuxSll2 => {
            let et = u16_at(p, 0).ok_or(ParseError::TruncatedL2)?;
            parse_l2_payload(p, et, 20, NO_VLAN)
        }
        LinkType::Null => {
            let fam = p.bytes::<4>(0).ok_or(ParseError::TruncatedL2)?;
            // The family is in the capturing host's byte order; accept both.
            let v = u32::from_le_bytes(fam).min(u32::from_be_bytes(fam));
            match v {
                2 => parse_ipv4(p, 4, NO_VLAN),
                24 | 28 | 30 => parse_ipv6(p, 4, NO_VLAN),
                _ => Err(ParseError::NonIp),
            }
        }
        LinkType::CiscoHdlc => {
            let et = u16_at(p, 2).ok_or(ParseError::TruncatedL2)?;
            parse_l2_payload(p, et, 4, NO_VLAN)
        }
    }
}

/// Parses an Ethernet frame (the kernel programs' entry point).
#[inline(always)]
pub fn parse_ethernet<P: PacketBytes + ?Sized>(p: &P) -> Result<Parsed, ParseError> {
    match parse_ethernet_ipv4_fast(p) {
        Some(out) => Ok(out),
        None => parse_ethernet_general(p),
    }
}

/// The common frame in one read: untagged IPv4 without options, not a fragment, TCP or
/// UDP with its header present. Gives exactly what [`parse_ethernet_general`] gives for
/// such a frame; `None` for every other frame (which then takes the general path).
#[inline(always)]
fn parse_ethernet_ipv4_fast<P: PacketBytes + ?Sized>(p: &P) -> Option<Parsed> {
    // Ethernet (14) + IPv4 header without options (20) + L4 ports (4).
    let h = p.bytes::<38>(0)?;
    // EtherType IPv4, version 4 with IHL 5, fragment offset 0, total length covering the
    // header (0 is a TSO super-packet: general path).
    if be16([h[12], h[13]]) != ETH_P_IP || h[14] != 0x45 || be16([h[20], h[21]]) & 0x1fff != 0 {
        return None;
    }
    let total_len = be16([h[16], h[17]]);
    if total_len < 20 {
        return None;
    }
    let proto = h[23];
    let (tcp_flags, hdr_len) = match proto {
        6 => {
            let f = p.bytes::<2>(14 + 20 + 12)?;
            (
                (((f[0] & 0x0f) as u16) << 8) | f[1] as u16,
                20 + ((f[0] >> 4) as u16) * 4,
            )
        }
        17 => (0, 20 + 8),
        _ => return None,
    };
    let mut key = FlowKey::ZERO;
    key.family = 4;
    key.proto = proto;
    key.src[10] = 0xff;
    key.src[11] = 0xff;
    key.src[12..16].copy_from_slice(&h[26..30]);
    key.dst[10] = 0xff;
    key.dst[11] = 0xff;
    key.dst[12..16].copy_from_slice(&h[30..34]);
    key.sport = be16([h[34], h[35]]);
    key.dport = be16([h[36], h[37]]);
    Some(Parsed {
        key,
        ip_bytes: total_len as u32,
        tcp_flags,
        icmp: 0,
        hdr_len,
        l3_off: 14,
        warn: None,
    })
}

/// Every Ethernet frame: VLAN tags, MPLS, PPPoE, IPv4 options, IPv6, fragments, errors.
#[inline(always)]
fn parse_ethernet_general<P: PacketBytes + ?Sized>(p: &P) -> Result<Parsed, ParseError> {
    let mut et = u16_at(p, 12).ok_or(ParseError::TruncatedL2)?;
    let mut off = 14usize;
    let mut vlan = NO_VLAN;
    let mut i = 0;
    while i < MAX_VLAN_TAGS {
        if et != ETH_P_8021Q && et != ETH_P_8021AD && et != ETH_P_QINQ_OLD {
            break;
        }
        let tag = p.bytes::<4>(off).ok_or(ParseError::TruncatedL2)?;
        if vlan == NO_VLAN {
            vlan = be16([tag[0], tag[1]]) & 0x0fff;
        }
        et = be16([tag[2], tag[3]]);
        off += 4;
        i += 1;
    }
    parse_l2_payload(p, et, off, vlan)
}

#[inline(always)]
fn parse_l2_payload<P: PacketBytes + ?Sized>(
    p: &P,
    et: u16,
    off: usize,
    vlan: u16,
) -> Result<Parsed, ParseError> {
    match et {
        ETH_P_IP => parse_ipv4(p, off, vlan),
        ETH_P_IPV6 => parse_ipv6(p, off, vlan),
        ETH_P_MPLS_UC | ETH_P_MPLS_MC => {
            let mut off = off;
            let mut i = 0;
            while i < MAX_MPLS_LABELS {
                let l = p.bytes::<4>(off).ok_or(ParseError::TruncatedL2)?;
                off += 4;
                if l[2] & 1 == 1 {
                    return parse_by_version(p, off, vlan);
                }
                i += 1;
            }
            Err(ParseError::NonIp)
        }
        ETH_P_PPPOE_SESS => {
            let h = p.bytes::<8>(off).ok_or(ParseError::TruncatedL2)?;
            match be16([h[6], h[7]]) {
                0x0021 => parse_ipv4(p, off + 8, vlan),
                0x0057 => parse_ipv6(p, off + 8, vlan),
                _ => Err(ParseError::NonIp),
            }
        }
        _ => Err(ParseError::NonIp),
    }
}

#[inline(always)]
fn parse_by_version<P: PacketBytes + ?Sized>(
    p: &P,
    off: usize,
    vlan: u16,
) -> Result<Parsed, ParseError> {
    let b = p.bytes::<1>(off).ok_or(ParseError::TruncatedIp)?;
    match b[0] >> 4 {
        4 => parse_ipv4(p, off, vlan),
        6 => parse_ipv6(p, off, vlan),
        _ => Err(ParseError::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4<P: PacketBytes + ?Sized>(p: &P, off: usize, vlan: u16) -> Result<Parsed, ParseError> {
    let h = p.bytes::<20>(off).ok_or(ParseError::TruncatedIp)?;
    if h[0] >> 4 != 4 {
        return Err(ParseError::BadIpHeader);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total_len = match be16([h[2], h[3]]) as u32 {
        // TSO/LSO or IPv4 BIG TCP super-packet: the stack leaves the total length 0 (the
        // NIC fills it in per segment); its IP length is what the packet holds (Linux
        // skb_ip_totlen(), Wireshark's "presumed TSO").
        0 => p.packet_len().saturating_sub(off).min(u32::MAX as usize) as u32,
        n => n,
    };
    if ihl < 20 || (total_len as usize) < ihl {
        return Err(ParseError::BadIpHeader);
    }
    let frag_off = be16([h[6], h[7]]) & 0x1fff;
    let proto = h[9];
    let mut key = FlowKey::ZERO;
    key.family = 4;
    key.vlan = vlan;
    key.proto = proto;
    key.src[10] = 0xff;
    key.src[11] = 0xff;
    key.src[12..16].copy_from_slice(&h[12..16]);
    key.dst[10] = 0xff;
    key.dst[11] = 0xff;
    key.dst[12..16].copy_from_slice(&h[16..20]);
    let mut out = Parsed {
        key,
        ip_bytes: total_len,
        tcp_flags: 0,
        icmp: 0,
        hdr_len: 0,
        l3_off: off.min(u16::MAX as usize) as u16,
        warn: None,
    };
    if frag_off == 0 {
        parse_l4(p, off + ihl, ihl as u16, &mut out);
    }
    Ok(out)
}

#[inline(always)]
fn parse_ipv6<P: PacketBytes + ?Sized>(p: &P, off: usize, vlan: u16) -> Result<Parsed, ParseError> {
    let h = p.bytes::<40>(off).ok_or(ParseError::TruncatedIp)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::BadIpHeader);
    }
    let plen = be16([h[4], h[5]]);
    let mut key = FlowKey::ZERO;
    key.family = 6;
    key.vlan = vlan;
    key.src.copy_from_slice(&h[8..24]);
    key.dst.copy_from_slice(&h[24..40]);
    let mut out = Parsed {
        key,
        ip_bytes: 40 + plen as u32,
        tcp_flags: 0,
        icmp: 0,
        hdr_len: 0,
        l3_off: off.min(u16::MAX as usize) as u16,
        warn: None,
    };
    let mut nh = h[6];
    let mut l4 = off + 40;
    let mut first_fragment = true;
    let mut i = 0;
    let mut walking = true;
    while i < MAX_IPV6_EXT {
        l4 = p.opaque(l4);
        let len = match nh {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
            0 | 43 | 60 | 135 | 139 | 140 => match p.bytes::<2>(l4) {
                Some(e) => {
                    nh = e[0];
                    (e[1] as usize + 1) * 8
                }
                None => {
                    out.warn = Some(Counter::WarnTruncatedL4);
                    walking = false;
                    break;
                }
            },
            // Authentication header: length in 4-octet units, minus 2.
            51 => match p.bytes::<2>(l4) {
                Some(e) => {
                    nh = e[0];
                    (e[1] as usize + 2) * 4
                }
                None => {
                    out.warn = Some(Counter::WarnTruncatedL4);
                    walking = false;
                    break;
                }
            },
            44 => match p.bytes::<4>(l4) {
                Some(e) => {
                    nh = e[0];
                    if be16([e[2], e[3]]) >> 3 != 0 {
                        first_fragment = false;
                    }
                    8
                }
                None => {
                    out.warn = Some(Counter::WarnTruncatedL4);
                    walking = false;
                    break;
                }
            },
            _ => {
                walking = false;
                break;
            }
        };
        l4 += len;
        i += 1;
    }
    if walking && is_ipv6_ext(nh) {
        // Chain longer than the walk limit: keep the header we stopped at as protocol.
        out.warn = Some(Counter::WarnIpv6ExtLimit);
        out.key.proto = nh;
        return Ok(out);
    }
    out.key.proto = nh;
    if first_fragment && out.warn.is_none() {
        let hdr = (l4 - off).min(u16::MAX as usize) as u16;
        parse_l4(p, l4, hdr, &mut out);
    }
    Ok(out)
}

#[inline(always)]
const fn is_ipv6_ext(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140)
}

/// Fills ports, TCP flags, ICMP type/code. `l3_len` is the IP header length (incl. IPv6
/// extension headers) for [`Parsed::hdr_len`].
#[inline(always)]
fn parse_l4<P: PacketBytes + ?Sized>(p: &P, off: usize, l3_len: u16, out: &mut Parsed) {
    let off = p.opaque(off);
    match out.key.proto {
        6 => {
            let Some(t) = p.bytes::<4>(off) else {
                out.warn = Some(Counter::WarnTruncatedL4);
                return;
            };
            out.key.sport = be16([t[0], t[1]]);
            out.key.dport = be16([t[2], t[3]]);
            match p.bytes::<2>(off + 12) {
                Some(f) => {
                    out.tcp_flags = (((f[0] & 0x0f) as u16) << 8) | f[1] as u16;
                    out.hdr_len = l3_len + ((f[0] >> 4) as u16) * 4;
                }
                None => out.warn = Some(Counter::WarnTruncatedL4),
            }
        }
        17 | 136 | 132 | 33 => {
            let Some(t) = p.bytes::<4>(off) else {
                out.warn = Some(Counter::WarnTruncatedL4);
                return;
            };
            out.key.sport = be16([t[0], t[1]]);
            out.key.dport = be16([t[2], t[3]]);
            out.hdr_len = l3_len + 8;
        }
        1 | 58 => match p.bytes::<2>(off) {
            Some(t) => out.icmp = ((t[0] as u16) << 8) | t[1] as u16,
            None => out.warn = Some(Counter::WarnTruncatedL4),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests;
