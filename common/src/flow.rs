//! Flow key and per-flow counters as stored in the kernel's flow maps.

/// VLAN id value meaning "the frame carried no 802.1Q/802.1ad tag" (real ids are 12 bits).
pub const NO_VLAN: u16 = 0xffff;

/// Which way a packet crossed the monitored interface.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Received on the interface (XDP, AF_PACKET incoming, pcap replay).
    Ingress = 0,
    /// Sent by the host through the interface (TC egress, AF_PACKET outgoing).
    Egress = 1,
}

impl Direction {
    /// Decodes the byte stored in [`FlowKey::direction`].
    pub const fn from_u8(v: u8) -> Self {
        if v == 1 { Self::Egress } else { Self::Ingress }
    }
}

/// Unidirectional flow key: IP addresses, L4 protocol and ports, outer VLAN, interface,
/// direction, and — when tunnels are decapsulated — the tunnel the packet came through.
///
/// The addresses and ports are the outermost IP header's, or with `tunnels = "inner"`
/// the innermost one's of a decapsulated tunnel (GRE, VXLAN, GTP-U, IP-in-IP); then
/// `tunnel` and `tunnel_id` keep apart tenants whose inner addresses overlap.
///
/// IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) in the 16-byte fields with
/// `family == 4`. Padding is explicit and always zero so the key hashes identically in
/// the kernel and in userspace; 8-byte aligned so both compare and hash it as seven words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Destination address (IPv4-mapped for IPv4).
    pub dst: [u8; 16],
    /// Interface index the packet was seen on.
    pub ifindex: u32,
    /// L4 source port; 0 for protocols without ports and for non-first fragments.
    pub sport: u16,
    /// L4 destination port; 0 for protocols without ports and for non-first fragments.
    pub dport: u16,
    /// Outer VLAN id, or [`NO_VLAN`].
    pub vlan: u16,
    /// IP protocol / IPv6 upper-layer next header (after walking extension headers).
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// [`crate::parse::Tunnel`] as a byte: 0 when the key is the outermost header's.
    pub tunnel: u8,
    /// Always zero.
    pub pad: [u8; 2],
    /// [`Direction`] as a byte. Last in its word: the capture path sets it after parsing,
    /// and a byte written between zero fields makes the BPF backend clear the zeros
    /// around it with a byte-by-byte `memset` call per packet.
    pub direction: u8,
    /// The tunnel's identifier: VXLAN network id, GTP-U TEID, GRE key (PPTP call id),
    /// 0 for IP-in-IP and GRE without a key.
    pub tunnel_id: u32,
    /// Always zero.
    pub pad2: [u8; 4],
}

// [`FlowKey::set_capture`] writes words 4-6 whole: the build fails if the fields move.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(FlowKey, ifindex) == 32);
    assert!(offset_of!(FlowKey, sport) == 36);
    assert!(offset_of!(FlowKey, dport) == 38);
    assert!(offset_of!(FlowKey, vlan) == 40);
    assert!(offset_of!(FlowKey, proto) == 42);
    assert!(offset_of!(FlowKey, family) == 43);
    assert!(offset_of!(FlowKey, tunnel) == 44);
    assert!(offset_of!(FlowKey, pad) == 45);
    assert!(offset_of!(FlowKey, direction) == 47);
    assert!(offset_of!(FlowKey, tunnel_id) == 48);
    assert!(offset_of!(FlowKey, pad2) == 52);
    assert!(size_of::<FlowKey>() == 56);
};

impl FlowKey {
    /// An all-zero key (used as a starting value; never a real flow).
    pub const ZERO: FlowKey = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        ifindex: 0,
        sport: 0,
        dport: 0,
        vlan: NO_VLAN,
        proto: 0,
        family: 0,
        direction: 0,
        tunnel: 0,
        pad: [0; 2],
        tunnel_id: 0,
        pad2: [0; 4],
    };

    /// An IPv4 key's address field: `::ffff:a.b.c.d`, built as two words. (Writing the
    /// mapped prefix byte by byte into a key splits it, for the BPF backend, into
    /// unaligned pieces that every later move of the key copies one byte at a time:
    /// ~200 instructions per packet in the kernel programs.)
    #[inline(always)]
    pub fn ipv4_mapped(a: [u8; 4]) -> [u8; 16] {
        Self::addr([0; 8], [0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]])
    }

    /// Sets where the packet was seen — interface, direction, and the outer VLAN id when
    /// one is given out of band — by writing the key's last three words whole. (The
    /// flow table reads the key as words right after this: a byte or half-word store
    /// into a word that is then read whole makes the read wait until the store reaches
    /// the cache, a failed store-to-load forward that was a tenth of the flow-table
    /// function's time in the kernel program, perf over bench/src/bin/xdp_cost.rs.)
    #[inline(always)]
    pub fn set_capture(&mut self, ifindex: u32, direction: Direction, vlan: Option<u16>) {
        let vlan = match vlan {
            Some(v) => v,
            None => self.vlan,
        };
        // `v` (`width` bytes) placed at byte `off` of a word read in native order.
        const fn at(v: u64, off: u32, width: u32) -> u64 {
            if cfg!(target_endian = "little") {
                v << (8 * off)
            } else {
                v << (8 * (8 - off - width))
            }
        }
        let w4 =
            at(ifindex as u64, 0, 4) | at(self.sport as u64, 4, 2) | at(self.dport as u64, 6, 2);
        let w5 = at(vlan as u64, 0, 2)
            | at(self.proto as u64, 2, 1)
            | at(self.family as u64, 3, 1)
            | at(self.tunnel as u64, 4, 1)
            | at(direction as u64, 7, 1);
        let w6 = at(self.tunnel_id as u64, 0, 4);
        let p = self as *mut FlowKey as *mut u64;
        // SAFETY: the key is 8-aligned and 56 bytes (words 0-6); words 4-6 hold exactly
        // ifindex, sport, dport | vlan, proto, family, tunnel, pad (zero), direction |
        // tunnel_id, pad2 (zero), in the order of the struct (repr(C)).
        unsafe {
            p.add(4).write(w4);
            p.add(5).write(w5);
            p.add(6).write(w6);
        }
    }

    /// An address field from its two halves, built as two words (see
    /// [`Self::ipv4_mapped`]).
    #[inline(always)]
    pub fn addr(lo: [u8; 8], hi: [u8; 8]) -> [u8; 16] {
        let (lo, hi) = (u64::from_ne_bytes(lo), u64::from_ne_bytes(hi));
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&lo.to_ne_bytes());
        out[8..].copy_from_slice(&hi.to_ne_bytes());
        out
    }
}

/// Per-flow counters. In the kernel this is the per-CPU value of the flow map; userspace
/// sums the CPUs' values (skipping CPUs that never saw the flow: `packets == 0`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Packets.
    pub packets: u64,
    /// IP-layer bytes: IPv4 total length, or 40 + IPv6 payload length.
    pub bytes: u64,
    /// First packet, nanoseconds (kernel: CLOCK_MONOTONIC; userspace: Unix epoch).
    pub first_ns: u64,
    /// Last packet, nanoseconds (same clock as `first_ns`).
    pub last_ns: u64,
    /// OR of the TCP flags seen (12 bits: reserved, AE/NS, CWR .. FIN).
    pub tcp_flags: u16,
    /// ICMP/ICMPv6 `type << 8 | code` of the last packet (0 for other protocols).
    pub icmp: u16,
    /// The strongest enforcement verdict any of its packets got (`enforce::VERDICT_*`).
    pub verdict: u8,
    /// The rule that gave it (`enforce` rule index; meaningful when `verdict` is not 0).
    pub rule: u8,
    /// Low 16 bits of the policy version that judged it.
    pub policy: u16,
}

impl FlowStats {
    /// Adds another observation of the same flow.
    #[inline(always)]
    pub fn merge(&mut self, o: &FlowStats) {
        if o.packets == 0 {
            return;
        }
        if self.packets == 0 || o.first_ns < self.first_ns {
            self.first_ns = o.first_ns;
        }
        if o.last_ns >= self.last_ns {
            self.last_ns = o.last_ns;
            self.icmp = o.icmp;
        }
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.tcp_flags |= o.tcp_flags;
        if o.verdict > self.verdict {
            self.verdict = o.verdict;
            self.rule = o.rule;
            self.policy = o.policy;
        }
    }
}

/// A packet whose flow could not be inserted because the flow map was full. The kernel
/// sends these through the fallback ring buffer so the packet is still accounted.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FallbackRecord {
    /// The packet's flow key.
    pub key: FlowKey,
    /// Packet time (kernel CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    /// Packets this record stands for (more than 1 for a GSO super-packet).
    pub packets: u32,
    /// IP-layer bytes of those packets.
    pub bytes: u32,
    /// TCP flags of the packet.
    pub tcp_flags: u16,
    /// ICMP `type << 8 | code`.
    pub icmp: u16,
    /// Enforcement verdict of the packet (`enforce::VERDICT_*`).
    pub verdict: u8,
    /// The rule that gave it.
    pub rule: u8,
    /// Low 16 bits of the policy version.
    pub policy: u16,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain repr(C) structs of integers with explicit padding fields.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::FallbackRecord {}
    unsafe impl aya::Pod for super::AppSample {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<FlowKey>(), 56);
        assert_eq!(core::mem::size_of::<FlowStats>(), 40);
        assert_eq!(core::mem::size_of::<FallbackRecord>(), 80);
    }

    #[test]
    fn address_fields_built_from_words_are_the_plain_bytes() {
        assert_eq!(
            FlowKey::ipv4_mapped([192, 0, 2, 7]),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7]
        );
        let a: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        let (mut lo, mut hi) = ([0u8; 8], [0u8; 8]);
        lo.copy_from_slice(&a[..8]);
        hi.copy_from_slice(&a[8..]);
        assert_eq!(FlowKey::addr(lo, hi), a);
        // The byte the capture path writes after parsing ends its word (see the field).
        assert_eq!(core::mem::offset_of!(FlowKey, direction) % 8, 7);
    }

    #[test]
    fn capture_words_are_the_fields_set_one_by_one() {
        let parsed = FlowKey {
            src: FlowKey::ipv4_mapped([192, 0, 2, 7]),
            dst: FlowKey::ipv4_mapped([198, 51, 100, 9]),
            sport: 0xbeef,
            dport: 443,
            vlan: 0x0abc,
            proto: 17,
            family: 4,
            tunnel: 3,
            tunnel_id: 0xdead_beef,
            ..FlowKey::ZERO
        };
        for (ifindex, dir, vlan) in [
            (7, Direction::Egress, None),
            (0xfedc_ba98, Direction::Ingress, Some(0x0123)),
            (1, Direction::Egress, Some(NO_VLAN)),
        ] {
            let mut want = parsed;
            want.ifindex = ifindex;
            want.direction = dir as u8;
            if let Some(v) = vlan {
                want.vlan = v;
            }
            let mut got = parsed;
            got.set_capture(ifindex, dir, vlan);
            assert_eq!(got, want);
            assert_eq!(crate::slot::key_words(&got), crate::slot::key_words(&want));
        }
    }

    #[test]
    fn merge_keeps_earliest_first_and_latest_last() {
        let mut a = FlowStats {
            packets: 1,
            bytes: 60,
            first_ns: 10,
            last_ns: 20,
            tcp_flags: 2,
            ..Default::default()
        };
        let b = FlowStats {
            packets: 2,
            bytes: 100,
            first_ns: 5,
            last_ns: 30,
            tcp_flags: 0x10,
            icmp: 7,
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(
            (
                a.packets,
                a.bytes,
                a.first_ns,
                a.last_ns,
                a.tcp_flags,
                a.icmp
            ),
            (3, 160, 5, 30, 0x12, 7)
        );
        a.merge(&FlowStats::default());
        assert_eq!(a.packets, 3);
    }
}

/// [`AppSample::kind`]: the start of the packet's L4 payload.
pub const SAMPLE_PAYLOAD: u8 = 0;
/// [`AppSample::kind`]: the outer IP header of a decapsulated tunnel packet (its first
/// 40 bytes, or fewer when the packet is shorter), for the tunnel's endpoints.
pub const SAMPLE_OUTER_IP: u8 = 1;
/// Bytes of a tunnel's outer IP header a [`SAMPLE_OUTER_IP`] sample carries: an IPv6
/// header's (an IPv4 one is shorter; the rest is its options or the tunnel header).
pub const OUTER_IP_SAMPLE_BYTES: usize = 40;

/// L4 payload bytes a kernel program copies into an [`AppSample`] at most.
pub const APP_SAMPLE_BYTES: usize = 1024;

/// The start of a packet's L4 payload, for application metadata (DNS questions, TLS
/// ClientHello): the programs send one per DNS message and per TCP segment that starts a
/// TLS handshake record, through the `APP_SAMPLES` ring buffer; the probe parses it with
/// the same code pcap replay uses.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AppSample {
    /// The packet's flow key (as accounted).
    pub key: FlowKey,
    /// Bytes of `data` that hold payload.
    pub len: u16,
    /// What `data` holds: [`SAMPLE_PAYLOAD`] or [`SAMPLE_OUTER_IP`].
    pub kind: u8,
    /// Padding (zero).
    pub _pad: [u8; 5],
    /// The payload's first `len` bytes.
    pub data: [u8; APP_SAMPLE_BYTES],
}
