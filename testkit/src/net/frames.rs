//! Crafted Ethernet frames with known IP-layer sizes, sent through AF_PACKET.

use std::{
    ffi::CString,
    io, mem,
    net::{Ipv4Addr, Ipv6Addr},
};

use super::VethPair;

/// An IPv4/UDP (or TCP) frame from `src:sport` to `dst:dport` whose IP total length is
/// `ip_len` (≥ 28 for UDP, ≥ 40 for TCP).
#[allow(clippy::too_many_arguments)]
pub fn ipv4(
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    ip_len: u16,
    tcp_flags: u8,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(ip_len as usize + 18);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let l4 = f.len();
    f.resize(ip_start + ip_len as usize, 0);
    f[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    f[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        f[l4 + 12] = 0x50;
        f[l4 + 13] = tcp_flags;
    } else if proto == 17 {
        f[l4 + 4..l4 + 6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    }
    let sum = checksum(&f[ip_start..ip_start + 20]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    f
}

/// An IPv6/UDP frame from `src:sport` to `dst:dport` with `payload_len` bytes after the
/// fixed header (≥ 8: the UDP header); its IP-layer size is 40 + `payload_len`.
pub fn ipv6_udp(
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload_len: u16,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(54 + payload_len as usize);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&payload_len.to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let l4 = f.len();
    f.resize(l4 + payload_len as usize, 0);
    f[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    f[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    f[l4 + 4..l4 + 6].copy_from_slice(&payload_len.to_be_bytes());
    f
}

/// From `pair`'s sending end to `dst_mac`, for each `(sport, ip_len, count)` of `flows`,
/// `count` IPv4/UDP frames from `src:sport` to `dst:9999` of IP length `ip_len`.
pub fn send_udp_flows(
    pair: &VethPair,
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    flows: &[(u16, u16, u64)],
) {
    VethPair::in_ns(&pair.ns_a, || {
        let tx = RawSender::new(&pair.if_a).unwrap();
        for &(sport, len, count) in flows {
            let f = ipv4(dst_mac, None, 17, src, dst, sport, 9999, len, 0);
            for _ in 0..count {
                tx.send(&f).unwrap();
            }
        }
    })
    .unwrap();
}

/// A non-IP (ARP ethertype) frame.
pub fn arp(dst_mac: [u8; 6]) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06]);
    f.resize(42, 0);
    f
}

fn checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An AF_PACKET socket bound to one interface (of the calling thread's namespace).
pub struct RawSender {
    fd: libc::c_int,
    ifindex: i32,
}

impl RawSender {
    /// Opens a raw socket on `iface`.
    pub fn new(iface: &str) -> io::Result<Self> {
        let c = CString::new(iface).unwrap();
        // SAFETY: plain libc calls with valid arguments.
        unsafe {
            let ifindex = libc::if_nametoindex(c.as_ptr()) as i32;
            if ifindex == 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(RawSender { fd, ifindex })
        }
    }

    /// Sends one frame as is; retries while the device queue is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sa: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = self.ifindex;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&frame[..6]);
        loop {
            // SAFETY: valid buffer and address.
            let r = unsafe {
                libc::sendto(
                    self.fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sa as *const libc::sockaddr_ll).cast(),
                    mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r == frame.len() as isize {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) || e.raw_os_error() == Some(libc::EAGAIN) {
                std::thread::yield_now();
                continue;
            }
            return Err(e);
        }
    }
}

impl Drop for RawSender {
    fn drop(&mut self) {
        // SAFETY: our fd.
        unsafe { libc::close(self.fd) };
    }
}
