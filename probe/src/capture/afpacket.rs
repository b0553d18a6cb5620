//! AF_PACKET live capture for hosts without eBPF, with the same flow semantics.
//!
//! One raw socket per line. `PACKET_VNET_HDR` tells us when the kernel hands over a GRO/GSO
//! super-packet so it is counted as the wire packets it stands for; `SO_TIMESTAMPNS` gives
//! kernel receive timestamps; `sll_pkttype` gives the direction; `PACKET_STATISTICS`
//! reports socket drops (counted, never silent).
//!
//! pnet's datalink channel hides `sll_pkttype`, the vnet header and kernel timestamps,
//! all three needed for exact accounting, so the socket is driven through libc here.

use std::{
    ffi::CString,
    io, mem,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use tidegate_common::{
    Counter, Direction, FlowKey, FlowStats, SAMPLE_OUTER_IP, SAMPLE_PAYLOAD, Tunnels, WireFrame,
    parse::LinkType, parse_frame,
};

use crate::{config::Line, live::Sink};

const PACKET_OUTGOING: u8 = 4;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_STATISTICS: libc::c_int = 6;
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// Frames read per socket per poll round before giving the others a turn.
const BURST: usize = 4096;

/// Errors opening AF_PACKET sockets.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// No such interface.
    #[error("unknown interface {0:?}")]
    UnknownInterface(String),
    /// Not root / no CAP_NET_RAW.
    #[error(
        "missing privileges to open an AF_PACKET socket on {0} (run as root or grant CAP_NET_RAW)"
    )]
    Privileges(String),
    /// Other socket error.
    #[error("AF_PACKET socket on {iface}: {op}: {source}")]
    Socket {
        /// Interface.
        iface: String,
        /// Failing call.
        op: &'static str,
        /// OS error.
        #[source]
        source: io::Error,
    },
}

struct Sock {
    fd: OwnedFd,
    ifindex: u32,
    name: String,
}

/// Raw sockets on every configured line.
pub struct AfPacketCapture {
    socks: Vec<Sock>,
    counters: [u64; Counter::COUNT as usize],
    buf: Vec<u8>,
    /// Payload starts of DNS messages and TLS handshakes seen since the last hand-over
    /// (at most [`SAMPLES_MAX`]; the kernel path's `APP_SAMPLES` ring buffer, in
    /// userspace).
    samples: Vec<(FlowKey, u8, Vec<u8>)>,
    /// Flows whose tunnel's outer header is among `samples` (one each per hand-over).
    outer_sampled: std::collections::HashSet<FlowKey>,
    tunnels: Tunnels,
}

/// Payload samples held between hand-overs, at most (more are counted as lost).
const SAMPLES_MAX: usize = 4096;

fn setopt(
    fd: libc::c_int,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: int option with a valid pointer and length.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl AfPacketCapture {
    /// Opens and binds one socket per line; tunnelled packets are keyed as `tunnels` says.
    pub fn open(lines: &[Line], tunnels: Tunnels) -> Result<Self, AfPacketError> {
        let mut socks = Vec::new();
        for l in lines {
            let err = |op, source| AfPacketError::Socket {
                iface: l.iface.clone(),
                op,
                source,
            };
            let c = CString::new(l.iface.as_str())
                .map_err(|_| AfPacketError::UnknownInterface(l.iface.clone()))?;
            // SAFETY: valid C string.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if ifindex == 0 {
                return Err(AfPacketError::UnknownInterface(l.iface.clone()));
            }
            let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
            // SAFETY: plain socket(2).
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    proto,
                )
            };
            if raw < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) {
                    return Err(AfPacketError::Privileges(l.iface.clone()));
                }
                return Err(err("socket", e));
            }
            // SAFETY: we own the new descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            setopt(raw, libc::SOL_PACKET, PACKET_VNET_HDR, 1)
                .map_err(|e| err("PACKET_VNET_HDR", e))?;
            setopt(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
                .map_err(|e| err("SO_TIMESTAMPNS", e))?;
            if setopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20).is_err() {
                let _ = setopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, 64 << 20);
            }
            // SAFETY: zeroed sockaddr_ll is valid; fields set below.
            let mut sa: libc::sockaddr_ll = unsafe { mem::zeroed() };
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sa.sll_ifindex = ifindex as i32;
            // SAFETY: valid address of the right length.
            let r = unsafe {
                libc::bind(
                    raw,
                    (&sa as *const libc::sockaddr_ll).cast(),
                    mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r != 0 {
                return Err(err("bind", io::Error::last_os_error()));
            }
            tracing::info!(iface = %l.iface, ifindex, "AF_PACKET capture open");
            socks.push(Sock {
                fd,
                ifindex,
                name: l.name.clone(),
            });
        }
        Ok(AfPacketCapture {
            socks,
            counters: [0; Counter::COUNT as usize],
            buf: vec![0u8; 65536 + VNET_HDR_LEN],
            samples: Vec::new(),
            outer_sampled: std::collections::HashSet::new(),
            tunnels,
        })
    }

    /// (ifindex, line name) of every socket.
    pub fn lines(&self) -> Vec<(u32, String)> {
        self.socks
            .iter()
            .map(|s| (s.ifindex, s.name.clone()))
            .collect()
    }

    /// Reads what is queued on socket `i` (up to [`BURST`] frames).
    fn read_socket(&mut self, i: usize, sink: &mut Sink<'_>) {
        let fd = self.socks[i].fd.as_raw_fd();
        let ifindex = self.socks[i].ifindex;
        for _ in 0..BURST {
            // SAFETY: zeroed C structs are valid initial values for recvmsg.
            let mut sa: libc::sockaddr_ll = unsafe { mem::zeroed() };
            let mut cbuf = [0u64; 16];
            let mut iov = libc::iovec {
                iov_base: self.buf.as_mut_ptr().cast(),
                iov_len: self.buf.len(),
            };
            // SAFETY: as above.
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_name = (&mut sa as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = mem::size_of_val(&cbuf);
            // SAFETY: msg points at live buffers.
            let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
            if n < 0 {
                return; // EAGAIN (drained) or a transient error
            }
            let n = n as usize;
            let ts = timestamp(&msg).unwrap_or_else(crate::clock::realtime_ns);
            let got = n.min(self.buf.len());
            if got < VNET_HDR_LEN {
                continue;
            }
            let (vnet, frame) = self.buf[..got].split_at(VNET_HDR_LEN);
            self.counters[Counter::Packets as usize] += 1;
            self.counters[Counter::FrameBytes as usize] += (n - VNET_HDR_LEN) as u64;
            let wire = WireFrame {
                data: frame,
                wire_len: n - VNET_HDR_LEN,
            };
            let parsed = match parse_frame(&wire, LinkType::Ethernet, self.tunnels) {
                Ok(p) => p,
                Err(e) => {
                    self.counters[e.counter() as usize] += 1;
                    continue;
                }
            };
            if let Some(w) = parsed.warn {
                self.counters[w as usize] += 1;
            }
            if parsed.key.tunnel != 0 {
                self.counters[Counter::Decapsulated as usize] += 1;
            }
            self.counters[Counter::Accounted as usize] += 1;
            let mut key = parsed.key;
            key.ifindex = ifindex;
            key.direction = if sa.sll_pkttype == PACKET_OUTGOING {
                Direction::Egress
            } else {
                Direction::Ingress
            } as u8;
            let (packets, bytes) = segments(vnet, parsed.ip_bytes as u64, parsed.hdr_len as u64);
            let s = FlowStats {
                packets,
                bytes,
                first_ns: ts,
                last_ns: ts,
                tcp_flags: parsed.tcp_flags,
                icmp: parsed.icmp,
                verdict: 0,
                rule: 0,
                policy: 0,
            };
            sink.observe(&key, &s);
            // The same selection the kernel programs make (see `probe::app`).
            let payload = crate::app::payload(frame, &parsed);
            if crate::app::worth_sampling(key.proto, key.sport, key.dport, payload) {
                if self.samples.len() < SAMPLES_MAX {
                    let keep = payload.len().min(tidegate_common::APP_SAMPLE_BYTES);
                    self.samples
                        .push((key, SAMPLE_PAYLOAD, payload[..keep].to_vec()));
                } else {
                    self.counters[Counter::AppSampleLost as usize] += 1;
                }
            }
            // A tunnel's outer header, once per flow per hand-over (the kernel path
            // sends one per flow per sweep interval).
            if key.tunnel != 0 && !self.outer_sampled.contains(&key) {
                let outer = frame.get(parsed.outer_l3_off as usize..).unwrap_or(&[]);
                if self.samples.len() < SAMPLES_MAX {
                    let keep = outer.len().min(tidegate_common::OUTER_IP_SAMPLE_BYTES);
                    self.samples
                        .push((key, SAMPLE_OUTER_IP, outer[..keep].to_vec()));
                    self.outer_sampled.insert(key);
                } else {
                    self.counters[Counter::AppSampleLost as usize] += 1;
                }
            }
        }
    }

    fn read_drops(&mut self) {
        for s in &self.socks {
            let mut st = [0u32; 2]; // tpacket_stats { tp_packets, tp_drops }, reset on read
            let mut len = mem::size_of_val(&st) as u32;
            // SAFETY: valid buffer and length.
            let r = unsafe {
                libc::getsockopt(
                    s.fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_STATISTICS,
                    st.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if r == 0 {
                self.counters[Counter::CaptureDropped as usize] += st[1] as u64;
            }
        }
    }
}

/// Wire packets and IP bytes a (possibly GRO/GSO-merged) frame stands for.
fn segments(vnet: &[u8], ip_bytes: u64, hdr_len: u64) -> (u64, u64) {
    let gso_type = vnet[1];
    let gso_size = u16::from_ne_bytes([vnet[4], vnet[5]]) as u64;
    if gso_type == VIRTIO_NET_HDR_GSO_NONE || gso_size == 0 || hdr_len == 0 || ip_bytes <= hdr_len {
        return (1, ip_bytes);
    }
    let segs = (ip_bytes - hdr_len).div_ceil(gso_size).max(1);
    (segs, ip_bytes + (segs - 1) * hdr_len)
}

fn timestamp(msg: &libc::msghdr) -> Option<u64> {
    // SAFETY: walking the control buffer recvmsg filled, with the libc CMSG helpers.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

impl crate::live::LiveSource for AfPacketCapture {
    fn app_samples(&mut self, sink: &mut dyn FnMut(&FlowKey, u8, &[u8])) {
        for (k, kind, p) in self.samples.drain(..) {
            sink(&k, kind, &p);
        }
        self.outer_sampled.clear();
    }

    fn poll(&mut self, timeout: Duration, sink: &mut Sink<'_>) -> anyhow::Result<()> {
        let mut pfds: Vec<libc::pollfd> = self
            .socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: valid pollfd array. EINTR just ends the wait.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r > 0 {
            for (i, p) in pfds.iter().enumerate() {
                if p.revents & libc::POLLIN != 0 {
                    self.read_socket(i, sink);
                }
            }
        }
        Ok(())
    }

    fn sweep(&mut self, _sink: &mut Sink<'_>) -> anyhow::Result<()> {
        self.read_drops();
        Ok(())
    }

    fn finish(&mut self, sink: &mut Sink<'_>) -> anyhow::Result<()> {
        for i in 0..self.socks.len() {
            self.read_socket(i, sink);
        }
        self.read_drops();
        Ok(())
    }

    fn counters(&self) -> anyhow::Result<[u64; Counter::COUNT as usize]> {
        Ok(self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_super_packet_counts_as_its_segments() {
        // TCP over IPv4: 52-byte headers, 3000 bytes of payload in 1448-byte segments.
        let mut vnet = [0u8; VNET_HDR_LEN];
        vnet[1] = 1; // VIRTIO_NET_HDR_GSO_TCPV4
        vnet[4..6].copy_from_slice(&1448u16.to_ne_bytes());
        assert_eq!(segments(&vnet, 3052, 52), (3, 3052 + 2 * 52));
        assert_eq!(segments(&[0; VNET_HDR_LEN], 3052, 52), (1, 3052));
    }
}
