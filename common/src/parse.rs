//! The one packet parser: link layer → outer IP header → L4 ports/flags.
//!
//! It is generic over [`PacketBytes`], so the XDP and TC programs run it on packet memory
//! (bounds-checked against `data_end`, as the verifier wants) and userspace runs it on
//! byte slices. Every read is a fixed-size array at an offset; every loop has a constant
//! bound.
//!
//! Semantics (see README "Flow semantics"):
//! - the **outermost** IP header keys the flow, or with [`Tunnels::Inner`] the header
//!   inside one level of GRE (incl. transparent Ethernet and PPTP's PPP), VXLAN, GTP-U or
//!   IP-in-IP (4in4, 6in4, 4in6, 6in6); the key then carries the tunnel kind and id and
//!   the bytes are the inner IP packet's; a tunnel whose inside does not parse is keyed
//!   by its outer header (counted as `tunnel_undecoded`);
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
    /// Offset of the L4 header in the frame; 0 when there is none to read (a non-first
    /// fragment, an IPv6 extension chain cut short).
    pub l4_off: u16,
    /// Offset of the outer IP header of a decapsulated tunnel (`key.tunnel != 0`), for
    /// the tunnel's endpoints; 0 otherwise.
    pub outer_l3_off: u16,
    /// Set when the packet was accounted with reduced detail.
    pub warn: Option<Counter>,
}

/// Which IP header keys a tunnelled packet's flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tunnels {
    /// The outermost (what the line carries; NetFlow exporters' default).
    #[default]
    Outer,
    /// The one inside a GRE, VXLAN, GTP-U or IP-in-IP tunnel (one level).
    Inner,
}

/// The tunnel a decapsulated packet came through ([`FlowKey::tunnel`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tunnel {
    /// GRE (RFC 2784/2890; id: the key) or PPTP's enhanced GRE (id: the call id).
    Gre = 1,
    /// VXLAN (RFC 7348, UDP port 4789; id: the network identifier).
    Vxlan = 2,
    /// GTP-U (3GPP TS 29.281, UDP port 2152; id: the TEID).
    GtpU = 3,
    /// IPv4 or IPv6 directly in IPv4 or IPv6 (protocols 4 and 41; id 0).
    IpInIp = 4,
}

impl Tunnel {
    /// From the key's byte (`None` for 0 and unknown bytes).
    pub const fn from_u8(v: u8) -> Option<Tunnel> {
        match v {
            1 => Some(Tunnel::Gre),
            2 => Some(Tunnel::Vxlan),
            3 => Some(Tunnel::GtpU),
            4 => Some(Tunnel::IpInIp),
            _ => None,
        }
    }

    /// `gre`, `vxlan`, `gtp-u`, `ip-in-ip`.
    pub const fn name(self) -> &'static str {
        match self {
            Tunnel::Gre => "gre",
            Tunnel::Vxlan => "vxlan",
            Tunnel::GtpU => "gtp-u",
            Tunnel::IpInIp => "ip-in-ip",
        }
    }
}

/// UDP port of VXLAN (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// UDP port of GTP-U.
pub const GTPU_PORT: u16 = 2152;
/// GTP-U extension headers walked at most.
pub const MAX_GTPU_EXT: usize = 4;

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
pub fn parse_frame<P: PacketBytes + ?Sized>(
    p: &P,
    link: LinkType,
    tunnels: Tunnels,
) -> Result<Parsed, ParseError> {
    let outer = parse_link(p, link)?;
    Ok(match tunnels {
        Tunnels::Outer => outer,
        Tunnels::Inner => decapsulate(p, outer),
    })
}

#[inline(always)]
fn parse_link<P: PacketBytes + ?Sized>(p: &P, link: LinkType) -> Result<Parsed, ParseError> {
    match link {
        LinkType::Ethernet => parse_ethernet_outer(p),
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
pub fn parse_ethernet<P: PacketBytes + ?Sized>(
    p: &P,
    tunnels: Tunnels,
) -> Result<Parsed, ParseError> {
    let outer = parse_ethernet_outer(p)?;
    Ok(match tunnels {
        Tunnels::Outer => outer,
        Tunnels::Inner => decapsulate(p, outer),
    })
}

#[inline(always)]
fn parse_ethernet_outer<P: PacketBytes + ?Sized>(p: &P) -> Result<Parsed, ParseError> {
    match parse_ethernet_ipv4_fast(p) {
        Some(out) => Ok(out),
        None => parse_ethernet_at(p, 0),
    }
}

/// What a tunnel carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inner {
    /// An IP packet (version from its first nibble).
    Ip,
    /// An Ethernet frame.
    Ethernet,
    /// A PPP frame (PPTP).
    Ppp,
}

/// The packet inside `outer`'s tunnel, keyed by its own header with the tunnel's kind,
/// id and the outer VLAN; `outer` itself when it is not a tunnel packet, and `outer`
/// with a `tunnel_undecoded` warning when the inside does not parse.
#[inline(always)]
fn decapsulate<P: PacketBytes + ?Sized>(p: &P, outer: Parsed) -> Parsed {
    let Some((kind, id, off, inner)) = tunnel_of(p, &outer) else {
        return outer;
    };
    let off = p.opaque(off);
    let parsed = match inner {
        Inner::Ip => parse_ip_inside(p, off),
        Inner::Ethernet => parse_inner_ethernet(p, off),
        Inner::Ppp => parse_ppp(p, off),
    };
    match parsed {
        Ok(mut inside) => {
            inside.key.vlan = outer.key.vlan;
            inside.key.tunnel = kind as u8;
            inside.key.tunnel_id = id;
            inside.outer_l3_off = outer.l3_off;
            inside
        }
        Err(_) => {
            let mut out = outer;
            if out.warn.is_none() {
                out.warn = Some(Counter::WarnTunnelUndecoded);
            }
            out
        }
    }
}

/// Which tunnel `o` is a packet of, its id, and where and what its inside is.
#[inline(always)]
fn tunnel_of<P: PacketBytes + ?Sized>(p: &P, o: &Parsed) -> Option<(Tunnel, u32, usize, Inner)> {
    if o.l4_off == 0 {
        return None;
    }
    let off = p.opaque(o.l4_off as usize);
    match o.key.proto {
        4 | 41 => Some((Tunnel::IpInIp, 0, off, Inner::Ip)),
        47 => gre(p, off),
        17 if o.hdr_len != 0 && o.key.dport == VXLAN_PORT => {
            // Flags with the I bit (a valid network id), 24 reserved bits, the id.
            let h = p.bytes::<8>(off + 8)?;
            if h[0] & 0x08 == 0 {
                return None;
            }
            let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
            Some((Tunnel::Vxlan, vni, off + 16, Inner::Ethernet))
        }
        17 if o.hdr_len != 0 && (o.key.dport == GTPU_PORT || o.key.sport == GTPU_PORT) => {
            gtpu(p, off + 8)
        }
        _ => None,
    }
}

/// A GRE header at `off`: version 0 (RFC 2784/2890) carrying IPv4, IPv6 or Ethernet,
/// or version 1 (PPTP, RFC 2637) carrying PPP.
#[inline(always)]
fn gre<P: PacketBytes + ?Sized>(p: &P, off: usize) -> Option<(Tunnel, u32, usize, Inner)> {
    let h = p.bytes::<4>(off)?;
    let (flags, ver, proto) = (h[0], h[1] & 0x07, be16([h[2], h[3]]));
    let (c, k, s) = (flags & 0x80 != 0, flags & 0x20 != 0, flags & 0x10 != 0);
    // Routing present (R) or strict source route: obsolete (RFC 1701), not followed.
    if flags & 0x40 != 0 {
        return None;
    }
    let mut at = off + 4;
    match ver {
        0 => {
            if c {
                at += 4;
            }
            let mut id = 0;
            if k {
                id = u32::from_be_bytes(p.bytes::<4>(at)?);
                at += 4;
            }
            if s {
                at += 4;
            }
            let inner = match proto {
                ETH_P_IP | ETH_P_IPV6 => Inner::Ip,
                0x6558 => Inner::Ethernet,
                _ => return None,
            };
            Some((Tunnel::Gre, id, at, inner))
        }
        1 => {
            // Enhanced GRE: key present, payload length and call id in it; PPP only.
            if proto != 0x880b || !k || c {
                return None;
            }
            let key = p.bytes::<4>(at)?;
            at += 4;
            if s {
                at += 4;
            }
            if h[1] & 0x80 != 0 {
                at += 4;
            }
            // A bare acknowledgement carries no payload.
            if be16([key[0], key[1]]) == 0 {
                return None;
            }
            Some((Tunnel::Gre, be16([key[2], key[3]]) as u32, at, Inner::Ppp))
        }
        _ => None,
    }
}

/// A GTP-U header at `off`: version 1, protocol type GTP, a G-PDU (user data) message;
/// the optional sequence/N-PDU/next-extension word and up to [`MAX_GTPU_EXT`]
/// extension headers are stepped over.
#[inline(always)]
fn gtpu<P: PacketBytes + ?Sized>(p: &P, off: usize) -> Option<(Tunnel, u32, usize, Inner)> {
    let h = p.bytes::<8>(off)?;
    if h[0] >> 5 != 1 || h[0] & 0x10 == 0 || h[1] != 0xff {
        return None;
    }
    let teid = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let mut at = off + 8;
    if h[0] & 0x07 != 0 {
        let opt = p.bytes::<4>(at)?;
        at += 4;
        let mut next = opt[3];
        let mut i = 0;
        while next != 0 {
            if i == MAX_GTPU_EXT {
                return None;
            }
            let at_now = p.opaque(at);
            // (Reads of at least two bytes: an eBPF verifier gives no range to a one-byte
            // check at a variable offset. An extension header is 4 bytes or more.)
            let len = p.bytes::<2>(at_now)?[0] as usize * 4;
            if len == 0 {
                return None;
            }
            next = p.bytes::<4>(p.opaque(at_now + len - 4))?[3];
            at = at_now + len;
            i += 1;
        }
    }
    Some((Tunnel::GtpU, teid, at, Inner::Ip))
}

/// The Ethernet frame at `off` inside a tunnel (VXLAN, GRE transparent bridging): up to
/// [`MAX_VLAN_TAGS`] tags, then IPv4 or IPv6. (MPLS and PPPoE inside a tunnel are not
/// followed: such packets are keyed by their outer header, as `tunnel_undecoded`.)
#[inline(always)]
fn parse_inner_ethernet<P: PacketBytes + ?Sized>(p: &P, off: usize) -> Result<Parsed, ParseError> {
    // `at`: the offset of the (next) EtherType, fresh for the verifier at each step.
    let mut at = p.opaque(off + 12);
    let mut et = u16_at(p, at).ok_or(ParseError::TruncatedL2)?;
    let mut i = 0;
    while i < MAX_VLAN_TAGS {
        if et != ETH_P_8021Q && et != ETH_P_8021AD && et != ETH_P_QINQ_OLD {
            break;
        }
        at = p.opaque(at + 4);
        et = u16_at(p, at).ok_or(ParseError::TruncatedL2)?;
        i += 1;
    }
    match et {
        ETH_P_IP => parse_ipv4(p, at + 2, NO_VLAN),
        ETH_P_IPV6 => parse_ipv6(p, at + 2, NO_VLAN),
        _ => Err(ParseError::NonIp),
    }
}

/// The IP packet at `off` inside a tunnel, by its version. (A whole IPv4 header's worth
/// is read for the version: fewer bytes fail either header, and an eBPF verifier gives no
/// range to a one-byte check at a variable offset.)
#[inline(always)]
fn parse_ip_inside<P: PacketBytes + ?Sized>(p: &P, off: usize) -> Result<Parsed, ParseError> {
    let b = p.bytes::<20>(off).ok_or(ParseError::TruncatedIp)?;
    match b[0] >> 4 {
        4 => parse_ipv4(p, off, NO_VLAN),
        6 => parse_ipv6(p, off, NO_VLAN),
        _ => Err(ParseError::NonIp),
    }
}

/// A PPP frame at `off` (optional address/control 0xff03, protocol in one byte when
/// compressed): IPv4 or IPv6.
#[inline(always)]
fn parse_ppp<P: PacketBytes + ?Sized>(p: &P, off: usize) -> Result<Parsed, ParseError> {
    let h = p.bytes::<2>(off).ok_or(ParseError::TruncatedL2)?;
    let off = if h == [0xff, 0x03] { off + 2 } else { off };
    // Two bytes even for a compressed protocol field (an IP header follows it anyway).
    let b = p.bytes::<2>(off).ok_or(ParseError::TruncatedL2)?;
    let (proto, at) = if b[0] & 1 == 1 {
        (b[0] as u16, off + 1)
    } else {
        (be16(b), off + 2)
    };
    let at = p.opaque(at);
    match proto {
        0x0021 => parse_ipv4(p, at, NO_VLAN),
        0x0057 => parse_ipv6(p, at, NO_VLAN),
        _ => Err(ParseError::NonIp),
    }
}

/// The common frame in one read: untagged IPv4 without options, not a fragment, TCP or
/// UDP with its header present. Gives exactly what [`parse_ethernet_at`] gives for
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
    // Whole fields, no byte writes into the key (see `FlowKey::ipv4_mapped`).
    let key = FlowKey {
        src: FlowKey::ipv4_mapped([h[26], h[27], h[28], h[29]]),
        dst: FlowKey::ipv4_mapped([h[30], h[31], h[32], h[33]]),
        sport: be16([h[34], h[35]]),
        dport: be16([h[36], h[37]]),
        proto,
        family: 4,
        ..FlowKey::ZERO
    };
    Some(Parsed {
        key,
        ip_bytes: total_len as u32,
        tcp_flags,
        icmp: 0,
        hdr_len,
        l3_off: 14,
        l4_off: 14 + 20,
        outer_l3_off: 0,
        warn: None,
    })
}

/// Every Ethernet frame (starting at `base`: 0, or inside a tunnel): VLAN tags, MPLS,
/// PPPoE, IPv4 options, IPv6, fragments, errors.
#[inline(always)]
fn parse_ethernet_at<P: PacketBytes + ?Sized>(p: &P, base: usize) -> Result<Parsed, ParseError> {
    let mut et = u16_at(p, base + 12).ok_or(ParseError::TruncatedL2)?;
    let mut off = base + 14;
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
    // A fresh offset: the compiler cannot reuse a pointer an earlier, shorter bounds
    // check covered (which an eBPF verifier would not connect to this header's check).
    let off = p.opaque(off);
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
    let key = FlowKey {
        src: FlowKey::ipv4_mapped([h[12], h[13], h[14], h[15]]),
        dst: FlowKey::ipv4_mapped([h[16], h[17], h[18], h[19]]),
        vlan,
        proto,
        family: 4,
        ..FlowKey::ZERO
    };
    let mut out = Parsed {
        key,
        ip_bytes: total_len,
        tcp_flags: 0,
        icmp: 0,
        hdr_len: 0,
        l3_off: off.min(u16::MAX as usize) as u16,
        l4_off: 0,
        outer_l3_off: 0,
        warn: None,
    };
    if frag_off == 0 {
        out.l4_off = (off + ihl).min(u16::MAX as usize) as u16;
        parse_l4(p, off + ihl, ihl as u16, &mut out);
    }
    Ok(out)
}

#[inline(always)]
fn parse_ipv6<P: PacketBytes + ?Sized>(p: &P, off: usize, vlan: u16) -> Result<Parsed, ParseError> {
    // A fresh offset (see `parse_ipv4`).
    let off = p.opaque(off);
    let h = p.bytes::<40>(off).ok_or(ParseError::TruncatedIp)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::BadIpHeader);
    }
    let plen = be16([h[4], h[5]]);
    let half = |i: usize| {
        [
            h[i],
            h[i + 1],
            h[i + 2],
            h[i + 3],
            h[i + 4],
            h[i + 5],
            h[i + 6],
            h[i + 7],
        ]
    };
    let key = FlowKey {
        src: FlowKey::addr(half(8), half(16)),
        dst: FlowKey::addr(half(24), half(32)),
        vlan,
        family: 6,
        ..FlowKey::ZERO
    };
    let mut out = Parsed {
        key,
        ip_bytes: 40 + plen as u32,
        tcp_flags: 0,
        icmp: 0,
        hdr_len: 0,
        l3_off: off.min(u16::MAX as usize) as u16,
        l4_off: 0,
        outer_l3_off: 0,
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
        out.l4_off = l4.min(u16::MAX as usize) as u16;
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
