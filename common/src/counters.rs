//! Probe counters: one slot per reason in the kernel's per-CPU counter array, and the
//! same indices for the userspace backends.

/// Index of a probe counter. Every packet increments `Packets` and then exactly one of the
/// outcome counters (`Accounted` or one of the `Err*` reasons); `Warn*` counters mark
/// packets that were accounted with reduced detail.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Frames seen by the capture program.
    Packets = 0,
    /// Bytes of those frames as seen on the wire (L2 included).
    FrameBytes = 1,
    /// Packets accounted into a flow (map or fallback).
    Accounted = 2,
    /// Frames that carry no IP packet (ARP, LLDP, STP, ...).
    ErrNonIp = 3,
    /// Frame too short for its link-layer header (Ethernet, VLAN tags, MPLS, PPPoE).
    ErrTruncatedL2 = 4,
    /// Frame ends inside the IP header.
    ErrTruncatedIp = 5,
    /// IP header invalid: wrong version, IHL < 5, total length shorter than the header
    /// (a total length of 0 is a TSO/BIG TCP super-packet and is accounted by its size).
    ErrBadIpHeader = 6,
    /// Accounted, but the L4 header was cut off (ports recorded as 0).
    WarnTruncatedL4 = 7,
    /// Accounted, but the IPv6 extension header chain was longer than the walk limit.
    WarnIpv6ExtLimit = 8,
    /// Flow map full: the packet went to the fallback ring buffer instead.
    MapFull = 9,
    /// Fallback ring buffer full too: the packet could not be accounted (real loss).
    FallbackDropped = 10,
    /// Frames of an unsupported link type (replay/AF_PACKET only).
    ErrLinkType = 11,
    /// Frames the capture socket dropped before userspace read them (AF_PACKET only).
    CaptureDropped = 12,
    /// Packets a drop rule matched on a line in monitor mode (passed; see `enforce`).
    EnforceWouldDrop = 13,
    /// Packets a drop rule matched on a line in enforce mode (dropped by XDP).
    EnforceDropped = 14,
    /// Packets a drop rule would have matched but from or to a protected address (passed).
    EnforceProtected = 15,
    /// DNS/TLS payload samples lost because their ring buffer was full (the packets are
    /// accounted; only the flow's name may be missing).
    AppSampleLost = 16,
    /// Accounted by its outer header: a tunnel packet (with `tunnels = "inner"`) whose
    /// inside is not an IP packet that parses (an ARP frame in VXLAN, a cut-off inner
    /// header).
    WarnTunnelUndecoded = 17,
    /// Packets accounted by the header inside their tunnel (`tunnels = "inner"`).
    Decapsulated = 18,
}

impl Counter {
    /// Number of counter slots.
    pub const COUNT: u32 = 19;

    /// Every counter, in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Packets,
        Counter::FrameBytes,
        Counter::Accounted,
        Counter::ErrNonIp,
        Counter::ErrTruncatedL2,
        Counter::ErrTruncatedIp,
        Counter::ErrBadIpHeader,
        Counter::WarnTruncatedL4,
        Counter::WarnIpv6ExtLimit,
        Counter::MapFull,
        Counter::FallbackDropped,
        Counter::ErrLinkType,
        Counter::CaptureDropped,
        Counter::EnforceWouldDrop,
        Counter::EnforceDropped,
        Counter::EnforceProtected,
        Counter::AppSampleLost,
        Counter::WarnTunnelUndecoded,
        Counter::Decapsulated,
    ];

    /// Stable snake_case name used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Packets => "packets",
            Counter::FrameBytes => "frame_bytes",
            Counter::Accounted => "accounted",
            Counter::ErrNonIp => "non_ip",
            Counter::ErrTruncatedL2 => "truncated_l2",
            Counter::ErrTruncatedIp => "truncated_ip",
            Counter::ErrBadIpHeader => "bad_ip_header",
            Counter::WarnTruncatedL4 => "truncated_l4",
            Counter::WarnIpv6ExtLimit => "ipv6_ext_limit",
            Counter::MapFull => "map_full",
            Counter::FallbackDropped => "fallback_dropped",
            Counter::ErrLinkType => "unsupported_link_type",
            Counter::CaptureDropped => "capture_dropped",
            Counter::EnforceWouldDrop => "enforce_would_drop",
            Counter::EnforceDropped => "enforce_dropped",
            Counter::EnforceProtected => "enforce_protected",
            Counter::AppSampleLost => "app_sample_lost",
            Counter::WarnTunnelUndecoded => "tunnel_undecoded",
            Counter::Decapsulated => "decapsulated",
        }
    }
}

/// Slots in the kernel's per-CPU counter block (room to add counters without a layout
/// change).
pub const COUNTER_SLOTS: usize = 24;

/// The kernel's per-CPU counter block: one map lookup per packet gives every counter
/// and the parser's scratch word.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterBlock {
    /// Counters indexed by [`Counter`].
    pub counters: [u64; COUNTER_SLOTS],
    /// Scratch word for [`crate::PacketBytes::opaque`] (not a counter).
    pub scratch: u64,
}

const _: () = assert!(Counter::COUNT as usize <= COUNTER_SLOTS);

#[cfg(feature = "user")]
// SAFETY: repr(C) block of u64s, no padding.
unsafe impl aya::Pod for CounterBlock {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
