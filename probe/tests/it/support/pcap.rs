//! Capture files: record boundaries of real files and writers for synthetic ones.

use std::path::Path;

/// End offsets of the packet records of a pcap or pcapng file, in file order (for pcapng
/// the end of each EPB/SPB/PB; other blocks lie between them).
pub fn packet_record_ends(data: &[u8]) -> Vec<usize> {
    let magic = u32::from_be_bytes(data[0..4].try_into().unwrap());
    let mut ends = Vec::new();
    match magic {
        0xA1B2_C3D4 | 0xA1B2_3C4D | 0xD4C3_B2A1 | 0x4D3C_B2A1 => {
            let be = matches!(magic, 0xA1B2_C3D4 | 0xA1B2_3C4D);
            let rd = |o: usize| {
                let b: [u8; 4] = data[o..o + 4].try_into().unwrap();
                if be {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            };
            let mut off = 24;
            while off + 16 <= data.len() {
                off += 16 + rd(off + 8) as usize;
                assert!(off <= data.len(), "capture is itself truncated");
                ends.push(off);
            }
        }
        0x0A0D_0D0A => {
            let mut off = 0;
            let mut be = false;
            while off + 12 <= data.len() {
                let rd = |o: usize, be: bool| {
                    let b: [u8; 4] = data[o..o + 4].try_into().unwrap();
                    if be {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    }
                };
                let t = rd(off, be);
                if t == 0x0A0D_0D0A {
                    be = u32::from_be_bytes(data[off + 8..off + 12].try_into().unwrap())
                        == 0x1A2B_3C4D;
                }
                let len = rd(off + 4, be) as usize;
                off += len;
                if matches!(t, 2 | 3 | 6) {
                    ends.push(off);
                }
            }
        }
        m => panic!("not a capture: magic {m:08x}"),
    }
    ends
}

/// Writes a classic pcap file: `frames` are (timestamp ns, bytes); `nanos` selects the
/// nanosecond magic, `be` big-endian byte order.
pub fn write_pcap(path: &Path, linktype: u32, nanos: bool, be: bool, frames: &[(u64, Vec<u8>)]) {
    let mut out = Vec::new();
    let w32 = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
    };
    w32(&mut out, if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 });
    let ver = if be { [0, 2, 0, 4] } else { [2, 0, 4, 0] };
    out.extend_from_slice(&ver);
    w32(&mut out, 0);
    w32(&mut out, 0);
    w32(&mut out, 65535);
    w32(&mut out, linktype);
    for (ts, data) in frames {
        w32(&mut out, (ts / 1_000_000_000) as u32);
        let frac = ts % 1_000_000_000;
        w32(
            &mut out,
            if nanos {
                frac as u32
            } else {
                (frac / 1000) as u32
            },
        );
        w32(&mut out, data.len() as u32);
        w32(&mut out, data.len() as u32);
        out.extend_from_slice(data);
    }
    std::fs::write(path, out).expect("write pcap");
}

/// Builds pcapng files block by block.
pub struct PcapNg {
    /// The file so far.
    pub out: Vec<u8>,
    be: bool,
}

impl PcapNg {
    /// A new file starting with a section header block.
    pub fn new(be: bool) -> Self {
        let mut p = PcapNg {
            out: Vec::new(),
            be,
        };
        p.section(be);
        p
    }

    fn u32b(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u16b(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn block(&mut self, t: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = body.len() as u32 + 12;
        let (a, b) = (self.u32b(t), self.u32b(len));
        self.out.extend_from_slice(&a);
        self.out.extend_from_slice(&b);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&b);
    }

    /// Starts a new section (interfaces are reset) in the given byte order.
    pub fn section(&mut self, be: bool) {
        self.be = be;
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32b(0x1A2B_3C4D));
        body.extend_from_slice(&self.u16b(1));
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0A0D_0D0A, &body);
    }

    /// Describes an interface; `tsresol`/`tsoffset` add those options.
    pub fn interface(&mut self, linktype: u16, tsresol: Option<u8>, tsoffset: Option<i64>) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16b(linktype));
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&self.u32b(0));
        if let Some(r) = tsresol {
            body.extend_from_slice(&self.u16b(9));
            body.extend_from_slice(&self.u16b(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(o) = tsoffset {
            body.extend_from_slice(&self.u16b(14));
            body.extend_from_slice(&self.u16b(8));
            body.extend_from_slice(&if self.be {
                o.to_be_bytes()
            } else {
                o.to_le_bytes()
            });
        }
        if tsresol.is_some() || tsoffset.is_some() {
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        self.block(1, &body);
    }

    /// An enhanced packet block; `ts` in the interface's units.
    pub fn epb(&mut self, iface: u32, ts: u64, data: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32b(iface));
        body.extend_from_slice(&self.u32b((ts >> 32) as u32));
        body.extend_from_slice(&self.u32b(ts as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        self.block(6, &body);
    }

    /// A simple packet block (interface 0, no timestamp).
    pub fn spb(&mut self, data: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        self.block(3, &body);
    }
}

/// IPv4 header + `l4` (total length = 20 + l4.len() unless `total_len` is given).
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8], total_len: Option<u16>) -> Vec<u8> {
    let tl = total_len.unwrap_or(20 + l4.len() as u16);
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&tl.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(l4);
    h
}

/// A UDP header and `payload` zero bytes.
pub fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.resize(8 + payload, 0);
    u
}

/// Ethernet II header with `ethertype` followed by `payload`.
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}
